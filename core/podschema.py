"""The Kubernetes PodSpec, for the fields that take raw Kubernetes (`pod_config`, `affinity`): checking a
value against the strict schema, and merging `pod_config` into a generated pod.

The schema is the PodSpec part of kubernetes-validate's strict schema for Kubernetes 1.33 (unknown fields
are errors, as with `kubectl apply --validate=strict`). It is embedded in schemas/kube.schema.json under
`definitions`, so editors complete pod_config too, and read from there (only when a project uses these
fields). `definitions()` regenerates it (toolbox development, with the test extras installed).

The merge is the strategic merge of `kubectl patch`: maps merge key by key; a list whose items Kubernetes
identifies by a key (containers, volumes and env by name, volumeMounts by mountPath, ...) merges item by
item, and an item of a union kind (a volume: emptyDir OR configMap OR ...) is replaced whole; any other
list and every scalar is replaced; `null` removes the key.
"""
import copy
import json
import os
import re

from toolbox import TOOLBOX_DIR
from toolbox.errors import choices_line, describe, did_you_mean

K8S_VERSION = "1.33"
POD_SPEC = "io.k8s.api.core.v1.PodSpec"
AFFINITY = "io.k8s.api.core.v1.Affinity"
SCHEMA_FILE = os.path.join(TOOLBOX_DIR, "schemas", "kube.schema.json")
_REF = "#/definitions/"
_loaded = {}


def _definitions():
    if "definitions" not in _loaded:
        with open(SCHEMA_FILE, encoding="utf-8") as handle:
            _loaded["definitions"] = json.load(handle)["definitions"]
    return _loaded["definitions"]


def _resolve(schema):
    while "$ref" in schema:
        schema = _definitions()[schema["$ref"][len(_REF):]]
    return schema


def _kind(schema):
    """The short name of a definition ('SecurityContext') for messages."""
    return schema.get("title", "")


# -- checking -----------------------------------------------------------------------------------------------
_TYPE_WORDS = {"object": "a map", "array": "a list", "string": "a string", "integer": "an integer",
               "number": "a number", "boolean": "true or false"}


def _fits(json_type, value):
    if json_type == "object":
        return isinstance(value, dict)
    if json_type == "array":
        return isinstance(value, list)
    if json_type == "string":
        return isinstance(value, str)
    if json_type == "boolean":
        return isinstance(value, bool)
    if json_type == "integer":
        return isinstance(value, int) and not isinstance(value, bool)
    if json_type == "number":
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    return json_type == "null" and value is None


def _types(schema):
    """The JSON types a schema allows (a oneOf of types: quantities, int-or-string)."""
    if "oneOf" in schema:
        return [t for option in schema["oneOf"] for t in _types(option)]
    found = schema.get("type")
    return [found] if isinstance(found, str) else list(found or [])


def problems(definition, value):
    """Problems of `value` as a `definition` (POD_SPEC, AFFINITY), every one of them: a list of
    (key path inside the value, message, details, at_key)."""
    found = []
    _check({"$ref": _REF + definition}, value, (), found)
    return found


def _check(schema, value, path, found):
    schema = _resolve(schema)
    types = _types(schema)
    if value is None:
        if types and "null" not in types:
            found.append((path, "must not be null", [], False))
        return
    if types and not any(_fits(t, value) for t in types):
        words = " or ".join(_TYPE_WORDS[t] for t in types if t != "null")
        found.append((path, f"expected {words}, got {describe(value)}", [], False))
        return
    if isinstance(value, dict):
        _check_map(schema, value, path, found)
    elif isinstance(value, list) and "items" in schema:
        for index, item in enumerate(value):
            _check(schema["items"], item, path + (index,), found)


def _check_map(schema, value, path, found):
    properties = schema.get("properties")
    extra = schema.get("additionalProperties")
    for key, item in value.items():
        if properties is not None and key in properties:
            _check(properties[key], item, path + (key,), found)
        elif isinstance(extra, dict):
            _check(extra, item, path + (key,), found)
        elif extra is False:
            hint = did_you_mean(key, properties or {}) or choices_line(properties or {})
            found.append((path + (key,), f"unknown field '{key}' in {_kind(schema)}", [hint], True))
    for key in schema.get("required", []):
        if key not in value:
            found.append((path, f"missing required field '{key}' of {_kind(schema)}", [], False))


