"""Executor mode (off by default): the kubelet double RUNS each pod's main container as a local process.

It watches the store like a kubelet watches the API: every new pod is scheduled on the fake node
(`kubelet.DEFAULT_NODE`, pod and host IP 127.0.0.1: all pods share this machine's network), its first
container's command + args run with the container's environment (literal values with `$(VAR)` expansion,
the downward API fields metadata.name / namespace / uid / labels['k'] / annotations['k'], spec.nodeName,
spec.serviceAccountName, status.podIP / hostIP, secretKeyRef / configMapKeyRef and envFrom from the stored
Secrets and ConfigMaps), stdout and stderr become the container log (so `logs` and `logs -f` work), and the
exit code sets the phase (0: Succeeded; otherwise Failed, reason Error). Deleting the pod sends SIGTERM to
its process group, then SIGKILL after the grace period (at most KILL_AFTER_SECONDS). The job controller hears
of every start and exit, so Jobs run to completion by themselves.

DNS: the names a headless Service gives pods (`<hostname>.<subdomain>`, with `.<namespace>`, `.svc` and
`.svc.cluster.local`), Service names and pod hostnames resolve to 127.0.0.1 inside those processes: each
runs in private mount and UTS namespaces (`unshare --mount --uts`, root) where a generated hosts file is
bind-mounted over /etc/hosts and the hostname is the pod's (`<job>-<index>` for an Indexed Job); the
machine's own /etc/hosts and hostname are never touched. `dns_problem()` says why this cannot work here
(then processes still run, without the names, under this machine's hostname).

Not modelled: images (commands run on this machine, in the container's workingDir if it exists here, else a
fresh folder per pod), init and sidecar containers, volumes, resource limits, probes, restarts.
"""
import base64
import functools
import os
import shutil
import signal
import subprocess
import tempfile
import threading

from . import kubelet, resources
from .api import PODS
from .selection import labels_match
from .status import ApiError
from .store import clone

SERVICES = resources.lookup("services")
SECRETS = resources.lookup("secrets")
CONFIGMAPS = resources.lookup("configmaps")
KILL_AFTER_SECONDS = 5.0
LOCAL_IP = "127.0.0.1"
POLL_SECONDS = 0.5
# Inside the new mount and UTS namespaces: the hosts file over /etc/hosts, the pod's hostname, then the command.
ENTER_POD = 'mount --bind "$0" /etc/hosts && { [ -z "$1" ] || hostname "$1"; } && shift && exec "$@"'
UNSHARE = ["unshare", "--mount", "--uts", "--propagation", "private", "--", "/bin/sh", "-c", ENTER_POD]


class ConfigError(Exception):
    """The container cannot start: a referenced Secret or ConfigMap (or key) is missing."""


@functools.lru_cache(maxsize=1)
def dns_problem():
    """None when the hosts-file bind mount works on this machine, else why not (one line)."""
    unshare = shutil.which("unshare")
    if unshare is None:
        return "`unshare` (util-linux) is not installed"
    with tempfile.NamedTemporaryFile("w", suffix=".hosts") as probe:
        probe.write(f"{LOCAL_IP} kube-double-probe.invalid\n")
        probe.flush()
        check = "getent hosts kube-double-probe.invalid" if shutil.which("getent") else "grep -q probe /etc/hosts"
        try:
            hostname = "kube-double-probe" if _hostname_tool() else ""
            done = subprocess.run([unshare, *UNSHARE[1:], probe.name, hostname, "/bin/sh", "-c", check],
                                  capture_output=True, text=True, timeout=10, check=False)
        except (OSError, subprocess.TimeoutExpired) as exc:
            return f"unshare --mount failed: {exc}"
    if done.returncode != 0:
        return ("a private mount namespace with /etc/hosts bind-mounted is not possible here (needs root or "
                f"CAP_SYS_ADMIN): {(done.stderr or done.stdout).strip() or f'exit {done.returncode}'}")
    return None


def _hostname_tool():
    return shutil.which("hostname") is not None


def expand(text, env):
    """Kubernetes' `$(VAR)` expansion: defined variables are replaced, `$$` escapes, anything else stays."""
    out, i = [], 0
    while i < len(text):
        if text.startswith("$$", i):
            out.append("$")
            i += 2
            continue
        if text.startswith("$(", i):
            end = text.find(")", i + 2)
            if end != -1:
                name = text[i + 2:end]
                out.append(env[name] if name in env else text[i:end + 1])
                i = end + 1
                continue
        out.append(text[i])
        i += 1
    return "".join(out)


