"""The sweep as plain data: one record per cell (state, short reason, node, GPU, duration), kept up to date
from Job and Pod objects as they arrive (a list, then watch events) without a call per cell.

A record is the dict every view of the sweep reads (`make status watch=1`, `make report`):
{"name", "model", "dataset", "hparams": {key: text}, "state", "reason", "detail", "node", "gpu",
 "started", "seconds", "job"}. `state` is succeeded, failed, running, pending, deleting or not submitted;
`reason` is short and shared by the cells stuck for the same cause (the views group by it); `detail` is
the full text (exit code, scheduler message); `job` names the shared-GPU Job that runs a packed cell.
"""
import collections
import re
import time

from toolbox.kube.placement import ARRAY, Placement, completion_index
from toolbox.kube.status import (failed_condition, job_failure_detail, job_state, parse_time, pod_reason, pods_by_job,
                                 queued_reason, requested_gpu)

FINISHED = ("succeeded", "failed")
CHANGES_KEPT = 200

_NODES_AVAILABLE = re.compile(r"^\d+/\d+ nodes are available: (.*?)(?:\.? preemption: .*)?\.?$", re.DOTALL)
_STARTING = ("ContainerCreating", "PodInitializing")


# -- one cell -----------------------------------------------------------------------------------------------
def cell_state(job, pod):
    """A cell's state for the sweep: a Job counts its pod as active while the pod is still Pending, but a
    researcher wants to see it as pending (waiting for a GPU, pulling the image), not running."""
    state = job_state(job)
    if state == "missing":
        return "not submitted"
    if state == "running":
        phase = ((pod or {}).get("status") or {}).get("phase")
        return "running" if phase == "Running" else "pending"
    return state


def scheduler_reasons(message):
    """'0/5 nodes are available: 3 Insufficient nvidia.com/gpu, 2 node(s) had untolerated taint {x: }.
    preemption: ...' -> 'Insufficient nvidia.com/gpu, node(s) had untolerated taint {x: }' (node counts
    dropped so that cells stuck for the same causes share one reason); None for other messages."""
    found = _NODES_AVAILABLE.match((message or "").strip())
    if not found:
        return None
    parts = [re.sub(r"^\d+ ", "", part.strip()) for part in found.group(1).split(", ")]
    return ", ".join(part for part in parts if part) or None


def waiting_reason(job, pod):
    """Why a pending cell waits, in a few words shared by every cell waiting for the same cause."""
    if pod is None:
        return (queued_reason(job) or "no pod yet") if job is not None else ""
    status = pod.get("status") or {}
    for condition in status.get("conditions") or []:
        if condition.get("type") == "PodScheduled" and condition.get("status") == "False":
            return (scheduler_reasons(condition.get("message"))
                    or condition.get("reason") or "Unschedulable")
    for container in (status.get("initContainerStatuses") or []) + (status.get("containerStatuses") or []):
        waiting = (container.get("state") or {}).get("waiting")
        if waiting and waiting.get("reason") not in (None, *_STARTING):
            return waiting["reason"]
    if not (pod.get("spec") or {}).get("nodeName"):
        return "waiting to be scheduled"
    return "starting (ContainerCreating)"


def failure_reason(job, pod):
    """Why a failed cell failed: its pod's reason (OOMKilled, exit code), else the Job's Failed condition."""
    reason = pod_reason(pod)
    if reason:
        return reason
    condition = failed_condition(job)
    return (condition.get("reason") or "Failed") if condition else "failed"


def run_times(job, pod, now):
    """(started, seconds) of a cell in epoch seconds: from its main container's start to its end (or now);
    the Job's start and completion times when the pod says nothing."""
    started = finished = None
    for container in ((pod or {}).get("status") or {}).get("containerStatuses") or []:
        state = container.get("state") or {}
        running, terminated = state.get("running"), state.get("terminated")
        if terminated:
            started, finished = parse_time(terminated.get("startedAt")), parse_time(terminated.get("finishedAt"))
        elif running:
            started = parse_time(running.get("startedAt"))
        break
    status = (job or {}).get("status") or {}
    started = started or parse_time(status.get("startTime"))
    finished = finished or parse_time(status.get("completionTime"))
    if started is None:
        return None, None
    begin = started.timestamp()
    end = finished.timestamp() if finished else (now if cell_state(job, pod) == "running" else None)
    return begin, (max(end - begin, 0.0) if end is not None else None)


def cell_record(cell, job, pod, products=None, job_name=None, now=None):
    """The record of one cell (see the module's docstring) from its Job and that Job's newest pod."""
    now = time.time() if now is None else now
    state = cell_state(job, pod)
    reason = detail = ""
    if state == "pending":
        reason = waiting_reason(job, pod)
        detail = pod_reason(pod) or reason
    elif state == "failed":
        reason = failure_reason(job, pod)
        detail = "; ".join(part for part in (pod_reason(pod), job_failure_detail(job)) if part)
    node = ((pod or {}).get("spec") or {}).get("nodeName") or ""
    gpu = ((products or {}).get(node) or requested_gpu(pod)) if pod else ""
    started, seconds = run_times(job, pod, now) if job else (None, None)
    return {"name": cell.name, "model": cell.model, "dataset": cell.dataset, "hparams": dict(cell.hparams),
            "state": state, "reason": reason, "detail": detail, "node": node, "gpu": gpu or "",
            "started": started, "seconds": seconds,
            "job": job_name if job_name and job_name != cell.name else ""}


