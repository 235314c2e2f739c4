"""Body validation: the bundled Kubernetes 1.33 strict JSON schemas of `kubernetes-validate`, plus the few
semantic rules of the real server that the schemas cannot express (required images, container names; jobs.py
and services.py hold those of Jobs and Services).

`kubernetes_validate.validate()` re-reads a 1.4 MB schema on every call (25-45 ms); here the validator of each
kind is built once and reused (~1 ms per object).
"""
import functools
import re
import threading

from . import jobs, services
from .resources import LABEL_MSG, LABEL_RE, label_causes
from .status import bad_request, cause, invalid

K8S_VERSION = "1.33"
_lock = threading.Lock()


@functools.cache
def _validator(kind, api_version):
    import jsonschema
    from kubernetes_validate import utils
    from referencing import Registry, Resource

    version = [v for v in utils.all_versions() if utils.major_minor(v) <= K8S_VERSION][-1]
    folder = f"kubernetes-json-schema/v{version}-local-strict"
    group_version = re.sub(r"^([^./]*)(?:\.[^/]*)?/", r"\1-", api_version)
    schema = utils.schema_contents(f"{folder}/{kind.lower()}-{group_version}.json", K8S_VERSION)
    definitions = utils.schema_contents(f"{folder}/_definitions.json", K8S_VERSION)
    registry = Resource.from_contents(definitions) @ (Resource.from_contents(schema) @ Registry())
    return jsonschema.validators.Draft202012Validator(schema, registry=registry)


def validator(kind, api_version):
    with _lock:  # build each validator once even when requests race
        return _validator(kind, api_version)


def _field_path(parts):
    text = ""
    for part in parts:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text


def _defaulted_by_server(parts, missing):
    """Required in the 1.33 OpenAPI, yet defaulted by the server before validation (and optional from 1.35):
    a pod failure policy's onPodConditions[].status ("True")."""
    return missing == ["status"] and len(parts) >= 2 and parts[-2] == "onPodConditions"


def check_schema(res, obj, field_validation="Strict"):
    """Validate `obj` against its schema. Unknown fields: 400 under Strict, dropped with a warning under Warn,
    dropped silently under Ignore (as the real server does). Returns the warnings."""
    unknown, causes, type_errors = [], [], []
    for error in validator(res.kind, res.api_version).iter_errors(obj):
        parts = list(error.absolute_path)
        if error.validator == "additionalProperties":
            for name in re.findall(r"'([^']+)'", error.message.split("(", 1)[-1]):
                unknown.append((parts, name))
        elif error.validator == "required":
            missing = re.findall(r"'([^']+)' is a required property", error.message)
            if not _defaulted_by_server(parts, missing):
                causes.append(cause(_field_path(parts + missing), "Required value", "FieldValueRequired"))
        elif error.validator == "type":
            type_errors.append(f"{_field_path(parts)}: {error.message}")
        else:
            causes.append(cause(_field_path(parts), f"Invalid value: {error.instance!r}: {error.message}"))
    prefix = f'{res.kind} in version "{res.version}" cannot be handled as a {res.kind}'
    if type_errors:
        raise bad_request(f"{prefix}: json: cannot unmarshal: {type_errors[0]}")
    messages = [f'unknown field "{_field_path(parts + [name])}"' for parts, name in unknown]
    if unknown and field_validation == "Strict":
        raise bad_request(f"{prefix}: strict decoding error: " + ", ".join(messages))
    for parts, name in unknown:
        _drop(obj, parts, name)
    if causes:
        raise invalid(res, obj.get("metadata", {}).get("name", ""), causes)
    return messages if field_validation == "Warn" else []


def _drop(obj, parts, name):
    node = obj
    for part in parts:
        node = node[part]
    node.pop(name, None)


def _pod_spec_causes(spec, base):
    causes = []
    containers = spec.get("containers") or []
    if not containers:
        causes.append(cause(f"{base}.containers", "Required value", "FieldValueRequired"))
    seen = set()
    for index, container in enumerate(containers):
        field = f"{base}.containers[{index}]"
        name = container.get("name") or ""
        if not LABEL_RE.match(name) or len(name) > 63:
            causes.append(cause(f"{field}.name", f'Invalid value: "{name}": {LABEL_MSG}'))
        elif name in seen:
            causes.append(cause(f"{field}.name", f'Duplicate value: "{name}"', "FieldValueDuplicate"))
        seen.add(name)
        if not container.get("image"):
            causes.append(cause(f"{field}.image", "Required value", "FieldValueRequired"))
    return causes + services.hostname_causes(spec, base)


def check_semantics(res, obj):
    """The real server's validation beyond the schema, on a defaulted object."""
    meta = obj.get("metadata", {})
    causes = label_causes(meta.get("labels"), "metadata.labels")
    if res.plural == "pods":
        causes += _pod_spec_causes(obj.get("spec") or {}, "spec")
    elif res.plural == "jobs":
        spec = obj.get("spec") or {}
        template = spec.get("template") or {}
        causes += jobs.spec_causes(spec)
        causes += label_causes((template.get("metadata") or {}).get("labels"), "spec.template.labels")
        causes += _pod_spec_causes(template.get("spec") or {}, "spec.template.spec")
        causes += jobs.restart_policy_causes(spec, template.get("spec") or {})
    elif res.plural == "services":
        causes += services.semantic_causes(obj)
    if causes:
        raise invalid(res, meta.get("name", ""), causes)
