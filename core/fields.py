"""Every configuration field: its type, default, scope and documentation — in one table.

The validator (config.py), the precedence rule, the per-cell hparam overrides and the JSON Schemas
shipped in schemas/ are all derived from FIELDS, so they cannot disagree.

Scopes:
  project  one value for the whole project (kube.yaml, or launch.yaml's root when it agrees)
  cell     may differ per cell: default < kube.yaml < launch.yaml root < dataset < model < hparam
"""
import copy
import json
import math
import os
import string

from toolbox import TOOLBOX_DIR
from toolbox.core import podschema
from toolbox.core.console import parse_bool
from toolbox.errors import describe  # noqa: F401 (fields.describe: the messages of type problems)

# Public Nautilus S3 endpoints -> in-cluster Ceph gateways (pods reach these faster, and some
# public endpoints are blocked from inside the cluster). Overridable with `s3_endpoint_map`.
NAUTILUS_S3_ENDPOINTS = {
    "https://s3-west.nrp-nautilus.io": "http://rook-ceph-rgw-nautiluss3.rook",
    "https://s3-central.nrp-nautilus.io": "http://rook-ceph-rgw-centrals3.rook-central",
    "https://s3-east.nrp-nautilus.io": "http://rook-ceph-rgw-easts3.rook-east",
    "https://s3-haosu.nrp-nautilus.io": "http://rook-ceph-rgw-haosu.rook-haosu",
    "https://s3-tide.nrp-nautilus.io": "http://rook-ceph-rgw-tide.rook-tide",
}


class Field:
    """One configuration key. `default` may be a template like '{project_name}-read-registry',
    filled from other resolved fields (see resolve_defaults)."""

    __slots__ = ("name", "type", "default", "scope", "doc")

    def __init__(self, name, type, default, scope, doc):
        self.name, self.type, self.default, self.scope, self.doc = name, type, default, scope, doc

    @property
    def scalar(self):
        """Scalar fields can be overridden per cell by an hparam of the same name (`_gpu_count: [1, 2]`)."""
        return self.type in ("str", "int", "number", "bool")

    @property
    def merged(self):
        """Map fields merge key by key across layers instead of being replaced."""
        return self.type in ("map", "server") or self.type in K8S_TYPES


