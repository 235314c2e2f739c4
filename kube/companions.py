"""Objects that live and die with a Job: the headless Service of a multi-node cell, the ConfigMap of an array
pack. They are created just before their Job (its pods need them from their first second), then owned by it
(an ownerReference: deleting the Job, by hand or by its TTL, deletes them too), and `make delete` lists them
with the Jobs.

One left by an earlier Job of the same name (deleted, its companions not yet collected) or by an attempt
whose Job was never created is ours to reuse only when both labels are ours: one still owned by a Job is
deleted and created again (the collector would take it away from the new Job), one with the same content
and no owner is kept.
"""
import time

from toolbox.errors import KubeError
from toolbox.kube import arrays, distributed
from toolbox.kube.objects import HASH_ANNOTATION, content_hash
from toolbox.kube.scope import check_owner, selector


def _with_hash(body):
    annotations = body["metadata"].setdefault("annotations", {})
    annotations.setdefault(HASH_ANNOTATION, content_hash({k: v for k, v in body.items() if k != "metadata"}))
    return body


def _hash(body):
    return body["metadata"]["annotations"][HASH_ANNOTATION]


def prepare(cluster, bodies):
    """Create the companions of a Job about to be created (existing ones: see the module's docstring)."""
    for body in map(_with_hash, bodies):
        kind, name = body["kind"], body["metadata"]["name"]
        existing = cluster.get(kind, name)
        if existing is not None:
            labels = body["metadata"]["labels"]
            check_owner(existing, labels["user"], labels["project"], cluster.where(kind, name),
                        hint=f"if it is yours, `kubectl delete {kind.lower()} {name}` and run the command again")
            meta = existing["metadata"]
            same = (meta.get("annotations") or {}).get(HASH_ANNOTATION) == _hash(body)
            if same and not meta.get("ownerReferences"):
                continue
            cluster.delete(kind, name, uid=meta.get("uid"))
        _create(cluster, body)


def _create(cluster, body, attempts=20):
    """Create; an object being deleted may hold the name a moment longer (AlreadyExists)."""
    for attempt in range(attempts):
        try:
            cluster.create(body)
            return
        except KubeError as err:
            if err.code != 409 or attempt == attempts - 1:
                raise
            time.sleep(min(0.05 * 2 ** attempt, 1.0))


def own(cluster, bodies, job_name):
    """Make the Job just created the owner of its companions: each is read and checked to be ours again, and
    patched only in the version that was checked (a resourceVersion precondition)."""
    if not bodies:
        return
    job = cluster.get("Job", job_name)
    if job is None:
        return
    reference = {"apiVersion": "batch/v1", "kind": "Job", "name": job_name, "uid": job["metadata"]["uid"]}
    for body in bodies:
        kind, name = body["kind"], body["metadata"]["name"]
        existing = cluster.get(kind, name)
        if existing is None:
            continue
        labels = body["metadata"]["labels"]
        check_owner(existing, labels["user"], labels["project"], cluster.where(kind, name))
        cluster.patch(kind, name, {"metadata": {"resourceVersion": existing["metadata"]["resourceVersion"],
                                                "ownerReferences": [reference]}})


def listed(cluster, settings):
    """Every companion of this user and project: (kind, object)."""
    found = []
    for kind, role in (("Service", distributed.SERVICE_ROLE), ("ConfigMap", arrays.ARRAY_ROLE)):
        found += [(kind, obj) for obj in cluster.list(kind, selector(settings, f"toolbox/role={role}"))]
    return found


def job_of(obj):
    """The name of the Job a companion belongs to."""
    return ((obj.get("metadata") or {}).get("annotations") or {}).get("toolbox/job") or obj["metadata"]["name"]
