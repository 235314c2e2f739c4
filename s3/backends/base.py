"""What both backends share: the S3 API client, the metadata plane (listing, DeleteObjects), error
translation, retry limits, when to give up on a batch, and the temporary files of downloads.

Listing and deleting go through the S3 API on both backends: they are metadata calls where a subprocess
adds nothing, and DeleteObjects reports per key. The backends differ only in how they move bytes
(boto.py: a thread pool; s5cmd.py: one s5cmd process per batch). Both execute explicit lists of
transfers (paths.Transfer) and return {key: reason} for the failures.
"""
from __future__ import annotations

import os
import threading
from typing import Callable, Dict, List, Optional, Tuple

from toolbox.errors import S3Error, S3UsageError
from toolbox.s3 import listing
from toolbox.s3.paths import RemoteObject, Transfer, temp_name
from toolbox.s3.settings import redact_url_credentials

DELETE_BATCH = 1000                 # the DeleteObjects limit
# Connection-level failures: the endpoint is gone, not one object. Once one transfer fails this way
# after its retries, the rest of the batch fails at once instead of each retrying in turn.
UNREACHABLE_MARKS = ("connection refused", "could not connect to the endpoint", "connect timeout",
                     "no such host", "network is unreachable", "connection reset", "dial tcp",
                     "connection was closed")

# Abandon: called now and then during a batch; a reason string stops the batch (a deadline passed, the
# monitor is stopping), None lets it go on.
Abandon = Callable[[], Optional[str]]


# AWS's text for common error codes: some S3 servers (Ceph RGW) send an empty Message or the code again,
# and the user should read the same sentence whichever server answered.
STANDARD_MESSAGES = {
    "AccessDenied": "Access Denied",
    "NoSuchBucket": "The specified bucket does not exist",
    "NoSuchKey": "The specified key does not exist.",
    "InvalidAccessKeyId": "The AWS Access Key Id you provided does not exist in our records.",
    "SignatureDoesNotMatch": "The request signature we calculated does not match the signature you provided.",
    "SlowDown": "Please reduce your request rate.",
    "InternalError": "We encountered an internal error. Please try again.",
}


def error_text(code, message) -> str:
    """'Code: Message', with AWS's message for a known code when the server gave none."""
    code, message = (code or "").strip(), (message or "").strip()
    if not message or message == code:
        message = STANDARD_MESSAGES.get(code, "")
    return f"{code}: {message}" if code and message else code or message


def xml_safe(text) -> bool:
    """Can an XML 1.0 document carry this text? (no control character but tab, LF and CR)"""
    return not any((ord(c) < 32 and c not in "\t\n\r") or c in "\ufffe\uffff" for c in text)


def short_reason(err) -> str:
    """One line for a failed call: 'NoSuchKey: The specified key does not exist.'"""
    response = getattr(err, "response", None)
    if isinstance(response, dict) and "Error" in response:
        status = response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        text = error_text(response["Error"].get("Code"), response["Error"].get("Message"))
        return text or str(status)
    text = str(err).splitlines()[0] if str(err) else type(err).__name__
    return redact_url_credentials(text)


def is_unreachable(reason) -> bool:
    """Does a failure reason (botocore's or s5cmd's) say the endpoint cannot be reached at all?"""
    lowered = str(reason).lower()
    return any(mark in lowered for mark in UNREACHABLE_MARKS)


def retry_attempts(seconds, first_delay, most=20) -> int:
    """How many attempts fit in `seconds` of back-off that starts at `first_delay` and doubles (the
    worst case of the clients' jittered exponential back-off for connection errors and 5xx)."""
    attempts, waited, delay = 1, 0.0, first_delay
    while attempts < most and waited + delay <= seconds:
        waited += delay
        attempts += 1
        delay *= 2
    return attempts


class GiveUp:
    """Why one batch stops early: the endpoint stopped answering (set by a worker) or the caller's
    `abandon` said so. Shared by the threads of one batch only (concurrent batches, e.g. in the API
    server, each have their own)."""

    def __init__(self, abandon: Optional[Abandon] = None):
        self._abandon = abandon
        self._lock = threading.Lock()
        self.reason: Optional[str] = None
        self.stopped = threading.Event()

    def stop(self, reason):
        with self._lock:
            if self.reason is None:
                self.reason = reason
        self.stopped.set()

    def check(self) -> Optional[str]:
        """The reason to stop, asking `abandon` too (called by the thread that owns the batch)."""
        if self.reason is None and self._abandon is not None:
            reason = self._abandon()
            if reason:
                self.stop(reason)
        return self.reason

    def note_failure(self, reason):
        if is_unreachable(reason):
            self.stop(f"the S3 endpoint stopped answering ({reason})")

    def not_done(self):
        return f"not transferred: {self.reason}"


# ------------------------------------------------------------------ temporary files of downloads
def temp_path_for(final_path):
    """A temporary name in the destination folder (the final rename is then atomic), carrying our pid
    so that a later run can tell a leftover from a download in progress."""
    return os.path.join(os.path.dirname(final_path), temp_name(os.getpid()))


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


# ------------------------------------------------------------------ the S3 API client
class Connection:
    """The boto3 client and the credentials it signs with, made on first use; backends of one process
    with the same settings share one (the s5cmd backend hands names s5cmd cannot carry to boto3)."""

    def __init__(self, settings):
        self.settings = settings
        self._client = None
        self._credentials = False          # False = not resolved yet; None = anonymous
        self._lock = threading.Lock()

    def credentials(self):
        """(access key, secret key, session token) from the AWS chain, or None: anonymous access."""
        with self._lock:
            if self._credentials is False:
                # a region's keys (settings.choose_region), else the AWS chain
                self._credentials = self.settings.credentials or _resolve_credentials()
            return self._credentials

    @property
    def client(self):
        if self._client is None:
            creds = self.credentials()
            with self._lock:
                if self._client is None:
                    self._client = _make_client(self.settings, creds)
        return self._client