FIELDS = [
    # -- project-wide -----------------------------------------------------------------------------
    Field("project_name", "str", None, "project", "Project name: workload names, labels, image path, conda env."),
    Field("user", "str", None, "project", "Your cluster user name: the `user` label and the default name prefix."),
    Field("namespace", "str", None, "project", "Kubernetes namespace for every workload."),
    Field("context", "str", None, "project", "kubeconfig context to use (default: the current context)."),
    Field("api_timeout", "number", 60, "project", "Seconds a Kubernetes API request may wait for its answer "
          "(a stalled API server is then reported, and nothing more is sent)."),
    Field("prefix", "str", "{user}", "project", "Prefix of every workload name ('' for none)."),
    Field("s3_endpoint_map", "map", NAUTILUS_S3_ENDPOINTS, "project",
          "Public S3 endpoint -> in-cluster endpoint; .env values equal to a key are rewritten in pods."),
    # -- image and start-up -------------------------------------------------------------------------
    Field("registry_host", "str", "gitlab-registry.nrp-nautilus.io", "cell", "Container registry host."),
    Field("gitlab_user", "str", "{user}", "cell", "Registry namespace (GitLab user) of the image."),
    Field("image", "str", "{registry_host}/{gitlab_user}/{project_name}:latest", "cell", "Container image."),
    Field("image_pull_secrets", "str", "{project_name}-read-registry", "cell",
          "Secret used to pull the image ('' for none)."),
    Field("conda_home", "str", "/opt/conda", "cell", "Conda installation in the image."),
    Field("conda_env_name", "str", "{project_name}", "cell", "Conda env activated in pods ('base' for the base env)."),
    Field("git_pull", "bool", True, "cell", "Pull the latest code (and submodules) when a pod starts."),
    Field("deploy_key_secret", "str", "{project_name}-deploy-key", "cell",
          "Secret holding the read deploy key for `git pull` in pods (see `make deploy_key`)."),
    Field("ssh_host", "str", "gitlab-ssh.nrp-nautilus.io", "cell", "Git SSH host (for known_hosts of the deploy key)."),
    Field("ssh_port", "int", 30622, "cell", "Git SSH port."),
    Field("startup_script", "str", None, "cell", "Replaces the default start-up steps (git pull, conda "
          "activation); shipped files, PYTHONPATH, extra_startup_script and the command still follow."),
    Field("extra_startup_script", "str", None, "cell", "Runs after the start-up script, before the command."),
    Field("server_command", "str", "sleep infinity", "cell", "Main command of interactive pods."),
    Field("env", "map", {}, "cell", "Extra environment variables (merged key by key; not secret)."),
    Field("file", "list", [], "cell", "Local files/folders shipped into pods and jobs (through a ConfigMap)."),
    # -- resources ----------------------------------------------------------------------------------
    Field("gpu_count", "int", 0, "cell", "GPUs requested (limit = request)."),
    Field("cpu_count", "number", 5, "cell", "CPU cores requested."),
    Field("memory", "number", 32, "cell", "Memory requested, in GB."),
    Field("ephemeral_storage", "number", 100, "cell", "Ephemeral storage requested, in GB (0 leaves it out)."),
    Field("limit_ratio", "number", 1.2, "cell", "Limits = requests x this ratio for CPU, memory, storage."),
    Field("shm_size", "number", None, "cell", "Size limit of the memory-backed /dev/shm, in GB (default: none)."),
    Field("special_gpu", "str", None, "cell", "GPU resource type, e.g. a100 -> nvidia.com/a100 (the GPU "
          "product lists then do not apply)."),
    # -- where pods run -----------------------------------------------------------------------------
    Field("gpu_whitelist", "list", None, "cell", "Only nodes with these GPU products (nvidia.com/gpu.product)."),
    Field("gpu_blacklist", "list", None, "cell", "Never nodes with these GPU products (with a whitelist: "
          "the whitelisted products not listed here)."),
    Field("hostname_whitelist", "list", None, "cell", "Only these nodes."),
    Field("hostname_blacklist", "list", None, "cell", "Never these nodes (with a whitelist: the whitelisted "
          "nodes not listed here)."),
    Field("priority_class_name", "str", None, "cell", "PriorityClass of the pods (priorityClassName), e.g. "
          "Nautilus's opportunistic."),
    Field("node_selector", "map", {}, "cell", "Node labels the node must have (nodeSelector; merged key by key)."),
    Field("affinity", "affinity", None, "cell", "A Kubernetes affinity block: each required node selector term "
          "also gets the host and GPU lists; preferred terms and pod (anti-)affinity are kept."),
    Field("tolerations", "list", [], "cell", "Taints to tolerate: `key` (any value), `key=value`, "
          "optionally `:Effect` (default NoSchedule)."),
    Field("volumes", "map", {}, "cell", "PersistentVolumeClaim name -> mount path (merged key by key)."),
    Field("labels", "map", {}, "cell", "Extra labels on workloads (merged key by key)."),
    Field("server", "server", {}, "cell", "Sidecar containers: name -> {command, port, resources, volumes}."),
    Field("pod_config", "podspec", None, "cell", "Any PodSpec fields, merged into the generated pod like "
          "`kubectl patch` (containers by name: the toolbox's is `main`; null removes a key); layers merge alike."),
    Field("shared", "number", 1.0, "cell", "Fraction of the GPU(s) a cell needs; cells below 1.0 are packed "
          "together into one Job that runs them side by side."),
    # -- job lifecycle ------------------------------------------------------------------------------
    Field("backoff_limit", "int", 0, "cell", "Retries of a failed Job pod."),
    Field("ttl_seconds_after_finished", "int", None, "cell", "Delete finished Jobs after this many seconds."),
    Field("active_deadline_seconds", "int", None, "cell", "Kill Jobs running longer than this."),
    # -- scaling out (docs/scaling.md) ----------------------------------------------------------------
    Field("nodes", "int", 1, "cell", "Pods (nodes) one cell runs on: above 1, an Indexed Job and a headless "
          "Service, with MASTER_ADDR, NODE_RANK, NNODES... set for torchrun."),
    Field("master_port", "int", 29500, "cell", "MASTER_PORT of multi-node cells: where rank 0 listens."),
    Field("array", "bool", False, "cell", "Submit the cells with identical pod specs as ONE Indexed Job (each "
          "pod runs the command of its index) instead of one Job per cell."),
    Field("parallelism", "int", None, "cell", "Array Jobs: at most this many cells run at once (default: all)."),
    Field("retries", "int", 0, "cell", "Times a failed pod is replaced (per cell, per node); preemptions and "
          "node drains do not count. Replaces backoff_limit when set."),
    Field("fatal_exit_codes", "list", [], "cell", "Exit codes that fail the cell at once, whatever retries "
          "remain."),
    Field("queue", "str", None, "cell", "Kueue LocalQueue: the Job is created suspended with the "
          "kueue.x-k8s.io/queue-name label, for Kueue to admit (only on clusters that run Kueue)."),
    # -- interactive pod caps (the cluster's interactive-pod policy) ---------------------------------
    Field("pod_max_gpu", "int", 2, "cell", "Interactive pods: at most this many GPUs."),
    Field("pod_max_memory", "number", 32, "cell", "Interactive pods: at most this much memory (GB)."),
    Field("pod_max_cpu", "number", 16, "cell", "Interactive pods: at most this many CPU cores."),
]

