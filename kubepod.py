"""The interactive pod (make pod, pod-dryrun), pushing files into it (make copy) and the deploy key Secret.

An interactive pod takes every field from kube.yaml and launch.yaml's root (no model or dataset), runs
`server_command` (default `sleep infinity`) after the same start-up script as jobs, and is capped to the
cluster's interactive-pod limits (pod_max_gpu/memory/cpu) with a warning.
"""
import io
import os
import shutil
import subprocess
import sys
import tarfile
import time

from toolbox import kubedata, kubeutils, naming
from toolbox.config import load_config
from toolbox.console import human_bytes
from toolbox.envfile import read_env
from toolbox.errors import CommandError, ConfigError, UsageError
from toolbox.kubecli import (BUILD_DIR, HEADER, Output, connect, object_yaml, project_settings, selector,
                             upsert_support, warn_missing, write_build)

POD_DRYRUN_LIST = os.path.join(BUILD_DIR, ".pod-dryrun-files")
CREATE_ATTEMPTS = 10


def _prepare(args):
    config = load_config(".", need_launch=False)
    settings = project_settings(config)
    base = args.pod or naming.pod_name(naming.owner(settings), settings["project_name"])
    if not naming.is_dns_label(base):
        raise UsageError(f"pod={base}", "not a valid pod name",
                         ["lower-case letters, digits and '-', at most 63 characters"])
    renderer = kubeutils.Renderer(".", read_env())
    text = renderer.pod_manifest(settings, base)
    renderer.check(config.locate)
    for warning in renderer.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    return settings, base, renderer, text


def cmd_pod_dryrun(args):
    settings, name, renderer, text = _prepare(args)
    kubeutils.parse_manifest(text, f"pod/{name}")
    path = os.path.join(BUILD_DIR, f"{name}.yaml")
    files = [(path, HEADER.format(what="make pod-dryrun", path=path) + text)]
    for configmap in renderer.configmaps():
        cm_path = os.path.join(BUILD_DIR, f"{configmap['metadata']['name']}.yaml")
        files.append((cm_path, object_yaml(configmap, "make pod-dryrun: the files of file:", cm_path)))
    write_build(files, POD_DRYRUN_LIST)
    print(f"Wrote {path} (interactive pod '{name}', namespace {settings['namespace']}); nothing was created.")
    print("`make pod` picks the next free name (-1, -2, ...) if this one is taken.")
    return 0


def cmd_pod(args):
    from toolbox.kubeapi import KubeError

    settings, base, renderer, _ = _prepare(args)
    out = Output()
    with connect(settings, args) as cluster:
        taken = {p["metadata"]["name"] for p in cluster.list("Pod", selector(settings))}
        warn_missing(cluster, renderer)
        upsert_support(cluster, ([renderer.secret] if renderer.secret else []) + renderer.configmaps(), out)
        name = naming.next_free_name(base, taken)
        for _ in range(CREATE_ATTEMPTS):
            body = kubeutils.parse_manifest(renderer.pod_manifest(settings, name), f"pod/{name}")
            try:
                cluster.create(body)
                break
            except KubeError as err:
                if err.code != 409:  # taken by a pod without our labels: try the next name
                    raise
                taken.add(name)
                name = naming.next_free_name(base, taken)
        else:
            raise CommandError(f"pod/{base}", f"{CREATE_ATTEMPTS} names in a row are taken; choose one with pod=NAME")
    namespace = settings["namespace"]
    if name != base:
        print(f"Pod '{base}' exists: using the next free name.")
    print(f"Pod '{name}' created in namespace '{namespace}'. It runs: {settings['server_command']}")
    print(f"  shell:   kubectl exec -it -n {namespace} {name} -- bash")
    print(f"  logs:    make logs name={name}")
    print(f"  files:   make copy pod={name}")
    print("  delete:  make delete_pod")
    return 0