def field_value(pod, path):
    """A downward API field as the kubelet renders it (a missing label or annotation is empty)."""
    meta, spec, status = pod["metadata"], pod.get("spec") or {}, pod.get("status") or {}
    for prefix, source in (("metadata.labels['", meta.get("labels")), ("metadata.annotations['",
                                                                       meta.get("annotations"))):
        if path.startswith(prefix) and path.endswith("']"):
            return (source or {}).get(path[len(prefix):-2], "")
    simple = {"metadata.name": meta.get("name"), "metadata.namespace": meta.get("namespace"),
              "metadata.uid": meta.get("uid"), "spec.nodeName": spec.get("nodeName"),
              "spec.serviceAccountName": spec.get("serviceAccountName"), "status.podIP": status.get("podIP"),
              "status.hostIP": status.get("hostIP"),
              "status.podIPs": ",".join(i["ip"] for i in status.get("podIPs") or []),
              "status.hostIPs": ",".join(i["ip"] for i in status.get("hostIPs") or [])}
    if path not in simple:
        raise ConfigError(f"unsupported fieldRef {path!r}")
    return simple[path] or ""


class Executor:
    """Runs pods as processes; see the module docstring. `start()` / `stop()`; one thread watches the store."""

    def __init__(self, double):
        self.double, self.store = double, double.store
        self.root = tempfile.mkdtemp(prefix="kube-double-pods-")
        self.hosts_path = os.path.join(self.root, "hosts")
        self.dns = dns_problem() is None
        self._runs = {}  # pod uid -> _Run
        self._started = set()  # uids of every pod run since the last reset: a pod runs once
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = None
        self._hosts_text = None
        self.refresh_hosts()

    # --- lifecycle ---

    def start(self):
        self._stop.clear()
        self._thread = threading.Thread(target=self._watch, name="kube-double-executor", daemon=True)
        self._thread.start()
        return self

    def stop(self):
        self._stop.set()
        self.store.notify()
        if self._thread is not None:
            self._thread.join(10)
        self.kill_all()
        shutil.rmtree(self.root, ignore_errors=True)

    def kill_all(self, wait=True):
        with self._lock:
            runs = list(self._runs.values())
        for run in runs:
            run.kill()
        for run in runs if wait else ():
            run.thread.join(KILL_AFTER_SECONDS + 5)

    # --- watching the store ---

    def _watch(self):
        store = self.store
        with store.cond:
            epoch, since = store.epoch, store.rv
            for pod in store.list(PODS)[0]:
                self._pod_seen(pod)
        while not self._stop.is_set():
            with store.cond:
                seen = store.changes
                if store.epoch != epoch:  # reset(): everything is gone
                    epoch, since = store.epoch, store.rv
                    events = []
                    self.kill_all(wait=False)
                    with self._lock:
                        self._started.clear()
                else:
                    try:
                        events = store.events_after(since)
                    except ApiError:  # the history was compacted: look at every pod again
                        events, since = [], store.rv
                        for pod in store.list(PODS)[0]:
                            self._pod_seen(pod)
            for event in events:
                since = event.rv
                self._handle(event)
            store.wait_for_change(seen, POLL_SECONDS)

    def _handle(self, event):
        if event.res is SERVICES:
            self.refresh_hosts()
        elif event.res is PODS:
            if event.type == "DELETED" or event.obj["metadata"].get("deletionTimestamp"):
                self._pod_gone(event.obj)
            else:
                self._pod_seen(event.obj)

    def _pod_seen(self, pod):
        uid = pod["metadata"]["uid"]
        with self._lock:
            if uid in self._started or (pod.get("status") or {}).get("phase") != "Pending" \
                    or pod["metadata"].get("deletionTimestamp"):
                return
            self._started.add(uid)
            run = self._runs[uid] = _Run(self, pod)
        self.refresh_hosts()
        run.thread.start()

    def _pod_gone(self, pod):
        with self._lock:
            run = self._runs.get(pod["metadata"]["uid"])
        if run is not None:
            run.kill()
        self.refresh_hosts()

    def forget(self, run):
        with self._lock:
            self._runs.pop(run.uid, None)

    # --- DNS ---

    def refresh_hosts(self):
        """Rewrite the hosts file in place (bind mounts follow the inode) when its content changes."""
        text = hosts_text(self.store)
        if text == self._hosts_text:
            return
        with open(self.hosts_path, "w") as out:
            out.write(text)
        self._hosts_text = text


