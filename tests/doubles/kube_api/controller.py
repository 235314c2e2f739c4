"""The job controller: reconciles a Job with its pods the way k8s.io/kubernetes/pkg/controller/job does.

`sync()` runs when a job is created or its spec changes, when a job's pod finishes through a hook that plays
the kubelet (finish_pod, preempt_pod, the executor) or is deleted through the API. It then, like the real one:
- counts finished pods once (they carry the `batch.kubernetes.io/job-tracking` finalizer until counted) into
  `succeeded` / `failed` or, for Indexed Jobs, `completedIndexes` / `failedIndexes`;
- evaluates the pod failure policy (Ignore: not counted; FailJob; FailIndex; Count), backoffLimit and
  backoffLimitPerIndex / maxFailedIndexes;
- keeps at most `parallelism` pods active (Indexed: the lowest pending indexes first, each pod with the
  completion-index annotation and label, hostname `<job>-<index>`, JOB_COMPLETION_INDEX from the downward API),
  creating at most 500 per sync (more come from a background sync, as the real controller requeues);
- deletes the active pods of a suspended or failed job; writes Suspended / FailureTarget+Failed /
  SuccessCriteriaMet+Complete conditions, startTime and completionTime.

Not modelled: the pod-creation backoff delay (replacements start at once), activeDeadlineSeconds and
ttlSecondsAfterFinished timers, successPolicy, restartPolicy OnFailure restarts. The scripted hooks
(mark_running / mark_succeeded / mark_failed) write status directly, as before, without reconciling.
"""
import threading

from . import kubelet
from .api import JOBS, PODS
from .defaults import now, prepare_create, random_suffix
from .pod_failure import (
    FAILURE_COUNT_KEY,
    IGNORED_COUNT_KEY,
    INDEX_KEY,
    annotation_count,
    completion_index,
    format_indexes,
    match_policy,
    parse_indexes,
)
from .store import clone

TRACKING_FINALIZER = "batch.kubernetes.io/job-tracking"
# Pods created per sync, as the real controller's MaxPodCreateDeletePerSync: a job of 10,000 parallel pods
# gets its first 500 with the request that creates it, the rest from a background sync.
MAX_POD_CREATES_PER_SYNC = 500
MAX_GENERATED_NAME = 58  # generateName prefixes are cut here so that the 5-character suffix fits in 63
COMPLETIONS_REACHED = ("CompletionsReached", "Reached expected number of succeeded pods")
FAILURES = {
    "BackoffLimitExceeded": "Job has reached the specified backoff limit",
    "MaxFailedIndexesExceeded": "Job has exceeded the specified maximal number of failed indexes",
    "FailedIndexes": "Job has failed indexes",
}


def _phase(pod):
    return (pod.get("status") or {}).get("phase")


def is_active(pod):
    return _phase(pod) not in ("Succeeded", "Failed") and not pod["metadata"].get("deletionTimestamp")


def _is_ready(pod):
    return any(c.get("type") == "Ready" and c.get("status") == "True"
               for c in (pod.get("status") or {}).get("conditions") or [])


def _tracked(pod):
    return TRACKING_FINALIZER in (pod["metadata"].get("finalizers") or [])


def is_finished(job):
    return any(c.get("type") in ("Complete", "Failed") and c.get("status") == "True"
               for c in (job.get("status") or {}).get("conditions") or [])


def owner_job_name(pod):
    for ref in pod["metadata"].get("ownerReferences") or []:
        if ref.get("controller") and ref.get("kind") == "Job" and ref.get("apiVersion") == "batch/v1":
            return ref.get("name")
    return None


def _condition(type_, reason, message, status="True"):
    stamp = now()
    return {"type": type_, "status": status, "reason": reason, "message": message, "lastProbeTime": stamp,
            "lastTransitionTime": stamp}


def _ensure_condition(status, type_, value, reason, message):
    """ensureJobConditionStatus: update in place when it differs; never add a False condition. Returns
    whether anything changed."""
    conditions = status.setdefault("conditions", [])
    for index, cond in enumerate(conditions):
        if cond["type"] == type_:
            if (cond["status"], cond.get("reason"), cond.get("message")) == (value, reason, message):
                return False
            conditions[index] = _condition(type_, reason, message, value)
            return True
    if value == "False":
        if not conditions:
            del status["conditions"]
        return False
    conditions.append(_condition(type_, reason, message, value))
    return True


