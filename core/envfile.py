"""The one .env parser (python-dotenv) for every mode: make recipes, local runs, pods.

Values survive exactly: spaces, quotes, `#` inside quotes and `$` (no interpolation).
"""
import functools
import io
import os
import re

from toolbox.core.files import not_a_file
from toolbox.errors import ConfigError, Problem, UsageError, warn

ENV_FILE = ".env"
# Values shorter than this are not scrubbed from output (e.g. "1", "true"): they are not secrets
# and scrubbing them would garble unrelated text.
MIN_SECRET_LENGTH = 4
# Settings that are not secret and that error messages need (`error: s3://<bucket>/data/: ...`).
# Every other .env value is treated as a secret.
PUBLIC_SETTINGS = frozenset({
    "S3_BUCKET_NAME", "S3_ENDPOINT_URL", "S3_BACKEND", "S3_WORKERS", "S3_PART_SIZE_MB", "S3_RETRY_SECONDS",
    "S3_FLUSH_SECONDS", "AWS_REGION",
    "AWS_DEFAULT_REGION", "S3_API_PORT", "S3_API_TOKEN_FILE", "S3_REGIONS", "S3_REGION", "S3_REGION_SELECT",
    "WANDB_MODE", "WANDB_PROJECT", "WANDB_ENTITY", "PYTHONPATH", "CUDA_VISIBLE_DEVICES"})
PUBLIC_PREFIXES = ("S3_ENDPOINT_URL_", "S3_BUCKET_NAME_")    # the regional variants


# What a variable name may be here: letters, digits, _ . - (not starting with a digit). Anything else on
# the left of `=` is a line of something else, typically the inside of an unquoted multi-line value.
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_.-]*$")
_QUOTED = re.compile(r"""^\s*(?:export\s+)?[^=]*=\s*['"]""")
_NOT_SHOWN = "(its text is not shown: it may be part of a secret)"


def read_env(path=ENV_FILE):
    """The key/value pairs of a .env file ({} when it does not exist). Keys without a value are skipped.
    A .env that is not a file (a folder, a FIFO, a dangling link) or holds lines that are not NAME=value
    (an unquoted multi-line value, a NUL) is a ConfigError that never quotes the file's text."""
    if not os.path.lexists(path):
        return {}
    wrong = not_a_file(path)
    if wrong:
        raise UsageError(ENV_FILE, wrong, hint="the .env file holds NAME=value lines (see docs/quickstart.md)")
    stat = os.stat(path)
    return dict(_parse(os.path.abspath(path), stat.st_mtime_ns, stat.st_size))


@functools.lru_cache(maxsize=8)
def _parse(path, mtime_ns, size):
    """Parsed once per version of the file (several parts of one command read it)."""
    from dotenv.parser import parse_stream

    try:
        with open(path, encoding="utf-8") as handle:
            text = handle.read()
    except UnicodeDecodeError as err:
        raise UsageError(ENV_FILE, f"not UTF-8 text (byte {err.start})", hint="save .env as UTF-8") from None
    values, problems = {}, []
    unquoted = None          # (key, line) of the last unquoted value: a multi-line value starts like one
    pem = False              # inside the lines of an unquoted `-----BEGIN ...` value
    for binding in parse_stream(io.StringIO(text)):
        line, raw = binding.original.line, binding.original.string
        if pem:
            pem = "-----END" not in raw
            continue
        if binding.key is None:
            if binding.error:
                warn(f"{ENV_FILE}:{line}: not a NAME=value line; ignored {_NOT_SHOWN}")
            continue
        key, value = binding.key, binding.value
        if value is not None and value.startswith("-----BEGIN") and "-----END" not in value and not _QUOTED.match(raw):
            problems.append(Problem(ENV_FILE, line, None, key, "a multi-line value (a private key?) without quotes",
                                    ["only its first line would be read, the next ones as variables"]))
            pem = True
            continue
        if not _NAME.match(key) or (value and not value.strip("=")):
            after = [f"if it continues the value of {unquoted[0]} (line {unquoted[1]}), quote that value"] \
                if unquoted else []
            problems.append(Problem(ENV_FILE, line, None, "", f"not a NAME=value line {_NOT_SHOWN}", after))
            continue
        if value is None:
            continue
        if "\x00" in key or "\x00" in value:
            problems.append(Problem(ENV_FILE, line, None, key, "contains a NUL character, which no environment "
                                    "variable can hold"))
            continue
        unquoted = None if _QUOTED.match(raw) else (key, line)
        values[key] = value
    if problems:
        problems[-1].details.append('quote multi-line values: KEY="<first line> ... <last line>" (the lines '
                                    'in between stay as they are)')
        raise ConfigError(problems)
    return tuple(values.items())


def load_into_environ(values, environ=None):
    """Put .env values into the process environment. Variables already set win (dotenv's rule), so
    `S3_BUCKET_NAME=other make download` overrides .env for one command."""
    environ = os.environ if environ is None else environ
    for key, value in values.items():
        environ.setdefault(key, value)


def secret_values(env):
    """The .env values that must never appear in output (all but the PUBLIC_SETTINGS)."""
    values = {v for k, v in env.items()
              if k not in PUBLIC_SETTINGS and not k.startswith(PUBLIC_PREFIXES) and len(v) >= MIN_SECRET_LENGTH}
    return sorted(values, key=len, reverse=True)


def redact(text, secrets):
    """Replace every secret value in text by '***'."""
    for value in secrets:
        if value in text:
            text = text.replace(value, "***")
    return text
