"""Fixtures for the S3 tests: moto's real S3 server on 127.0.0.1 (port 0), one per session, reset per test.

A WSGI layer in front of moto (the same process, no proxy hop) records every request, so tests count
requests on the server side, and injects faults: 503 SlowDown answers, bodies cut mid-way, DeleteObjects
per-key errors. Seeding big listings goes straight into moto's backend (no HTTP), to keep tests fast.
"""
import base64
import datetime
import hashlib
import json
import logging
import os
import threading
import urllib.parse
import urllib.request
import xml.etree.ElementTree as ET
from dataclasses import dataclass

import pytest

BUCKET = "toolbox-test"
ACCESS_KEY = "AKIATESTKEYEXAMPLE01"
SECRET_KEY = "tEsTsEcReT/kEy+vAlUe/NeVeR-PrInTeD-0123"
LOG_PATH = "/_toolbox/requests"
S3_VARS = ["S3_BUCKET_NAME", "S3_ENDPOINT_URL", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN",
           "AWS_REGION", "AWS_DEFAULT_REGION", "AWS_PROFILE", "S3_BACKEND", "S3_WORKERS", "S3_PART_SIZE_MB"]


@dataclass
class Request:
    method: str
    bucket: str
    key: str
    query: str
    signed: bool = False        # an Authorization header (anonymous requests have none)

    @property
    def kind(self):
        """LIST, GET, HEAD, PUT, DELETE_OBJECTS, MULTIPART, ... (what an S3 bill would call it)."""
        params = urllib.parse.parse_qs(self.query, keep_blank_values=True)
        if not self.key:
            if self.method == "GET":
                return "LIST"
            if self.method == "POST" and "delete" in params:
                return "DELETE_OBJECTS"
            return f"BUCKET_{self.method}"
        if self.method == "POST" or ("uploadId" in params and self.method != "PUT"):
            return "MULTIPART"
        return self.method


class Fault:
    """Applies to the next `count` requests that `match`."""

    def __init__(self, count, match):
        self.count, self.match = count, match


