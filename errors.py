"""One error hierarchy and one formatter for everything users see.

Shape of every message (see DESIGN.md):
    error: <where>: <what>
        <detail lines: valid choices, offending text, last lines of output>
    hint: <optional hint>
Only launch.py prints errors and chooses exit codes; modules raise.
"""
import difflib
import logging
import os
import sys

EXIT_FAILED = 1       # some cells / transfers / submissions failed
EXIT_USAGE = 2        # usage or config error: nothing was started
EXIT_INTERRUPTED = 130


class ToolboxError(Exception):
    """A user-facing failure: no traceback, one clear message."""

    exit_code = EXIT_FAILED

    def __init__(self, where, what, details=(), hint=None):
        super().__init__(f"{where}: {what}" if where else what)
        self.where = where
        self.what = what
        self.details = list(details)
        self.hint = hint

    def format(self):
        head = f"error: {self.where}: {self.what}" if self.where else f"error: {self.what}"
        lines = [head] + [f"    {d}" for d in self.details]
        if self.hint:
            lines.append(f"hint: {self.hint}")
        return "\n".join(lines)


class UsageError(ToolboxError):
    """Bad command-line input (make variables, arguments): nothing was started."""

    exit_code = EXIT_USAGE


class Problem:
    """One configuration problem, located in a file."""

    __slots__ = ("file", "line", "col", "path", "what", "details")

    def __init__(self, file, line, col, path, what, details=()):
        self.file, self.line, self.col = file, line, col
        self.path = path          # dotted key path, e.g. "model.average.gpu_count"
        self.what = what
        self.details = list(details)

    @property
    def where(self):
        loc = self.file or "<config>"
        if self.line:
            loc += f":{self.line}" + (f":{self.col}" if self.col else "")
        return loc

    def format(self):
        head = f"error: {self.where}: " + (f"{self.path}: " if self.path else "") + self.what
        return "\n".join([head] + [f"    {d}" for d in self.details])

    def __repr__(self):
        return f"Problem({self.format()!r})"


class ConfigError(ToolboxError):
    """Every problem found in the configuration, reported at once."""

    exit_code = EXIT_USAGE

    def __init__(self, problems):
        self.problems = list(problems)
        count = len(self.problems)
        super().__init__("", f"{count} problem{'s' if count != 1 else ''} in the configuration")

    def format(self):
        parts = [p.format() for p in self.problems]
        n = len(self.problems)
        parts.append(f"{n} configuration problem{'s' if n != 1 else ''}; nothing was run.")
        return "\n".join(parts)


class CommandError(ToolboxError):
    """An external action failed (a subprocess, an API call, a transfer)."""


class KubeError(CommandError):
    """An API call the server refused: `error: job/NAME: Forbidden: <the server's message>`."""

    def __init__(self, where, code, reason, message, status=None, hint=None):
        super().__init__(where, f"{reason}: {message}" if message else reason, hint=hint)
        self.code, self.reason, self.message, self.status = code, reason, message, status or {}


class Unreachable(CommandError):
    """The API server did not answer (wrong address, VPN down, cluster down)."""


class S3Error(ToolboxError):
    """The one exception of the S3 API (`from toolbox.s3utils import S3Error`): bad pattern, missing
    setting, S3 error or failed transfers. `result` carries the partial result (a `Transferred`) when
    some transfers failed."""

    def __init__(self, where, what, details=(), hint=None, result=None):
        super().__init__(where, what, details, hint)
        self.result = result


class S3UsageError(S3Error, UsageError):
    """A bad S3 path, option or setting: nothing was transferred (exit code 2)."""


def did_you_mean(word, choices, n=1):
    """A 'did you mean ...?' detail line for a typo, or None."""
    close = difflib.get_close_matches(str(word), [str(c) for c in choices], n=n, cutoff=0.6)
    if not close:
        return None
    return "did you mean " + " or ".join(f"'{c}'" for c in close) + "?"


def describe(value):
    """A short description of a YAML value for messages: "8.5 (a number)"."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return f"{str(value).lower()} (a boolean)"
    if isinstance(value, (int, float)):
        return f"{value} (a number)"
    if isinstance(value, str):
        return f"{value!r} (a string)"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "a map"
    return type(value).__name__  # pragma: no cover


def choices_line(choices, limit=12):
    """A detail line listing valid choices (shortened when long)."""
    items = sorted(str(c) for c in choices)
    shown = ", ".join(items[:limit]) + (", ..." if len(items) > limit else "")
    return f"valid: {shown}" if items else "valid: (none defined)"


def full_tracebacks():
    """TOOLBOX_FULL_ERROR=1 shows Python tracebacks for debugging."""
    return os.environ.get("TOOLBOX_FULL_ERROR", "") not in ("", "0", "false")


class _StderrHandler(logging.Handler):
    """Writes to the sys.stderr of the moment (a test's capture, a redirected stream), flushed."""

    def emit(self, record):
        try:
            sys.stderr.write(f"warning: {record.getMessage()}\n")
            sys.stderr.flush()
        except (OSError, ValueError):
            pass


LOG = logging.getLogger("toolbox")
LOG.addHandler(_StderrHandler())
LOG.propagate = False
LOG.setLevel(logging.WARNING)


def warn(message):
    """The one way to warn: `warning: <message>` on stderr (something odd that does not stop the command)."""
    LOG.warning("%s", message)
