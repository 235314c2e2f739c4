"""What is going on in the cluster: job states, the status table of a sweep, and following logs.

Everything is read with list calls (one for jobs, one for pods, by label), never a call per cell.
"""
import datetime
import sys
import threading
import time

from toolbox.console import format_table, human_duration
from toolbox.errors import EXIT_FAILED, UsageError, choices_line, did_you_mean
from toolbox.kubeapi import KubeError, Unreachable
from toolbox.kubecli import check_cluster_fields, connect, selector

POLL_SECONDS = 2.0


# -- states -----------------------------------------------------------------------------------------------
def job_state(job):
    """missing / pending / running / succeeded / failed / deleting (the resubmission table of README.md, "Kubernetes")."""
    if job is None:
        return "missing"
    meta, status = job.get("metadata") or {}, job.get("status") or {}
    if meta.get("deletionTimestamp"):
        return "deleting"
    for condition in status.get("conditions") or []:
        if condition.get("status") != "True":
            continue
        if condition.get("type") in ("Failed", "FailureTarget"):
            return "failed"
        if condition.get("type") in ("Complete", "SuccessCriteriaMet"):
            return "succeeded"
    if status.get("succeeded"):
        return "succeeded"
    if status.get("active"):
        return "running"
    backoff = (job.get("spec") or {}).get("backoffLimit", 6)
    if (status.get("failed") or 0) > backoff:
        return "failed"
    return "pending"


def newest(pods):
    return max(pods, key=lambda p: (p["metadata"].get("creationTimestamp") or "", p["metadata"]["name"]))


def pods_by_job(pods):
    """job name -> its newest pod."""
    grouped = {}
    for pod in pods:
        labels = pod["metadata"].get("labels") or {}
        job = labels.get("job-name") or labels.get("batch.kubernetes.io/job-name")
        if job:
            grouped.setdefault(job, []).append(pod)
    return {job: newest(group) for job, group in grouped.items()}


def _statuses(pod):
    status = pod.get("status") or {}
    return (status.get("initContainerStatuses") or []) + (status.get("containerStatuses") or [])


def restarts(pod):
    return sum(c.get("restartCount") or 0 for c in _statuses(pod)) if pod else 0


def pod_reason(pod):
    """Why a pod is stuck or failed, in a few words (or '')."""
    if not pod:
        return ""
    status = pod.get("status") or {}
    for condition in status.get("conditions") or []:
        if condition.get("type") == "PodScheduled" and condition.get("status") == "False":
            reason = condition.get("reason") or "Unschedulable"
            return f"{reason}: {condition.get('message', '')}".strip(": ")
    for container in _statuses(pod):
        state = container.get("state") or {}
        if "waiting" in state and state["waiting"].get("reason") not in (None, "ContainerCreating",
                                                                          "PodInitializing"):
            waiting = state["waiting"]
            return f"{waiting['reason']}: {waiting.get('message', '')}".strip(": ")
        terminated = state.get("terminated") or (container.get("lastState") or {}).get("terminated")
        if terminated and (terminated.get("exitCode") or terminated.get("reason") == "OOMKilled"):
            reason = terminated.get("reason") or "Error"
            return f"{reason} (exit code {terminated.get('exitCode')})"
    if status.get("reason"):
        return f"{status['reason']}: {status.get('message', '')}".strip(": ")
    return ""


def parse_time(text):
    if not text:
        return None
    try:
        return datetime.datetime.strptime(text[:19], "%Y-%m-%dT%H:%M:%S").replace(tzinfo=datetime.timezone.utc)
    except ValueError:
        return None


def age(obj, now=None):
    created = parse_time((obj or {}).get("metadata", {}).get("creationTimestamp"))
    if created is None:
        return "-"
    now = now or datetime.datetime.now(datetime.timezone.utc)
    return human_duration(max((now - created).total_seconds(), 0))


def requested_gpu(pod):
    """The GPU a pod asked for: 'a100', 'gpu [NVIDIA-A10,...]', or '' without GPUs."""
    spec = pod.get("spec") or {}
    kind = ""
    for container in spec.get("containers") or []:
        for key in (container.get("resources") or {}).get("requests") or {}:
            if key.startswith("nvidia.com/"):
                kind = key.split("/", 1)[1]
    if not kind:
        return ""
    terms = (((spec.get("affinity") or {}).get("nodeAffinity") or {})
             .get("requiredDuringSchedulingIgnoredDuringExecution") or {}).get("nodeSelectorTerms") or []
    for term in terms:
        for expression in term.get("matchExpressions") or []:
            if expression.get("key") == "nvidia.com/gpu.product" and expression.get("operator") == "In":
                return f"{kind} [{','.join(expression.get('values') or [])}]"
    return kind


def gpu_types(cluster, pods):
    """node name -> GPU product, when nodes can be listed (one call; {} otherwise)."""
    if not any((p.get("spec") or {}).get("nodeName") and requested_gpu(p) for p in pods):
        return {}
    nodes = cluster.list_nodes("nvidia.com/gpu.product")
    return {n["metadata"]["name"]: (n["metadata"].get("labels") or {}).get("nvidia.com/gpu.product", "")
            for n in nodes or []}


