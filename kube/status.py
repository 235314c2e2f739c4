"""What is going on in the cluster: job and pod states, and the status table of a sweep.

Everything is read with list calls (one for jobs, one for pods, by label), never a call per cell.
"""
import datetime
import functools

from toolbox.core.console import format_table, human_duration, plural
from toolbox.errors import KubeError
from toolbox.kube import distributed
from toolbox.kube.jobspec import IGNORED_COUNT_KEY, QUEUE_LABEL
from toolbox.kube.placement import ARRAY, NODES, Placement, disruption, newest


# -- states -----------------------------------------------------------------------------------------------
def job_state(job):
    """missing / pending / running / succeeded / failed / deleting (the resubmission table of docs/kubernetes.md)."""
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


def failed_condition(job):
    """The Job's Failed=True condition (None while it has not failed)."""
    for condition in ((job or {}).get("status") or {}).get("conditions") or []:
        if condition.get("type") == "Failed" and condition.get("status") == "True":
            return condition
    return None


def job_failure_detail(job):
    """'<reason>: <message>' of a failed Job's Failed condition ('' when it has none)."""
    condition = failed_condition(job)
    if condition is None:
        return ""
    return f"{condition.get('reason') or 'Failed'}: {condition.get('message') or ''}".strip(": ")


def pods_of_jobs(pods):
    """job name -> its pods."""
    grouped = {}
    for pod in pods:
        labels = pod["metadata"].get("labels") or {}
        job = labels.get("job-name") or labels.get("batch.kubernetes.io/job-name")
        if job:
            grouped.setdefault(job, []).append(pod)
    return grouped


def pods_by_job(pods):
    """job name -> its newest pod."""
    return {job: newest(group) for job, group in pods_of_jobs(pods).items()}


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


@functools.lru_cache(maxsize=4096)   # the cells of one pack share their Job's times
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


DISRUPTION_EVENTS = ("Preempted", "Evicted", "TaintManagerEviction")


def _pod_job(pod_name, job_names):
    """The Job of a pod name (`<job>-<5 characters>`, Indexed: `<job>-<index>-<5 characters>`), or None."""
    base = pod_name.rpartition("-")[0]
    if base in job_names:
        return base
    head, _, index = base.rpartition("-")
    return head if index.isdigit() and head in job_names else None


def last_disruptions(cluster, jobs, pods):
    """{Job name: 'Reason: message' of the newest disruption event (preemption, eviction) of its pods}. The
    disrupted pods themselves are gone; their events stay an hour. One list call, made only when a pod of
    the sweep replaced one whose failure was not counted (an ignored disruption)."""
    if not any(_ignored(pod) for pod in pods):
        return {}
    names = {job["metadata"]["name"] for job in jobs}
    found = {}
    try:
        events = cluster.list("Event", field_selector="involvedObject.kind=Pod")
    except KubeError:
        return {}   # not allowed to read events: the restarts are still counted
    for event in events:
        job = _pod_job((event.get("involvedObject") or {}).get("name") or "", names)
        if job is None or event.get("reason") not in DISRUPTION_EVENTS:
            continue
        stamp = event.get("lastTimestamp") or event.get("eventTime") or ""
        if job not in found or stamp >= found[job][0]:
            found[job] = (stamp, f"{event['reason']}: {event.get('message') or ''}".strip(": "))
    return {job: text for job, (_, text) in found.items()}


def _ignored(pod):
    value = ((pod.get("metadata") or {}).get("annotations") or {}).get(IGNORED_COUNT_KEY)
    return bool(value) and value != "0"


# -- the status table -------------------------------------------------------------------------------------
def queued_reason(job):
    """Why a Job without pods waits: suspended (a queue admits it), or ''."""
    spec = (job or {}).get("spec") or {}
    if not spec.get("suspend"):
        return ""
    queue = ((job.get("metadata") or {}).get("labels") or {}).get(QUEUE_LABEL)
    return f"queued: suspended until Kueue admits it (queue {queue})" if queue else "suspended"