# -- the whole sweep ----------------------------------------------------------------------------------------
def job_name_of(pod):
    """The Job a pod belongs to (by the job controller's labels), or None."""
    return next(iter(pods_by_job([pod])), None)


class Sweep:
    """The state of every cell of a sweep, from Jobs and Pods given whole (`reset`, after a list call) or
    one event at a time (`apply`, from a watch). Pure: no client, no clock unless given one.

    `changes` keeps the latest state changes as (time, cell name, old state, new state), newest last.
    """

    def __init__(self, cells, job_of=None, products=None, jobs=(), pods=(), clock=time.time):
        """`jobs` and `pods`: what the first list calls returned (their states are not changes)."""
        self.cells = {cell.name: cell for cell in cells}
        self.job_of = {cell.name: (job_of or {}).get(cell.name, cell.name) for cell in cells}
        # which pod speaks for a cell of an Indexed Job (multi-node cells, array packs): placement.py
        self.placement = job_of if isinstance(job_of, Placement) else Placement(cells)
        self.cells_of_job = {}
        for name, job in self.job_of.items():
            self.cells_of_job.setdefault(job, []).append(name)
        self.products = products or {}
        self.clock = clock
        self.jobs = {}
        self.pods = collections.defaultdict(dict)  # job name -> pod name -> pod
        self.records = {}
        self.changes = collections.deque(maxlen=CHANGES_KEPT)
        for kind, items in (("Job", jobs), ("Pod", pods)):
            for obj in items:
                self._store(kind, "ADDED", obj)
        self._refresh(self.cells_of_job, initial=True)

    # -- input ------------------------------------------------------------------------------------------
    def reset(self, kind, items):
        """Every object of `kind` as a new list call returned them (after the watch fell too far behind);
        states that differ are recorded as changes; returns the cells as `apply` does."""
        touched = set(self.jobs) if kind == "Job" else set(self.pods)
        if kind == "Job":
            self.jobs = {}
        else:
            self.pods = collections.defaultdict(dict)
        for obj in items:
            touched.add(self._store(kind, "ADDED", obj))
        touched.discard(None)
        return self._refresh(touched)

    def apply(self, kind, event_type, obj):
        """One watch event (ADDED, MODIFIED, DELETED); returns the cells whose state or reason changed (the
        Job and its pod come on two watches, in either order: a failure's reason may follow its state)."""
        job = self._store(kind, event_type, obj)
        index = completion_index(obj) if kind == "Pod" else None
        cell = self.placement.label(job, index) if job and index is not None else None
        if cell in self.cells and self.placement.kind.get(cell) == ARRAY:   # a pod of an array pack: its cell
            return self._refresh({job}, only=cell)
        return self._refresh({job} if job else ())

    def _store(self, kind, event_type, obj):
        meta = obj.get("metadata") or {}
        job = meta.get("name") if kind == "Job" else job_name_of(obj)
        if job not in self.cells_of_job:  # another sweep of the project, or an interactive pod
            return None
        if kind == "Job":
            if event_type == "DELETED":
                self.jobs.pop(job, None)
            else:
                self.jobs[job] = obj
            return job
        if event_type == "DELETED":
            self.pods[job].pop(meta.get("name"), None)
        else:
            self.pods[job][meta.get("name")] = obj
        return job

    def _refresh(self, jobs, initial=False, only=None):
        changed, now = [], self.clock()
        for job in jobs:
            pods = list(self.pods.get(job, {}).values())
            for name in (only,) if only else self.cells_of_job.get(job, ()):
                view, pod, _ = self.placement.view(name, self.jobs.get(job), pods)
                record = cell_record(self.cells[name], view, pod, self.products, job, now)
                old = self.records.get(name)
                self.records[name] = record
                if initial or old is None:
                    continue
                if old["state"] != record["state"]:
                    self.changes.append((now, name, old["state"], record["state"]))
                if (old["state"], old["reason"]) != (record["state"], record["reason"]):
                    changed.append(name)
        return changed

    # -- output -----------------------------------------------------------------------------------------
    def ordered(self):
        """The records in grid order."""
        return [self.records[name] for name in self.cells]

    def finished(self):
        return all(record["state"] in FINISHED for record in self.records.values())

    def last_activity(self):
        """Epoch seconds of the newest Job creation or completion of the sweep (None without Jobs)."""
        stamps = []
        for job in self.jobs.values():
            status = job.get("status") or {}
            for text in ((job.get("metadata") or {}).get("creationTimestamp"), status.get("startTime"),
                         status.get("completionTime")):
                stamp = parse_time(text)
                if stamp:
                    stamps.append(stamp.timestamp())
        return max(stamps) if stamps else None
