"""Reading YAML with the location of every key and value, so that every problem can point at file:line:col.

Duplicate keys, YAML tags and syntax errors become located Problems instead of silent surprises.
"""
import yaml
from toolbox.core import fields
from toolbox.errors import Problem

_MERGE_TAG = "tag:yaml.org,2002:merge"
_NULL_TAG = "tag:yaml.org,2002:null"
_Loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
_constructor = yaml.constructor.SafeConstructor()


class Source:
    """A parsed YAML file: plain data plus where each key and value is (1-based line, column)."""

    def __init__(self, file):
        self.file = file
        self.data = None
        self.marks = {}       # path tuple -> (line, col) of the value
        self.key_marks = {}   # path tuple -> (line, col) of the key
        self.texts = {}       # path tuple -> scalar text as written (1e-5, true, 0.10)

    def locate(self, path, key=False):
        """(line, col) of a key or value; falls back to the closest enclosing node."""
        path = tuple(path)
        while path:
            found = (self.key_marks if key else self.marks).get(path) or self.marks.get(path)
            if found:
                return found
            path = path[:-1]
        return self.marks.get((), (1, 1))

    def text(self, path, value):
        """The scalar as the user wrote it ('' for null)."""
        if value is None:
            return ""
        return self.texts.get(tuple(path), fields.yaml_text(value))


def _mark(node):
    return (node.start_mark.line + 1, node.start_mark.column + 1)


# Anchors and aliases are kept (real configs share blocks with `<<: *defaults`), but an alias copies its
# anchor's whole tree: a few lines can expand to billions of values ("billion laughs"), or to themselves.
MAX_ALIAS_VALUES = 100_000   # values made by expanding aliases, in one file
MAX_DEPTH = 100              # nesting of maps and lists, aliases included


class _Refused(Exception):
    """Building stops: the problem is already recorded."""


class _Builder:
    """YAML nodes -> plain data, recording where every key and value is."""

    def __init__(self, src, problems):
        self.src, self.problems = src, problems
        self.built = set()     # ids of nodes built once: building one again is an alias expansion
        self.active = set()    # ids of the nodes being built (a node inside itself: a recursive alias)
        self.expanded = 0

    def refuse(self, node, path, what, details=()):
        line, col = _mark(node)
        self.problems.append(Problem(self.src.file, line, col, dotted(path), what, list(details)))
        raise _Refused()

    def build(self, node, path):
        key = id(node)
        if key in self.active:
            self.refuse(node, path, "an alias refers to the anchor it is inside of (a recursive alias)",
                        ["aliases (*name) may only repeat a block defined before and outside of them"])
        if len(path) > MAX_DEPTH:
            self.refuse(node, path, f"nested more than {MAX_DEPTH} levels deep (aliases included)")
        if key in self.built:
            self.expanded += 1
            if self.expanded > MAX_ALIAS_VALUES:
                self.refuse(node, path, f"aliases expand to more than {MAX_ALIAS_VALUES:,} values",
                            ["an alias copies its anchor's whole block; aliases of aliases multiply"])
        self.built.add(key)
        self.src.marks[path] = _mark(node)
        if isinstance(node, yaml.ScalarNode):
            return self.scalar(node, path)
        self.active.add(key)
        try:
            if isinstance(node, yaml.SequenceNode):
                return [self.build(child, path + (i,)) for i, child in enumerate(node.value)]
            return self.mapping(node, path)
        finally:
            self.active.discard(key)

    def scalar(self, node, path):
        self.src.texts[path] = "" if node.tag == _NULL_TAG else node.value
        try:
            value = _constructor.construct_object(node)
        except (yaml.YAMLError, ValueError, TypeError) as err:   # e.g. `!foo x`, `!!int abc`
            line, col = _mark(node)
            reason = getattr(err, "problem", None) or str(err)
            self.problems.append(Problem(self.src.file, line, col, dotted(path), f"cannot read this value: {reason}",
                                         ["write plain values; YAML tags (!name) are not supported"]))
            return None
        if isinstance(value, str) and "\x00" in value:   # "\0" in a double-quoted string
            line, col = _mark(node)
            self.problems.append(Problem(self.src.file, line, col, dotted(path), "contains a NUL character (\\0): "
                                         "no command, argument or variable can hold it"))
        return value

    def mapping(self, node, path):
        src, problems = self.src, self.problems
        result, merges = {}, []
        for key_node, value_node in node.value:
            if key_node.tag == _MERGE_TAG:
                merges.append(value_node)
                continue
            if not isinstance(key_node, yaml.ScalarNode):
                line, col = _mark(key_node)
                problems.append(Problem(src.file, line, col, dotted(path),
                                        "keys must be plain words, not lists or maps"))
                continue
            key = key_node.value
            if key in result:
                line, col = _mark(key_node)
                problems.append(Problem(src.file, line, col, dotted(path + (key,)),
                                        "duplicate key (YAML would silently keep only the last one)"))
            src.key_marks[path + (key,)] = _mark(key_node)
            result[key] = self.build(value_node, path + (key,))
        for merge in merges:  # `<<: *anchor`: explicit keys win over merged ones
            for sub in (merge.value if isinstance(merge, yaml.SequenceNode) else [merge]):
                if isinstance(sub, yaml.MappingNode):
                    for key, value in self.build(sub, path).items():
                        result.setdefault(key, value)
        return result


