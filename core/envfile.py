"""The one .env parser (python-dotenv) for every mode: make recipes, local runs, pods.

Values survive exactly: spaces, quotes, `#` inside quotes and `$` (no interpolation).
"""
import functools
import os

from toolbox.errors import UsageError

ENV_FILE = ".env"
# Values shorter than this are not scrubbed from output (e.g. "1", "true"): they are not secrets
# and scrubbing them would garble unrelated text.
MIN_SECRET_LENGTH = 4
# Settings that are not secret and that error messages need (`error: s3://<bucket>/data/: ...`).
# Every other .env value is treated as a secret.
PUBLIC_SETTINGS = frozenset({
    "S3_BUCKET_NAME", "S3_ENDPOINT_URL", "S3_BACKEND", "S3_WORKERS", "S3_PART_SIZE_MB", "AWS_REGION",
    "AWS_DEFAULT_REGION", "S3_API_PORT", "S3_API_TOKEN_FILE", "S3_REGIONS", "S3_REGION", "S3_REGION_SELECT",
    "WANDB_MODE", "WANDB_PROJECT", "WANDB_ENTITY", "PYTHONPATH", "CUDA_VISIBLE_DEVICES"})
PUBLIC_PREFIXES = ("S3_ENDPOINT_URL_", "S3_BUCKET_NAME_")    # the regional variants


def read_env(path=ENV_FILE):
    """The key/value pairs of a .env file ({} when it does not exist). Keys without a value are skipped."""
    if not os.path.isfile(path):
        return {}
    stat = os.stat(path)
    return dict(_parse(os.path.abspath(path), stat.st_mtime_ns, stat.st_size))


@functools.lru_cache(maxsize=8)
def _parse(path, mtime_ns, size):
    """Parsed once per version of the file (several parts of one command read it)."""
    from dotenv import dotenv_values

    try:
        values = dotenv_values(path, interpolate=False, encoding="utf-8")
    except UnicodeDecodeError as err:
        raise UsageError(ENV_FILE, f"not UTF-8 text (byte {err.start})", hint="save .env as UTF-8") from None
    return tuple((k, v) for k, v in values.items() if v is not None and k)


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