def generate_name(job_name, index=None):
    if index is None:
        return (job_name + "-")[:MAX_GENERATED_NAME]
    suffix = f"-{index}-"
    prefix = job_name + suffix
    return prefix if len(prefix) <= MAX_GENERATED_NAME else prefix[:MAX_GENERATED_NAME - len(suffix)] + suffix


class _Sync:
    """One reconcile of one job: what was read, what was counted, what to write."""

    def __init__(self, job, pods):
        self.job, self.pods = job, pods
        self.spec = job["spec"]
        self.status = clone(job.get("status") or {})
        self.indexed = self.spec.get("completionMode") == "Indexed"
        self.completions = self.spec.get("completions")
        self.per_index = self.indexed and self.spec.get("backoffLimitPerIndex") is not None
        self.policy = self.spec.get("podFailurePolicy")
        self.active = [p for p in pods if is_active(p)]
        self.completed = parse_indexes(self.status.get("completedIndexes"), self.completions or 0)
        self.failed_indexes = parse_indexes(self.status.get("failedIndexes"), self.completions or 0)
        self.counted = []  # pods whose tracking finalizer goes once the status holds them
        self.fail_job_message = None

    def valid_index(self, pod):
        index = completion_index(pod)
        return index if index is not None and index < self.completions else None

    def count_finished(self):
        for pod in self.pods:
            if not _tracked(pod) or is_active(pod):
                continue
            self.counted.append(pod)
            index = self.valid_index(pod) if self.indexed else None
            if self.indexed and index is None:
                continue
            if _phase(pod) == "Succeeded":
                if self.indexed:
                    self.completed.add(index)
                else:
                    self.status["succeeded"] = self.status.get("succeeded", 0) + 1
            else:
                self.count_failure(pod, index)

    def count_failure(self, pod, index):
        message, counts, action = match_policy(self.policy, pod)
        if counts:
            self.status["failed"] = self.status.get("failed", 0) + 1
        if message and self.fail_job_message is None:
            self.fail_job_message = message
        if self.per_index and (action == "FailIndex" or (
                counts and annotation_count(pod, FAILURE_COUNT_KEY) >= self.spec["backoffLimitPerIndex"])):
            self.failed_indexes.add(index)

    def succeeded(self):
        return len(self.completed) if self.indexed else self.status.get("succeeded", 0)

    def failure(self):
        """(reason, message) when the job has failed, else None; in the real controller's order."""
        if self.fail_job_message:
            return "PodFailurePolicy", self.fail_job_message
        if self.status.get("failed", 0) > self.spec.get("backoffLimit", 6):
            return "BackoffLimitExceeded", FAILURES["BackoffLimitExceeded"]
        if self.per_index:
            limit = self.spec.get("maxFailedIndexes")
            if limit is not None and len(self.failed_indexes) > limit:
                return "MaxFailedIndexesExceeded", FAILURES["MaxFailedIndexesExceeded"]
            if self.failed_indexes and len(self.failed_indexes) + len(self.completed) >= self.completions:
                return "FailedIndexes", FAILURES["FailedIndexes"]
        return None

    def wanted_active(self):
        parallelism = self.spec.get("parallelism", 1)
        if self.completions is None:  # a work queue: no new pods after the first success
            return len(self.active) if self.succeeded() > 0 else parallelism
        return max(0, min(self.completions - self.succeeded(), parallelism))

    def pending_indexes(self, count):
        busy = self.completed | self.failed_indexes | {completion_index(p) for p in self.active}
        found = []
        for index in range(self.completions):
            if len(found) == count:
                break
            if index not in busy:
                found.append(index)
        return found

    def excess_pods(self, count):
        """Active pods to delete: for Indexed Jobs, duplicates and out-of-range indexes first; then the least
        advanced (not ready before ready, pending before running, newest first)."""
        chosen, seen = [], set()
        for pod in sorted(self.active, key=lambda p: (not _is_ready(p), p["metadata"]["name"])):
            index = completion_index(pod)
            if self.indexed and (index is None or index >= self.completions or index in seen):
                chosen.append(pod)
            seen.add(index)
        rest = sorted((p for p in self.active if p not in chosen),
                      key=lambda p: p["metadata"].get("creationTimestamp", ""), reverse=True)
        rest.sort(key=lambda p: (_is_ready(p), _phase(p) == "Running"))
        return chosen + rest[:max(0, count - len(chosen))]

    def replaced_pod(self, index):
        """The failed pod of `index` whose failure counts the replacement inherits."""
        failed = [p for p in self.pods if _phase(p) == "Failed" and completion_index(p) == index]
        return max(failed, key=lambda p: annotation_count(p, FAILURE_COUNT_KEY) + annotation_count(
            p, IGNORED_COUNT_KEY), default=None)