def cell_reason(job, pod, disrupted=""):
    """The REASON of a cell: why its pod is stuck or failed, why it waits, or its last disruption."""
    reason = pod_reason(pod) or (queued_reason(job) if pod is None else "")
    if not reason and disrupted:
        reason = f"last disruption: {disrupted}"
    return reason


def status_rows(cells, jobs, pods, products=None, job_of=None, now=None, disruptions=None, services=None):
    """One row per cell: NAME, JOB, POD, NODE, GPU, AGE, RESTARTS, REASON. A cell packed in a shared-GPU job
    shows that job's state (marked `shared`), an array cell its index's (`array #K`), a multi-node cell
    its Job's (`N nodes`) and the pod of node 0 (or of the node in trouble). RESTARTS counts the pods that
    replaced failed or disrupted ones (Indexed Jobs) and container restarts. `disruptions`: {Job name: the
    last disruption's reason} (events; the pods that were disrupted are gone). `services`: the names of the
    headless Services there are (a multi-node cell whose Service is gone says so)."""
    products = products or {}
    placement = job_of if isinstance(job_of, Placement) else Placement(cells, jobs)
    by_name = {j["metadata"]["name"]: j for j in jobs}
    pods_of = pods_of_jobs(pods)
    rows, counts = [], {}
    for cell in cells:
        job_name = placement.get(cell.name, cell.name)
        job, pod, replaced = placement.view(cell.name, by_name.get(job_name), pods_of.get(job_name, ()))
        state = job_state(job)
        counts[state] = counts.get(state, 0) + 1
        node = ((pod or {}).get("spec") or {}).get("nodeName") or "-"
        gpu = "-"
        if pod:
            gpu = products.get(node) or requested_gpu(pod) or "-"
        phase = ((pod or {}).get("status") or {}).get("phase") or "-"
        disrupted = disruption(pod) or ((disruptions or {}).get(job_name) if replaced else "")
        reason = cell_reason(job, pod, disrupted)
        if services is not None and placement.kind.get(cell.name) == NODES and state in ("running", "pending") \
                and distributed.service_name(job_name) not in services:
            reason = f"no Service {distributed.service_name(job_name)}: the nodes cannot find each other (make retry)"
        rows.append([cell.name, state + placement.note(cell.name), phase, node, gpu, age(job, now) if job else "-",
                     str(restarts(pod) + replaced) if pod else "-", reason or "-"])
    return rows, counts


def status_text(cells, jobs, pods, products=None, job_of=None, disruptions=None, services=None):
    placement = job_of if isinstance(job_of, Placement) else Placement(cells, jobs)
    rows, counts = status_rows(cells, jobs, pods, products, placement, disruptions=disruptions, services=services)
    table = format_table(["NAME", "JOB", "POD", "NODE", "GPU", "AGE", "RESTARTS", "REASON"], rows)
    order = ["running", "pending", "succeeded", "failed", "deleting", "missing"]
    summary = ", ".join(f"{counts[s]} {s}" for s in order if counts.get(s))
    lines = []
    for job, members in placement.packs().items():
        if placement.kind[members[0]] == ARRAY:
            lines.append(f"\narray job {job}: {plural(len(members), 'cell')} (#index in JOB)")
        else:
            lines.append(f"\nshared job {job}: {', '.join(members)}")
    multi = sorted({job for name, job in placement.items() if placement.kind[name] == NODES})
    if multi and services is not None:
        present = sum(distributed.service_name(job) in services for job in multi)
        lines.append(f"\n{len(multi)} multi-node cell{'s' if len(multi) != 1 else ''}: {present} of their headless "
                     "Services in the namespace")
    return f"{table}\n\n{plural(len(cells), 'cell')}: {summary}{''.join(lines)}"


def jobs_of(cells, jobs=(), members=None):
    """cell name -> name of the Job that runs it (a Placement: shared-GPU and array packs already in the
    cluster are read from their Jobs and, for arrays, `members` {pack: [cell names]})."""
    return Placement(cells, jobs, members)