# -- merging ------------------------------------------------------------------------------------------------
def merge(base, patch, definition=POD_SPEC, keep_nulls=False):
    """Merge `patch` into `base` (modified in place and returned) as `kubectl patch` merges. With
    keep_nulls (merging two patches: layers of pod_config), a null stays, to remove the key from the pod."""
    return _merge_map(_resolve({"$ref": _REF + definition}), base, copy.deepcopy(patch), keep_nulls)


def _merge_map(schema, base, patch, keep_nulls):
    properties = schema.get("properties") or {}
    extra = schema.get("additionalProperties")
    for key, value in patch.items():
        if value is None and not keep_nulls:
            base.pop(key, None)
            continue
        sub = properties.get(key, extra if isinstance(extra, dict) else {})
        base[key] = _merge_value(sub, base.get(key), value, keep_nulls)
    return base


def _merge_value(schema, old, new, keep_nulls):
    if isinstance(old, dict) and isinstance(new, dict):
        return _merge_map(_resolve(schema) if schema else {}, old, new, keep_nulls)
    key = schema.get("x-kubernetes-patch-merge-key")
    strategy = schema.get("x-kubernetes-patch-strategy", "")
    if isinstance(old, list) and isinstance(new, list) and key and "merge" in strategy.split(","):
        return _merge_list(_resolve(schema["items"]), old, new, key, "retainKeys" in strategy, keep_nulls)
    return new


def _merge_list(item_schema, old, new, key, replace_items, keep_nulls):
    merged = list(old)
    where = {item.get(key): index for index, item in enumerate(merged) if isinstance(item, dict)}
    for item in new:
        index = where.get(item.get(key)) if isinstance(item, dict) else None
        if index is None:
            where[item.get(key) if isinstance(item, dict) else None] = len(merged)
            merged.append(item)
        elif replace_items:
            merged[index] = item
        else:
            merged[index] = _merge_map(item_schema, merged[index], item, keep_nulls)
    return merged


# -- generating the embedded definitions (toolbox development) ----------------------------------------------
_KEEP_EXTENSIONS = ("x-kubernetes-patch-merge-key", "x-kubernetes-patch-strategy")


def definitions():
    """The definitions PodSpec needs, from kubernetes-validate's strict 1.33 schema: references rewritten
    to `#/definitions/`, descriptions cut to their first sentence, a `title` per definition, and no
    required `containers` (pod_config holds only what it changes)."""
    if "generated" not in _loaded:
        _loaded["generated"] = _generate()
    return copy.deepcopy(_loaded["generated"])


def _generate():
    from kubernetes_validate import (
        utils,  # a test extra: only the developers who regenerate need it
    )

    version = [v for v in utils.all_versions() if utils.major_minor(v) <= K8S_VERSION][-1]
    source = utils.schema_contents(f"kubernetes-json-schema/v{version}-local-strict/_definitions.json",
                                   K8S_VERSION)["$defs"]
    wanted, queue = {}, [POD_SPEC]
    while queue:
        name = queue.pop()
        if name not in wanted:
            wanted[name] = source[name]
            queue += re.findall(r'"#/\$defs/([^"]+)"', json.dumps(source[name]))
    result = {}
    for name in sorted(wanted):
        result[name] = {"title": name.rsplit(".", 1)[-1], **_trim(wanted[name])}
    result[POD_SPEC].pop("required", None)
    return result


def _trim(node):
    if isinstance(node, list):
        return [_trim(item) for item in node]
    if not isinstance(node, dict):
        return node
    out = {}
    for key, value in node.items():
        if key == "description":
            out[key] = _first_sentence(value)
        elif key == "$ref":
            out[key] = value.replace("#/$defs/", _REF)
        elif key.startswith("x-kubernetes-") and key not in _KEEP_EXTENSIONS:
            continue
        elif key == "properties":
            out[key] = {name: _trim(sub) for name, sub in value.items()}
        else:
            out[key] = _trim(value)
    return out


def _first_sentence(text):
    found = re.match(r"(.+?\.)(\s|$)", text, re.S)
    return " ".join((found.group(1) if found else text).split())
