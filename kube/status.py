"""What is going on in the cluster: job and pod states, and the status table of a sweep.

Everything is read with list calls (one for jobs, one for pods, by label), never a call per cell.
"""
import datetime

from toolbox.core.console import format_table, human_duration
from toolbox.kube import packing




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


def jobs_of(cells, jobs=()):
    """cell name -> name of the Job that runs it (a shared-GPU pack, or the cell itself); packs already
    in the cluster are read from their Jobs."""
    _, packs = packing.pack(cells, packing.existing_packs(jobs))
    job_of = {cell.name: cell.name for cell in cells}
    for name, members in packs:
        job_of.update((cell.name, name) for cell in members)
    return job_of


