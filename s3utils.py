"""The S3 API of the toolbox, importable as `toolbox.s3utils`, and the handlers of the S3 make targets.

    from toolbox.s3utils import download_s3_path
    download_s3_path("data/")          # -> the keys transferred; unchanged files are skipped

Every operation is: parse the pattern (s3path), list both sides, plan explicit transfers (s3path), then
hand the plan to the backend (s5cmd or boto3). Settings come from the environment on first use;
importing this module reads nothing and connects nowhere. Every failure is an `S3Error`.
"""
from __future__ import annotations

import hashlib
import os
import threading
import time
from typing import Dict, Iterable, List

from toolbox.console import human_bytes
from toolbox.errors import did_you_mean
from toolbox.s3path import (LocalFile, Pattern, Plan, RemoteObject, S3Error, is_internal_name,
                            local_path_for, parse, plan_download, plan_upload, whole_prefix)

__all__ = ["S3Error", "Transferred", "download_s3_path", "upload_s3_path", "sync_s3_path", "remove_s3_path",
           "list_s3_objects", "get_s3_objects", "get_local_files", "delete_local_files", "api_server_online",
           "send_request", "keep_alive", "shutdown_server"]

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
    from toolbox.s3config import load_settings

    settings = load_settings()
    cache_key = (settings,) + tuple(os.environ.get(v, "") for v in _CREDENTIAL_VARS)
    with _backends_lock:
        backend = _backends.get(cache_key)
        if backend is None:
            if settings.backend == "s5cmd":
                from toolbox.s3_s5cmd import S5cmdBackend as cls
            else:
                from toolbox.s3_boto3 import Boto3Backend as cls
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
            raise _nothing_local(pattern, local_path)
        return plan_upload(local, remote, overwrite, check, delete)
    if not remote:
        raise _nothing_remote(backend, pattern)
    plan = plan_download(remote, local, local_path, overwrite, check, delete)
    plan.whole_prefix = whole_prefix(pattern, plan)
    return plan


def run_plan(backend, plan: Plan, where, progress=True, delete_extraneous=True) -> Transferred:
    """Execute a plan; raise S3Error (with .result) if any transfer failed."""
    from toolbox.console import Progress

    started = time.monotonic()
    label = "upload" if plan.direction == "up" else "download"
    bar = Progress(label, len(plan.transfers), plan.total_bytes) if progress else _Silent()
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


class _Silent:
    def advance(self, count=1, nbytes=0):
        pass

    def close(self):
        pass


def _direction(direction):
    found = DIRECTIONS.get(str(direction or "").strip().lower())
    if found is None:
        raise S3Error(f"direction={direction}", "expected up or down", exit_code=2)
    return found


def _nothing_remote(backend, pattern):
    where = backend.settings.url(pattern.text)
    return S3Error(where, "no object matches", _suggest(backend, pattern))


def _nothing_local(pattern, local_path):
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


# ------------------------------------------------------------------ public API
def download_s3_path(path, local_path=".", overwrite=False, checksum=False, progress=True,
                     api_call=False) -> Transferred:
    """Download what `path` selects to <local_path>/<key>; unchanged files are skipped.
    api_call=True: through the local S3 API server when one runs (see send_request)."""
    return _transfer("download", "down", path, local_path, overwrite, checksum, progress, api_call)


def upload_s3_path(path, local_path=".", overwrite=False, checksum=False, progress=True,
                   api_call=False) -> Transferred:
    """Upload what `path` selects under local_path to the same keys; unchanged files are skipped.
    api_call=True: through the local S3 API server when one runs."""
    return _transfer("upload", "up", path, local_path, overwrite, checksum, progress, api_call)


def _transfer(command, direction, path, local_path, overwrite, checksum, progress, api_call):
    if api_call:
        done = _via_api(command, path, local_path=local_path, overwrite=overwrite, checksum=checksum)
        if done is not None:
            return done
    backend = get_backend()
    plan = plan_transfer(backend, path, direction, local_path, overwrite, checksum)
    return run_plan(backend, plan, backend.settings.url(parse(path).text), progress)


def sync_s3_path(path, direction, local_path=".", delete=False, checksum=False, progress=True) -> Transferred:
    """Make the destination like the source for `path`: direction 'up' (local -> S3) or 'down'.
    Only what differs moves; delete=True also removes extraneous destination files (no prompt)."""
    backend = get_backend()
    plan = plan_transfer(backend, path, direction, local_path, False, checksum, delete)
    return run_plan(backend, plan, backend.settings.url(parse(path).text), progress)


