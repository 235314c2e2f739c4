"""What a cell's settings imply for its pod: checks of the values, resources (requests, limits, the
interactive-pod caps), volumes and mounts, sidecars, where it may run (node lists, node selector, affinity,
priority class), tolerations and the `pod_config` patch. Pure functions of the settings; render.Renderer
puts the results into the templates."""
import copy
import math
import os
import re

from toolbox.core import fields, naming, podschema
from toolbox.core.console import number_text
from toolbox.kube import jobspec, objects

DEPLOY_KEY_DIR = "/etc/toolbox/deploy-key"
MAIN = "main"
# sidecar resources when a server entry does not say (a helper process: the main container's 5 CPU /
# 32 GB for each would double every pod's request)
SERVER_DEFAULTS = {"gpu_count": 0, "cpu_count": 1, "memory": 4, "ephemeral_storage": 0}
_LABEL_NAME = re.compile(r"^([A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?)$")
_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_ENV_NAME = objects.ENV_NAME
_EFFECTS = ("NoSchedule", "PreferNoSchedule", "NoExecute")
RESERVED_LABELS = ("user", "project", "toolbox/")


# -- quantities -------------------------------------------------------------------------------------------
def _milli(value):
    """Cores or GB -> thousandths, rounded down (limits must stay within the ratio)."""
    return int(math.floor(round(value * 1000, 6)))


