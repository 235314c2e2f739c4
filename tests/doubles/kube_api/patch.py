"""PATCH bodies: JSON merge patch (RFC 7386), strategic merge patch (merge keys and `$` directives as kubectl
sends them), JSON patch (RFC 6902).

Strategic merge matters for `kubectl apply`: its patches carry `$setElementOrder/containers` and merge lists
of containers by name; treated as a plain merge patch they would wipe the other fields of each container.
"""

from .status import ApiError, bad_request
from .store import clone

# Lists merged element by element on these keys (from the Go types' patchMergeKey tags); other lists are
# replaced whole.
MERGE_KEYS = {
    "containers": "name", "initContainers": "name", "ephemeralContainers": "name", "env": "name",
    "volumes": "name", "volumeMounts": "mountPath", "volumeDevices": "devicePath", "ports": "containerPort",
    "imagePullSecrets": "name", "ownerReferences": "uid", "conditions": "type", "hostAliases": "ip",
    "resourceClaims": "name", "topologySpreadConstraints": "topologyKey",
}
# `ports` is a container's (merged on containerPort) or a Service's (merged on port): the items tell which.
SERVICE_PORT_KEY = "port"


def _merge_key(field, items):
    key = MERGE_KEYS.get(field)
    if field == "ports" and any(isinstance(i, dict) and SERVICE_PORT_KEY in i and key not in i for i in items):
        return SERVICE_PORT_KEY
    return key


def merge_patch(target, patch):
    """RFC 7386: dicts merge recursively, null deletes, everything else replaces."""
    if not isinstance(patch, dict):
        return clone(patch)
    result = clone(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


def strategic_merge_patch(target, patch):
    result = _smp_dict(target if isinstance(target, dict) else {}, patch)
    return {} if result is None else result


def _smp_dict(target, patch):
    if not isinstance(patch, dict):
        raise bad_request("strategic merge patch: expected an object")
    directive = patch.get("$patch")
    if directive == "delete":
        return None
    if directive == "replace":
        return {k: v for k, v in patch.items() if not k.startswith("$")}
    result = clone(target)
    orders = {}
    for key, value in patch.items():
        if key.startswith("$setElementOrder/"):
            orders[key.split("/", 1)[1]] = value
        elif key.startswith("$deleteFromPrimitiveList/"):
            field = key.split("/", 1)[1]
            result[field] = [v for v in result.get(field, []) if v not in value]
        elif key.startswith("$"):
            continue  # $retainKeys and other directives only narrow what is kept: ignore them
        elif value is None:
            result.pop(key, None)
        elif isinstance(value, dict) and isinstance(result.get(key), dict):
            merged = _smp_dict(result[key], value)
            if merged is None:
                result.pop(key, None)
            else:
                result[key] = merged
        elif isinstance(value, list) and key in MERGE_KEYS:
            result[key] = _smp_list(result.get(key) or [], value, _merge_key(key, (result.get(key) or []) + value))
        else:
            result[key] = _strip_directives(value)
    for field, order in orders.items():
        if isinstance(result.get(field), list):
            result[field] = _reorder(result[field], order, _merge_key(field, result[field]))
    return result


def _smp_list(target, patch, key):
    if any(isinstance(item, dict) and item.get("$patch") == "replace" for item in patch):
        return [_strip_directives(i) for i in patch if not (isinstance(i, dict) and "$patch" in i)]
    result = clone(target)
    for item in patch:
        if not isinstance(item, dict) or key not in item:
            result.append(_strip_directives(item))
            continue
        index = next((i for i, old in enumerate(result) if isinstance(old, dict) and old.get(key) == item[key]),
                     None)
        if item.get("$patch") == "delete":
            if index is not None:
                del result[index]
        elif index is None:
            result.append(_strip_directives(item))
        else:
            result[index] = _smp_dict(result[index], item)
    return result


def _reorder(items, order, key):
    def ident(item):
        return item.get(key) if key and isinstance(item, dict) else item

    wanted = [o.get(key) if key and isinstance(o, dict) else o for o in order]
    ranked = sorted(items, key=lambda it: wanted.index(ident(it)) if ident(it) in wanted else len(wanted))
    return ranked


def _strip_directives(value):
    if isinstance(value, dict):
        return {k: _strip_directives(v) for k, v in value.items() if not k.startswith("$")}
    if isinstance(value, list):
        return [_strip_directives(v) for v in value]
    return value


# --- JSON patch (RFC 6902) ---

def _pointer(path):
    if path == "":
        return []
    if not path.startswith("/"):
        raise bad_request(f"invalid JSON pointer {path!r}")
    return [p.replace("~1", "/").replace("~0", "~") for p in path[1:].split("/")]


def _parent(doc, tokens, path):
    node = doc
    for token in tokens[:-1]:
        node = _child(node, token, path)
    return node


def _child(node, token, path):
    try:
        return node[int(token)] if isinstance(node, list) else node[token]
    except (KeyError, IndexError, ValueError, TypeError):
        raise _unprocessable(f"doc is missing path: \"{path}\"")


def _unprocessable(message):
    return ApiError(422, "Invalid", message)


def _add(doc, path, value):
    tokens = _pointer(path)
    if not tokens:
        return value
    parent, last = _parent(doc, tokens, path), tokens[-1]
    if isinstance(parent, list):
        index = len(parent) if last == "-" else int(last)
        if index > len(parent):
            raise _unprocessable(f"add operation does not apply: doc is missing path: \"{path}\"")
        parent.insert(index, value)
    elif isinstance(parent, dict):
        parent[last] = value
    else:
        raise _unprocessable(f"add operation does not apply: doc is missing path: \"{path}\"")
    return doc


def _remove(doc, path):
    tokens = _pointer(path)
    parent = _parent(doc, tokens, path)
    value = _child(parent, tokens[-1], path)
    if isinstance(parent, list):
        del parent[int(tokens[-1])]
    else:
        del parent[tokens[-1]]
    return value


def json_patch(target, operations):
    if not isinstance(operations, list):
        raise bad_request("json patch: the body must be a JSON array of operations")
    doc = clone(target)
    for op in operations:
        if not isinstance(op, dict) or "op" not in op or "path" not in op:
            raise bad_request(f"json patch: malformed operation {op!r}")
        kind, path = op["op"], op["path"]
        if kind == "add":
            doc = _add(doc, path, clone(op.get("value")))
        elif kind == "remove":
            _remove(doc, path)
        elif kind == "replace":
            _remove(doc, path)
            doc = _add(doc, path, clone(op.get("value")))
        elif kind in ("move", "copy"):
            source = _pointer(op.get("from", ""))
            value = (_remove(doc, op["from"]) if kind == "move"
                     else clone(_child(_parent(doc, source, op["from"]), source[-1], op["from"])))
            doc = _add(doc, path, value)
        elif kind == "test":
            tokens = _pointer(path)
            current = _child(_parent(doc, tokens, path), tokens[-1], path) if tokens else doc
            if current != op.get("value"):
                raise _unprocessable(f"testing value {path} failed: test failed")
        else:
            raise bad_request(f"json patch: unknown operation {kind!r}")
    return doc
