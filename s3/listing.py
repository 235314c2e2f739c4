"""ListObjectsV2 with the standard library: the listing every plan starts with, without botocore.

A short command (`make upload`, `make download`) spends most of its own time in botocore otherwise:
importing it (~0.1 s), making a client (~0.1 s) and parsing a listing (~60 ms per 1,000 keys), where the
s5cmd backend needs no botocore at all to move the bytes. This module sends what boto3 sends for the same
call — path-style, SigV4 (unsigned when anonymous), encoding-type=url, the same retries (5xx, throttling
and connection errors, exponential back-off within S3_RETRY_SECONDS) and timeouts — and parses the answer
with ElementTree. Endpoints it does not cover (AWS itself: virtual-host addressing and region redirects;
a proxy from HTTPS_PROXY; an endpoint URL with a path) keep botocore's listing: see `covers`.
"""
from __future__ import annotations

import calendar
import hashlib
import hmac
import http.client
import importlib.util
import os
import random
import socket
import ssl
import time
import urllib.parse
import urllib.request
from typing import List, Optional, Tuple
from xml.etree import ElementTree

from toolbox.s3.paths import RemoteObject

NS = "{http://s3.amazonaws.com/doc/2006-03-01/}"
EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()
RETRY_CODES = {"SlowDown", "Throttling", "ThrottlingException", "RequestTimeout", "RequestTimeoutException",
               "RequestLimitExceeded", "InternalError", "ServiceUnavailable", "TooManyRequests"}
MAX_DELAY = 20.0                # botocore's standard mode: back-off capped at 20 s
READ_TIMEOUT = 60


class ListingError(Exception):
    """The server answered with an error: code ('NoSuchBucket', or the HTTP status), message."""

    def __init__(self, code, message, status):
        super().__init__(f"{code}: {message}")
        self.code, self.message, self.status = code, message, status


class Unreachable(Exception):
    """No answer from the endpoint after the retries (refused, reset, timed out)."""


def covers(settings) -> bool:
    """Can this module list for these settings exactly as boto3 would?"""
    parts = urllib.parse.urlsplit(settings.endpoint_url)
    if parts.scheme not in ("http", "https") or not parts.hostname or parts.path not in ("", "/"):
        return False
    if parts.query or parts.username or parts.password or parts.hostname.endswith("amazonaws.com"):
        return False
    proxies = urllib.request.getproxies()
    return parts.scheme not in proxies or bool(urllib.request.proxy_bypass(parts.hostname))


def list_objects(settings, credentials, prefix, delimiter=None, attempts=1, first_delay=1.0,
                 connect_timeout=10.0) -> Tuple[List[RemoteObject], List[str]]:
    """Every object under `prefix` (and the folders, with a delimiter), all pages.
    `credentials`: (access key, secret key, session token) or None (anonymous, unsigned)."""
    session = _Session(settings, credentials, connect_timeout)
    objects, folders, token = [], [], None
    try:
        while True:
            query = {"list-type": "2", "prefix": prefix, "encoding-type": "url"}
            if delimiter:
                query["delimiter"] = delimiter
            if token:
                query["continuation-token"] = token
            root = session.get_with_retries(query, attempts, first_delay)
            ns = _namespace(root)
            objects += [_object(item, ns) for item in root.iter(ns + "Contents")]
            folders += [_decoded(p.findtext(ns + "Prefix")) for p in root.iter(ns + "CommonPrefixes")]
            token = root.findtext(ns + "NextContinuationToken")
            if root.findtext(ns + "IsTruncated") != "true" or not token:
                return objects, folders
    finally:
        session.close()


def _decoded(text):
    return urllib.parse.unquote_plus(text or "", errors="replace")


def _namespace(root):
    """'{http://s3.amazonaws.com/doc/2006-03-01/}' as S3 answers, or '' from a server that sends none."""
    return root.tag[:root.tag.index("}") + 1] if root.tag.startswith("{") else ""


def _object(item, ns=NS) -> RemoteObject:
    # LastModified (2024-05-01T12:00:00.271Z) to the whole second, as HEAD and GET give it (RGW's
    # listings carry milliseconds)
    text = item.findtext(ns + "LastModified")
    stamp = calendar.timegm((int(text[0:4]), int(text[5:7]), int(text[8:10]), int(text[11:13]),
                             int(text[14:16]), int(text[17:19])))
    return RemoteObject(_decoded(item.findtext(ns + "Key")), int(item.findtext(ns + "Size")), stamp,
                        item.findtext(ns + "ETag") or "")