class RecordingApp:
    """WSGI middleware around moto: request log and fault injection."""

    def __init__(self, app):
        self.app = app
        self.lock = threading.Lock()
        self.log = []
        self.faults = []
        self.deny_delete = {}

    def clear(self):
        with self.lock:
            self.log.clear()
            self.faults.clear()
            self.deny_delete.clear()

    def __call__(self, environ, start_response):
        path = environ.get("PATH_INFO", "")
        if path.startswith("/moto-api"):
            return self.app(environ, start_response)
        if path == LOG_PATH:                        # the request log, for a server in another process
            return self._serve_log(environ, start_response)
        path = path.encode("latin-1").decode("utf-8", "replace")
        bucket, _, key = path.lstrip("/").partition("/")
        request = Request(environ["REQUEST_METHOD"], bucket, key, environ.get("QUERY_STRING", ""),
                          "HTTP_AUTHORIZATION" in environ)
        with self.lock:
            self.log.append(request)
            fault = next((f for f in self.faults if f.count > 0 and f.match(request)), None)
            if fault:
                fault.count -= 1
        if fault is not None:
            return fault.respond(self, environ, start_response)
        if request.kind == "DELETE_OBJECTS" and self.deny_delete:
            return self._delete_with_errors(environ, start_response)
        return self.app(environ, start_response)

    def _serve_log(self, environ, start_response):
        with self.lock:
            body = json.dumps([[r.method, r.bucket, r.key, r.query, r.signed] for r in self.log]).encode()
            if environ["REQUEST_METHOD"] == "DELETE":     # read and clear
                self.log.clear()
        start_response("200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
        return [body]

    def _delete_with_errors(self, environ, start_response):
        """DeleteObjects where some keys are refused (AccessDenied), as real S3 reports per key."""
        body = _read_body(environ)
        root = ET.fromstring(body)
        ns = root.tag[:root.tag.index("}") + 1] if root.tag.startswith("{") else ""
        refused = []
        for obj in list(root.findall(f"{ns}Object")):
            key = obj.find(f"{ns}Key").text
            if key in self.deny_delete:
                root.remove(obj)
                refused.append(key)
        if ns:
            ET.register_namespace("", ns.strip("{}"))     # keep the default namespace (no ns0: prefixes)
        new_body = ET.tostring(root)
        environ = dict(environ, CONTENT_LENGTH=str(len(new_body)))
        environ["wsgi.input"] = _BytesInput(new_body)
        # the body changed: give it a matching Content-MD5 and drop the other checksums
        environ["HTTP_CONTENT_MD5"] = base64.b64encode(hashlib.md5(new_body).digest()).decode()
        for name in [n for n in environ if n.startswith(("HTTP_X_AMZ_CHECKSUM", "HTTP_X_AMZ_SDK_CHECKSUM"))]:
            del environ[name]
        captured = {}

        def capture(status, headers, exc_info=None):
            captured["status"], captured["headers"] = status, headers

        answer = b"".join(self.app(environ, capture))
        errors = "".join(f"<Error><Key>{k}</Key><Code>AccessDenied</Code><Message>Access Denied</Message></Error>"
                         for k in refused)
        answer = answer.replace(b"</DeleteResult>", errors.encode() + b"</DeleteResult>")
        headers = [(k, v) for k, v in captured["headers"] if k.lower() != "content-length"]
        start_response(captured["status"], headers + [("Content-Length", str(len(answer)))])
        return [answer]


class _BytesInput:
    def __init__(self, data):
        import io
        self._io = io.BytesIO(data)

    def read(self, *args):
        return self._io.read(*args)

    def readline(self, *args):
        return self._io.readline(*args)


def _read_body(environ):
    stream = environ["wsgi.input"]
    length = environ.get("CONTENT_LENGTH")
    if length:
        return stream.read(int(length))
    return stream.read() if environ.get("wsgi.input_terminated") else b""


class SlowDown(Fault):
    """Answer 503 SlowDown, as S3 does when throttling."""

    def respond(self, app, environ, start_response):
        _read_body(environ)
        body = (b'<?xml version="1.0" encoding="UTF-8"?><Error><Code>SlowDown</Code>'
                b"<Message>Please reduce your request rate.</Message></Error>")
        start_response("503 Slow Down", [("Content-Type", "application/xml"), ("Content-Length", str(len(body)))])
        return [body]


class Refuse(Fault):
    """Answer 403 AccessDenied (not retried by clients)."""

    def respond(self, app, environ, start_response):
        _read_body(environ)
        body = (b'<?xml version="1.0" encoding="UTF-8"?><Error><Code>AccessDenied</Code>'
                b"<Message>Access Denied</Message></Error>")
        start_response("403 Forbidden", [("Content-Type", "application/xml"), ("Content-Length", str(len(body)))])
        return [body]


class CutBody(Fault):
    """Send the real headers (full Content-Length) but only the first `keep` bytes of the body, then
    close the connection; with `hold` set, wait for that event before closing (a transfer in flight)."""

    def __init__(self, count, match, keep, hold=None):
        super().__init__(count, match)
        self.keep, self.hold = keep, hold

    def respond(self, app, environ, start_response):
        captured = {}

        def capture(status, headers, exc_info=None):
            captured["status"], captured["headers"] = status, headers

        body = b"".join(app.app(environ, capture))
        start_response(captured["status"], captured["headers"])

        def stream():
            yield body[:self.keep]
            if self.hold is not None:
                self.hold.wait(30)
        return stream()


class MotoS3Server:
    """moto's ThreadedMotoServer with the recording layer in front."""

    def __init__(self):
        from moto.server import ThreadedMotoServer

        outer = self

        class Server(ThreadedMotoServer):
            def _server_entry(self):
                from moto.moto_server.werkzeug_app import (DomainDispatcherApplication, MotoRequestHandler,
                                                           create_backend_app)
                from werkzeug.serving import make_server

                outer.app = RecordingApp(DomainDispatcherApplication(create_backend_app))
                self._server = make_server(self._ip_address, self._port, outer.app, True,
                                           request_handler=MotoRequestHandler)
                self._server_ready_event.set()
                self._server.serve_forever()

        self.server = Server(ip_address="127.0.0.1", port=0, verbose=False)
        self.app = None

    def start(self):
        logging.getLogger("werkzeug").setLevel(logging.WARNING)     # no line per request in test output
        self.server.start()
        host, port = self.server.get_host_and_port()
        self.url = f"http://{host}:{port}"
        return self

    def stop(self):
        self.server.stop()

    def reset(self):
        urllib.request.urlopen(urllib.request.Request(f"{self.url}/moto-api/reset", method="POST"), timeout=10)
        self.app.clear()

    def client(self):
        import boto3
        from botocore.config import Config

        return boto3.client("s3", endpoint_url=self.url, aws_access_key_id=ACCESS_KEY,
                            aws_secret_access_key=SECRET_KEY, region_name="us-east-1",
                            config=Config(s3={"addressing_style": "path"}, max_pool_connections=32))


class S3:
    """What a test sees: the bucket through an independent boto3 client, the request log, faults."""

    def __init__(self, server, client):
        self.server, self.client, self.bucket = server, client, BUCKET
        self.url = server.url

    # -- state of the bucket
    def reset(self):
        """Empty the server again (for tests that run a scenario more than once)."""
        self.server.reset()
        self.client.create_bucket(Bucket=BUCKET)
        self.clear_log()

    def put(self, key, data=b"x", mtime=None):
        self.client.put_object(Bucket=BUCKET, Key=key, Body=data if isinstance(data, bytes) else data.encode())
        if mtime is not None:
            self.set_last_modified(key, mtime)

    def seed(self, items, mtime=None):
        """Many objects at once, straight into moto's backend (no HTTP)."""
        backend = _moto_backend()
        for key, data in items.items():
            backend.put_object(BUCKET, key, data if isinstance(data, bytes) else data.encode())
            if mtime is not None:
                self.set_last_modified(key, mtime)

    def set_last_modified(self, key, epoch):
        obj = _moto_backend().get_object(BUCKET, key)
        obj.last_modified = datetime.datetime.fromtimestamp(epoch, datetime.timezone.utc).replace(tzinfo=None)

    def get(self, key):
        return self.client.get_object(Bucket=BUCKET, Key=key)["Body"].read()

    def head(self, key):
        return self.client.head_object(Bucket=BUCKET, Key=key)

    def keys(self, prefix=""):
        pages = self.client.get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix=prefix)
        return sorted(o["Key"] for page in pages for o in page.get("Contents", ()))

    # -- requests seen by the server
    @property
    def requests(self):
        with self.server.app.lock:
            return list(self.server.app.log)

    def clear_log(self):
        with self.server.app.lock:
            self.server.app.log.clear()

    def kinds(self):
        return sorted({r.kind for r in self.requests})

    def count(self, kind, key=None):
        return sum(1 for r in self.requests if r.kind == kind and (key is None or r.key == key))

    # -- faults
    def slow_down(self, count, kinds=("PUT", "GET")):
        self._add(SlowDown(count, lambda r: r.kind in kinds))

    def refuse(self, count, match):
        self._add(Refuse(count, match))

    def cut_bodies(self, count, keep=10, hold=None, key=None):
        self._add(CutBody(count, lambda r: r.kind == "GET" and (key is None or r.key == key), keep, hold))

    def deny_delete(self, keys):
        self.server.app.deny_delete.update(dict.fromkeys(keys))

    def _add(self, fault):
        with self.server.app.lock:
            self.server.app.faults.append(fault)


