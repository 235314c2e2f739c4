"""Server faults on the real Ceph RADOS Gateway: radosgw killed mid-transfer, restarted, or frozen.

The real `launch.py upload|download` runs in a subprocess against the gateway directly (no recording layer
in between, so a dead gateway is a refused connection, as in a cluster). The transfer is slowed to a few
workers so that the fault lands while objects are moving: the gateway's own counters say when. No timing
assertions: the tests wait (with generous limits) for what the server or the process shows.
"""
import os
import re
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

import pytest

from conftest import wait_until
from fixtures_s3 import BUCKET, S3_VARS, make_tree, read_tree

COUNT, SIZE = 250, 16 * 1024
WAIT = 120
SUMMARY = re.compile(r"^(upload|download): (\d+) transferred, (\d+) skipped, (\d+) failed", re.MULTILINE)
BACKENDS = pytest.mark.parametrize("backend", ["s5cmd", "boto3"])


def content(i):
    return f"{i:06d}".encode() * (SIZE // 6)


TREE = {f"data/f{i:04d}.bin": content(i) for i in range(COUNT)}


@pytest.fixture
def rgw(ceph_rgw, project):
    """The session's gateway, emptied; afterwards running and answering again whatever the test did."""
    ceph_rgw.reset()
    ceph_rgw.create_bucket(BUCKET)
    yield ceph_rgw
    ceph_rgw.resume()
    if not ceph_rgw.running:
        ceph_rgw.restart_gateway()


class Transfer:
    """`python launch.py <command> --file data/` against the gateway, started in the background."""

    def __init__(self, project, rgw, backend, command, retry_seconds):
        env = {k: v for k, v in os.environ.items() if k not in S3_VARS}
        env.update(rgw.env(BUCKET), S3_BACKEND=backend, S3_WORKERS="2", S3_RETRY_SECONDS=str(retry_seconds),
                   AWS_EC2_METADATA_DISABLED="true")
        self.proc = subprocess.Popen([sys.executable, "launch.py", command, "--file", "data/"], cwd=project.path,
                                     env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, text=True)

    def wait(self):
        out, err = self.proc.communicate(timeout=WAIT)
        return self.proc.returncode, out, err


def moved(rgw, counter):
    """Objects the gateway has stored (counter "put") or served ("get") so far."""
    return rgw.perf_counters()[counter]


def when_underway(rgw, transfer, counter, at_least=40):
    """Wait until `at_least` objects moved and the transfer still runs (a few workers: it has far to go)."""
    start = moved(rgw, counter)
    wait_until(lambda: moved(rgw, counter) - start >= at_least or transfer.proc.poll() is not None,
               f"{at_least} objects to move", limit=WAIT)
    assert transfer.proc.poll() is None, "the transfer ended before the fault: make it longer"


def summary(out):
    found = SUMMARY.search(out)
    assert found, out
    return int(found.group(2)), int(found.group(3)), int(found.group(4))


def remote_objects(rgw):
    """{key: content} of everything under data/."""
    client = rgw.client()
    pages = client.get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix="data/")
    keys = [o["Key"] for page in pages for o in page.get("Contents", ())]
    with ThreadPoolExecutor(8) as pool:
        bodies = pool.map(lambda key: client.get_object(Bucket=BUCKET, Key=key)["Body"].read(), keys)
        return dict(zip(keys, bodies))


def assert_failed_cleanly(code, err):
    assert code == 1, err
    assert err.startswith("error: ") and "Traceback" not in err, err


@BACKENDS
def test_gateway_killed_mid_upload_then_a_rerun_uploads_the_rest(rgw, project, backend):
    make_tree(project.path, TREE)
    first = Transfer(project, rgw, backend, "upload", retry_seconds=2)
    when_underway(rgw, first, "put")
    rgw.kill_gateway()
    code, out, err = first.wait()
    assert_failed_cleanly(code, err)

    rgw.restart_gateway()
    stored = remote_objects(rgw)
    assert 0 < len(stored) < COUNT
    assert all(data == TREE[key] for key, data in stored.items())       # whole objects only

    code, out, err = Transfer(project, rgw, backend, "upload", retry_seconds=2).wait()
    assert code == 0, err
    assert summary(out) == (COUNT - len(stored), len(stored), 0)        # what arrived is not sent again
    assert remote_objects(rgw) == TREE


@BACKENDS
def test_gateway_killed_mid_download_leaves_no_partial_file_then_a_rerun_completes(rgw, project, backend):
    client = rgw.client()
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda item: client.put_object(Bucket=BUCKET, Key=item[0], Body=item[1]), TREE.items()))
    old = {"data/f0000.bin": b"the old version stays whole", f"data/f{COUNT - 1:04d}.bin": b"old too"}
    make_tree(project.path, old, mtime=1_500_000_000)
    first = Transfer(project, rgw, backend, "download", retry_seconds=2)
    when_underway(rgw, first, "get")
    rgw.kill_gateway()
    code, out, err = first.wait()
    assert_failed_cleanly(code, err)

    local = read_tree(project.path / "data")            # temporary files and staging folders would show
    expected = {key[len("data/"):]: data for key, data in TREE.items()}
    kept = {key[len("data/"):]: data for key, data in old.items()}
    assert local != expected                             # the fault did interrupt it
    assert all(data == expected[name] or data == kept.get(name) for name, data in local.items()), \
        sorted(name for name, data in local.items() if data != expected.get(name))

    rgw.restart_gateway()
    code, out, err = Transfer(project, rgw, backend, "download", retry_seconds=2).wait()
    assert code == 0, err
    assert read_tree(project.path / "data") == expected


@BACKENDS
def test_a_frozen_gateway_is_waited_for(rgw, project, backend):
    """SIGSTOP for 2 s mid-upload and mid-download (the gateway stops answering, connections hang):
    both transfers complete, within the bounded retry time."""
    make_tree(project.path, TREE)
    upload = Transfer(project, rgw, backend, "upload", retry_seconds=5)
    when_underway(rgw, upload, "put")
    rgw.pause(2.0)
    code, out, err = upload.wait()
    assert code == 0, err
    assert summary(out) == (COUNT, 0, 0)
    assert remote_objects(rgw) == TREE

    os.rename(project.path / "data", project.path / "uploaded")
    download = Transfer(project, rgw, backend, "download", retry_seconds=5)
    when_underway(rgw, download, "get")
    rgw.pause(2.0)
    code, out, err = download.wait()
    assert code == 0, err
    assert read_tree(project.path / "data") == read_tree(project.path / "uploaded")


@BACKENDS
def test_a_gateway_back_within_the_retry_time_lets_the_same_run_finish(rgw, project, backend):
    """radosgw killed mid-upload and started again at once: the refused requests are retried (with
    back-off, up to S3_RETRY_SECONDS) and the run completes without a failure."""
    make_tree(project.path, TREE)
    upload = Transfer(project, rgw, backend, "upload", retry_seconds=60)
    when_underway(rgw, upload, "put")
    rgw.restart_gateway()                                # kill, then start on the same port
    code, out, err = upload.wait()
    assert code == 0, err
    assert summary(out) == (COUNT, 0, 0)
    assert remote_objects(rgw) == TREE
