"""Command text sugar: `##comments##`, the `[local](remote)` form and `<name>` placeholders.

Commands are shell text; everything here is done once per model, and a cell only fills a compiled
template, so expanding large grids stays fast.
"""
import re

COMMENT = re.compile(r"##.*?##")          # non-greedy, never crosses a line (YAML blocks cannot hold comments)
# `<name>`: an hparam name (letters, digits, _ . -; not starting with a digit). `<1>`, `< x >`, `<<EOF`
# and `<&3` are shell text, never placeholders.
PLACEHOLDER = re.compile(r"<([A-Za-z_][\w.-]*)>")
# Two python/make invocations on one line with no separator between them is almost always a mistake
# in a folded (>-) YAML block.
_TOOL = re.compile(r"(?:^|(?<=\s))(?:python[0-9.]*|make)(?=\s)")


def hparam_name(key):
    """An hparam's name without its leading underscore: `_lr` and `lr` are the same hparam (the `_` only
    keeps it out of cell names), and `<lr>` and `<_lr>` both name it."""
    return key.lstrip("_") or key


def strip_comments(text):
    return COMMENT.sub("", text)


def _balanced_end(text, start, open_char, close_char):
    """Index just past the bracket that closes text[start] (== open_char), or -1 if unbalanced."""
    depth = 0
    for i in range(start, len(text)):
        if text[i] == open_char:
            depth += 1
        elif text[i] == close_char:
            depth -= 1
            if depth == 0:
                return i + 1
    return -1


def split_local_remote(text):
    """(local, remote) variants of a command with `[local part](remote part)` forms.

    A form is `[` ... `]` with balanced brackets IMMEDIATELY followed by `(` ... `)` with balanced
    parentheses; anything else (`a[0]`, Hydra lists, unclosed brackets) is left alone.
    """
    local, remote, i, n = [], [], 0, len(text)
    while i < n:
        if text[i] == "[":
            close = _balanced_end(text, i, "[", "]")
            if close != -1 and close < n and text[close] == "(":
                end = _balanced_end(text, close, "(", ")")
                if end != -1:
                    local.append(text[i + 1:close - 1])
                    remote.append(text[close + 1:end - 1])
                    i = end
                    continue
        local.append(text[i])
        remote.append(text[i])
        i += 1
    return "".join(local), "".join(remote)


class Template:
    """A text with `<name>` placeholders, compiled once into a format string with positional fields
    (names may hold `.` and `-`, which str.format would read as attribute access) and filled per cell."""

    __slots__ = ("text", "names", "_format", "_order")

    def __init__(self, text):
        self.text = text
        pieces = PLACEHOLDER.split(text)
        self.names = pieces[1::2]  # odd pieces are placeholder names, even pieces literal text
        self._order = list(dict.fromkeys(self.names))
        index = {name: i for i, name in enumerate(self._order)}
        self._format = "".join(p.replace("{", "{{").replace("}", "}}") if i % 2 == 0 else "{%d}" % index[p]
                               for i, p in enumerate(pieces))

    def fill(self, values):
        """Replace known placeholders; unknown ones stay as written."""
        if not self.names:
            return self.text
        return self._format.format(*[values.get(name, f"<{name}>") for name in self._order])

    def unknown(self, known):
        return [n for n in self._order if n not in known]


def fill_values(pairs):
    """Placeholder values of a cell: `<lr>` and `<_lr>` both name hparam `_lr`. A value that itself
    contains placeholders of other hparams is filled too (a few levels, no cycles)."""
    values = {}
    for key, text in pairs:
        values[key] = text
        values[hparam_name(key)] = text
    for key, text in values.items():
        if "<" in text:
            values[key] = _fill_nested(text, values, 5)
    return values


def _fill_nested(text, values, depth):
    if depth == 0 or "<" not in text:
        return text
    filled = PLACEHOLDER.sub(lambda m: values.get(m.group(1)) or m.group(0), text)
    return filled if filled == text else _fill_nested(filled, values, depth - 1)


def fill_any(value, values):
    """Fill placeholders in a settings value: str, list of str, or map of str."""
    if isinstance(value, str):
        return Template(value).fill(values) if "<" in value else value
    if isinstance(value, list):
        return [fill_any(v, values) for v in value]
    if isinstance(value, dict):
        return {k: fill_any(v, values) for k, v in value.items()}
    return value


def contains_placeholder(value):
    if isinstance(value, str):
        return bool(PLACEHOLDER.search(value))
    if isinstance(value, list):
        return any(contains_placeholder(v) for v in value)
    if isinstance(value, dict):
        return any(contains_placeholder(v) for v in value.values())
    return False


def missing_separator(text):
    """A line invoking python/make twice with no ; & | between them (likely a forgotten separator)."""
    for line in text.splitlines():
        hits = list(_TOOL.finditer(line))
        for first, second in zip(hits, hits[1:]):
            between = line[first.end():second.start()]
            if not any(sep in between for sep in (";", "&", "|", "(", "$", "`")):
                return line.strip()
    return None