FIELD_BY_NAME = {f.name: f for f in FIELDS}
PROJECT_FIELDS = [f.name for f in FIELDS if f.scope == "project"]
CELL_FIELDS = [f.name for f in FIELDS if f.scope == "cell"]
SCALAR_CELL_FIELDS = frozenset(f.name for f in FIELDS if f.scope == "cell" and f.scalar)


class NodeList:
    """A whitelist/blacklist pair on one node label. Both may be set (at any layers, each replacing only
    its own kind below it): a node must carry a whitelisted value, if there is a whitelist, and no
    blacklisted one."""

    __slots__ = ("white", "black", "label", "noun")

    def __init__(self, white, black, label, noun):
        self.white, self.black, self.label, self.noun = white, black, label, noun

    def nothing_left(self, settings):
        """True when a whitelist is set and every entry of it is blacklisted (no node can match)."""
        white = settings.get(self.white)
        return bool(white) and not set(white) - set(settings.get(self.black) or ())


HOST_LISTS = NodeList("hostname_whitelist", "hostname_blacklist", "kubernetes.io/hostname", "node")
GPU_LISTS = NodeList("gpu_whitelist", "gpu_blacklist", "nvidia.com/gpu.product", "GPU product")
NODE_LISTS = (HOST_LISTS, GPU_LISTS)


def node_lists(settings):
    """The pairs that apply to a cell: a special_gpu resource (nvidia.com/a100) already picks the GPU, so
    the GPU product lists do not apply to it (both together would ask for a GPU that is on no node)."""
    return [pair for pair in NODE_LISTS if pair is not GPU_LISTS or not settings.get("special_gpu")]


def ignores_gpu_lists(settings):
    """A cell whose GPU product lists are set but do not apply to it (special_gpu)."""
    return bool(settings.get("special_gpu")) and bool(settings.get(GPU_LISTS.white) or settings.get(GPU_LISTS.black))
REQUIRED_FOR_CLUSTER = ("project_name", "user", "namespace")

# Keys of the sections themselves (not fields)
MODEL_KEYS = {"command": "str", "local_command": "str", "hparam": "hparam"}
DATASET_KEYS = {"hparam": "hparam"}
LAUNCH_ROOT_KEYS = {"model": "models", "dataset": "datasets", "run": "run"}
RUN_KEYS = ("model", "dataset", "hparam")
SERVER_KEYS = {"command": "str", "port": "int", "gpu_count": "int", "cpu_count": "number",
               "memory": "number", "ephemeral_storage": "number", "volumes": "map"}
SERVER_REQUIRED = ("command", "port")

# Fields of raw Kubernetes: the definition of the strict PodSpec schema their values are checked against
K8S_TYPES = {"affinity": podschema.AFFINITY, "podspec": podschema.POD_SPEC}
TYPE_WORDS = {"str": "a string", "int": "an integer", "number": "a number", "bool": "true or false",
              "affinity": "a map (a Kubernetes affinity)", "podspec": "a map of PodSpec fields",
              "list": "a list of strings", "map": "a map of strings", "server": "a map of sidecar definitions"}


