"""Fixtures for the S3 tests: two real S3 servers on 127.0.0.1, each started once per session and emptied
per test; every test that uses `s3` runs on both ([moto] and [rgw]):

- moto's S3 server (light, lenient: it checks no signature);
- Ceph's RADOS Gateway, the reference cluster's own S3 (tests/servers/ceph_rgw.py), when its Debian packages
  are installed; otherwise its tests are skipped with the command that installs them.

A WSGI layer in front of each (in this process: around moto itself, on a forwarder in front of RGW)
records every request, so tests count requests on the server side, and injects faults: 503 SlowDown
answers, refusals, bodies cut mid-way. Seeding goes around that layer (moto: straight into its backend).
A module or test marked `@pytest.mark.s3_servers("moto")` runs on those servers only.
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

from servers.s3_forward import ForwardApp, WSGIServer, read_body

BUCKET = "toolbox-test"
ACCESS_KEY = "AKIATESTKEYEXAMPLE01"
SECRET_KEY = "tEsTsEcReT/kEy+vAlUe/NeVeR-PrInTeD-0123"
LOG_PATH = "/_toolbox/requests"
S3_VARS = ["S3_BUCKET_NAME", "S3_ENDPOINT_URL", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN",
           "AWS_REGION", "AWS_DEFAULT_REGION", "AWS_PROFILE", "S3_BACKEND", "S3_WORKERS", "S3_PART_SIZE_MB",
           "S3_RETRY_SECONDS", "S3_FLUSH_SECONDS"]


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
        body = read_body(environ)
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


class SlowDown(Fault):
    """Answer 503 SlowDown, as S3 does when throttling."""

    def respond(self, app, environ, start_response):
        read_body(environ)
        body = (b'<?xml version="1.0" encoding="UTF-8"?><Error><Code>SlowDown</Code>'
                b"<Message>Please reduce your request rate.</Message></Error>")
        start_response("503 Slow Down", [("Content-Type", "application/xml"), ("Content-Length", str(len(body)))])
        return [body]


class Refuse(Fault):
    """Answer 403 AccessDenied (not retried by clients)."""

    def respond(self, app, environ, start_response):
        read_body(environ)
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

    name = "moto"

    def __init__(self):
        from moto.server import ThreadedMotoServer

        outer = self

        class Server(ThreadedMotoServer):
            def _server_entry(self):
                from moto.moto_server.werkzeug_app import (
                    DomainDispatcherApplication,
                    MotoRequestHandler,
                    create_backend_app,
                )
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

    def seed(self, items):
        """Many objects at once, straight into moto's backend (no HTTP, not in the request log)."""
        backend = _moto_backend()
        for key, data in items.items():
            backend.put_object(BUCKET, key, data)

    def set_last_modified(self, key, epoch):
        obj = _moto_backend().get_object(BUCKET, key)
        obj.last_modified = datetime.datetime.fromtimestamp(epoch, datetime.timezone.utc).replace(tzinfo=None)

    def deny_delete(self, keys):
        self.app.deny_delete.update(dict.fromkeys(keys))

    def allow_keys(self, pairs):
        """moto checks no signature: any key pair is accepted."""

    def allow_public_listing(self):
        """moto lets anyone list a bucket (a public-read bucket ACL would open its objects too)."""

    def restore(self):
        """Nothing outlives a test: the next reset empties the whole server."""


class RGWS3Server:
    """Ceph's RADOS Gateway (tests/servers/ceph_rgw.py) behind the same recording layer: the clients under
    test talk to a forwarder in this process (tests/servers/s3_forward.py) that logs each request, injects
    the faults and passes everything else on unchanged. The test's own client (seeding, checking) talks to
    the gateway directly, so its requests are not in the log."""

    name = "rgw"
    SEED_THREADS = 16

    def __init__(self, rgw):
        self.rgw = rgw
        self.app = RecordingApp(ForwardApp(rgw.endpoint_url))
        self.front = WSGIServer(self.app)
        self.opened = False                 # a bucket policy or ACL a test set: undone after the test
        self.keys = set()

    def start(self):
        self.url = self.front.start().url
        return self

    def stop(self):
        self.front.stop()

    def reset(self):
        self.rgw.reset()
        self.app.clear()

    def restore(self):
        """Undo what deny_delete and allow_public_listing set: the gateway outlives the test."""
        if self.opened:
            self.client().delete_bucket_policy(Bucket=BUCKET)
            self.client().put_bucket_acl(Bucket=BUCKET, ACL="private")
            self.opened = False

    def client(self):
        return self.rgw.client()

    def seed(self, items):
        """Many objects at once: parallel PUTs straight to the gateway (not in the request log)."""
        from concurrent.futures import ThreadPoolExecutor

        client = self.client()
        with ThreadPoolExecutor(self.SEED_THREADS) as pool:
            list(pool.map(lambda item: client.put_object(Bucket=BUCKET, Key=item[0], Body=item[1]), items.items()))

    def set_last_modified(self, key, epoch):
        raise NotImplementedError("RGW sets LastModified itself: compare with s3.last_modified(key) instead")

    def deny_delete(self, keys):
        """A bucket policy that denies s3:DeleteObject on these keys: RGW refuses them one by one in
        DeleteObjects, as real S3 does."""
        statement = {"Effect": "Deny", "Principal": "*", "Action": "s3:DeleteObject",
                     "Resource": [f"arn:aws:s3:::{BUCKET}/{key}" for key in keys]}
        self.opened = True
        self.client().put_bucket_policy(Bucket=BUCKET, Policy=json.dumps({"Version": "2012-10-17",
                                                                          "Statement": [statement]}))

    def allow_public_listing(self):
        """A public-read bucket ACL: anyone may list (objects keep their own ACLs), as on AWS."""
        self.opened = True
        self.client().put_bucket_acl(Bucket=BUCKET, ACL="public-read")

    def allow_keys(self, pairs):
        """Make these (access key, secret key) pairs valid for the test user (once per session)."""
        for access, secret in pairs:
            if access not in self.keys:
                self.rgw.add_key(access, secret)
                self.keys.add(access)