def load_yaml(file, problems):
    """Parse one YAML file into a Source; syntax errors become located problems (None returned)."""
    src = Source(file)
    try:
        with open(file, encoding="utf-8") as handle:
            text = handle.read()
        node = yaml.compose(text, Loader=_Loader)
    except yaml.MarkedYAMLError as err:
        problems.append(_syntax_problem(file, text, err))
        return None
    except yaml.reader.ReaderError as err:   # a NUL or another control character
        problems.append(_character_problem(file, text, err))
        return None
    except UnicodeDecodeError as err:
        problems.append(Problem(file, None, None, "", f"not UTF-8 text: {err.reason}"))
        return None
    try:
        src.data = {} if node is None else _Builder(src, problems).build(node, ())
    except _Refused:
        return None
    if not isinstance(src.data, dict):
        problems.append(Problem(file, 1, 1, "", "the file must be a map of keys (key: value)"))
        return None
    return src


def _character_problem(file, text, err):
    """A character YAML does not allow, at its line and column (the character's code, not itself)."""
    before = text[:err.position]
    line = before.count("\n") + 1
    col = err.position - (before.rfind("\n") + 1) + 1
    char = err.character if isinstance(err.character, int) else ord(str(err.character)[:1] or "?")
    return Problem(file, line, col, "", f"the character U+{char:04X} is not allowed in YAML",
                   ["remove it (often pasted from a terminal or another program by mistake)"])


def _syntax_problem(file, text, err):
    """A YAML syntax error with the offending line and a caret (and where the construct began)."""
    mark = err.problem_mark or err.context_mark
    line, col = (mark.line + 1, mark.column + 1) if mark else (None, None)
    details = []
    ctx = err.context_mark
    if err.context and ctx and (ctx.line + 1, ctx.column + 1) != (line, col):
        details.append(f"{err.context} that starts at line {ctx.line + 1}, column {ctx.column + 1}:")
        details.append(_source_line(text, ctx.line + 1, ctx.column + 1))
    if line:
        details.append(_source_line(text, line, col))
    return Problem(file, line, col, "", f"invalid YAML: {err.problem or err.context}", [d for d in details if d])


def _source_line(text, line, col):
    lines = text.splitlines()
    if not line or line > len(lines):
        return ""
    return f"{lines[line - 1]}\n    {' ' * (col - 1)}^"


def dotted(path):
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out