# -- the status table -------------------------------------------------------------------------------------
def status_rows(cells, jobs, pods, products=None, job_of=None, now=None):
    """One row per cell: NAME, JOB, POD, NODE, GPU, AGE, RESTARTS, REASON (a cell packed in a shared-GPU
    job shows that job's state, marked `shared`)."""
    products = products or {}
    job_of = job_of or {}
    by_name = {j["metadata"]["name"]: j for j in jobs}
    by_job = pods_by_job(pods)
    rows, counts = [], {}
    for cell in cells:
        job_name = job_of.get(cell.name, cell.name)
        job = by_name.get(job_name)
        state = job_state(job)
        counts[state] = counts.get(state, 0) + 1
        pod = by_job.get(job_name)
        node = ((pod or {}).get("spec") or {}).get("nodeName") or "-"
        gpu = "-"
        if pod:
            gpu = products.get(node) or requested_gpu(pod) or "-"
        phase = ((pod or {}).get("status") or {}).get("phase") or "-"
        rows.append([cell.name, state + (" (shared)" if job_name != cell.name else ""), phase, node, gpu,
                     age(job, now) if job else "-",
                     str(restarts(pod)) if pod else "-", pod_reason(pod) or "-"])
    return rows, counts


def status_text(cells, jobs, pods, products=None, job_of=None):
    rows, counts = status_rows(cells, jobs, pods, products, job_of)
    table = format_table(["NAME", "JOB", "POD", "NODE", "GPU", "AGE", "RESTARTS", "REASON"], rows)
    order = ["running", "pending", "succeeded", "failed", "deleting", "missing"]
    summary = ", ".join(f"{counts[s]} {s}" for s in order if counts.get(s))
    packs = {}
    for cell, job in (job_of or {}).items():
        if job != cell:
            packs.setdefault(job, []).append(cell)
    shared = "".join(f"\nshared job {job}: {', '.join(members)}" for job, members in packs.items())
    return f"{table}\n\n{len(cells)} cell{'s' if len(cells) != 1 else ''}: {summary}{shared}"


# -- logs -------------------------------------------------------------------------------------------------
def _split_timestamp(line):
    stamp, sep, text = line.partition(" ")
    if not sep or not stamp[:4].isdigit() or "T" not in stamp:
        return None, line
    return stamp, text


def _stamp_key(stamp):
    """RFC 3339 (nano) timestamps as comparable tuples (fractions have no trailing zeros)."""
    whole, _, fraction = stamp.rstrip("Z").partition(".")
    return whole, fraction.ljust(9, "0")


class LogFollower:
    """Follows one pod's log: waits while it is Pending (saying why), reconnects when the stream drops
    (no line twice: after a reconnect, lines up to the last one shown are skipped by their timestamps),
    ends when the pod has finished."""

    def __init__(self, cluster, pod_name, write, say, container=None, poll=POLL_SECONDS):
        self.cluster, self.pod_name, self.write, self.say = cluster, pod_name, write, say
        self.container, self.poll = container, poll
        self.last_key, self.last_count = None, 0   # timestamp of the last line shown, lines shown with it
        self.replaying, self.skip = False, 0

    def wait_started(self):
        """The pod once it runs or has finished (None if it disappeared)."""
        said = None
        while True:
            pod = self.cluster.get("Pod", self.pod_name)
            if pod is None:
                return None
            phase = (pod.get("status") or {}).get("phase") or "Pending"
            started = any("running" in (c.get("state") or {}) or "terminated" in (c.get("state") or {})
                          for c in (pod.get("status") or {}).get("containerStatuses") or [])
            if phase != "Pending" or started:
                return pod
            reason = pod_reason(pod)
            message = f"pod {self.pod_name} is Pending" + (f" ({reason})" if reason else "") + "; waiting"
            if message != said:
                self.say(message)
                said = message
            time.sleep(self.poll)

    def follow(self):
        """Follow until the pod has finished; returns its final phase ('Gone' if it was deleted)."""
        if self.wait_started() is None:
            self.say(f"pod {self.pod_name} is gone")
            return "Gone"
        phase, attempt = None, 0
        while True:
            since = None
            if attempt and self.last_key is not None:
                last = parse_time(self.last_key[0] + "Z")
                since = max(int(time.time() - last.timestamp()) + 10, 1) if last else None
                self.replaying, self.skip = True, self.last_count
            attempt += 1
            try:
                self._stream(since)
            except (Unreachable, KubeError) as err:
                self.say(f"log stream of {self.pod_name} interrupted ({err.what}); reconnecting")
            except Exception as err:  # noqa: BLE001 - a dropped stream (urllib3 ProtocolError...)
                if "Timeout" not in type(err).__name__:  # a quiet pod: reconnect without a word
                    self.say(f"log stream of {self.pod_name} dropped ({type(err).__name__}); reconnecting")
            pod = self.cluster.get("Pod", self.pod_name)
            phase = ((pod or {}).get("status") or {}).get("phase")
            if pod is None or phase in ("Succeeded", "Failed"):
                return phase or "Gone"
            time.sleep(min(self.poll, 1.0))

    def _stream(self, since):
        response = self.cluster.log_stream(self.pod_name, self.container, since_seconds=since)
        try:
            pending = b""
            for chunk in response.stream(4096, decode_content=True):
                pending += chunk
                *lines, pending = pending.split(b"\n")
                for raw in lines:
                    self._line(raw.decode("utf-8", "replace"))
            if pending:
                self._line(pending.decode("utf-8", "replace"))
        finally:
            response.release_conn()

    def _line(self, line):
        stamp, text = _split_timestamp(line)
        if stamp is None:
            self.write(text)
            return
        key = _stamp_key(stamp)
        if self.replaying:
            if key < self.last_key:
                return
            if key == self.last_key and self.skip > 0:
                self.skip -= 1
                return
            self.replaying = False
        if key == self.last_key:
            self.last_count += 1
        else:
            self.last_key, self.last_count = key, 1
        self.write(text)