def _moto_backend():
    from moto.core import DEFAULT_ACCOUNT_ID
    from moto.s3.models import s3_backends

    return s3_backends[DEFAULT_ACCOUNT_ID]["aws"]


def s3_environment(server_url):
    """The variables a user puts in .env, pointing at the test server."""
    return {"S3_BUCKET_NAME": BUCKET, "S3_ENDPOINT_URL": server_url, "AWS_ACCESS_KEY_ID": ACCESS_KEY,
            "AWS_SECRET_ACCESS_KEY": SECRET_KEY, "AWS_REGION": "us-east-1"}


@pytest.fixture(scope="session")
def s3_server():
    server = MotoS3Server().start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def s3_client(s3_server):
    return s3_server.client()


@pytest.fixture
def s3(s3_server, s3_client, monkeypatch):
    """An empty bucket on the session's moto server; the S3 settings are in the environment."""
    s3_server.reset()
    for var in S3_VARS:
        monkeypatch.delenv(var, raising=False)
    for var, value in s3_environment(s3_server.url).items():
        monkeypatch.setenv(var, value)
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")   # no instance-metadata probe for credentials
    s3_client.create_bucket(Bucket=BUCKET)
    helper = S3(s3_server, s3_client)
    helper.clear_log()
    return helper


@pytest.fixture(params=["s5cmd", "boto3"])
def s3_backend(request, s3, monkeypatch):
    """Run the test once per backend (S3_BACKEND)."""
    monkeypatch.setenv("S3_BACKEND", request.param)
    return request.param


def make_tree(root, files, mtime=None):
    """Write {relative path: content} under root; optionally give every file the same mtime."""
    for rel, content in files.items():
        path = os.path.join(root, *rel.split("/"))
        os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
        with open(path, "wb") as f:
            f.write(content if isinstance(content, bytes) else content.encode())
        if mtime is not None:
            os.utime(path, (mtime, mtime))


def read_tree(root):
    """{relative path: bytes} of every file under root (toolbox temp files would show up here)."""
    found = {}
    for folder, _, names in os.walk(root):
        for name in names:
            path = os.path.join(folder, name)
            rel = os.path.relpath(path, root).replace(os.sep, "/")
            with open(path, "rb") as f:
                found[rel] = f.read()
    return found


def serve_forever():
    """`python tests/fixtures_s3.py`: the same server in its own process (bench/s3.py uses it, so the
    clients being measured do not share a GIL with moto). Prints its URL, then serves until killed."""
    import time

    logging.basicConfig(level=logging.WARNING)
    server = MotoS3Server().start()
    print(server.url, flush=True)
    while True:
        time.sleep(3600)


if __name__ == "__main__":
    serve_forever()
