"""`make monitor folder=ckpt/`: upload new or changed files of a folder once they have been stable.

A file is uploaded once its size and mtime have not changed for `interval` seconds (as observed by this
process, so a file still being written, or copied with its old mtime preserved, is not sent half-done).
A file changed later is uploaded again. Files already in S3 and unchanged (the upload skip rule) are not
re-sent at start. Local deletions are never mirrored to S3. One monitor per folder (a lock file inside it).
SIGTERM / SIGINT stop the watch and flush: every new or changed file is uploaded before exit, so a Job
that ends does not lose its last checkpoint. An upload in progress when the signal comes is abandoned
(the flush sends it again), and the flush itself gets S3_FLUSH_SECONDS (25 s, inside Kubernetes' 30 s
grace period): what it could not upload by then is listed, and the exit code is 1.
"""
from __future__ import annotations

import os
import signal
import threading
import time
from contextlib import contextmanager

from toolbox.core.locks import exclusive_lock
from toolbox.errors import S3Error, S3UsageError
from toolbox.s3.localfiles import find_local
from toolbox.s3.paths import LOCK_NAME, Transfer, parse_folder, unchanged_for_upload
from toolbox.s3.transfer import Silent, find_remote


def poll_period(interval):
    return min(max(interval / 4.0, 0.05), 1.0)


class Monitor:
    def __init__(self, backend, pattern, interval, delete_after_upload=False, report=print):
        self.backend, self.pattern, self.interval = backend, pattern, interval
        self.delete_after_upload = delete_after_upload
        self.report = report
        self.stopping = lambda: False
        self.uploaded = {}      # key -> (size, mtime) of the version known to be in S3
        self.seen = {}          # key -> ((size, mtime), monotonic time that signature was first seen)

    def _scan(self):
        return {f.relpath: f for f in find_local(self.pattern, ".")}

    def start(self):
        """What is already in S3 and unchanged counts as uploaded (nothing is re-sent on restart)."""
        remote = {o.key: o for o in find_remote(self.backend, self.pattern)}
        for key, f in self._scan().items():
            if key in remote and unchanged_for_upload(f, remote[key]):
                self.uploaded[key] = (f.size, f.mtime)

    def tick(self, now=None):
        """One look at the folder: upload the files that changed and have now been stable long enough."""
        now = time.monotonic() if now is None else now
        files = self._scan()
        ready = []
        for key, f in files.items():
            signature = (f.size, f.mtime)
            previous = self.seen.get(key)
            if previous is None or previous[0] != signature:
                self.seen[key] = (signature, now)
                continue
            if self.uploaded.get(key) != signature and now - previous[1] >= self.interval:
                ready.append(f)
        for key in set(self.seen) - set(files):
            del self.seen[key]
        # a signal abandons the upload at once: the flush sends these files again
        return self._upload(ready, lambda: "the monitor is stopping" if self.stopping() else None,
                            "upload failed, will retry")

    def flush(self):
        """Upload every new or changed file now, stable or not (the process is about to end), within
        S3_FLUSH_SECONDS; say which files could not be uploaded."""
        seconds = self.backend.settings.flush_seconds
        deadline = time.monotonic() + seconds

        def too_late():
            if time.monotonic() < deadline:
                return None
            return f"the flush took longer than {seconds:g} s (S3_FLUSH_SECONDS)"

        pending = [f for key, f in self._scan().items() if self.uploaded.get(key) != (f.size, f.mtime)]
        failed = self._upload(pending, too_late, "not uploaded")
        self.report(f"monitor stopped: flushed {len(pending) - len(failed)} pending files"
                    + (f", {len(failed)} not uploaded (listed above)" if failed else ""))
        return failed

    def _upload(self, files, abandon, failure):
        if not files:
            return {}
        transfers = [Transfer(f.relpath, f.path, f.size) for f in files]
        failed = self.backend.upload(transfers, Silent(), abandon)
        for f in files:
            if f.relpath in failed:
                self.report(f"{failure}: {f.relpath}: {failed[f.relpath]}")
                continue
            self.uploaded[f.relpath] = (f.size, f.mtime)
            self.report(f"uploaded {f.relpath} ({f.size} bytes)")
            if self.delete_after_upload:
                self._delete_if_unchanged(f)
        return failed

    def _delete_if_unchanged(self, f):
        try:
            st = os.stat(f.path)
            if (st.st_size, st.st_mtime) == (f.size, f.mtime):     # not rewritten during the upload
                os.unlink(f.path)
                self.uploaded.pop(f.relpath, None)
                self.seen.pop(f.relpath, None)
        except FileNotFoundError:
            pass

    def run(self, stopping):
        self.stopping = stopping
        period = poll_period(self.interval)
        while not stopping():
            self.tick()
            deadline = time.monotonic() + period
            while not stopping() and time.monotonic() < deadline:   # short naps: a signal is seen at once
                time.sleep(min(0.1, period))


def folder_lock(folder):
    """One monitor per folder (core.locks.exclusive_lock: no stale locks after a crash)."""
    return exclusive_lock(os.path.join(folder, LOCK_NAME), where=f"{folder}/",
                          busy="another monitor (pid {pid}) is already watching this folder")


@contextmanager
def stop_on_signals(stop: threading.Event):
    """Yields `stopping()`: true once SIGTERM/SIGINT arrived or `stop` is set (the loop then flushes); a
    second signal interrupts the flush itself. The handler only flips a flag: a lock taken in a signal
    handler (Event.set) deadlocks if the signal lands while the main thread holds that same lock."""
    signalled = []

    def stopping():
        return bool(signalled) or stop.is_set()

    if threading.current_thread() is not threading.main_thread():
        yield stopping
        return

    def handler(signum, frame):
        if signalled:
            raise KeyboardInterrupt
        signalled.append(signum)

    previous = {s: signal.signal(s, handler) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield stopping
    finally:
        for s, h in previous.items():
            signal.signal(s, h)


def run_monitor(backend, folder, interval, delete_after_upload=False, report=print, stop=None):
    """Watch `folder` until SIGTERM/SIGINT (or `stop` is set), then flush. Returns an exit code."""
    pattern = parse_folder(folder)
    if pattern.is_root:
        raise S3UsageError(f"folder={folder}", "monitor needs a folder, not the whole project")
    if os.path.exists(pattern.body) and not os.path.isdir(pattern.body):
        raise S3UsageError(f"folder={folder}", "not a folder")
    os.makedirs(pattern.body, exist_ok=True)
    stop = stop or threading.Event()
    with stop_on_signals(stop) as stopping, folder_lock(pattern.body):   # handlers first: no signal is lost
        monitor = Monitor(backend, pattern, interval, delete_after_upload, report)
        monitor.start()
        report(f"monitoring {pattern.text} -> {backend.settings.url(pattern.text)}: files are uploaded once "
               f"unchanged for {interval:g}s; stop with Ctrl-C or SIGTERM")
        try:
            monitor.run(stopping)
        except S3Error as err:     # e.g. the endpoint went away: still try to save what is pending
            report(f"monitor error: {err}")
        failed = monitor.flush()
    return 1 if failed else 0
