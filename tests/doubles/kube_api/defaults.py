"""What the real API server adds to an object on create and keeps on update: metadata, defaults, status.

Only the defaults clients commonly read are filled in (restartPolicy, imagePullPolicy, job selector and
labels, secret type, namespace phase, ...): enough for `kubectl get -o yaml` to look familiar and for
code that reads them to work.
"""
import base64
import binascii
import datetime
import random
import uuid

from . import jobs, services
from .status import bad_request, cause, conflict, invalid
from .store import clone

# The alphabet Kubernetes uses for generateName suffixes (no vowels, no 0/1/3: no accidental words).
NAME_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"


def now():
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def random_suffix(length=5):
    return "".join(random.choice(NAME_ALPHABET) for _ in range(length))


def _image_pull_policy(image):
    tail = image.rsplit("/", 1)[-1]
    if "@" in tail:
        return "IfNotPresent"
    return "Always" if ":" not in tail or tail.endswith(":latest") else "IfNotPresent"


def default_pod_spec(spec, restart_policy="Always"):
    spec.setdefault("restartPolicy", restart_policy)
    spec.setdefault("terminationGracePeriodSeconds", 30)
    spec.setdefault("dnsPolicy", "ClusterFirst")
    spec.setdefault("securityContext", {})
    spec.setdefault("schedulerName", "default-scheduler")
    spec.setdefault("enableServiceLinks", True)
    spec.setdefault("serviceAccountName", "default")
    spec.setdefault("serviceAccount", spec["serviceAccountName"])
    for container in (spec.get("initContainers") or []) + (spec.get("containers") or []):
        if not isinstance(container, dict):
            continue
        container.setdefault("terminationMessagePath", "/dev/termination-log")
        container.setdefault("terminationMessagePolicy", "File")
        container.setdefault("resources", {})
        if container.get("image"):
            container.setdefault("imagePullPolicy", _image_pull_policy(container["image"]))
    return spec


def qos_class(spec):
    containers = spec.get("containers") or []
    resources = [c.get("resources") or {} for c in containers]
    if not any(r.get("requests") or r.get("limits") for r in resources):
        return "BestEffort"
    for r in resources:
        limits, requests = r.get("limits") or {}, r.get("requests") or {}
        for name in ("cpu", "memory"):
            if name not in limits or requests.get(name, limits[name]) != limits[name]:
                return "Burstable"
    return "Guaranteed"


def _decode_secret(obj):
    """stringData is write-only: the server folds it into base64 `data` (stringData wins)."""
    data = obj.get("data") or {}
    for key, value in data.items():
        try:
            base64.b64decode(value or "", validate=True)
        except (binascii.Error, ValueError, TypeError):
            raise bad_request(f'Secret in version "v1" cannot be handled as a Secret: illegal base64 data '
                              f'at input byte 0 (key "{key}")')
    for key, value in (obj.pop("stringData", None) or {}).items():
        data[key] = base64.b64encode(str(value).encode()).decode()
    if data:
        obj["data"] = data
    obj.setdefault("type", "Opaque")


def default_job(obj, uid):
    spec = obj.setdefault("spec", {})
    template = spec.setdefault("template", {})
    template_meta = template.setdefault("metadata", {})
    meta = obj["metadata"]
    if template_meta.get("labels") and not meta.get("labels"):
        meta["labels"] = dict(template_meta["labels"])  # SetDefaults_Job: labels default to the template's
    jobs.default_spec(spec)
    if not spec.get("manualSelector"):
        controller_uid = (spec.get("selector") or {}).get("matchLabels", {}).get(
            "batch.kubernetes.io/controller-uid", uid)
        spec["selector"] = {"matchLabels": {"batch.kubernetes.io/controller-uid": controller_uid}}
        labels = template_meta.setdefault("labels", {})
        labels.update({"batch.kubernetes.io/controller-uid": controller_uid,
                       "batch.kubernetes.io/job-name": meta["name"],
                       "controller-uid": controller_uid, "job-name": meta["name"]})
    # Like the real server, a missing restartPolicy defaults to Always, which job validation then rejects.
    default_pod_spec(template.setdefault("spec", {}))