class S3:
    """What a test sees: the bucket through an independent boto3 client, the request log, faults."""

    def __init__(self, server, client):
        self.server, self.client, self.bucket = server, client, BUCKET
        self.url = server.url

    @property
    def name(self):
        """The server behind: "moto" or "rgw"."""
        return self.server.name

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
        """Many objects at once, without going through the request log. `mtime` (moto only): their
        LastModified."""
        self.server.seed({key: data if isinstance(data, bytes) else data.encode() for key, data in items.items()})
        for key in items if mtime is not None else ():
            self.set_last_modified(key, mtime)

    def set_last_modified(self, key, epoch):
        """moto only: RGW keeps the real time of each write."""
        self.server.set_last_modified(key, epoch)

    def last_modified(self, key):
        """The object's LastModified as an epoch (what a download gives the file as mtime)."""
        return self.head(key)["LastModified"].timestamp()

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
        """DeleteObjects refuses these keys (AccessDenied per key); the other keys go."""
        self.server.deny_delete(keys)

    def allow_keys(self, pairs):
        """Other (access key, secret key) pairs the server must accept (moto accepts any)."""
        self.server.allow_keys(pairs)

    def allow_public_listing(self):
        """Anonymous requests may list the bucket (until the next reset)."""
        self.server.allow_public_listing()

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


# ------------------------------------------------------------------ fixtures: every S3 test on both servers
SERVERS = ("moto", "rgw")


def pytest_configure(config):
    config.addinivalue_line("markers", "s3_servers(*names): run the S3 tests of this module or test on these "
                                       "servers only (default: moto and rgw)")


def pytest_generate_tests(metafunc):
    """Every test that uses the `s3` fixture runs once per server: [moto] and [rgw]."""
    if "s3_server" in metafunc.fixturenames:
        marker = metafunc.definition.get_closest_marker("s3_servers")
        names = marker.args if marker else SERVERS
        metafunc.parametrize("s3_server", names, indirect=True, scope="session")


@pytest.fixture(scope="session")
def moto_server():
    server = MotoS3Server().start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def ceph_rgw(tmp_path_factory):
    """Ceph's RADOS Gateway, started once per test process (an xdist worker has its own: ~0.7 s and
    ~140 MiB each), with the bucket; skipped with the install command when the packages are missing."""
    from servers import ceph_rgw as module

    ok, reason = module.available()
    if not ok:
        pytest.skip(reason)
    rgw = module.CephRGW().start(str(tmp_path_factory.getbasetemp()))
    rgw.create_bucket(BUCKET)
    yield rgw
    rgw.stop()


@pytest.fixture(scope="session")
def rgw_server(ceph_rgw):
    server = RGWS3Server(ceph_rgw).start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def s3_server(request):
    """The S3 server of this test: moto or Ceph RGW (parametrised by pytest_generate_tests)."""
    return request.getfixturevalue(f"{getattr(request, 'param', 'moto')}_server")


@pytest.fixture(scope="session")
def s3_client(s3_server):
    return s3_server.client()


@pytest.fixture
def s3(s3_server, s3_client, monkeypatch):
    """An empty bucket on the session's S3 server (moto or RGW); the S3 settings are in the environment."""
    s3_server.reset()
    for var in S3_VARS:
        monkeypatch.delenv(var, raising=False)
    for var, value in s3_environment(s3_server.url).items():
        monkeypatch.setenv(var, value)
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")   # no instance-metadata probe for credentials
    s3_client.create_bucket(Bucket=BUCKET)
    helper = S3(s3_server, s3_client)
    helper.clear_log()
    yield helper
    s3_server.restore()


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
