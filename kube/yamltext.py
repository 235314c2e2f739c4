"""YAML text the templates write (their filters): any string as a double-quoted scalar (`q`), small
collections as one-line flow collections (`json`), nested ones as block YAML (`yaml`). Each escapes a
string the same way (JSON escapes, plus what YAML treats as line breaks or non-printable), so no value
can break out of its place in a manifest, and a cell's value can be substituted into rendered text.
"""
import json
import re

_YAML_UNSAFE = re.compile("[\x7f-\x9f\u2028\u2029\ufeff\ufffe\uffff\ud800-\udfff]")
_encode_string = json.encoder.encode_basestring  # the C encoder, non-ASCII kept
_encoder = json.JSONEncoder(ensure_ascii=False)
_QUOTED = {}


def q(value):
    """Any text as a double-quoted YAML scalar (JSON escapes, plus what YAML treats as line breaks or
    non-printable), so no value can break out of its place in the manifest."""
    value = str(value)
    if len(value) > 256:  # long texts (the start-up script) repeat across cells: quote them once
        found = _QUOTED.get(value)
        if found is None:
            found = _QUOTED[value] = _YAML_UNSAFE.sub(_escape_char, _encode_string(value))
        return found
    text = _encode_string(value)
    return _YAML_UNSAFE.sub(_escape_char, text) if _YAML_UNSAFE.search(text) else text


def _escape_char(match):
    return "\\u%04x" % ord(match.group())


def flow(value):
    """A small dict/list as a one-line YAML flow collection (JSON, escaped like q)."""
    text = _encoder.encode(value)
    return _YAML_UNSAFE.sub(_escape_char, text) if _YAML_UNSAFE.search(text) else text


# -- block YAML (the `yaml` filter, and manifests that pod_config changed) --------------------------------
_PLAIN_KEY = re.compile(r"^[A-Za-z][A-Za-z0-9]*$")
_YAML_WORDS = {"y", "n", "yes", "no", "on", "off", "true", "false", "null"}


def block(value, indent=0):
    """A dict as block YAML in the templates' style: maps of scalars, lists of scalars and list items
    without lists inside on one line (flow); every string double-quoted like q."""
    return "\n".join(_map_lines(value, indent))


def _float_text(value):
    """A float as YAML 1.1 reads it back as a float (1e-09 alone would be a string: 1.0e-09)."""
    if value != value or value in (float("inf"), float("-inf")):
        return ".nan" if value != value else (".inf" if value > 0 else "-.inf")
    text = repr(value)
    mantissa, e, exponent = text.partition("e")
    return f"{mantissa}.0e{exponent}" if e and "." not in mantissa else text


def _inline(value):
    if isinstance(value, (dict, list)):
        return flow(value)
    if isinstance(value, float):
        return _float_text(value)
    if value is None or isinstance(value, (bool, int)):
        return _encoder.encode(value)
    return q(value)


def _flat(values):
    """Scalars that a flow collection (JSON) writes as YAML reads them: no collections, no floats."""
    return all(not isinstance(v, (dict, list, float)) for v in values)


def _flat_map(mapping):
    return all(isinstance(k, str) for k in mapping) and _flat(mapping.values())


def _one_line(item):
    """A list item that reads well on one line: a map (string keys) of flat values, flat lists and maps
    like itself."""
    if isinstance(item, dict):
        return all(isinstance(k, str) for k in item) and all(_one_line(v) for v in item.values())
    return _flat([item]) or (isinstance(item, list) and _flat(item))


def _key(key):
    if not isinstance(key, str):
        return _inline(key)
    return key if _PLAIN_KEY.fullmatch(key) and key.lower() not in _YAML_WORDS else q(key)


def _map_lines(mapping, indent):
    pad, lines = " " * indent, []
    for key, value in mapping.items():
        if isinstance(value, dict) and value and not _flat_map(value):
            lines += [f"{pad}{_key(key)}:"] + _map_lines(value, indent + 2)
        elif isinstance(value, list) and value and not _flat(value):
            lines += [f"{pad}{_key(key)}:"] + _list_lines(value, indent + 2)
        else:
            lines.append(f"{pad}{_key(key)}: {_inline(value)}")
    return lines


def _list_lines(items, indent):
    pad, lines = " " * indent, []
    for item in items:
        if isinstance(item, dict) and item and not _one_line(item):
            inner = _map_lines(item, indent + 2)
        elif isinstance(item, list) and item and not _flat(item):
            inner = _list_lines(item, indent + 2)
        else:
            lines.append(f"{pad}- {_inline(item)}")
            continue
        lines += [f"{pad}- {inner[0].lstrip()}"] + inner[1:]
    return lines


def yaml_escape(value):
    """A value as it appears inside a double-quoted scalar written by q (or flow)."""
    return q(value)[1:-1]


def json_escape(value):
    """A value as it appears inside a JSON string."""
    return _encode_string(value)[1:-1]