class JobController:
    def __init__(self, api):
        self.api = api
        self.store = api.store
        self._later = []  # (namespace, name) of jobs a background sync will finish creating pods for
        self._later_lock = threading.Lock()
        self._worker = None

    def _sync_later(self, namespace, name):
        with self._later_lock:
            if (namespace, name) not in self._later:
                self._later.append((namespace, name))
            if self._worker is None or not self._worker.is_alive():
                self._worker = threading.Thread(target=self._work, name="kube-double-job-controller", daemon=True)
                self._worker.start()

    def _work(self):
        while True:
            with self._later_lock:
                if not self._later:
                    self._worker = None
                    return
                namespace, name = self._later.pop(0)
            self.sync(namespace, name)

    # --- what the controller reacts to ---

    def job_created(self, job):
        self.sync(job["metadata"]["namespace"], job["metadata"]["name"])

    def job_changed(self, job):
        self.sync(job["metadata"]["namespace"], job["metadata"]["name"])

    def pod_changed(self, pod):
        name = owner_job_name(pod)
        if name:
            self.sync(pod["metadata"]["namespace"], name)

    def pod_deleting(self, pod):
        """An active pod of a running job is deleted through the API: the kubelet stops it (SIGTERM, exit 143)
        and the controller counts the failure and replaces it before the pod is gone."""
        name, meta = owner_job_name(pod), pod["metadata"]
        if not name or not _tracked(pod) or not is_active(pod):
            return
        job = self.store.find(JOBS, meta["namespace"], name)
        if job is None or is_finished(job):
            return

        def stop(p):
            p["metadata"]["deletionTimestamp"] = now()
            kubelet.set_phase(p, "Failed", exit_code=143)
        self.api.update_object(PODS, meta["namespace"], meta["name"], stop)
        self.sync(meta["namespace"], name)

    # --- reconcile ---

    def pods(self, namespace, job_name):
        job = self.store.get(JOBS, namespace, job_name)
        return self.store.owned(PODS, job["metadata"]["uid"])

    def sync(self, namespace, name):
        """Reconcile one job now; returns the stored job (None if it is gone)."""
        with self.store.cond:
            job = self.store.find(JOBS, namespace, name)
            if job is None or is_finished(job):
                return job
            run = _Sync(job, self.store.owned(PODS, job["metadata"]["uid"]))
            run.count_finished()
            suspended = bool(run.spec.get("suspend"))
            if not run.status.get("startTime") and not suspended:
                run.status["startTime"] = now()
            failure = run.failure()
            if failure:
                self._fail(run, *failure)
            else:
                if not job["metadata"].get("deletionTimestamp"):
                    self._manage(run, suspended)
                self._finish_or_mark_suspension(run, suspended)
            return self._write(run)

    def _fail(self, run, reason, message):
        # Every pod still running when the job fails is stopped and counted as failed.
        for pod in run.active:
            self._delete_pod(pod)
            run.counted.append(pod)
            counted_index = not run.indexed or run.valid_index(pod) is not None
            if counted_index and match_policy(run.policy, pod)[1]:
                run.status["failed"] = run.status.get("failed", 0) + 1
        run.active = []
        conditions = run.status.setdefault("conditions", [])
        conditions += [_condition("FailureTarget", reason, message), _condition("Failed", reason, message)]

    def _manage(self, run, suspended):
        if suspended:
            for pod in run.active:
                self._delete_pod(pod)
            run.active = []
            return
        wanted = run.wanted_active()
        if len(run.active) > wanted or run.indexed:
            excess = run.excess_pods(len(run.active) - wanted)
            if excess:
                for pod in excess:
                    self._delete_pod(pod)
                run.active = [p for p in run.active if p not in excess]
                return  # like the real controller: deletions or creations in one sync, not both
        missing = wanted - len(run.active)
        if missing <= 0:
            return
        if missing > MAX_POD_CREATES_PER_SYNC:
            missing = MAX_POD_CREATES_PER_SYNC
            self._sync_later(run.job["metadata"]["namespace"], run.job["metadata"]["name"])
        indexes = run.pending_indexes(missing) if run.indexed else [None] * missing
        for index in indexes:
            run.active.append(self.create_pod(run.job, index, run.replaced_pod(index) if run.per_index else None))

    def _finish_or_mark_suspension(self, run, suspended):
        succeeded = run.succeeded()
        done = succeeded > 0 if run.completions is None else succeeded >= run.completions
        if done and not run.active:
            run.status.setdefault("conditions", []).extend(
                [_condition("SuccessCriteriaMet", *COMPLETIONS_REACHED), _condition("Complete", *COMPLETIONS_REACHED)])
            run.status["completionTime"] = now()
        elif suspended:
            _ensure_condition(run.status, "Suspended", "True", "JobSuspended", "Job suspended")
        elif _ensure_condition(run.status, "Suspended", "False", "JobResumed", "Job resumed"):
            run.status["startTime"] = now()  # the active deadline counts from the resume

    def _write(self, run):
        status = run.status
        for key, value in (("active", len(run.active)), ("succeeded", run.succeeded()),
                           ("failed", status.get("failed", 0))):
            if value:
                status[key] = value
            else:
                status.pop(key, None)
        status["ready"] = sum(1 for p in run.active if _is_ready(p))
        status["terminating"] = 0
        status["uncountedTerminatedPods"] = {}
        if run.indexed:
            status.pop("completedIndexes", None)
            if run.completed:
                status["completedIndexes"] = format_indexes(run.completed)
            if run.per_index:
                status["failedIndexes"] = format_indexes(run.failed_indexes)
        for pod in run.counted:
            self._untrack(pod)
        if status == (run.job.get("status") or {}):
            return run.job
        # Stored objects are never changed in place, so the new version may share the spec with the old one:
        # a status write then costs no deep copy of the pod template (thousands of jobs are created in benches).
        current = self.store.get(JOBS, run.job["metadata"]["namespace"], run.job["metadata"]["name"])
        return self.store.put(JOBS, dict(current, metadata=dict(current["metadata"]), status=status), "MODIFIED")

    # --- pods ---

    def _delete_pod(self, pod):
        meta = pod["metadata"]
        if self.store.find(PODS, meta["namespace"], meta["name"]) is not None:
            self.store.remove(PODS, meta["namespace"], meta["name"])

    def _untrack(self, pod):
        meta = pod["metadata"]
        current = self.store.find(PODS, meta["namespace"], meta["name"])
        if current is not None and _tracked(current):
            def drop(p):
                p["metadata"]["finalizers"] = [f for f in p["metadata"]["finalizers"] if f != TRACKING_FINALIZER]
                if not p["metadata"]["finalizers"]:
                    del p["metadata"]["finalizers"]
            self.api.update_object(PODS, meta["namespace"], meta["name"], drop)

    def create_pod(self, job, index=None, replaced=None):
        meta, template = job["metadata"], clone(job["spec"]["template"])
        pod_meta = template.get("metadata") or {}
        spec = template["spec"]
        if index is not None:
            _add_index(pod_meta, spec, job, index, replaced)
        prefix = generate_name(meta["name"], index)
        pod_meta.update(name=prefix + random_suffix(), generateName=prefix)
        pod_meta["finalizers"] = [*pod_meta.get("finalizers", []), TRACKING_FINALIZER]
        pod_meta["ownerReferences"] = [{"apiVersion": "batch/v1", "kind": "Job", "name": meta["name"],
                                        "uid": meta["uid"], "controller": True, "blockOwnerDeletion": True}]
        pod = {"apiVersion": "v1", "kind": "Pod", "metadata": pod_meta, "spec": spec}
        prepare_create(PODS, pod, meta["namespace"])
        return self.store.put(PODS, pod, "ADDED")

    # --- scripted status (test hooks that say how a job went, without reconciling) ---

    def _set_pods(self, namespace, job_name, change):
        """Apply `change` to the job's active pods (all its pods when none is active); returns how many."""
        pods = self.pods(namespace, job_name)
        pods = [p for p in pods if is_active(p)] or pods
        for pod in pods:
            self.api.update_object(PODS, namespace, pod["metadata"]["name"], change)
        return len(pods)

    def mark_running(self, namespace, name):
        active = self._set_pods(namespace, name, lambda p: kubelet.set_phase(p, "Running")) or 1

        def change(job):
            job["status"].update(active=active, ready=active)
            job["status"].setdefault("startTime", now())
        return self.api.update_object(JOBS, namespace, name, change)

    def mark_succeeded(self, namespace, name):
        self._set_pods(namespace, name, lambda p: kubelet.set_phase(p, "Succeeded"))

        def change(job):
            status, spec = job["status"], job["spec"]
            status.pop("active", None)
            status.update(succeeded=spec.get("completions") or 1, ready=0, completionTime=now())
            if spec.get("completionMode") == "Indexed":
                status["completedIndexes"] = format_indexes(range(spec["completions"]))
            status.setdefault("startTime", now())
            conditions = status.setdefault("conditions", [])
            conditions.append(_condition("SuccessCriteriaMet", *COMPLETIONS_REACHED))
            conditions.append(_condition("Complete", *COMPLETIONS_REACHED))
        return self.api.update_object(JOBS, namespace, name, change)

    def mark_failed(self, namespace, name, reason="BackoffLimitExceeded",
                    message="Job has reached the specified backoff limit", exit_code=1, pod_reason="Error"):
        self._set_pods(namespace, name, lambda p: kubelet.set_phase(p, "Failed", pod_reason, exit_code=exit_code))

        def change(job):
            status = job["status"]
            status.pop("active", None)
            status.update(failed=status.get("failed", 0) + 1, ready=0)
            status.setdefault("startTime", now())
            conditions = status.setdefault("conditions", [])
            conditions.append(_condition("FailureTarget", reason, message))
            conditions.append(_condition("Failed", reason, message))
        return self.api.update_object(JOBS, namespace, name, change)