def remove_s3_path(path, api_call=False) -> List[str]:
    """Remove every object `path` selects (no prompt: the CLI asks). Returns the keys removed.
    api_call=True: through the local S3 API server when one runs."""
    done = _via_api("remove", path) if api_call else None
    if done is not None:
        return done
    backend = get_backend()
    pattern = parse(path)
    objects = find_remote(backend, pattern)
    if not objects:
        raise _nothing_remote(backend, pattern)
    return remove_keys(backend, [o.key for o in objects], backend.settings.url(pattern.text))


def remove_keys(backend, keys, where, progress=None) -> List[str]:
    refused = backend.delete(keys, progress)
    removed = sorted(k for k in keys if k not in refused)
    if refused:
        result = Transferred(removed, "remove", backend.describe(), failed=refused)
        raise failure(where, f"{len(refused)} of {len(keys)} objects could not be removed", refused, result,
                      backend)
    return removed


def get_s3_objects(path, api_call=False) -> List[str]:
    """The keys `path` selects (the same keys download and remove would use)."""
    done = _via_api("find", path) if api_call else None
    if done is not None:
        return done
    backend = get_backend()
    return [o.key for o in find_remote(backend, parse(path))]


def list_s3_objects(path="", api_call=False) -> List[str]:
    """One level of the bucket at a folder: sub-folders (ending in '/') first, then object keys."""
    done = _via_api("list", path) if api_call else None
    if done is not None:
        return done
    folders, objects = list_level(get_backend(), path)
    return folders + [o.key for o in objects]


def list_level(backend, path):
    """(folders, objects) one level under the folder `path` ('' = bucket root); `data` lists the folder
    data/ (or, if there is no such folder, the object named data), never siblings like data.txt."""
    pattern = parse(path, allow_root=True)
    if pattern.has_wildcards:
        raise S3Error(f"file={path}", "list takes a folder, not a pattern", hint=f"make find file='{path}'",
                      exit_code=2)
    prefix = pattern.body + "/" if pattern.body else ""
    objects, folders = backend.list_objects(prefix, delimiter="/")
    if not objects and not folders and pattern.body and not pattern.folder_only:
        level, _ = backend.list_objects(pattern.body, delimiter="/")
        objects = [o for o in level if o.key == pattern.body]
    return sorted(folders), sorted(objects, key=lambda o: o.key)


def get_local_files(path, local_path=".") -> List[str]:
    """The local files `path` selects under local_path (paths on disk)."""
    return [f.path for f in find_local(parse(path), local_path)]


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


# ------------------------------------------------------------------ the local S3 API server (s3server.py)
def api_server_online(port=None) -> bool:
    """Does an S3 API server answer (with our token) on 127.0.0.1:port (default S3_API_PORT, else 57575)?"""
    from toolbox.s3api import probe
    return probe(port) is None


def send_request(command, path="", port=None, timeout=None, **options) -> dict:
    """Send one command (find, list, download, upload, remove, alive, shutdown) to the S3 API server; the
    decoded JSON answer ({"result": ...}). Options: local_path, overwrite, checksum (transfers).
    timeout: seconds to wait for the answer (default per command). Every failure raises S3Error."""
    from toolbox.s3api import request
    return request(command, path, port, timeout, **options)


def keep_alive(interval=5, stop_event=None, port=None):
    """Keep the server from its idle shutdown: a daemon thread sends `alive` every `interval` s until
    stop_event is set. Returns (thread, event), or (None, None) with a warning when no server answers."""
    from toolbox.s3api import keep_alive as start
    return start(interval, stop_event, port)


def shutdown_server(port=None) -> bool:
    """Stop the server (after the requests in flight). False when none was running."""
    from toolbox.s3api import shutdown
    return shutdown(port)


def _via_api(command, path, **options):
    """The operation's result through the server, or None when no server runs (then work locally)."""
    from toolbox.s3api import forward
    return forward(command, path, **options)


# ------------------------------------------------------------------ make targets (launch.py COMMANDS)
def _handler(name):
    def handler(args):
        # make download|upload api=true. `make remove api=true` removes here: exactly the keys it listed
        # and the user confirmed (through the server, objects added meanwhile would go too).
        if getattr(args, "api", None) and name in ("cmd_download", "cmd_upload"):
            from toolbox.s3api import cmd_via_api
            code = cmd_via_api(name[4:], args)
            if code is not None:
                return code
        from toolbox import s3cli
        return getattr(s3cli, name)(args)
    handler.__name__ = handler.__qualname__ = name
    handler.__doc__ = f"`make {name[4:]}`: see toolbox.s3cli.{name}."
    return handler


cmd_upload = _handler("cmd_upload")
cmd_download = _handler("cmd_download")
cmd_list = _handler("cmd_list")
cmd_find = _handler("cmd_find")
cmd_remove = _handler("cmd_remove")
cmd_sync = _handler("cmd_sync")
cmd_interactive = _handler("cmd_interactive")
cmd_monitor = _handler("cmd_monitor")