def apply_defaults(res, obj):
    """Defaults that do not depend on the object being new (also re-applied to replaced objects)."""
    meta = obj["metadata"]
    if res.plural == "pods":
        default_pod_spec(obj.setdefault("spec", {}))
    elif res.plural == "jobs":
        default_job(obj, meta["uid"])
    elif res.plural == "secrets":
        _decode_secret(obj)
    elif res.plural == "services":
        services.apply_defaults(obj)
    elif res.plural == "namespaces":
        obj.setdefault("spec", {}).setdefault("finalizers", ["kubernetes"])
        meta.setdefault("labels", {})["kubernetes.io/metadata.name"] = meta["name"]


def initial_status(res, obj):
    if res.plural == "pods":
        return {"phase": "Pending", "qosClass": qos_class(obj.get("spec") or {})}
    if res.plural == "namespaces":
        return {"phase": "Active"}
    if res.plural == "jobs":
        return {}
    if res.plural == "services":
        return {"loadBalancer": {}}
    return None


def prepare_create(res, obj, namespace):
    """Fill in the server-owned metadata and defaults of a new object (mutates and returns it)."""
    meta = obj.setdefault("metadata", {})
    if not meta.get("name") and meta.get("generateName"):
        meta["name"] = meta["generateName"] + random_suffix()
    if res.namespaced:
        meta["namespace"] = namespace
    else:
        meta.pop("namespace", None)
    meta["uid"] = str(uuid.uuid4())
    meta["creationTimestamp"] = now()
    for server_owned in ("deletionTimestamp", "deletionGracePeriodSeconds", "resourceVersion", "managedFields"):
        meta.pop(server_owned, None)
    if res.has_generation:
        meta["generation"] = 1
    apply_defaults(res, obj)
    status = initial_status(res, obj)
    if status is not None:
        obj["status"] = status
    if res.plural == "services":
        services.allocate(obj)
    return obj


POD_MUTABLE_HINT = ("pod updates may not change fields other than `spec.containers[*].image`,"
                    "`spec.initContainers[*].image`,`spec.activeDeadlineSeconds`,`spec.tolerations` "
                    "(only additions to existing tolerations),`spec.terminationGracePeriodSeconds` "
                    "(allow it to be set to 1 if it was previously negative)")


def _without_images(spec):
    spec = clone(spec or {})
    for key in ("containers", "initContainers"):
        for container in spec.get(key) or []:
            container.pop("image", None)
            container.pop("imagePullPolicy", None)
    for key in ("activeDeadlineSeconds", "tolerations", "terminationGracePeriodSeconds"):
        spec.pop(key, None)
    return spec


def prepare_update(res, old, new, subresource=None):
    """Merge a replacement into the stored object the way the real registry strategies do."""
    meta, old_meta = new.setdefault("metadata", {}), old["metadata"]
    if meta.get("name") not in (None, old_meta["name"]):
        raise bad_request(f'the name of the object ({meta.get("name")}) does not match the name on the URL '
                          f'({old_meta["name"]})')
    for key in ("name", "namespace", "uid", "creationTimestamp", "generation", "deletionTimestamp"):
        if key in old_meta:
            meta[key] = old_meta[key]
    if subresource == "status":
        # A status update changes only the status (and nothing else, not even labels).
        result = clone(old)
        result["status"] = new.get("status") or {}
        return result
    apply_defaults(res, new)
    if res.plural in ("pods", "jobs", "namespaces", "services"):
        new["status"] = clone(old.get("status"))  # the main resource ignores status changes
        if new["status"] is None:
            new.pop("status")
    if res.plural == "services":
        services.allocate(new, old)
    _check_immutable(res, old, new)
    if res.has_generation and new.get("spec") != old.get("spec"):
        meta["generation"] = old_meta.get("generation", 1) + 1
    return new


def _check_immutable(res, old, new):
    name = old["metadata"]["name"]
    if res.plural == "pods" and _without_images(old.get("spec")) != _without_images(new.get("spec")):
        raise invalid(res, name, [cause("spec", f"Forbidden: {POD_MUTABLE_HINT}", "FieldValueForbidden")])
    if res.plural == "jobs":
        jobs.check_update(res, old, new)
    if res.plural == "services":
        services.check_update(res, old, new)


def check_resource_version(res, old, new):
    """Optimistic concurrency: a replacement that names an older resourceVersion is a 409 Conflict."""
    wanted = (new.get("metadata") or {}).get("resourceVersion")
    if wanted and wanted != old["metadata"]["resourceVersion"]:
        raise conflict(res, old["metadata"]["name"])