# -- make copy ------------------------------------------------------------------------------------------
def _tar(fileset):
    buffer = io.BytesIO()
    now = time.time()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as archive:
        for shipped in fileset.files:
            info = tarfile.TarInfo(shipped.path)
            info.size, info.mode, info.mtime = len(shipped.content), shipped.mode, now
            archive.addfile(info, io.BytesIO(shipped.content))
    return buffer.getvalue()


def _running_interactive(cluster, settings):
    pods = cluster.list("Pod", selector(settings, "toolbox/role=interactive"))
    running = sorted(p["metadata"]["name"] for p in pods if (p.get("status") or {}).get("phase") == "Running")
    if len(running) == 1:
        return running[0]
    if not running:
        raise UsageError("copy", f"no running interactive pod of user '{settings['user']}' in namespace "
                         f"'{cluster.namespace}'", hint="start one with `make pod`, or name one with pod=NAME")
    raise UsageError("copy", f"{len(running)} interactive pods are running; choose one with pod=NAME",
                     [", ".join(running)])


def exec_stdin(cluster, pod, command, data, container=kubeutils.MAIN, timeout=120):
    """Run a command in a pod with `data` on stdin (exec over a websocket); (exit code, stderr text)."""
    from kubernetes.stream import stream

    from toolbox.kubeapi import translate

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


def cmd_copy(args):
    settings = project_settings(load_config(".", need_launch=False))
    paths = settings.get("file") or []
    if not paths:
        raise UsageError("file:", "nothing to copy: the file: list (kube.yaml or launch.yaml's top level) is empty")
    fileset, problems = kubedata.collect_files(paths, settings, ".")
    if problems:
        raise ConfigError(problems)
    with connect(settings, args) as cluster:
        pod = args.pod or _running_interactive(cluster, settings)
        found = cluster.get("Pod", pod)
        if found is None:
            raise UsageError(f"pod={pod}", f"no such pod in namespace '{cluster.namespace}'")
        phase = (found.get("status") or {}).get("phase")
        if phase != "Running":
            raise CommandError(f"pod/{pod}", f"the pod is {phase or 'not running'}; files can only be copied "
                               "into a running pod")
        archive = _tar(fileset)
        code, stderr = exec_stdin(cluster, pod, ["tar", "-xmf", "-"], archive)
    if code:
        raise CommandError(f"pod/{pod}", f"copying failed (tar exit code {code})",
                           stderr.strip().splitlines()[-5:])
    total = sum(len(f.content) for f in fileset.files)
    print(f"Copied {len(fileset.files)} file{'s' if len(fileset.files) != 1 else ''} ({human_bytes(total)}) "
          f"into pod '{pod}' (its working directory, the project checkout).")
    return 0


# -- make deploy_key --------------------------------------------------------------------------------------
def _known_hosts(args, settings):
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


def cmd_deploy_key(args):
    settings = project_settings(load_config(".", need_launch=False))
    if not getattr(args, "key", None):
        raise UsageError("key=", "give the private key file of the read-only deploy key",
                         hint="make deploy_key key=~/.ssh/<project>_deploy_key [known_hosts=FILE]")
    try:
        with open(os.path.expanduser(args.key), "rb") as handle:
            private_key = handle.read()
    except OSError as err:
        raise UsageError(f"key={args.key}", f"cannot read: {err.strerror}") from None
    if b"PRIVATE KEY" not in private_key:
        raise UsageError(f"key={args.key}", "this is not an SSH private key (no 'PRIVATE KEY' block)",
                         hint="give the private half (not the .pub file)")
    if not settings.get("deploy_key_secret"):
        raise UsageError("deploy_key_secret", "empty: set a Secret name in config/kube.yaml")
    secret = kubedata.deploy_key_secret(settings, private_key, _known_hosts(args, settings))
    with connect(settings, args) as cluster:
        result = cluster.upsert(secret)
    print(f"Secret '{secret['metadata']['name']}' (deploy key and known_hosts for `git pull` in pods): {result}.")
    return 0
