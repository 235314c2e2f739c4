"""Label and field selectors with the real API's grammar and matching rules.

Label selector forms: `a=b`, `a==b`, `a!=b`, `a in (x,y)`, `a notin (x)`, `a`, `!a`, comma-joined (commas
inside parentheses belong to the set). `a!=b` and `a notin (...)` also match objects without the label,
as in the real API.
"""
import re

from .status import bad_request

_REQ_RE = re.compile(r"""^\s*(?:
      (?P<not>!)\s*(?P<nkey>[^\s!=(),]+)
    | (?P<key>[^\s!=(),]+)\s*(?:
          (?P<op>==|!=|=)\s*(?P<value>[^\s,()]*)
        | \s(?P<setop>in|notin)\s*\((?P<values>[^()]*)\)
      )?
  )\s*$""", re.VERBOSE)


def _split_top_level(text):
    """Split on commas that are not inside parentheses."""
    parts, depth, current = [], 0, []
    for char in text:
        if char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
        if char == "," and depth == 0:
            parts.append("".join(current))
            current = []
        else:
            current.append(char)
    parts.append("".join(current))
    return parts


def parse_labels(selector):
    """A list of (key, op, values) with op in exists, !exists, in, notin; raises 400 when malformed."""
    if not selector or not selector.strip():
        return []
    requirements = []
    for part in _split_top_level(selector):
        match = _REQ_RE.match(part)
        if not match:
            raise bad_request(f"unable to parse requirement: found '{part.strip()}', expected: "
                              "',', '!=', '==', '=', 'in', 'notin'")
        if match["not"]:
            requirements.append((match["nkey"], "!exists", ()))
        elif match["op"]:
            op = "notin" if match["op"] == "!=" else "in"
            requirements.append((match["key"], op, (match["value"],)))
        elif match["setop"]:
            values = tuple(v.strip() for v in match["values"].split(",") if v.strip())
            requirements.append((match["key"], match["setop"], values))
        else:
            requirements.append((match["key"], "exists", ()))
    return requirements


def labels_match(requirements, labels):
    labels = labels or {}
    for key, op, values in requirements:
        present = key in labels
        if op == "exists" and not present:
            return False
        if op == "!exists" and present:
            return False
        if op == "in" and (not present or labels[key] not in values):
            return False
        if op == "notin" and present and labels[key] in values:
            return False
    return True


def parse_fields(selector, res):
    """A list of (path, negate, value) for the field selector; unknown fields are a 400 like the real API."""
    if not selector or not selector.strip():
        return []
    allowed = ("metadata.name", "metadata.namespace") + res.field_selectors
    requirements = []
    for part in selector.split(","):
        match = re.match(r"^\s*([^!=\s]+)\s*(==|!=|=)\s*(.*?)\s*$", part)
        if not match:
            raise bad_request(f'invalid selector: \'{selector}\'; can\'t understand \'{part}\'')
        path, op, value = match.groups()
        if path not in allowed:
            raise bad_request(f'field label not supported: {path}')
        requirements.append((path, op == "!=", value))
    return requirements


# Field selector names that differ from the JSON path they filter on.
_FIELD_PATHS = {"status.successful": "status.succeeded"}


def _field_value(obj, path):
    path = _FIELD_PATHS.get(path, path)
    value = obj
    for key in path.split("."):
        value = value.get(key) if isinstance(value, dict) else None
    if isinstance(value, bool):
        return "true" if value else "false"
    return "" if value is None else str(value)


def fields_match(requirements, obj):
    for path, negate, value in requirements:
        if (_field_value(obj, path) == value) == negate:
            return False
    return True


class Selector:
    """Label and field selectors of one request, parsed once."""

    def __init__(self, res, label_selector=None, field_selector=None):
        self.labels = parse_labels(label_selector)
        self.fields = parse_fields(field_selector, res)

    def matches(self, obj):
        meta = obj.get("metadata", {})
        return labels_match(self.labels, meta.get("labels")) and fields_match(self.fields, obj)
