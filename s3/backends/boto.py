"""The boto3 backend: a pool of S3_WORKERS threads; files below the part size in one request each
(PutObject / streaming GetObject into a temporary file), larger ones through s3transfer's multipart.
"""
from __future__ import annotations

import os
import queue
import threading
import time
from typing import Dict, List, Optional

from toolbox.s3.backends.base import (Abandon, Backend, GiveUp, finish_download, prepare_folder, remove_quietly,
                                      short_reason, temp_path_for)
from toolbox.s3.paths import Transfer

STREAM_CHUNK = 1024 * 1024
STREAM_ATTEMPTS = 5                 # a body cut mid-way is retried (botocore retries only the request)
POLL = 0.2                          # seconds between two looks at `abandon` while waiting for results


class _Batch(GiveUp):
    """One call's workers: when to stop, and the temporary files being written (removed on a stop, so
    no partial file stays)."""

    def __init__(self, abandon):
        super().__init__(abandon)
        self.files_lock = threading.Lock()
        self.in_flight = set()

    def open_temp(self, final_path):
        """Create and register a temporary file under the lock; None once the batch stopped. A late
        write after a stop goes to a removed file and cannot bring a partial file back."""
        tmp = temp_path_for(final_path)
        with self.files_lock:
            if self.stopped.is_set():
                return None, None
            out = os.fdopen(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644), "wb")
            self.in_flight.add(tmp)
        return tmp, out

    def close_temp(self, tmp):
        remove_quietly(tmp)       # already renamed on success
        with self.files_lock:
            self.in_flight.discard(tmp)

    def remove_temps(self):
        with self.files_lock:
            for tmp in self.in_flight:
                remove_quietly(tmp)


class _DaemonExecutor:
    """The executor s3transfer runs parts on (its BaseExecutor interface), with daemon threads: the
    standard ThreadPoolExecutor's threads are joined at interpreter exit, so one part stuck on a frozen
    endpoint would keep an interrupted command alive until the socket times out."""

    def __init__(self, max_workers=None):
        self._max = max_workers or 1
        self._tasks = queue.SimpleQueue()
        self._threads = []

    def submit(self, fn, *args, **kwargs):
        from concurrent.futures import (
            Future,  # only large files need it: not on every command's path
        )

        future = Future()
        self._tasks.put((future, fn, args, kwargs))
        if len(self._threads) < self._max:
            thread = threading.Thread(target=self._work, name="s3-part", daemon=True)
            self._threads.append(thread)
            thread.start()
        return future

    def _work(self):
        while True:
            task = self._tasks.get()
            if task is None:
                return
            future, fn, args, kwargs = task
            if not future.set_running_or_notify_cancel():
                continue
            try:
                future.set_result(fn(*args, **kwargs))
            except BaseException as err:     # handed to whoever waits on the future
                future.set_exception(err)

    def shutdown(self, wait=True):
        for _ in self._threads:
            self._tasks.put(None)
        if wait:
            for thread in self._threads:
                thread.join()


