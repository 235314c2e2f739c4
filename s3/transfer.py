"""How every S3 operation works: parse the pattern (paths.py), list both sides, plan explicit transfers,
then hand the plan to the backend (s5cmd or boto3). Settings come from the environment on first use.
"""
from __future__ import annotations

import os
import signal
import threading
import time
from contextlib import contextmanager
from typing import Dict, List

from toolbox.core.console import Progress, human_bytes
from toolbox.errors import S3Error, S3UsageError, did_you_mean
from toolbox.s3.localfiles import delete_local_files, find_local, leftovers_in, same_content, sweep_leftovers
from toolbox.s3.paths import (Pattern, Plan, RemoteObject, local_path_for, parse, plan_download, plan_upload,
                              whole_prefix)
from toolbox.s3.settings import load_settings

DIRECTIONS = {"up": "up", "upload": "up", "down": "down", "download": "down"}
MAX_DETAIL_LINES = 10
# Temporary files older than this process and not held by a live one are leftovers of a killed run.
RUN_STARTED = time.time()


class Transferred(list):
    """The keys transferred (sorted). Attributes: skipped (keys found unchanged), failed ({key: reason}),
    deleted (sync delete=true: keys or local paths removed), nbytes, seconds, backend, direction."""

    def __init__(self, keys=(), direction="", backend="", skipped=(), failed=None, deleted=(), nbytes=0,
                 seconds=0.0):
        super().__init__(sorted(keys))
        self.direction, self.backend = direction, backend
        self.skipped, self.failed, self.deleted = list(skipped), dict(failed or {}), list(deleted)
        self.nbytes, self.seconds = nbytes, seconds

    def summary(self, verb):
        text = (f"{verb}: {len(self)} transferred, {len(self.skipped)} skipped, {len(self.failed)} failed, "
                f"{human_bytes(self.nbytes)} in {self.seconds:.1f}s ({self.backend})")
        if self.deleted:
            text += f"; {len(self.deleted)} extraneous deleted"
        return text


# ------------------------------------------------------------------ settings and backend (lazy)
_backends = {}
_backends_lock = threading.Lock()
_CREDENTIAL_VARS = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE")


def get_backend():
    """The backend for the current environment; made on first use and reused while settings stay the same."""
    settings = load_settings()
    cache_key = (settings,) + tuple(os.environ.get(v, "") for v in _CREDENTIAL_VARS)
    with _backends_lock:
        backend = _backends.get(cache_key)
        if backend is None:
            # import only the chosen backend: a user script that downloads with s5cmd never loads boto3's
            # transfer manager
            if settings.backend == "s5cmd":
                from toolbox.s3.backends.s5cmd import S5cmdBackend as cls
            else:
                from toolbox.s3.backends.boto import Boto3Backend as cls
            backend = _backends[cache_key] = cls(settings)
    return backend


# ------------------------------------------------------------------ finding both sides
def find_remote(backend, pattern: Pattern) -> List[RemoteObject]:
    """The objects a pattern selects (s3path rules), with as few LIST requests as the pattern allows."""
    if pattern.has_wildcards or pattern.folder_only or pattern.is_root:
        objects, _ = backend.list_objects(pattern.literal_prefix)
    else:
        # `data`: the object `data` and the folder `data/`, without paging through siblings like data2/
        under, _ = backend.list_objects(pattern.body + "/")
        level, _ = backend.list_objects(pattern.body, delimiter="/")
        objects = [o for o in level if o.key == pattern.body] + under
    return sorted((o for o in objects if pattern.matches(o.key)), key=lambda o: o.key)


# ------------------------------------------------------------------ plan, then execute
def plan_transfer(backend, path, direction, local_path=".", overwrite=False, checksum=False,
                  delete=False) -> Plan:
    """Everything decided before the first byte moves: which keys, where, and which are unchanged.
    Temporary files that a killed run left in the folders looked at are swept on the way."""
    direction = _direction(direction)
    pattern = parse(path, root=local_path)
    remote = find_remote(backend, pattern)
    leftovers = []
    local = find_local(pattern, local_path, leftovers)
    if direction == "down" and not (pattern.has_wildcards or pattern.folder_only or pattern.is_root):
        leftovers += leftovers_in(os.path.dirname(local_path_for(pattern.body, local_path)))
    sweep_leftovers(leftovers, RUN_STARTED)
    check = None
    if checksum:
        parts = (backend.settings.part_size,)
        def check(local_file, obj):
            return same_content(local_file, obj, parts)
    if direction == "up":
        if not local:
            raise nothing_local(pattern, local_path)
        plan = plan_upload(local, remote, overwrite, check, delete)
        # a key whose local source exists (a file the walk did not select: unreadable, special, behind
        # a skipped link) is never deleted as "extraneous"
        plan.extraneous = [k for k in plan.extraneous if not os.path.lexists(local_path_for(k, local_path))]
    else:
        if not remote:
            raise nothing_remote(backend, pattern)
        plan = plan_download(remote, local, local_path, overwrite, check, delete)
        plan.whole_prefix = whole_prefix(pattern, plan)
    plan.pattern = pattern
    return plan


