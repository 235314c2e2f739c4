"""Just enough Kubernetes protobuf to read the bodies of kubectl's generator commands (`kubectl create
namespace|secret generic|configmap`), which send protobuf and never fall back to JSON.

Only decoding, only those three kinds, only the fields the generators set (names, labels, annotations, data,
type, immutable); field numbers from k8s.io/api's generated.proto. Responses stay JSON: kubectl accepts them.
"""
import base64

MAGIC = b"k8s\x00"


def _varint(data, pos):
    result = shift = 0
    while True:
        byte = data[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, pos
        shift += 7


def fields(data):
    """(field number, value) pairs: ints for varints, bytes for length-delimited fields."""
    pos, out = 0, []
    while pos < len(data):
        key, pos = _varint(data, pos)
        number, wire = key >> 3, key & 7
        if wire == 0:
            value, pos = _varint(data, pos)
        elif wire == 2:
            length, pos = _varint(data, pos)
            value, pos = data[pos:pos + length], pos + length
        elif wire == 1:
            value, pos = data[pos:pos + 8], pos + 8
        elif wire == 5:
            value, pos = data[pos:pos + 4], pos + 4
        else:
            raise ValueError(f"unsupported protobuf wire type {wire}")
        out.append((number, value))
    return out


def _map_entry(raw, text_values=True):
    entry = dict(fields(raw))
    value = entry.get(2, b"")
    return entry.get(1, b"").decode(), value.decode() if text_values else value


def _object_meta(raw):
    meta = {}
    for number, value in fields(raw):
        if number in (1, 2, 3) and value:  # proto2 sends empty strings too: drop them as JSON would
            meta[{1: "name", 2: "generateName", 3: "namespace"}[number]] = value.decode()
        elif number in (11, 12):
            key, text = _map_entry(value)
            meta.setdefault("labels" if number == 11 else "annotations", {})[key] = text
    return meta


def _namespace(parts):
    return {}


def _secret(parts):
    obj = {}
    for number, value in parts:
        if number == 2:
            key, raw = _map_entry(value, text_values=False)
            obj.setdefault("data", {})[key] = base64.b64encode(raw).decode()
        elif number == 3:
            obj["type"] = value.decode()
        elif number == 4:
            key, text = _map_entry(value)
            obj.setdefault("stringData", {})[key] = text
        elif number == 5:
            obj["immutable"] = bool(value)
    return obj


def _configmap(parts):
    obj = {}
    for number, value in parts:
        if number == 2:
            key, text = _map_entry(value)
            obj.setdefault("data", {})[key] = text
        elif number == 3:
            key, raw = _map_entry(value, text_values=False)
            obj.setdefault("binaryData", {})[key] = base64.b64encode(raw).decode()
        elif number == 4:
            obj["immutable"] = bool(value)
    return obj


KINDS = {("v1", "Namespace"): _namespace, ("v1", "Secret"): _secret, ("v1", "ConfigMap"): _configmap}


def decode(body):
    """The JSON-shaped object of a protobuf body, or None for kinds this module does not read."""
    if not body.startswith(MAGIC):
        raise ValueError("missing the k8s protobuf magic prefix")
    unknown = dict(fields(body[len(MAGIC):]))
    type_meta = dict(fields(unknown.get(1, b"")))
    api_version, kind = type_meta.get(1, b"").decode(), type_meta.get(2, b"").decode()
    reader = KINDS.get((api_version, kind))
    if reader is None:
        return None
    parts = fields(unknown.get(2, b""))
    obj = {"apiVersion": api_version, "kind": kind, "metadata": {}}
    for number, value in parts:
        if number == 1:
            obj["metadata"] = _object_meta(value)
    obj.update(reader(parts))
    return obj