class Boto3Backend(Backend):
    name = "boto3"

    def upload(self, transfers: List[Transfer], progress, abandon: Optional[Abandon] = None) -> Dict[str, str]:
        return self._pool(self._upload_one, transfers, progress, abandon)

    def download(self, transfers: List[Transfer], progress, whole_prefix=None, local_root=".",
                 abandon: Optional[Abandon] = None) -> Dict[str, str]:
        return self._pool(self._download_one, transfers, progress, abandon)

    def _pool(self, func, transfers, progress, abandon):
        """Run func over the transfers on daemon threads. On Ctrl-C/SIGTERM, when the endpoint stops
        answering, or when `abandon` says so, the main thread returns at once (a stalled socket cannot
        hold it) after removing the in-flight temporary files."""
        failed = {}
        if not transfers:
            return failed
        batch = _Batch(abandon)
        todo, results = queue.SimpleQueue(), queue.SimpleQueue()
        for t in transfers:
            todo.put(t)

        def worker():
            while not batch.stopped.is_set():
                try:
                    t = todo.get_nowait()
                except queue.Empty:
                    return
                try:
                    results.put((t, func(t, progress, batch), None))
                except BaseException as err:     # a bug: re-raised in the main thread
                    results.put((t, None, err))

        for i in range(min(self.settings.workers, len(transfers))):
            threading.Thread(target=worker, name=f"s3-{i}", daemon=True).start()
        reported = set()
        try:
            while len(reported) < len(transfers) and batch.check() is None:
                try:
                    t, reason, error = results.get(timeout=POLL)   # short waits: signals are seen at once
                except queue.Empty:
                    continue
                if error is not None:
                    raise error
                reported.add(t.key)
                if reason:
                    failed[t.key] = reason
                    batch.note_failure(reason)
                progress.advance(1, 0 if reason or t.size >= self.settings.part_size else t.size)
        except BaseException:
            batch.stop("interrupted")
            batch.remove_temps()
            raise
        if len(reported) < len(transfers):
            batch.stopped.set()
            batch.remove_temps()
            for t in transfers:
                if t.key not in reported:
                    failed[t.key] = batch.not_done()
                    progress.advance(1)
        return failed

    def _multipart(self, start, progress):
        """A large file through s3transfer's multipart (parallel parts), on daemon threads: a part stalled
        on a dead endpoint cannot hold the process at exit after Ctrl-C. `start(manager, subscribers)`
        submits the transfer."""
        from boto3.s3.transfer import ProgressCallbackInvoker, TransferConfig
        from s3transfer.manager import TransferManager

        part = self.settings.part_size
        config = TransferConfig(multipart_threshold=part, multipart_chunksize=part, max_concurrency=8,
                                num_download_attempts=STREAM_ATTEMPTS, use_threads=True)
        manager = TransferManager(self.client, config, executor_cls=_DaemonExecutor)
        start(manager, [ProgressCallbackInvoker(lambda n: progress.advance(0, n))]).result()
        manager.shutdown()

    def _upload_one(self, t: Transfer, progress, batch: _Batch) -> Optional[str]:
        from botocore.exceptions import BotoCoreError, ClientError

        if batch.stopped.is_set():
            return batch.not_done()
        bucket = self.settings.bucket
        try:
            size = os.path.getsize(t.path)
            if size < self.settings.part_size:
                with open(t.path, "rb") as body:
                    self.client.put_object(Bucket=bucket, Key=t.key, Body=body)
            else:
                self._multipart(lambda manager, subscribers: manager.upload(t.path, bucket, t.key,
                                                                           subscribers=subscribers), progress)
        except FileNotFoundError:
            return f"local file {t.path} disappeared"
        except OSError as err:
            return f"cannot read {t.path}: {err.strerror}"
        except (BotoCoreError, ClientError) as err:
            return short_reason(err)
        return None

    def _download_one(self, t: Transfer, progress, batch: _Batch) -> Optional[str]:
        from botocore.exceptions import BotoCoreError, ClientError
        from s3transfer.exceptions import RetriesExceededError

        reason = prepare_folder(t.path)
        if reason:
            return reason
        tmp, out = batch.open_temp(t.path)
        if tmp is None:
            return batch.not_done()
        try:
            with out:
                if t.size < self.settings.part_size:
                    self._get_small(t.key, out, batch)
                else:
                    self._multipart(lambda manager, subscribers: manager.download(
                        self.settings.bucket, t.key, out, subscribers=subscribers), progress)
            finish_download(tmp, t)
        except (BotoCoreError, ClientError, RetriesExceededError) as err:
            return short_reason(err)
        except OSError as err:
            return f"cannot write {t.path}: {err.strerror or err}"
        finally:
            batch.close_temp(tmp)
        return None

    def _get_small(self, key, out, batch):
        """GET into the open file; a body cut mid-way (connection reset) is fetched again, with backoff."""
        from botocore.exceptions import (
            IncompleteReadError,
            ReadTimeoutError,
            ResponseStreamingError,
        )
        from urllib3.exceptions import ProtocolError

        for attempt in range(STREAM_ATTEMPTS):
            try:
                body = self.client.get_object(Bucket=self.settings.bucket, Key=key)["Body"]
                out.seek(0)
                out.truncate()
                for chunk in body.iter_chunks(STREAM_CHUNK):
                    if batch.stopped.is_set():
                        raise InterruptedError("interrupted")
                    out.write(chunk)
                return
            except (IncompleteReadError, ReadTimeoutError, ResponseStreamingError, ProtocolError):
                if attempt == STREAM_ATTEMPTS - 1:
                    raise
                time.sleep(0.1 * 2 ** attempt)