def _add_index(pod_meta, spec, job, index, replaced):
    """What the controller adds to an Indexed Job's pod: the index as annotation and label, the hostname that
    the template's subdomain turns into a DNS name, JOB_COMPLETION_INDEX in every container, and (with
    backoffLimitPerIndex) the failure counts inherited from the pod it replaces."""
    annotations = pod_meta.setdefault("annotations", {})
    annotations[INDEX_KEY] = str(index)
    pod_meta.setdefault("labels", {})[INDEX_KEY] = str(index)
    spec["hostname"] = f"{job['metadata']['name']}-{index}"
    for container in (spec.get("initContainers") or []) + (spec.get("containers") or []):
        env = container.setdefault("env", [])
        if not any(e.get("name") == "JOB_COMPLETION_INDEX" for e in env):
            env.append({"name": "JOB_COMPLETION_INDEX", "valueFrom": {"fieldRef": {
                "apiVersion": "v1", "fieldPath": f"metadata.labels['{INDEX_KEY}']"}}})
    if job["spec"].get("backoffLimitPerIndex") is not None:
        failures = ignored = 0
        if replaced is not None:
            failures = annotation_count(replaced, FAILURE_COUNT_KEY)
            ignored = annotation_count(replaced, IGNORED_COUNT_KEY)
            if match_policy(job["spec"].get("podFailurePolicy"), replaced)[1]:
                failures += 1
            else:
                ignored += 1
        annotations[FAILURE_COUNT_KEY] = str(failures)
        if ignored:
            annotations[IGNORED_COUNT_KEY] = str(ignored)
