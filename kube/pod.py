"""Pods: the running interactive pod, pushing files into a pod (tar over exec), the git host keys.

An interactive pod takes every field from kube.yaml and launch.yaml's root (no model or dataset), runs
`server_command` (default `sleep infinity`) after the same start-up script as jobs, and is capped to the
cluster's interactive-pod limits (pod_max_gpu/memory/cpu) with a warning.
"""
import io
import os
import shutil
import subprocess
import tarfile
import time

from toolbox.errors import CommandError, UsageError
from toolbox.kube import render
from toolbox.kube.client import translate
from toolbox.kube.scope import selector

CREATE_ATTEMPTS = 10


def tar_archive(fileset):
    buffer = io.BytesIO()
    now = time.time()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as archive:
        for shipped in fileset.files:
            info = tarfile.TarInfo(shipped.path)
            info.size, info.mode, info.mtime = len(shipped.content), shipped.mode, now
            archive.addfile(info, io.BytesIO(shipped.content))
    return buffer.getvalue()


def running_interactive(cluster, settings):
    pods = cluster.list("Pod", selector(settings, "toolbox/role=interactive"))
    running = sorted(p["metadata"]["name"] for p in pods if (p.get("status") or {}).get("phase") == "Running")
    if len(running) == 1:
        return running[0]
    if not running:
        raise UsageError("copy", f"no running interactive pod of user '{settings['user']}' in namespace "
                         f"'{cluster.namespace}'", hint="start one with `make pod`, or name one with pod=NAME")
    raise UsageError("copy", f"{len(running)} interactive pods are running; choose one with pod=NAME",
                     [", ".join(running)])


def check_copyable(pod, name, container=render.MAIN):
    """A pod `make copy` can exec into: Running, with its main container running (else CommandError)."""
    status = pod.get("status") or {}
    phase = status.get("phase")
    if phase != "Running":
        raise CommandError(f"pod/{name}", f"the pod is {phase or 'not running'}; files can only be copied "
                           "into a running pod")
    for entry in status.get("containerStatuses") or []:
        if entry.get("name") != container or "running" in (entry.get("state") or {}):
            continue
        state = entry.get("state") or {}
        detail = state.get("waiting") or state.get("terminated") or {}
        reason = ": ".join(x for x in (detail.get("reason"), detail.get("message")) if x)
        raise CommandError(f"pod/{name}", f"container '{container}' is not running" + (f" ({reason})" if reason else "")
                           + "; files can only be copied into a running container",
                           hint=f"`make logs name={name}` shows why")
    return pod


def exec_stdin(cluster, pod, command, data, container=render.MAIN, timeout=120):
    """Run a command in a pod with `data` on stdin (exec over a websocket); (exit code, stderr text)."""
    from kubernetes.stream import stream

    try:
        client = stream(cluster.core.connect_get_namespaced_pod_exec, pod, cluster.namespace,
                        command=command, container=container, stdin=True, stdout=True, stderr=True, tty=False,
                        _preload_content=False, binary=True)
    except Exception as err:  # noqa: BLE001 - translated at this boundary
        raise translate(err, f"pod/{pod}", cluster.host) from None
    try:
        for start in range(0, len(data), 64 * 1024):
            client.write_stdin(data[start:start + 64 * 1024])
        client.close_channel(0)  # end of stdin (v5 protocol); tar also stops at the end-of-archive blocks
        client.run_forever(timeout=timeout)
        stderr = client.read_channel(2)
        code = client.returncode
    finally:
        client.close()
    return code, (stderr or b"").decode("utf-8", "replace")


def known_hosts(args, settings):
    if getattr(args, "known_hosts", None):
        try:
            with open(os.path.expanduser(args.known_hosts), "rb") as handle:
                return handle.read()
        except OSError as err:
            raise UsageError(f"known_hosts={args.known_hosts}", f"cannot read: {err.strerror}") from None
    host, port = settings["ssh_host"], settings["ssh_port"]
    how = (f"give the host keys of {host}:{port} as a file: "
           f"`ssh-keyscan -p {port} {host} > known_hosts` then `make deploy_key key=... known_hosts=known_hosts`")
    scan = shutil.which("ssh-keyscan")
    if not scan:
        raise UsageError("known_hosts", "ssh-keyscan is not installed, and no known_hosts= file was given",
                         hint=how)
    try:
        result = subprocess.run([scan, "-p", str(port), host], capture_output=True, timeout=30)
    except subprocess.TimeoutExpired:
        result = None
    if result is None or result.returncode != 0 or not result.stdout.strip():
        raise CommandError("ssh-keyscan", f"could not read the host keys of {host}:{port}", hint=how)
    return result.stdout