def pod_hostname(pod):
    """spec.hostname, else the pod's name, cut to a DNS label as the kubelet does."""
    return ((pod.get("spec") or {}).get("hostname") or pod["metadata"]["name"])[:63].rstrip("-.")


def _names(name, namespace):
    return [name, f"{name}.{namespace}", f"{name}.{namespace}.svc", f"{name}.{namespace}.svc.cluster.local"]


def hosts_text(store):
    """Every Service name and every `<hostname>.<subdomain>` a headless Service selects, at 127.0.0.1."""
    lines = [f"{LOCAL_IP}\tlocalhost", "::1\tlocalhost ip6-localhost ip6-loopback"]
    services = store.list(SERVICES)[0]
    headless = {(s["metadata"]["namespace"], s["metadata"]["name"]): s for s in services
                if (s.get("spec") or {}).get("clusterIP") == "None"}
    for service in services:
        lines.append(f"{LOCAL_IP}\t" + " ".join(_names(service["metadata"]["name"], service["metadata"]["namespace"])))
    for pod in store.list(PODS)[0]:
        spec, meta = pod.get("spec") or {}, pod["metadata"]
        hostname, subdomain = pod_hostname(pod), spec.get("subdomain")
        service = headless.get((meta["namespace"], subdomain))
        names = [hostname]
        selector = (service or {}).get("spec", {}).get("selector")
        if service is not None and selector and labels_match([(k, "in", (v,)) for k, v in selector.items()],
                                                             meta.get("labels")):
            names += _names(f"{hostname}.{subdomain}", meta["namespace"])
        lines.append(f"{LOCAL_IP}\t" + " ".join(names))
    return "\n".join(lines) + "\n"


class _Run:
    """One pod's main container as a process, from start to exit or kill."""

    def __init__(self, executor, pod):
        self.executor, self.double = executor, executor.double
        meta = pod["metadata"]
        self.uid, self.namespace, self.name = meta["uid"], meta["namespace"], meta["name"]
        self.container = pod["spec"]["containers"][0]
        self.grace = min(float(pod["spec"].get("terminationGracePeriodSeconds", 30)), KILL_AFTER_SECONDS)
        self.process = None
        self.killed = threading.Event()
        self._lock = threading.Lock()
        self.thread = threading.Thread(target=self._run, name=f"pod-{self.name}", daemon=True)

    def kill(self):
        self.killed.set()
        with self._lock:
            process = self.process
        if process is not None and process.poll() is None:
            threading.Thread(target=self._terminate, args=(process,), daemon=True).start()

    def _terminate(self, process):
        _signal_group(process, signal.SIGTERM)
        try:
            process.wait(self.grace)
        except subprocess.TimeoutExpired:
            _signal_group(process, signal.SIGKILL)

    def _update(self, change):
        """Change the stored pod and tell the job controller; False when the pod is gone."""
        try:
            pod = self.double.api.update_object(PODS, self.namespace, self.name, change)
        except ApiError:
            return False
        if self.double.api.controller is not None and self.double.job_controller:
            self.double.api.controller.pod_changed(pod)
        return True

    def _run(self):
        try:
            self._start_and_wait()
        finally:
            self.executor.forget(self)

    def _start_and_wait(self):
        def running(pod):
            pod["status"].update(podIP=LOCAL_IP, podIPs=[{"ip": LOCAL_IP}], hostIP=LOCAL_IP,
                                 hostIPs=[{"ip": LOCAL_IP}])
            kubelet.set_phase(pod, "Running")
        pod = self.double.store.find(PODS, self.namespace, self.name)
        if pod is None or self.killed.is_set():
            return
        try:
            env = container_env(self.double.store, _scheduled(pod), self.container)
        except ConfigError as exc:
            reason = str(exc)
            self._update(lambda p: kubelet.set_container_state(p, "waiting", "CreateContainerConfigError",
                                                               reason))
            return
        argv = [expand(part, env) for part in (self.container.get("command") or []) + (
            self.container.get("args") or [])]
        if not argv:
            self._finish(128, "StartError", "kube double executor: the container has no command (an image's "
                                            "entrypoint cannot run here)")
            return
        if not self._update(running):
            return
        if self.executor.dns:
            argv = [*UNSHARE, self.executor.hosts_path, env["HOSTNAME"] if _hostname_tool() else "", *argv]
        workdir = self._workdir()
        env.setdefault("HOME", workdir)
        with self._lock:
            if self.killed.is_set():
                return
            try:
                self.process = subprocess.Popen(argv, env=env, cwd=workdir, stdin=subprocess.DEVNULL,
                                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                                start_new_session=True)
            except OSError as exc:
                self._finish(128, "StartError", f"kube double executor: {exc}")
                return
        reader = threading.Thread(target=self._copy_log, args=(self.process.stdout,), daemon=True)
        reader.start()
        code = self.process.wait()
        # The container ends with its main process: whatever it left running goes too (and lets go of stdout).
        _signal_group(self.process, signal.SIGKILL)
        reader.join(KILL_AFTER_SECONDS)
        if not self.killed.is_set():
            self._finish(code if code >= 0 else 128 - code)

    def _copy_log(self, stream):
        for line in stream:
            self.double.logs.write(self.namespace, self.name, self.container["name"], line.decode("utf-8", "replace"))

    def _finish(self, code, reason=None, message=None):
        phase = "Succeeded" if code == 0 else "Failed"
        self._update(lambda p: kubelet.set_phase(p, phase, reason or ("Completed" if code == 0 else "Error"),
                                                 message, exit_code=code))

    def _workdir(self):
        wanted = self.container.get("workingDir")
        if wanted and os.path.isdir(wanted):
            return wanted
        path = os.path.join(self.executor.root, self.namespace, self.name)
        os.makedirs(path, exist_ok=True)
        return path


