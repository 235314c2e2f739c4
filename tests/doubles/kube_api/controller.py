"""A job controller: creates the job's pod on creation and writes job status when a test says how it went.

The pod looks like the real controller's: generateName `<job>-`, the job-name / controller-uid labels (old and
`batch.kubernetes.io/` forms), an ownerReference with controller=true, the template's spec.
"""

from . import kubelet
from .api import JOBS, PODS
from .defaults import now, prepare_create, random_suffix
from .store import clone


class JobController:
    def __init__(self, api):
        self.api = api
        self.store = api.store

    def job_created(self, job):
        if job["spec"].get("suspend"):
            return
        self.create_pod(job)
        meta = job["metadata"]
        self.api.update_object(JOBS, meta["namespace"], meta["name"], lambda j: j["status"].update(
            active=1, startTime=now(), ready=0, terminating=0, uncountedTerminatedPods={}))

    def create_pod(self, job):
        meta, template = job["metadata"], job["spec"]["template"]
        pod_meta = clone(template.get("metadata") or {})
        pod_meta.update(name=f"{meta['name']}-{random_suffix()}", generateName=f"{meta['name']}-")
        pod_meta["ownerReferences"] = [{"apiVersion": "batch/v1", "kind": "Job", "name": meta["name"],
                                        "uid": meta["uid"], "controller": True, "blockOwnerDeletion": True}]
        pod = {"apiVersion": "v1", "kind": "Pod", "metadata": pod_meta, "spec": clone(template["spec"])}
        prepare_create(PODS, pod, meta["namespace"])
        return self.store.put(PODS, pod, "ADDED")

    def pods(self, namespace, job_name):
        job = self.store.get(JOBS, namespace, job_name)
        uid = job["metadata"]["uid"]
        items, _ = self.store.list(PODS, namespace)
        return [p for p in items if any(r.get("uid") == uid for r in p["metadata"].get("ownerReferences") or [])]

    def _set_pods(self, namespace, job_name, change):
        for pod in self.pods(namespace, job_name):
            self.api.update_object(PODS, namespace, pod["metadata"]["name"], change)

    def mark_running(self, namespace, name):
        self._set_pods(namespace, name, lambda p: kubelet.set_phase(p, "Running"))

        def change(job):
            job["status"].update(active=1, ready=1)
            job["status"].setdefault("startTime", now())
        return self.api.update_object(JOBS, namespace, name, change)

    def mark_succeeded(self, namespace, name):
        self._set_pods(namespace, name, lambda p: kubelet.set_phase(p, "Succeeded"))

        def change(job):
            status = job["status"]
            status.pop("active", None)
            status.update(succeeded=1, ready=0, completionTime=now())
            status.setdefault("startTime", now())
            conditions = status.setdefault("conditions", [])
            conditions.append(_condition("SuccessCriteriaMet", "CompletionsReached",
                                         "Reached expected number of succeeded pods"))
            conditions.append(_condition("Complete", "CompletionsReached",
                                         "Reached expected number of succeeded pods"))
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


def _condition(type_, reason, message):
    stamp = now()
    return {"type": type_, "status": "True", "reason": reason, "message": message, "lastProbeTime": stamp,
            "lastTransitionTime": stamp}
