"""The boto3 backend, and the S3 metadata plane both backends share (client, listing, DeleteObjects).

Listing and deleting go through the S3 API on both backends: they are metadata calls where a subprocess
adds nothing, and DeleteObjects gives per-key results. The backends differ in how they move bytes:
here a thread pool (small files in one request each, large ones through s3transfer's multipart),
in s3_s5cmd.py one s5cmd process for the whole batch.

Backends execute explicit lists of transfers (s3path.Transfer) and return {key: reason} for failures.
"""
from __future__ import annotations

import os
import queue
import secrets
import threading
import time
from typing import Dict, List, Optional, Tuple

from toolbox.errors import S3Error, S3UsageError
from toolbox.s3.paths import RemoteObject, TEMP_PREFIX, TEMP_SUFFIX, Transfer

DELETE_BATCH = 1000                 # the DeleteObjects limit
STREAM_CHUNK = 1024 * 1024
STREAM_ATTEMPTS = 5                 # a body cut mid-way is retried (botocore retries only the request)


def short_reason(err) -> str:
    """One line for a failed call: 'NoSuchKey: The specified key does not exist.'"""
    response = getattr(err, "response", None)
    if isinstance(response, dict) and "Error" in response:
        code = response["Error"].get("Code", "")
        message = response["Error"].get("Message", "")
        status = response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        text = f"{code}: {message}" if message else str(code or status)
        return text.strip()
    return str(err).splitlines()[0] if str(err) else type(err).__name__


def _get(results):
    """Wait for the next result; short timeouts keep the main thread responsive to signals."""
    while True:
        try:
            return results.get(timeout=0.5)
        except queue.Empty:
            continue


def temp_path_for(final_path):
    """A temporary name in the destination folder: the final rename is then atomic."""
    folder = os.path.dirname(final_path)
    return os.path.join(folder, f"{TEMP_PREFIX}{secrets.token_hex(8)}{TEMP_SUFFIX}")