def _is_scalar(value):
    return isinstance(value, (str, int, float, bool))


def type_problem(type_name, value):
    """None if value fits the type, else what was expected (for error messages)."""
    if type_name == "str":
        ok = isinstance(value, str)
    elif type_name == "int":
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif type_name == "number":
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        if ok and not math.isfinite(value):
            return f"expected a finite number, got {yaml_text(value)}"
    elif type_name == "bool":
        ok = isinstance(value, bool)
    elif type_name == "list":
        ok = isinstance(value, list) and all(_is_scalar(v) and not isinstance(v, bool) for v in value)
    elif type_name in ("map", "server") or type_name in K8S_TYPES:
        ok = isinstance(value, dict)
        if ok and type_name == "map":
            ok = all(isinstance(k, str) and (v is None or _is_scalar(v)) for k, v in value.items())
    else:  # pragma: no cover - table error
        raise ValueError(type_name)
    if ok:
        return None
    return f"expected {TYPE_WORDS[type_name]}, got {describe(value)}"


def merge_value(field, lower, higher):
    """A merged field's value over a lower layer's: maps key by key; raw Kubernetes (affinity, pod_config)
    as `kubectl patch` merges, so a model's pod_config adds a volume to kube.yaml's instead of replacing
    the list."""
    if field.type in K8S_TYPES:
        return podschema.merge(copy.deepcopy(lower or {}), higher, K8S_TYPES[field.type], keep_nulls=True)
    return {**(lower or {}), **higher}


def value_problems(field, value):
    """Problems inside a value of a raw Kubernetes field (a misspelled PodSpec field, a wrong type), each as
    (key path inside the value, message, details, at_key)."""
    if field.type not in K8S_TYPES or not isinstance(value, dict):
        return []
    return podschema.problems(K8S_TYPES[field.type], value)


def cast_text(type_name, text):
    """An hparam's text cast to a scalar field's type; raises ValueError with what was expected."""
    if type_name == "str":
        return text
    if type_name == "bool":
        value = parse_bool(text)
        if value is None:
            raise ValueError("expected true or false")
        return value
    try:
        number = float(text) if type_name == "number" else int(text)
    except ValueError:
        raise ValueError(f"expected {TYPE_WORDS[type_name]}") from None
    if not math.isfinite(number):
        raise ValueError("expected a finite number")
    if type_name == "number" and number.is_integer():
        return int(number)
    return number


def normalize_value(field, value):
    """Convert a validated YAML value to the field's canonical Python form (map values to str)."""
    if field.type == "map" and isinstance(value, dict):
        return {k: "" if v is None else yaml_text(v) for k, v in value.items()}
    if field.type == "list" and isinstance(value, list):
        return [str(v) for v in value]
    return value