class Printer:
    """Thread-safe line output with an optional per-cell prefix."""

    def __init__(self, stream=None):
        self.stream = stream or sys.stdout
        self.lock = threading.Lock()

    def line(self, text, prefix=""):
        with self.lock:
            self.stream.write(f"{prefix}{text}\n")
            self.stream.flush()


# -- the commands: make status / logs ----------------------------------------------------------------------
def _jobs_of(cells, jobs=()):
    """cell name -> name of the Job that runs it (a shared-GPU pack, or the cell itself); packs already
    in the cluster are read from their Jobs."""
    from toolbox import kubeshared

    _, packs = kubeshared.pack(cells, kubeshared.existing_packs(jobs))
    job_of = {cell.name: cell.name for cell in cells}
    for name, members in packs:
        job_of.update((cell.name, name) for cell in members)
    return job_of


def cmd_status(args):
    from toolbox.runners import load_grid

    grid = load_grid(args)
    check_cluster_fields(grid.config)
    settings = grid.cells[0].settings
    with connect(settings, args) as cluster:
        jobs = cluster.list("Job", selector(settings))
        pods = cluster.list("Pod", selector(settings))
        products = gpu_types(cluster, pods)
    print(status_text(grid.cells, jobs, pods, products, _jobs_of(grid.cells, jobs)))
    return 0


def cmd_logs(args):
    from toolbox.runners import load_grid

    grid = load_grid(args)
    check_cluster_fields(grid.config)
    settings = grid.cells[0].settings
    printer = Printer()

    def say(text):
        printer.line(text, "toolbox: ")

    with connect(settings, args) as cluster:
        job_of = _jobs_of(grid.cells, cluster.list("Job", selector(settings)))
        if args.name:
            if job_of.get(args.name, args.name) != args.name:
                say(f"{args.name} shares a GPU in job {job_of[args.name]}: following that job")
            pod = _pod_of(cluster, job_of.get(args.name, args.name), grid.cells, say)
            phase = LogFollower(cluster, pod, printer.line, say).follow()
            say(f"pod {pod} {phase.lower() if phase else 'ended'}")
            return 0 if phase in ("Succeeded", "Running") else EXIT_FAILED
        names = set(job_of.values())
        pods = pods_by_job(cluster.list("Pod", selector(settings)))
        running = sorted(name for name, pod in pods.items()
                         if name in names and (pod.get("status") or {}).get("phase") == "Running")
        if not running:
            print("No running cells (`make status` shows the sweep; `make logs name=CELL` waits for one).")
            return 0
        say(f"following {len(running)} running job{'s' if len(running) != 1 else ''}")
        threads = []
        for job in running:
            def write(text, prefix=f"[{job}] "):
                printer.line(text, prefix)
            follower = LogFollower(cluster, pods[job]["metadata"]["name"], write, say)
            thread = threading.Thread(target=follower.follow, daemon=True)
            thread.start()
            threads.append(thread)
        for thread in threads:
            while thread.is_alive():
                thread.join(0.5)
    return 0


def _pod_of(cluster, name, cells, say):
    """The pod to follow for `name=`: the newest pod of job `name` (waiting for it), or a pod so named."""
    said = False
    while True:
        pods = cluster.list("Pod", f"job-name={name}")
        if pods:
            return newest(pods)["metadata"]["name"]
        if cluster.get("Job", name) is None:
            if cluster.get("Pod", name) is not None:
                return name
            known = [c.name for c in cells]
            hint = did_you_mean(name, known)
            raise UsageError(f"name={name}", "no job or pod with this name in namespace "
                             f"'{cluster.namespace}'", [hint] if hint else [choices_line(known)])
        if not said:
            say(f"job {name} has no pod yet; waiting")
            said = True
        time.sleep(1.0)