def run_plan(backend, plan: Plan, where=None, progress=True, delete_extraneous=True) -> Transferred:
    """Execute a plan; raise S3Error (with .result) if any transfer failed."""
    started = time.monotonic()
    where = where or backend.settings.url(plan.pattern.text if plan.pattern else "")
    label = "upload" if plan.direction == "up" else "download"
    bar = Progress(label, len(plan.transfers), plan.total_bytes) if progress else Silent()
    try:
        with sigterm_unwinds():
            failed = _execute(backend, plan, bar)
    finally:
        bar.close()
    failed.update(plan.problems)
    deleted = []
    if delete_extraneous and plan.extraneous:
        if plan.direction == "up":
            refused = backend.delete(plan.extraneous)
            failed.update(refused)
            deleted = [k for k in plan.extraneous if k not in refused]
        else:
            deleted = delete_local_files(plan.extraneous, plan.local_root)
    done = [t.key for t in plan.transfers if t.key not in failed]
    nbytes = sum(t.size for t in plan.transfers if t.key not in failed)
    result = Transferred(done, plan.direction, backend.describe(), plan.skipped, failed, deleted, nbytes,
                         time.monotonic() - started)
    if failed:
        total = len(plan.transfers) + len(plan.problems)
        what = f"{len(failed) - len(refused_deletes(plan, failed))} of {total} transfers failed"
        if refused_deletes(plan, failed):
            what += f"; {len(refused_deletes(plan, failed))} extraneous objects could not be deleted"
        raise failure(where, what, failed, result, backend)
    return result


def _execute(backend, plan, bar) -> Dict[str, str]:
    if not plan.transfers:
        return {}
    if plan.direction == "up":
        return backend.upload(plan.transfers, bar)
    return backend.download(plan.transfers, bar, whole_prefix=plan.whole_prefix, local_root=plan.local_root)


class Terminated(BaseException):
    """SIGTERM during a transfer: unwinds the stack like Ctrl-C, so that temporary files are removed."""


@contextmanager
def sigterm_unwinds():
    """While a transfer runs in the main thread of a process that would simply die of SIGTERM (a
    `kill`, a timeout, a pod being deleted), SIGTERM unwinds the transfer first (its temporary files
    and staging folders are removed, s5cmd is stopped), then the process dies of SIGTERM as it would
    have. Processes with their own SIGTERM handler (the monitor, the API server) keep it."""
    if (threading.current_thread() is not threading.main_thread()
            or signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL):
        yield
        return

    def unwind(signum, frame):
        raise Terminated()

    signal.signal(signal.SIGTERM, unwind)
    try:
        yield
    except Terminated:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        os.kill(os.getpid(), signal.SIGTERM)
        raise SystemExit(128 + signal.SIGTERM) from None      # if the signal is not delivered at once
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)


def refused_deletes(plan, failed):
    return [k for k in plan.extraneous if k in failed] if plan.direction == "up" else []


def failure(where, what, failed: Dict[str, str], result=None, backend=None):
    details = [f"{key}: {reason}" for key, reason in sorted(failed.items())[:MAX_DETAIL_LINES]]
    if len(failed) > MAX_DETAIL_LINES:
        details.append(f"... and {len(failed) - MAX_DETAIL_LINES} more")
    hint = None
    denied = any(word in reason for reason in failed.values() for word in ("Forbidden", "AccessDenied", "403"))
    if denied and backend is not None and backend.anonymous:
        hint = "no AWS keys are set, so requests are anonymous: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY"
    return S3Error(where, what, details, hint=hint, result=result)


class Silent:
    def advance(self, count=1, nbytes=0):
        pass

    def close(self):
        pass


def _direction(direction):
    found = DIRECTIONS.get(str(direction or "").strip().lower())
    if found is None:
        raise S3UsageError(f"direction={direction}", "expected up or down")
    return found


def nothing_remote(backend, pattern):
    where = backend.settings.url(pattern.text)
    return S3Error(where, "no object matches", _suggest(backend, pattern))


def nothing_local(pattern, local_path):
    where = local_path_for(pattern.text, local_path) if pattern.text else local_path
    return S3Error(where, "no local file matches")


def _suggest(backend, pattern):
    """A 'did you mean' line from the names next to the literal part of the pattern (one LIST)."""
    parent, _, name = pattern.literal_prefix.rstrip("/").rpartition("/")
    if not name:
        return []
    objects, folders = backend.list_objects(parent + "/" if parent else "", delimiter="/")
    names = [o.key.rpartition("/")[2] for o in objects] + [f.rstrip("/").rpartition("/")[2] for f in folders]
    hint = did_you_mean(name, names)
    return [hint] if hint else []


def remove_keys(backend, keys, where, progress=None) -> List[str]:
    refused = backend.delete(keys, progress)
    removed = sorted(k for k in keys if k not in refused)
    if refused:
        result = Transferred(removed, "remove", backend.describe(), failed=refused)
        raise failure(where, f"{len(refused)} of {len(keys)} objects could not be removed", refused, result,
                      backend)
    return removed


def list_level(backend, path):
    """(folders, objects) one level under the folder `path` ('' = bucket root); `data` lists the folder
    data/ (or, if there is no such folder, the object named data), never siblings like data.txt."""
    pattern = parse(path, allow_root=True)
    if pattern.has_wildcards:
        raise S3UsageError(f"file={path}", "list takes a folder, not a pattern", hint=f"make find file='{path}'")
    prefix = pattern.body + "/" if pattern.body else ""
    objects, folders = backend.list_objects(prefix, delimiter="/")
    if not objects and not folders and pattern.body and not pattern.folder_only:
        level, _ = backend.list_objects(pattern.body, delimiter="/")
        objects = [o for o in level if o.key == pattern.body]
    return sorted(folders), sorted(objects, key=lambda o: o.key)
