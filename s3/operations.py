"""The S3 API for project scripts, published as `toolbox.s3utils`:

    from toolbox.s3utils import download_s3_path
    download_s3_path("data/")          # -> the keys transferred; unchanged files are skipped

Importing reads nothing and connects nowhere; every failure is an `S3Error`. With api_call=True an
operation goes through the local S3 API server (`make server`) when one runs.
"""
from __future__ import annotations

from typing import List

from toolbox.errors import S3Error
from toolbox.s3 import apiclient
from toolbox.s3.localfiles import delete_local_files, find_local
from toolbox.s3.paths import parse
from toolbox.s3.transfer import (Transferred, find_remote, get_backend, list_level, nothing_remote, plan_transfer,
                                 remove_keys, run_plan)

__all__ = ["S3Error", "Transferred", "download_s3_path", "upload_s3_path", "sync_s3_path", "remove_s3_path",
           "list_s3_objects", "get_s3_objects", "get_local_files", "delete_local_files", "api_server_online",
           "send_request", "keep_alive", "shutdown_server"]


# The first two parameters of download_s3_path and upload_s3_path are positional, as project scripts
# have always called them (`download_s3_path("data/", "/scratch")`); everything after them is
# keyword-only, so that no old positional call can mean something else.
def download_s3_path(s3_path, local_path=".", *, overwrite=False, checksum=False, progress=True,
                     api_call=False) -> Transferred:
    """Download what `s3_path` selects to <local_path>/<key>; unchanged files are skipped.
    api_call=True: through the local S3 API server when one runs (see send_request)."""
    return _transfer("download", "down", s3_path, local_path, overwrite, checksum, progress, api_call)


def upload_s3_path(s3_path, local_path=".", *, overwrite=False, checksum=False, progress=True,
                   api_call=False) -> Transferred:
    """Upload what `s3_path` selects under local_path to the same keys; unchanged files are skipped.
    api_call=True: through the local S3 API server when one runs."""
    return _transfer("upload", "up", s3_path, local_path, overwrite, checksum, progress, api_call)


def _transfer(command, direction, path, local_path, overwrite, checksum, progress, api_call):
    if api_call:
        done = _via_api(command, path, local_path=local_path, overwrite=overwrite, checksum=checksum)
        if done is not None:
            return done
    backend = get_backend()
    plan = plan_transfer(backend, path, direction, local_path, overwrite, checksum)
    return run_plan(backend, plan, progress=progress)


def sync_s3_path(s3_path, direction, local_path=".", *, delete=False, checksum=False,
                 progress=True) -> Transferred:
    """Make the destination like the source for `s3_path`: direction 'up' (local -> S3) or 'down'.
    Only what differs moves; delete=True also removes extraneous destination files (no prompt)."""
    backend = get_backend()
    plan = plan_transfer(backend, s3_path, direction, local_path, False, checksum, delete)
    return run_plan(backend, plan, progress=progress)


def remove_s3_path(s3_path, api_call=False) -> List[str]:
    """Remove every object `s3_path` selects (no prompt: the CLI asks). Returns the keys removed.
    api_call=True: through the local S3 API server when one runs."""
    done = _via_api("remove", s3_path) if api_call else None
    if done is not None:
        return done
    backend = get_backend()
    pattern = parse(s3_path)
    objects = find_remote(backend, pattern)
    if not objects:
        raise nothing_remote(backend, pattern)
    return remove_keys(backend, [o.key for o in objects], backend.settings.url(pattern.text))


def get_s3_objects(s3_path, api_call=False) -> List[str]:
    """The keys `s3_path` selects (the same keys download and remove would use)."""
    done = _via_api("find", s3_path) if api_call else None
    if done is not None:
        return done
    backend = get_backend()
    return [o.key for o in find_remote(backend, parse(s3_path))]


def list_s3_objects(s3_path="", api_call=False) -> List[str]:
    """One level of the bucket at a folder: sub-folders (ending in '/') first, then object keys."""
    done = _via_api("list", s3_path) if api_call else None
    if done is not None:
        return done
    folders, objects = list_level(get_backend(), s3_path)
    return folders + [o.key for o in objects]


def get_local_files(s3_path, local_path=".") -> List[str]:
    """The local files `s3_path` selects under local_path (paths on disk)."""
    return [f.path for f in find_local(parse(s3_path, root=local_path), local_path)]


# ------------------------------------------------------------------ the local S3 API server (apiserver.py)
def api_server_online(port=None) -> bool:
    """Does an S3 API server answer (with our token) on 127.0.0.1:port (default S3_API_PORT, else 57575)?"""
    return apiclient.probe(port) is None


def send_request(command, path="", port=None, timeout=None, **options) -> dict:
    """Send one command (find, list, download, upload, remove, alive, shutdown) to the S3 API server; the
    decoded JSON answer ({"result": ...}). Options: local_path, overwrite, checksum (transfers).
    timeout: seconds to wait for the answer (default per command). Every failure raises S3Error."""
    return apiclient.request(command, path, port, timeout, **options)


def keep_alive(interval=5, stop_event=None, port=None):
    """Keep the server from its idle shutdown: a daemon thread sends `alive` every `interval` s until
    stop_event is set. Returns (thread, event), or (None, None) with a warning when no server answers."""
    return apiclient.keep_alive(interval, stop_event, port)


def shutdown_server(port=None) -> bool:
    """Stop the server (after the requests in flight). False when none was running."""
    return apiclient.shutdown(port)


def _via_api(command, path, **options):
    """The operation's result through the server, or None when no server runs (then work locally)."""
    return apiclient.forward(command, path, **options)