def prepare_folder(final_path) -> Optional[str]:
    """Create the destination folder; a reason string if that is impossible."""
    folder = os.path.dirname(final_path)
    if not folder:
        return None
    try:
        os.makedirs(folder, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        return f"cannot create folder {folder}: a file is in the way"
    except OSError as err:
        return f"cannot create folder {folder}: {err.strerror}"
    return None


def finish_download(tmp, transfer: Transfer):
    """Give the file the object's LastModified (so size+mtime skips work both ways), then rename."""
    if transfer.mtime is not None:
        os.utime(tmp, (transfer.mtime, transfer.mtime))
    if os.path.isdir(transfer.path):
        raise IsADirectoryError(f"a folder exists at {transfer.path}")
    os.replace(tmp, transfer.path)


def remove_quietly(path):
    try:
        os.unlink(path)
    except OSError:
        pass


class Boto3Backend:
    name = "boto3"

    def __init__(self, settings):
        self.settings = settings
        self._client = None
        self._credentials = False          # False = not resolved yet; None = anonymous
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._in_flight = set()            # temporary files being written

    def describe(self):
        return self.name

    # ------------------------------------------------------------ client and credentials
    def credentials(self):
        """(access key, secret key, session token) from the AWS chain, or None: anonymous access."""
        with self._lock:
            if self._credentials is False:
                # a region's keys (s3config.choose_region), else the AWS chain
                self._credentials = self.settings.credentials or _resolve_credentials()
            return self._credentials

    @property
    def anonymous(self):
        return self.credentials() is None

    @property
    def client(self):
        if self._client is None:
            creds = self.credentials()
            with self._lock:
                if self._client is None:
                    self._client = _make_client(self.settings, creds)
        return self._client

    def _where(self, key=""):
        return self.settings.url(key)

    def _raise(self, err, key=""):
        """Translate a failure of a metadata call into the one-line S3Error."""
        from botocore.exceptions import EndpointConnectionError, NoCredentialsError

        if isinstance(err, EndpointConnectionError):
            raise S3Error(self.settings.endpoint_url, "cannot connect to the S3 endpoint",
                          hint="check S3_ENDPOINT_URL and the network") from None
        if isinstance(err, NoCredentialsError):
            raise S3Error(self._where(key), "no AWS credentials found",
                          hint="set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY in .env") from None
        reason = short_reason(err)
        hint = None
        if "NoSuchBucket" in reason:
            hint = "check S3_BUCKET_NAME"
        elif "AccessDenied" in reason or "InvalidAccessKeyId" in reason or "SignatureDoesNotMatch" in reason:
            hint = "check AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY (no keys at all = anonymous access)"
        raise S3Error(self._where(key), reason, hint=hint) from None

    # ------------------------------------------------------------ metadata plane
    def list_objects(self, prefix, delimiter=None) -> Tuple[List[RemoteObject], List[str]]:
        """Every object under a literal prefix (and the folders, with a delimiter)."""
        from botocore.exceptions import BotoCoreError, ClientError

        objects, folders = [], []
        kwargs = {"Bucket": self.settings.bucket, "Prefix": prefix}
        if delimiter:
            kwargs["Delimiter"] = delimiter
        try:
            for page in self.client.get_paginator("list_objects_v2").paginate(**kwargs):
                for item in page.get("Contents", ()):
                    objects.append(RemoteObject(item["Key"], int(item["Size"]),
                                                item["LastModified"].timestamp(), item.get("ETag", "")))
                folders.extend(p["Prefix"] for p in page.get("CommonPrefixes", ()))
        except (BotoCoreError, ClientError) as err:
            self._raise(err, prefix)
        return objects, folders

    def delete(self, keys, progress=None) -> Dict[str, str]:
        """DeleteObjects in batches of 1,000; returns {key: reason} for keys S3 refused."""
        from botocore.exceptions import BotoCoreError, ClientError

        failed = {}
        keys = list(keys)
        for start in range(0, len(keys), DELETE_BATCH):
            batch = keys[start:start + DELETE_BATCH]
            try:
                response = self.client.delete_objects(
                    Bucket=self.settings.bucket,
                    Delete={"Objects": [{"Key": k} for k in batch], "Quiet": True})
            except (BotoCoreError, ClientError) as err:
                if start == 0:
                    self._raise(err, batch[0])
                failed.update({k: short_reason(err) for k in batch})
                continue
            for error in response.get("Errors", ()):
                failed[error.get("Key", "?")] = f"{error.get('Code', '')}: {error.get('Message', '')}".strip(": ")
            if progress:
                progress.advance(len(batch))
        return failed

    # ------------------------------------------------------------ data plane
    def upload(self, transfers: List[Transfer], progress) -> Dict[str, str]:
        return self._pool(self._upload_one, transfers, progress)

    def download(self, transfers: List[Transfer], progress, whole_prefix=None, local_root=".") -> Dict[str, str]:
        return self._pool(self._download_one, transfers, progress)

    def _pool(self, func, transfers, progress):
        """Run func over the transfers on daemon threads. On Ctrl-C/SIGTERM the main thread returns at
        once (a stalled socket cannot hold the exit) after removing the in-flight temporary files."""
        failed = {}
        if not transfers:
            return failed
        self._stop.clear()
        todo, results = queue.SimpleQueue(), queue.SimpleQueue()
        for t in transfers:
            todo.put(t)

        def worker():
            while not self._stop.is_set():
                try:
                    t = todo.get_nowait()
                except queue.Empty:
                    return
                try:
                    results.put((t, func(t, progress), None))
                except BaseException as err:     # a bug: re-raised in the main thread
                    results.put((t, None, err))

        for i in range(min(self.settings.workers, len(transfers))):
            threading.Thread(target=worker, name=f"s3-{i}", daemon=True).start()
        try:
            for _ in range(len(transfers)):
                t, reason, error = _get(results)
                if error is not None:
                    raise error
                if reason:
                    failed[t.key] = reason
                progress.advance(1, 0 if reason or t.size >= self.settings.part_size else t.size)
        except BaseException:
            self._stop.set()
            with self._lock:
                for tmp in self._in_flight:
                    remove_quietly(tmp)
            raise
        return failed

    def _transfer_config(self):
        from boto3.s3.transfer import TransferConfig

        part = self.settings.part_size
        return TransferConfig(multipart_threshold=part, multipart_chunksize=part, max_concurrency=8,
                              num_download_attempts=STREAM_ATTEMPTS, use_threads=True)

    def _upload_one(self, t: Transfer, progress) -> Optional[str]:
        from botocore.exceptions import BotoCoreError, ClientError

        if self._stop.is_set():
            return "interrupted"
        bucket = self.settings.bucket
        try:
            size = os.path.getsize(t.path)
            if size < self.settings.part_size:
                with open(t.path, "rb") as body:
                    self.client.put_object(Bucket=bucket, Key=t.key, Body=body)
            else:
                self.client.upload_file(t.path, bucket, t.key, Config=self._transfer_config(),
                                        Callback=lambda n: progress.advance(0, n))
        except FileNotFoundError:
            return f"local file {t.path} disappeared"
        except OSError as err:
            return f"cannot read {t.path}: {err.strerror}"
        except (BotoCoreError, ClientError) as err:
            return short_reason(err)
        return None

    def _download_one(self, t: Transfer, progress) -> Optional[str]:
        from botocore.exceptions import BotoCoreError, ClientError

        reason = prepare_folder(t.path)
        if reason:
            return reason
        tmp = temp_path_for(t.path)
        # The temporary file is created and registered under the lock, and written only through this
        # handle: once an interrupt has removed it, a late write cannot bring a partial file back.
        with self._lock:
            if self._stop.is_set():
                return "interrupted"
            out = os.fdopen(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644), "wb")
            self._in_flight.add(tmp)
        try:
            with out:
                if t.size < self.settings.part_size:
                    self._get_small(t.key, out)
                else:
                    self.client.download_fileobj(self.settings.bucket, t.key, out, Config=self._transfer_config(),
                                                 Callback=lambda n: progress.advance(0, n))
            finish_download(tmp, t)
        except (BotoCoreError, ClientError) as err:
            return short_reason(err)
        except OSError as err:
            return f"cannot write {t.path}: {err.strerror or err}"
        finally:
            remove_quietly(tmp)       # already renamed on success
            with self._lock:
                self._in_flight.discard(tmp)
        return None

    def _get_small(self, key, out):
        """GET into the open file; a body cut mid-way (connection reset) is fetched again, with backoff."""
        from botocore.exceptions import IncompleteReadError, ReadTimeoutError, ResponseStreamingError
        from urllib3.exceptions import ProtocolError

        for attempt in range(STREAM_ATTEMPTS):
            try:
                body = self.client.get_object(Bucket=self.settings.bucket, Key=key)["Body"]
                out.seek(0)
                out.truncate()
                for chunk in body.iter_chunks(STREAM_CHUNK):
                    if self._stop.is_set():
                        raise InterruptedError("interrupted")
                    out.write(chunk)
                return
            except (IncompleteReadError, ReadTimeoutError, ResponseStreamingError, ProtocolError):
                if attempt == STREAM_ATTEMPTS - 1:
                    raise
                time.sleep(0.1 * 2 ** attempt)


