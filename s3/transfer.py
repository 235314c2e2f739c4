"""How every S3 operation works: parse the pattern (paths.py), list both sides, plan explicit transfers,
then hand the plan to the backend (s5cmd or boto3). Settings come from the environment on first use.
"""
from __future__ import annotations

import hashlib
import os
import threading
import time
from typing import Dict, Iterable, List

from toolbox.core.console import Progress, human_bytes
from toolbox.errors import S3Error, S3UsageError, did_you_mean
from toolbox.s3.paths import (LocalFile, Pattern, Plan, RemoteObject, is_internal_name, local_path_for, parse, plan_download, plan_upload, whole_prefix)
from toolbox.s3.settings import load_settings

DIRECTIONS = {"up": "up", "upload": "up", "down": "down", "download": "down"}
MAX_DETAIL_LINES = 10


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


def find_local(pattern: Pattern, local_root=".") -> List[LocalFile]:
    """The local files a pattern selects under local_root (hidden files included; symlinked folders and
    the toolbox's own temporary files are not)."""
    found = []
    if not pattern.has_wildcards and not pattern.folder_only and not pattern.is_root:
        path = local_path_for(pattern.body, local_root)
        if os.path.isfile(path):
            st = os.stat(path)
            return [LocalFile(pattern.body, path, st.st_size, st.st_mtime)]
    start = pattern.walk_root           # a literal pattern: that folder only (never its siblings)
    first_level = pattern.literal_prefix[len(start) + 1 if start else 0:] if pattern.has_wildcards else ""
    top = local_path_for(start, local_root) if start else (local_root or ".")
    for rel, path, st in _walk(top, start, local_root, first_level):
        if pattern.matches(rel):
            found.append(LocalFile(rel, path, st.st_size, st.st_mtime))
    return sorted(found, key=lambda f: f.relpath)


def _walk(top, top_rel, local_root, first_level_prefix):
    import stat as stat_mod

    stack = [(top, top_rel, first_level_prefix)]
    while stack:
        folder, rel, name_prefix = stack.pop()
        try:
            entries = list(os.scandir(folder))
        except (FileNotFoundError, NotADirectoryError):
            continue
        except PermissionError:
            raise S3Error(folder, "permission denied while listing local files") from None
        for entry in entries:
            if name_prefix and not entry.name.startswith(name_prefix):
                continue
            child_rel = f"{rel}/{entry.name}" if rel else entry.name
            if is_internal_name(entry.name):   # the toolbox's own temporary files and staging folders
                continue
            if entry.is_dir(follow_symlinks=False):
                stack.append((entry.path, child_rel, ""))
                continue
            try:
                st = entry.stat()            # follows a symlinked file
            except OSError:
                continue                     # broken symlink
            if stat_mod.S_ISREG(st.st_mode):
                yield child_rel, local_path_for(child_rel, local_root), st


def same_content(local: LocalFile, remote: RemoteObject, part_sizes=()) -> bool:
    """checksum=true: does the file's MD5 (or multipart MD5 for "md5-N" ETags) equal the ETag?"""
    etag = remote.etag.strip('"')
    try:
        if "-" not in etag:
            return _md5_parts(local.path, None) == etag
        count = int(etag.rsplit("-", 1)[1])
    except (OSError, ValueError):
        return False
    mib = 1024 * 1024
    derived = -(-local.size // max(count, 1))
    candidates = list(part_sizes) + [8 * mib, 5 * mib, 16 * mib, 50 * mib, 64 * mib, 100 * mib,
                                     -(-derived // mib) * mib]
    for part in dict.fromkeys(candidates):       # ordered, unique
        if part and -(-local.size // part) == count:
            try:
                if _md5_parts(local.path, part) == etag:
                    return True
            except OSError:
                return False
    return False


def _md5_parts(path, part_size):
    whole, parts = hashlib.md5(), []
    with open(path, "rb") as f:
        while True:
            block = f.read(part_size or 8 * 1024 * 1024)
            if not block:
                break
            if part_size:
                parts.append(hashlib.md5(block).digest())
            else:
                whole.update(block)
    if not part_size:
        return whole.hexdigest()
    return hashlib.md5(b"".join(parts)).hexdigest() + f"-{len(parts)}"


# ------------------------------------------------------------------ plan, then execute
def plan_transfer(backend, path, direction, local_path=".", overwrite=False, checksum=False,
                  delete=False) -> Plan:
    """Everything decided before the first byte moves: which keys, where, and which are unchanged."""
    direction = _direction(direction)
    pattern = parse(path)
    remote = find_remote(backend, pattern)
    local = find_local(pattern, local_path)
    check = None
    if checksum:
        parts = (backend.settings.part_size,)
        def check(local_file, obj):
            return same_content(local_file, obj, parts)
    if direction == "up":
        if not local:
            raise nothing_local(pattern, local_path)
        return plan_upload(local, remote, overwrite, check, delete)
    if not remote:
        raise nothing_remote(backend, pattern)
    plan = plan_download(remote, local, local_path, overwrite, check, delete)
    plan.whole_prefix = whole_prefix(pattern, plan)
    return plan


def run_plan(backend, plan: Plan, where, progress=True, delete_extraneous=True) -> Transferred:
    """Execute a plan; raise S3Error (with .result) if any transfer failed."""
    started = time.monotonic()
    label = "upload" if plan.direction == "up" else "download"
    bar = Progress(label, len(plan.transfers), plan.total_bytes) if progress else Silent()
    try:
        if not plan.transfers:
            failed = {}
        elif plan.direction == "up":
            failed = backend.upload(plan.transfers, bar)
        else:
            failed = backend.download(plan.transfers, bar, whole_prefix=plan.whole_prefix,
                                      local_root=plan.local_root)
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


def delete_local_files(paths: Iterable[str], root=".") -> List[str]:
    """Delete local files, then the folders under `root` that became empty. Returns the files deleted."""
    deleted = []
    stop = os.path.abspath(root or ".")
    for path in paths:
        try:
            os.unlink(path)
            deleted.append(path)
        except FileNotFoundError:
            continue
        folder = os.path.dirname(os.path.abspath(path))
        while folder.startswith(stop + os.sep):
            try:
                os.rmdir(folder)
            except OSError:
                break
            folder = os.path.dirname(folder)
    return deleted