class Backend:
    """The interface both backends implement: list a literal prefix, delete keys, move explicit lists
    of transfers. Listing and deleting are here; upload and download are each backend's own."""

    name = ""

    def __init__(self, settings, connection: Optional[Connection] = None):
        self.settings = settings
        self.connection = connection or Connection(settings)

    def describe(self):
        return self.name

    def credentials(self):
        return self.connection.credentials()

    @property
    def anonymous(self):
        return self.credentials() is None

    @property
    def client(self):
        return self.connection.client

    def upload(self, transfers: List[Transfer], progress, abandon: Optional[Abandon] = None) -> Dict[str, str]:
        raise NotImplementedError

    def download(self, transfers: List[Transfer], progress, whole_prefix=None, local_root=".",
                 abandon: Optional[Abandon] = None) -> Dict[str, str]:
        raise NotImplementedError

    def _raise(self, err, key=""):
        """Translate a failure of a metadata call into the one-line S3Error."""
        from botocore.exceptions import EndpointConnectionError, NoCredentialsError

        if isinstance(err, EndpointConnectionError):
            raise self._unreachable() from None
        if isinstance(err, NoCredentialsError):
            raise S3Error(self.settings.url(key), "no AWS credentials found",
                          hint="set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY in .env") from None
        raise self._refused(short_reason(err), key) from None

    def _unreachable(self, reason=None):
        return S3Error(self.settings.endpoint_shown, "cannot connect to the S3 endpoint",
                       [redact_url_credentials(reason)] if reason else [], hint="check S3_ENDPOINT_URL and the network")

    def _refused(self, reason, key):
        hint = None
        if "NoSuchBucket" in reason:
            hint = "check S3_BUCKET_NAME"
        elif "AccessDenied" in reason or "InvalidAccessKeyId" in reason or "SignatureDoesNotMatch" in reason:
            hint = "check AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY (no keys at all = anonymous access)"
        return S3Error(self.settings.url(key), reason, hint=hint)

    def list_objects(self, prefix, delimiter=None) -> Tuple[List[RemoteObject], List[str]]:
        """Every object under a literal prefix (and the folders, with a delimiter)."""
        if listing.covers(self.settings):           # no botocore needed (s5cmd moves the bytes)
            try:
                return listing.list_objects(self.settings, self.credentials(), prefix, delimiter,
                                            retry_attempts(self.settings.retry_seconds, BOTO_FIRST_DELAY),
                                            BOTO_FIRST_DELAY, connect_timeout(self.settings))
            except listing.Unreachable as err:
                raise self._unreachable(str(err)) from None
            except listing.ListingError as err:
                raise self._refused(error_text(err.code, err.message), prefix) from None
        from botocore.exceptions import BotoCoreError, ClientError

        objects, folders = [], []
        kwargs = {"Bucket": self.settings.bucket, "Prefix": prefix}
        if delimiter:
            kwargs["Delimiter"] = delimiter
        try:
            for page in self.client.get_paginator("list_objects_v2").paginate(**kwargs):
                for item in page.get("Contents", ()):
                    # whole seconds: RGW's listings carry milliseconds that its HEAD and GET do not
                    objects.append(RemoteObject(item["Key"], int(item["Size"]),
                                                int(item["LastModified"].timestamp()), item.get("ETag", "")))
                folders.extend(p["Prefix"] for p in page.get("CommonPrefixes", ()))
        except (BotoCoreError, ClientError) as err:
            self._raise(err, prefix)
        return objects, folders

    def delete(self, keys, progress=None) -> Dict[str, str]:
        """DeleteObjects in batches of 1,000; returns {key: reason} for keys S3 refused."""
        from botocore.exceptions import BotoCoreError, ClientError

        failed = {}
        keys = list(keys)
        # A key XML 1.0 cannot carry (a control character) would make the whole DeleteObjects request
        # invalid (400 on RGW, 500 on moto): such keys go one DeleteObject (key in the URL) each.
        for key in [k for k in keys if not xml_safe(k)]:
            try:
                self.client.delete_object(Bucket=self.settings.bucket, Key=key)
            except (BotoCoreError, ClientError) as err:
                failed[key] = short_reason(err)
            if progress:
                progress.advance(1)
        keys = [k for k in keys if xml_safe(k)]
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
                failed[error.get("Key", "?")] = error_text(error.get("Code"), error.get("Message"))
            if progress:
                progress.advance(len(batch))
        return failed


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


# botocore's standard retry mode waits random() * 0.05 * 2**(n-1) s before retry n of a connection error
# or a 5xx (1 s instead of 0.05 for throttling: the server is alive and asks for it), at most 20 s
BOTO_FIRST_DELAY = 0.05


def connect_timeout(settings):
    return min(10, max(1, settings.retry_seconds))


def _make_client(settings, creds):
    import boto3
    from botocore import UNSIGNED
    from botocore.config import Config

    host = settings.endpoint_url.split("://", 1)[-1]
    options = dict(
        region_name=settings.region,
        # Path-style for S3-compatible servers (Ceph, MinIO, moto); AWS picks its own style.
        s3={"addressing_style": "auto" if "amazonaws.com" in host else "path"},
        # 5xx, SlowDown and connection errors are retried with exponential backoff; an endpoint that
        # does not answer is given up on after about S3_RETRY_SECONDS.
        retries={"max_attempts": retry_attempts(settings.retry_seconds, BOTO_FIRST_DELAY), "mode": "standard"},
        max_pool_connections=settings.workers + 8,
        connect_timeout=connect_timeout(settings), read_timeout=60,
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

