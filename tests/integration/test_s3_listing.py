"""The listing every plan starts with (s3/listing.py: ListObjectsV2 over the standard library, signed as
boto3 signs), against both servers: the same objects as boto3 lists, retries, errors, and no botocore
import in a command on the s5cmd backend.
"""
import os
import subprocess
import sys

import pytest

from fixtures_s3 import make_tree
from toolbox import s3utils
from toolbox.errors import S3Error
from toolbox.s3 import listing
from toolbox.s3.settings import load_settings
from toolbox.s3.transfer import get_backend

ODD_KEYS = ["odd/with space.txt", "odd/plus+sign", "odd/percent%20literal", "odd/a&b=c;d:e#f~g!h",
            "odd/ünïcødé/ファイル 名.bin", "odd/cafe\u0301", "odd/bell\x07name", "odd/tab\tname", "odd/-dash",
            "odd/deep/er/x", "odd/deep/y", "odd/.hidden"]


def boto3_listing(s3, prefix, delimiter=None):
    kwargs = {"Bucket": s3.bucket, "Prefix": prefix, **({"Delimiter": delimiter} if delimiter else {})}
    objects, folders = [], []
    for page in s3.client.get_paginator("list_objects_v2").paginate(**kwargs):
        objects += [(o["Key"], o["Size"], int(o["LastModified"].timestamp()), o["ETag"])
                    for o in page.get("Contents", ())]
        folders += [p["Prefix"] for p in page.get("CommonPrefixes", ())]
    return objects, folders


def light_listing(prefix, delimiter=None):
    settings = load_settings()
    objects, folders = listing.list_objects(settings, get_backend().credentials(), prefix, delimiter)
    return [(o.key, o.size, o.mtime, o.etag) for o in objects], folders


@pytest.mark.parametrize("prefix,delimiter", [("odd/", None), ("odd/", "/"), ("", "/"), ("odd/deep/", None)])
def test_the_same_objects_and_folders_as_boto3_lists(s3, prefix, delimiter):
    s3.seed({key: key.encode() for key in ODD_KEYS})
    s3.seed({"other": "x"})
    assert listing.covers(load_settings())
    assert light_listing(prefix, delimiter) == boto3_listing(s3, prefix, delimiter)


def test_pages_beyond_1000_keys_and_one_request_each(s3):
    s3.seed({f"many/{i:05d}": "x" for i in range(2100)})
    s3.clear_log()
    objects, _ = light_listing("many/")
    assert [key for key, *_ in objects] == [f"many/{i:05d}" for i in range(2100)]
    assert s3.count("LIST") == 3 and all("encoding-type=url" in r.query for r in s3.requests)


def test_throttling_is_retried(s3):
    s3.seed({"d/a": "a"})
    s3.slow_down(2, kinds=("LIST",))
    assert s3utils.get_s3_objects("d/") == ["d/a"]
    assert s3.count("LIST") == 3


def test_an_unreachable_endpoint_is_one_line_with_a_hint(s3, monkeypatch):
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        closed = sock.getsockname()[1]
    monkeypatch.setenv("S3_ENDPOINT_URL", f"http://127.0.0.1:{closed}")
    monkeypatch.setenv("S3_RETRY_SECONDS", "1")
    with pytest.raises(S3Error) as info:
        s3utils.get_s3_objects("d/")
    assert info.value.format() == (f"error: http://127.0.0.1:{closed}: cannot connect to the S3 endpoint\n"
                                   "    [Errno 111] Connection refused\n"
                                   "hint: check S3_ENDPOINT_URL and the network")


def test_an_endpoint_that_is_not_s3_is_one_line(s3, monkeypatch):
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
    import threading

    class Page(BaseHTTPRequestHandler):
        def do_GET(self):
            body = b"<html><body>a captive portal</body></html>"
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Page)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        monkeypatch.setenv("S3_ENDPOINT_URL", f"http://127.0.0.1:{server.server_port}")
        with pytest.raises(S3Error) as info:
            s3utils.get_s3_objects("d/")
    finally:
        server.shutdown()
        server.server_close()
    assert str(info.value) == (f"s3://{s3.bucket}/d/: the answer is not an S3 listing (is S3_ENDPOINT_URL "
                               "an S3 endpoint?)")


def test_wrong_keys_are_refused_with_a_hint(s3, monkeypatch):
    if s3.name == "moto":
        pytest.skip("moto checks no signature")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "not-the-secret")
    with pytest.raises(S3Error) as info:
        s3utils.get_s3_objects("d/")
    assert str(info.value).startswith(f"s3://{s3.bucket}/d/: SignatureDoesNotMatch: ")
    assert info.value.hint.startswith("check AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY")


def test_a_command_on_the_s5cmd_backend_never_imports_botocore(s3, project):
    s3.seed({"data/1.txt": "one"})
    make_tree(project.path, {"up/2.txt": "two"})
    code = ("import sys, launch\n"
            "codes = [launch.main(['download', '--file', 'data/']), launch.main(['upload', '--file', 'up/'])]\n"
            "print(codes, sorted(m for m in ('boto3', 'botocore', 's3transfer') if m in sys.modules))\n")
    env = dict(os.environ, S3_BACKEND="s5cmd")
    done = subprocess.run([sys.executable, "-c", code], cwd=project.path, env=env, capture_output=True, text=True,
                          timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[-1] == "[0, 0] []"
    assert s3.keys() == ["data/1.txt", "up/2.txt"]