def yaml_text(value):
    """The text of a scalar as a user would write it: true (not True), 0.1, 1e-05."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and not math.isfinite(value):
        return ".nan" if math.isnan(value) else (".inf" if value > 0 else "-.inf")
    return str(value)


def resolve_defaults(settings):
    """Fill unset fields: template defaults ('{project_name}-read-registry') from the resolved values, in
    table order; a template whose inputs are unset stays None."""
    for field in FIELDS:
        if settings.get(field.name) is not None:
            continue
        if isinstance(field.default, str) and "{" in field.default:
            inputs = [name for _, name, _, _ in string.Formatter().parse(field.default) if name]
            ready = all(settings.get(name) not in (None, "") for name in inputs)
            settings[field.name] = field.default.format_map(settings) if ready else None
        else:
            settings[field.name] = _copy_default(field.default)
    return settings


def _copy_default(default):
    if isinstance(default, dict):
        return dict(default)
    if isinstance(default, list):
        return list(default)
    return default


def defaults():
    """Built-in defaults (template defaults unresolved: None)."""
    return {f.name: (None if isinstance(f.default, str) and "{" in f.default else _copy_default(f.default))
            for f in FIELDS}


# -- JSON Schema (for editors with the YAML language server) ------------------------------------------
SCHEMA_DIR = os.path.join(TOOLBOX_DIR, "schemas")
_SCALAR = {"type": ["string", "number", "boolean", "null"]}
_JSON_TYPES = {
    "str": {"type": "string"},
    "int": {"type": "integer"},
    "number": {"type": "number"},
    "bool": {"type": "boolean"},
    "list": {"type": "array", "items": {"type": ["string", "number"]}},
    "map": {"type": "object", "additionalProperties": _SCALAR},
}


def _server_schema():
    props = {k: dict(_JSON_TYPES[t]) for k, t in SERVER_KEYS.items()}
    entry = {"type": "object", "properties": props, "required": list(SERVER_REQUIRED), "additionalProperties": False}
    return {"type": "object", "additionalProperties": entry}


def _field_schema(field):
    if field.type in K8S_TYPES:
        schema = {"$ref": "#/definitions/" + K8S_TYPES[field.type]}
    else:
        schema = _server_schema() if field.type == "server" else dict(_JSON_TYPES[field.type])
    schema = {"anyOf": [schema, {"type": "null"}]}
    schema["description"] = field.doc
    if field.default is not None and not (isinstance(field.default, str) and "{" in field.default):
        schema["default"] = field.default
    return schema


def _hparam_schema():
    group = {"type": ["object", "null"], "additionalProperties": _SCALAR}
    value = {"anyOf": [_SCALAR, {"type": "array", "items": _SCALAR, "minItems": 1},
                       {"type": "object", "additionalProperties": group}]}
    return {"type": ["object", "null"], "additionalProperties": value,
            "description": "name -> value, list of values (an axis), or named groups of values"}


def _fields_schema(names):
    return {name: _field_schema(FIELD_BY_NAME[name]) for name in names}


def launch_schema():
    cell = _fields_schema(CELL_FIELDS)
    model = {"type": "object", "required": ["command"], "additionalProperties": False,
             "properties": {"command": {"type": "string", "description": "Shell command; <name> placeholders."},
                            "local_command": {"type": "string", "description": "Command for local runs."},
                            "hparam": _hparam_schema(), **cell}}
    dataset = {"type": ["object", "null"], "additionalProperties": False,
               "properties": {"hparam": _hparam_schema(), **cell}}
    names = {"anyOf": [{"type": "string"}, {"type": "array", "items": {"type": "string"}}]}
    run_block = {"type": "object", "additionalProperties": False,
                 "properties": {"model": names, "dataset": names,
                                "hparam": {"type": "object", "additionalProperties": {
                                    "anyOf": [_SCALAR, {"type": "array", "items": _SCALAR}]}}}}
    props = {"model": {"type": "object", "additionalProperties": model, "minProperties": 1},
             "dataset": {"type": ["object", "null"], "additionalProperties": dataset},
             "run": {"anyOf": [run_block, {"type": "array", "items": run_block}, {"type": "null"}]},
             **_fields_schema(PROJECT_FIELDS), **cell}
    return {"$schema": "http://json-schema.org/draft-07/schema#", "title": "Kube Toolbox config/launch.yaml",
            "type": "object", "required": ["model"], "additionalProperties": False, "properties": props,
            "definitions": podschema.definitions()}


def kube_schema():
    props = _fields_schema(PROJECT_FIELDS + CELL_FIELDS)
    return {"$schema": "http://json-schema.org/draft-07/schema#", "title": "Kube Toolbox config/kube.yaml",
            "type": "object", "additionalProperties": False, "properties": props,
            "definitions": podschema.definitions()}


SCHEMAS = {"launch.schema.json": launch_schema, "kube.schema.json": kube_schema}


def write_schemas(directory=SCHEMA_DIR):
    os.makedirs(directory, exist_ok=True)
    paths = []
    for filename, build in SCHEMAS.items():
        path = os.path.join(directory, filename)
        with open(path, "w") as out:
            json.dump(build(), out, indent=2, sort_keys=False)
            out.write("\n")
        paths.append(path)
    return paths


if __name__ == "__main__":  # toolbox development: regenerate schemas/ after changing FIELDS
    for written in write_schemas():
        print("wrote", written)