def cpu_text(milli):
    return str(milli // 1000) if milli % 1000 == 0 else f"{milli}m"


def memory_text(mb):
    return f"{mb // 1000}G" if mb % 1000 == 0 else f"{mb}M"


class Resources:
    """A container's requests in integer units (GPUs, millicores, MB, MB) and its limits."""

    def __init__(self, gpu, cpu, memory, storage, ratio):
        self.gpu = int(gpu)
        self.cpu, self.memory, self.storage = _milli(cpu), _milli(memory), _milli(storage)
        self.cpu_limit, self.memory_limit = _milli(cpu * ratio), _milli(memory * ratio)
        self.storage_limit = _milli(storage * ratio)

    def scale(self, what, factor):
        if what == "gpu":
            self.gpu = int(self.gpu * factor)
        else:
            setattr(self, what, int(getattr(self, what) * factor))
            setattr(self, what + "_limit", int(getattr(self, what + "_limit") * factor))

    def as_dicts(self, gpu_resource):
        requests = {"cpu": cpu_text(self.cpu), "memory": memory_text(self.memory)}
        limits = {"cpu": cpu_text(self.cpu_limit), "memory": memory_text(self.memory_limit)}
        if self.storage:
            requests["ephemeral-storage"] = memory_text(self.storage)
            limits["ephemeral-storage"] = memory_text(self.storage_limit)
        if self.gpu:
            requests[gpu_resource] = limits[gpu_resource] = str(self.gpu)
        return requests, limits


# -- checks of the settings -------------------------------------------------------------------------------
def _check_number(problems, settings, key, low, strict=False, optional=False, high=None):
    value = settings.get(key)
    if value is None:
        if not optional:
            problems.append((key, "must be set"))
        return
    if value < low or (strict and value == low):
        problems.append((key, f"must be {'more than' if strict else 'at least'} {number_text(low)}, "
                              f"got {number_text(value)}"))
    elif high is not None and value > high:
        problems.append((key, f"must be at most {number_text(high)}, got {number_text(value)}"))


def label_value_ok(value):
    return len(value) <= 63 and bool(_LABEL_NAME.match(value))


def label_problems(labels, reserved=True, field="labels"):
    out = []
    for key, value in labels.items():
        prefix, _, name = key.rpartition("/")
        if (prefix and (len(prefix) > 253 or not _SUBDOMAIN.match(prefix))) or len(name) > 63 \
                or not _LABEL_NAME.match(name):
            out.append((field, f"'{key}' is not a valid label key"))
        elif reserved and (key in RESERVED_LABELS or key.startswith("toolbox/")):
            out.append((field, f"'{key}' is set by the toolbox and cannot be changed"))
        if value and (len(value) > 63 or not _LABEL_NAME.match(value)):
            out.append((field, f"'{key}': '{value}' is not a valid label value",))
    return out


def parse_toleration(text):
    """'key', 'key=value', 'key:Effect', 'key=value:Effect' -> a toleration (default effect NoSchedule;
    without a value any value of the taint is tolerated)."""
    rest, effect = text, "NoSchedule"
    if ":" in text:
        rest, effect = text.rsplit(":", 1)
    key, eq, value = rest.partition("=")
    if effect not in _EFFECTS:
        raise ValueError(f"'{text}': the effect must be one of {', '.join(_EFFECTS)}")
    prefix, _, name = key.rpartition("/")
    if not name or not _LABEL_NAME.match(name) or (prefix and not _SUBDOMAIN.match(prefix)):
        raise ValueError(f"'{text}' is not a valid taint key")
    if eq:
        return {"key": key, "operator": "Equal", "value": value, "effect": effect}
    return {"key": key, "operator": "Exists", "effect": effect}


def check_identity(s):
    """user and project_name go into label selectors, namespace into every path."""
    problems = []
    if not naming.is_dns_label(s["namespace"]):
        problems.append(("namespace", f"'{s['namespace']}' is not a valid namespace name"))
    for key in ("user", "project_name"):
        if len(s[key]) > 63 or not _LABEL_NAME.match(s[key]):
            problems.append((key, f"'{s[key]}' must be a valid label value (letters, digits, -_.; "
                                  "at most 63 characters)"))
    return problems


def check_settings(s):
    """Problems ((field, message) pairs) with the values of resolved settings, and the parsed tolerations."""
    problems = []
    for key in ("user", "namespace"):
        if not s.get(key):
            problems.append((key, f"missing required key '{key}' (set it in config/kube.yaml)"))
    if problems:
        return problems, []
    problems.extend(check_identity(s))
    if not s.get("image"):
        problems.append(("image", "no image: set image, or registry_host and gitlab_user"))
    _check_number(problems, s, "gpu_count", 0, high=jobspec.INT32_MAX)
    _check_number(problems, s, "cpu_count", 0, strict=True)
    _check_number(problems, s, "memory", 0, strict=True)
    _check_number(problems, s, "ephemeral_storage", 0)
    _check_number(problems, s, "limit_ratio", 1)
    _check_number(problems, s, "shm_size", 0, strict=True, optional=True)
    _check_number(problems, s, "backoff_limit", 0, high=jobspec.INT32_MAX)
    _check_number(problems, s, "ttl_seconds_after_finished", 0, optional=True, high=jobspec.INT32_MAX)
    _check_number(problems, s, "active_deadline_seconds", 1, optional=True, high=jobspec.INT64_MAX)
    _check_number(problems, s, "shared", 0, strict=True)
    if s.get("shared") is not None and s["shared"] > 1:
        problems.append(("shared", f"must be at most 1 (a fraction of the GPUs), got {number_text(s['shared'])}"))
    for key in ("pod_max_gpu", "pod_max_memory", "pod_max_cpu"):
        _check_number(problems, s, key, 0, strict=True)
    if s.get("special_gpu") and not _LABEL_NAME.match(s["special_gpu"]):
        problems.append(("special_gpu", f"'{s['special_gpu']}' is not a valid resource name "
                                        "(e.g. a100 for nvidia.com/a100)"))
    problems.extend(placement_problems(s))
    problems.extend(jobspec.problems(s, label_value_ok))
    problems.extend(label_problems(s.get("labels") or {}))
    for key in (s.get("env") or {}):
        if not _ENV_NAME.match(key):
            problems.append(("env", f"'{key}' is not a valid environment variable name"))
    tolerations = []
    for text in s.get("tolerations") or []:
        try:
            tolerations.append(parse_toleration(text))
        except ValueError as err:
            problems.append(("tolerations", str(err)))
    return problems, tolerations


def gpu_resource(s):
    return f"nvidia.com/{s['special_gpu']}" if s.get("special_gpu") else "nvidia.com/gpu"


def volumes(s, fileset, problems):
    """Pod volumes, the main container's mounts, and the sidecars (with their own mounts)."""
    shm = {"medium": "Memory"}
    if s.get("shm_size"):
        shm["sizeLimit"] = memory_text(_milli(s["shm_size"]))
    volumes = [{"name": "toolbox-shm", "emptyDir": shm}]
    common = [{"name": "toolbox-shm", "mountPath": "/dev/shm"}]
    if fileset:
        volumes.append({"name": "toolbox-files", "configMap": {"name": fileset.name}})
        common.append({"name": "toolbox-files", "mountPath": objects.FILES_MOUNT, "readOnly": True})
    if s.get("git_pull") and s.get("deploy_key_secret"):
        volumes.append({"name": "toolbox-deploy-key", "secret": {
            "secretName": s["deploy_key_secret"], "optional": True, "defaultMode": 0o400}})
        common.append({"name": "toolbox-deploy-key", "mountPath": DEPLOY_KEY_DIR, "readOnly": True})
    paths = {m["mountPath"] for m in common}
    names = {v["name"] for v in volumes}
    for claim, path in (s.get("volumes") or {}).items():
        if not _SUBDOMAIN.match(claim) or len(claim) > 253:
            problems.append(("volumes", f"'{claim}' is not a valid PersistentVolumeClaim name"))
            continue
        name = naming.next_free_name(naming.fit("pvc-" + naming.slug(claim), 63), names)
        names.add(name)
        if not mount_ok(problems, "volumes", claim, path, paths):
            continue
        volumes.append({"name": name, "persistentVolumeClaim": {"claimName": claim}})
        common.append({"name": name, "mountPath": path})
    main_mounts = list(common)
    sidecars, scratch = [], {}
    car_names = {MAIN}
    for server, spec in (s.get("server") or {}).items():
        car = naming.fit(naming.slug(server), 63)
        if not car or car in car_names:
            problems.append(("server", f"'{server}' gives the container name '{car or '?'}', "
                                       "which is empty or taken"))
            continue
        car_names.add(car)
        port = spec.get("port")
        if not isinstance(port, int) or not 1 <= port <= 65535:
            problems.append(("server", f"{server}.port must be a port number (1-65535), got {port}"))
        values = {k: spec.get(k) if spec.get(k) is not None else d for k, d in SERVER_DEFAULTS.items()}
        if values["cpu_count"] <= 0 or values["memory"] <= 0 or values["gpu_count"] < 0 \
                or values["ephemeral_storage"] < 0:
            problems.append(("server", f"{server}: resources must be positive"))
            continue
        mounts = list(common)
        for vol, path in (spec.get("volumes") or {}).items():
            name = "scratch-" + naming.fit(naming.slug(vol), 55)
            if name not in scratch:  # one emptyDir per name, shared by main and every server using it
                if not mount_ok(problems, "server", f"{server}.volumes.{vol}", path, paths):
                    continue
                scratch[name] = path
                volumes.append({"name": name, "emptyDir": {}})
                main_mounts.append({"name": name, "mountPath": path})
            elif scratch[name] != path:
                problems.append(("server", f"{server}.volumes.{vol}: mounted at {scratch[name]} by another "
                                           f"server and at {path} here; use one path"))
                continue
            mounts.append({"name": name, "mountPath": path})
        res = Resources(values["gpu_count"], values["cpu_count"], values["memory"],
                        values["ephemeral_storage"], s["limit_ratio"])
        sidecars.append({"name": car, "command": str(spec.get("command", "")), "mounts": mounts,
                         "ports": [port] if isinstance(port, int) else [], "extra_env": [], "field_env": [],
                         "res": res})
    return volumes, main_mounts, sidecars

def mount_ok(problems, field, what, path, taken):
    if not isinstance(path, str) or not path.startswith("/"):
        problems.append((field, f"{what}: the mount path must be absolute, got '{path}'"))
        return False
    norm = os.path.normpath(path)
    if norm in taken or norm in ("/dev/shm", "/etc/toolbox") or norm.startswith("/etc/toolbox/"):
        problems.append((field, f"{what}: {path} is already used by another volume"))
        return False
    taken.add(norm)
    return True

def apply_caps(s, resources, warnings):
    """Interactive pods: the cluster allows at most pod_max_gpu/memory/cpu, summed over the containers.
    Limits above a cap are brought down to it first, never below the requests (limits may then equal
    requests, which the 20% rule allows) — so the defaults (32 GB requested, limit 38.4) fit silently.
    Requests above a cap are scaled down to fit, with a warning."""
    caps = (("gpu", "pod_max_gpu", 1, "GPU"), ("memory", "pod_max_memory", 1000, "GB of memory"),
            ("cpu", "pod_max_cpu", 1000, "CPU cores"))
    for what, key, unit, words in caps:
        cap = int(s[key] * unit)
        requested = sum(getattr(r, what) for r in resources)
        if requested > cap:
            for r in resources:
                r.scale(what, cap / requested)
            warnings.append(f"interactive pod: {number_text(requested / unit)} {words} requested, more than the "
                            f"cluster allows ({key}: {number_text(s[key])}); requests scaled down to fit")
        if what != "gpu":
            _fit_limits(resources, what, cap)


def _fit_limits(resources, what, cap):
    """Take the excess of the limits over `cap` out of each container's headroom (limit - request)."""
    limit = what + "_limit"
    excess = sum(getattr(r, limit) for r in resources) - cap
    headroom = sum(getattr(r, limit) - getattr(r, what) for r in resources)
    if excess <= 0 or headroom <= 0:
        return
    share = min(1.0, excess / headroom)
    for r in resources:
        room = getattr(r, limit) - getattr(r, what)
        setattr(r, limit, getattr(r, limit) - math.ceil(room * share))


# -- where the pod runs -------------------------------------------------------------------------------------
def placement_problems(s):
    """Node lists that leave no node, a PriorityClass name or node selector Kubernetes would refuse."""
    problems = []
    for pair in fields.node_lists(s):
        if pair.nothing_left(s):
            problems.append((pair.white, f"no {pair.noun} is left: every entry of {pair.white} is in {pair.black}",
                             [f"a {pair.noun} must be in the whitelist and not in the blacklist"]))
    name = s.get("priority_class_name")
    if name and (len(name) > 253 or not _SUBDOMAIN.match(name)):
        problems.append(("priority_class_name", f"'{name}' is not a valid PriorityClass name "
                                                "(lower-case letters, digits, '-' and '.')"))
    problems.extend(label_problems(s.get("node_selector") or {}, reserved=False, field="node_selector"))
    return problems


def node_expressions(s):
    """The node selector requirements of the host and GPU lists that apply: In the whitelist, NotIn the
    blacklist (both when both are set)."""
    expressions = []
    for pair in fields.node_lists(s):
        if s.get(pair.white):
            expressions.append({"key": pair.label, "operator": "In", "values": list(s[pair.white])})
        if s.get(pair.black):
            expressions.append({"key": pair.label, "operator": "NotIn", "values": list(s[pair.black])})
    return expressions


def affinity(s):
    """The pod's affinity (None when empty): the `affinity` field and pod_config's `affinity`, with the
    node list expressions added to EVERY required node selector term (the terms are ORed: a term without
    them would let the pod onto a blacklisted node). Preferred terms and pod (anti-)affinity are kept."""
    result = copy.deepcopy(s.get("affinity") or {})
    from_pod_config = (s.get("pod_config") or {}).get("affinity")
    if from_pod_config:
        podschema.merge(result, from_pod_config, podschema.AFFINITY)
    ours = node_expressions(s)
    if ours:
        node = result.setdefault("nodeAffinity", {})
        required = node.get("requiredDuringSchedulingIgnoredDuringExecution") or {}
        terms = required.get("nodeSelectorTerms") or [{}]
        required["nodeSelectorTerms"] = [dict(term, matchExpressions=(term.get("matchExpressions") or []) + ours)
                                         for term in terms]
        node["requiredDuringSchedulingIgnoredDuringExecution"] = required
    return result or None


def pod_patch(s):
    """What pod_config merges into the generated pod (its `affinity` goes through affinity()), or None."""
    patch = {key: value for key, value in (s.get("pod_config") or {}).items() if key != "affinity"}
    return patch or None


def pod_config_problems(s, sidecars, volumes):
    """What the API server would refuse in what pod_config adds: a new container (a name the toolbox does
    not use) without an image, a mount of a volume the pod does not have."""
    problems = []
    patch = s.get("pod_config") or {}
    ours = {"containers": [MAIN], "initContainers": [car["name"] for car in sidecars]}
    names = {v["name"] for v in volumes} | {v.get("name") for v in patch.get("volumes") or [] if isinstance(v, dict)}
    for key, known in ours.items():
        for item in patch.get(key) or []:
            if not isinstance(item, dict):
                continue
            if item.get("name") not in known and not item.get("image"):
                what = f" (not {', '.join(known)})" if known else ""
                problems.append(("pod_config", f"{key}: '{item.get('name')}' is a new container{what} and needs "
                                               "an image"))
            for mount in item.get("volumeMounts") or []:
                if isinstance(mount, dict) and mount.get("name") not in names:
                    problems.append(("pod_config", f"{key}: '{item.get('name')}' mounts '{mount.get('name')}', "
                                                   "which is not a volume of the pod (add it to pod_config's volumes)"))
    return problems