def _scheduled(pod):
    """The pod as the kubelet sees it once bound to the fake node (what the downward API reads)."""
    pod = clone(pod)
    pod["spec"].setdefault("nodeName", kubelet.DEFAULT_NODE)
    status = pod.setdefault("status", {})
    status.update(podIP=LOCAL_IP, podIPs=[{"ip": LOCAL_IP}], hostIP=LOCAL_IP, hostIPs=[{"ip": LOCAL_IP}])
    return pod


def _signal_group(process, signum):
    try:
        os.killpg(process.pid, signum)
    except (ProcessLookupError, PermissionError):
        pass


def _lookup(store, res, namespace, name, key, optional):
    obj = store.find(res, namespace, name)
    kind = "secret" if res is SECRETS else "configmap"
    if obj is None:
        if optional:
            return None
        raise ConfigError(f'{kind} "{name}" not found')
    data = _decoded(obj)
    if key is None:
        return data
    if key not in data:
        if optional:
            return None
        raise ConfigError(f"couldn't find key {key} in {'Secret' if res is SECRETS else 'ConfigMap'} "
                          f"{namespace}/{name}")
    return data[key]


def _decoded(obj):
    if obj.get("kind") == "Secret":
        return {k: base64.b64decode(v or "").decode("utf-8", "replace") for k, v in (obj.get("data") or {}).items()}
    return dict(obj.get("data") or {})


def container_env(store, pod, container):
    """The container's environment as the kubelet builds it: PATH from this machine (the image would set it),
    HOSTNAME, then envFrom in order, then env in order (each value may use the variables before it)."""
    namespace = pod["metadata"]["namespace"]
    env = {"PATH": os.environ.get("PATH", "/usr/local/bin:/usr/bin:/bin"),
           "HOSTNAME": pod_hostname(pod)}
    for source in container.get("envFrom") or []:
        for key, res in (("configMapRef", CONFIGMAPS), ("secretRef", SECRETS)):
            ref = source.get(key)
            if ref:
                data = _lookup(store, res, namespace, ref.get("name"), None, ref.get("optional"))
                env.update({source.get("prefix", "") + k: v for k, v in (data or {}).items()})
    for var in container.get("env") or []:
        value = _env_value(store, pod, container, var, env)
        if value is not None:
            env[var["name"]] = value
    return env


def _env_value(store, pod, container, var, env):
    if "valueFrom" not in var:
        return expand(var.get("value") or "", env)
    source = var["valueFrom"]
    if "fieldRef" in source:
        return field_value(pod, source["fieldRef"]["fieldPath"])
    for key, res in (("secretKeyRef", SECRETS), ("configMapKeyRef", CONFIGMAPS)):
        if key in source:
            ref = source[key]
            return _lookup(store, res, pod["metadata"]["namespace"], ref.get("name"), ref.get("key"),
                           ref.get("optional"))
    if "resourceFieldRef" in source:
        ref = source["resourceFieldRef"]
        limits = (container.get("resources") or {}).get(ref.get("resource", "").split(".")[0]) or {}
        return str(limits.get(ref.get("resource", "").split(".", 1)[-1], "0"))
    raise ConfigError(f"unsupported valueFrom in env {var.get('name')!r}")