class _Session:
    """One kept-alive connection to the endpoint for the pages of one listing."""

    def __init__(self, settings, credentials, connect_timeout):
        self.settings, self.credentials = settings, credentials
        parts = urllib.parse.urlsplit(settings.endpoint_url)
        self.secure, self.host = parts.scheme == "https", parts.hostname
        self.port = parts.port or (443 if self.secure else 80)
        self.netloc = self.host if parts.port in (None, 443 if self.secure else 80) else f"{self.host}:{self.port}"
        self.connect_timeout = connect_timeout
        self.conn = None

    def close(self):
        if self.conn is not None:
            self.conn.close()
            self.conn = None

    def get_with_retries(self, query, attempts, first_delay):
        attempt = 1
        while True:
            reused = self.conn is not None
            try:
                return self.get(query)
            except ListingError as err:
                retry = err.status >= 500 or err.status == 429 or err.code in RETRY_CODES
                if not retry or attempt >= attempts:
                    raise
            except ssl.SSLError as err:         # a certificate refused: no retry can help
                self.close()
                raise Unreachable(str(err)) from None
            except (OSError, http.client.HTTPException) as err:
                self.close()
                if reused and isinstance(err, (http.client.RemoteDisconnected, ConnectionResetError,
                                               BrokenPipeError)):
                    continue            # the server closed a kept-alive connection: at once, on a new one
                if attempt >= attempts:
                    raise Unreachable(str(err) or type(err).__name__) from None
            time.sleep(min(MAX_DELAY, random.random() * first_delay * 2 ** (attempt - 1)))
            attempt += 1

    def get(self, query):
        path = "/" + urllib.parse.quote(self.settings.bucket, safe="")
        query_text = "&".join(f"{_q(k)}={_q(v)}" for k, v in sorted(query.items()))
        headers = {"host": self.netloc, "x-amz-date": time.strftime("%Y%m%dT%H%M%SZ", time.gmtime()),
                   "x-amz-content-sha256": EMPTY_SHA256}
        if self.credentials is not None:
            headers = _signed(headers, path, query_text, self.settings.region, self.credentials)
        if self.conn is None:
            self.conn = self._connect()
        self.conn.sock.settimeout(READ_TIMEOUT)
        self.conn.putrequest("GET", f"{path}?{query_text}", skip_host=True, skip_accept_encoding=True)
        for name, value in headers.items():
            self.conn.putheader(name, value)
        self.conn.endheaders()
        response = self.conn.getresponse()
        body = response.read()
        if response.will_close:
            self.close()
        if response.status != 200:
            raise _error(response.status, response.reason, body)
        try:
            root = ElementTree.fromstring(body)
        except ElementTree.ParseError:
            root = None
        if root is None or not root.tag.endswith("ListBucketResult"):
            raise ListingError("", "the answer is not an S3 listing (is S3_ENDPOINT_URL an S3 endpoint?)",
                               response.status)
        return root

    def _connect(self):
        if self.secure:
            context = ssl.create_default_context(cafile=_ca_bundle())
            conn = http.client.HTTPSConnection(self.host, self.port, timeout=self.connect_timeout, context=context)
        else:
            conn = http.client.HTTPConnection(self.host, self.port, timeout=self.connect_timeout)
        conn.connect()
        conn.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return conn


def _q(text):
    return urllib.parse.quote(text, safe="-_.~")


def _signed(headers, path, query_text, region, credentials):
    """AWS Signature Version 4 in the Authorization header, as botocore signs a GET."""
    key_id, secret, token = credentials
    headers = dict(headers)
    if token:
        headers["x-amz-security-token"] = token
    stamp = headers["x-amz-date"]
    names = sorted(headers)
    canonical = "\n".join(["GET", path, query_text, "".join(f"{n}:{headers[n].strip()}\n" for n in names),
                           ";".join(names), EMPTY_SHA256])
    scope = f"{stamp[:8]}/{region}/s3/aws4_request"
    to_sign = "\n".join(["AWS4-HMAC-SHA256", stamp, scope, hashlib.sha256(canonical.encode()).hexdigest()])
    key = ("AWS4" + secret).encode()
    for part in (stamp[:8], region, "s3", "aws4_request"):
        key = hmac.new(key, part.encode(), hashlib.sha256).digest()
    signature = hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest()
    headers["authorization"] = (f"AWS4-HMAC-SHA256 Credential={key_id}/{scope}, "
                                f"SignedHeaders={';'.join(names)}, Signature={signature}")
    return headers


def _error(status, reason, body) -> ListingError:
    code = message = None
    try:
        root = ElementTree.fromstring(body)
        code, message = root.findtext("Code"), root.findtext("Message")
    except ElementTree.ParseError:
        pass
    if not code:                        # a bare status, as botocore reports it
        return ListingError(str(status), reason, status)
    return ListingError(code, message, status)


def _ca_bundle() -> Optional[str]:
    """The certificates botocore would trust: AWS_CA_BUNDLE, else certifi's, else botocore's own file."""
    if os.environ.get("AWS_CA_BUNDLE"):
        return os.environ["AWS_CA_BUNDLE"]
    for package, name in (("certifi", "cacert.pem"), ("botocore", "cacert.pem")):
        spec = importlib.util.find_spec(package)
        if spec is not None and spec.origin:
            candidate = os.path.join(os.path.dirname(spec.origin), name)
            if os.path.isfile(candidate):
                return candidate
    return None