def _resolve_credentials():
    """Keys from the environment first, else the rest of the AWS chain; None means anonymous."""
    key_id = os.environ.get("AWS_ACCESS_KEY_ID", "").strip()
    secret = os.environ.get("AWS_SECRET_ACCESS_KEY", "").strip()
    if bool(key_id) != bool(secret):
        missing = "AWS_SECRET_ACCESS_KEY" if key_id else "AWS_ACCESS_KEY_ID"
        other = "AWS_ACCESS_KEY_ID" if key_id else "AWS_SECRET_ACCESS_KEY"
        raise S3UsageError(missing, f"not set (but {other} is)", hint="set both, or neither for anonymous access")
    if key_id:
        return key_id, secret, os.environ.get("AWS_SESSION_TOKEN") or None
    import boto3
    from botocore.exceptions import BotoCoreError

    try:
        found = boto3.session.Session().get_credentials()
    except BotoCoreError as err:            # e.g. AWS_PROFILE names a profile that does not exist
        raise S3UsageError("AWS credentials", str(err)) from None
    if found is None:
        return None
    frozen = found.get_frozen_credentials()
    return frozen.access_key, frozen.secret_key, frozen.token


def _make_client(settings, creds):
    import boto3
    from botocore import UNSIGNED
    from botocore.config import Config

    host = settings.endpoint_url.split("://", 1)[-1]
    options = dict(
        region_name=settings.region,
        # Path-style for S3-compatible servers (Ceph, MinIO, moto); AWS picks its own style.
        s3={"addressing_style": "auto" if "amazonaws.com" in host else "path"},
        # 5xx and SlowDown are retried with exponential backoff.
        retries={"max_attempts": 10, "mode": "standard"},
        max_pool_connections=settings.workers + 8,
        connect_timeout=10, read_timeout=60,
        # S3-compatible servers often reject the newer default CRC checksums.
        request_checksum_calculation="when_required",
        response_checksum_validation="when_required",
    )
    if creds is None:
        options["signature_version"] = UNSIGNED
        return boto3.session.Session().client("s3", endpoint_url=settings.endpoint_url, config=Config(**options))
    key_id, secret, token = creds
    session = boto3.session.Session(aws_access_key_id=key_id, aws_secret_access_key=secret,
                                    aws_session_token=token)
    return session.client("s3", endpoint_url=settings.endpoint_url, config=Config(**options))
