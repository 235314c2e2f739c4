"""Interrupts and dying endpoints: Ctrl-C or SIGTERM while bytes are in flight leaves no partial file,
staging folder or s5cmd input behind, on both backends; s5cmd's command line never carries credentials;
an endpoint that dies mid-transfer is reported at once; the monitor's flush ends within its deadline."""
import json
import os
import signal
import subprocess
import sys
import threading
import urllib.request

import pytest

from conftest import TESTS, wait_until

from fixtures_s3 import (ACCESS_KEY, BUCKET, LOG_PATH, S3_VARS, SECRET_KEY, Request, make_tree, read_tree,
                         s3_environment)


def children_of(pid):
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    if int(f.read().rsplit(")", 1)[1].split()[1]) == pid:
                        found.append(int(entry))
            except (OSError, IndexError, ValueError):
                continue
    return found



def _toolbox_files(folder):
    """The toolbox's temporary files and staging folders in a folder (and below)."""
    return sorted(str(p.relative_to(folder)) for p in folder.rglob(".toolbox-*"))


def signal_a_stalled_download(s3, project, sig, inspect=lambda proc: None, **make_vars):
    """`launch.py download` of d/ (big.bin: 50 kB arrive, then the server stalls) gets `sig` once its
    temporary file exists; (exit status, stdout, stderr)."""
    s3.seed({"d/big.bin": os.urandom(200_000), "d/small.txt": "small"})
    hold = threading.Event()
    s3.cut_bodies(1, keep=50_000, hold=hold, key="d/big.bin")
    env = dict(os.environ, **make_vars)
    proc = subprocess.Popen([sys.executable, "launch.py", "download"], cwd=project.path, env=env,
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        wait_until(lambda: s3.count("GET", "d/big.bin") >= 1, "the download to start")
        wait_until(lambda: _toolbox_files(project.path / "d"), "the temporary file to appear")
        inspect(proc)
        proc.send_signal(sig)
        out, err = proc.communicate(timeout=30)
    finally:
        hold.set()
        if proc.poll() is None:
            proc.kill()
    return proc.returncode, out, err


def s5cmd_has_no_credentials_on_its_command_line(proc):
    (child,) = children_of(proc.pid)
    with open(f"/proc/{child}/cmdline", "rb") as f:
        cmdline = f.read().decode()
    assert "s5cmd" in cmdline and "run" in cmdline
    assert SECRET_KEY not in cmdline and ACCESS_KEY not in cmdline


@pytest.mark.parametrize("backend", ["s5cmd", "boto3"])
def test_ctrl_c_mid_download_leaves_no_partial_file(s3, project, backend):
    make_tree(project.path, {"d/big.bin": "the old version stays intact"})
    inspect = s5cmd_has_no_credentials_on_its_command_line if backend == "s5cmd" else (lambda proc: None)
    code, out, err = signal_a_stalled_download(s3, project, signal.SIGINT, inspect, S3_BACKEND=backend, file="d/",
                                               overwrite="1")
    assert code == 130, (out, err)
    assert "interrupted" in err
    files = read_tree(project.path / "d")
    assert files.pop("big.bin") == b"the old version stays intact"
    assert files in ({}, {"small.txt": b"small"})            # nothing partial, no temporary file


@pytest.mark.parametrize("backend", ["s5cmd", "boto3"])
def test_ctrl_c_mid_multipart_download_exits_while_parts_are_stalled(s3, project, backend):
    """boto3's multipart runs parts on s3transfer's threads: they must not hold the process at exit."""
    s3.seed({"big/blob.bin": os.urandom(12 * 1024 * 1024)})
    hold = threading.Event()
    s3.cut_bodies(100, keep=1000, hold=hold, key="big/blob.bin")     # every GET stalls after 1000 bytes
    env = dict(os.environ, S3_BACKEND=backend, S3_PART_SIZE_MB="5", file="big/")
    proc = subprocess.Popen([sys.executable, "launch.py", "download"], cwd=project.path, env=env,
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        wait_until(lambda: s3.count("GET", "big/blob.bin") >= 1, "the download to start")
        wait_until(lambda: _toolbox_files(project.path / "big"), "the temporary file to appear")
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=30)
    finally:
        hold.set()
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, (out, err)
    assert _toolbox_files(project.path / "big") == []


@pytest.mark.parametrize("backend", ["s5cmd", "boto3"])
@pytest.mark.parametrize("pattern", ["d/", "d/big.bin"])      # s5cmd: a wildcard copy into a staging folder / per key
def test_sigterm_mid_download_leaves_nothing_behind(s3, project, tmp_path, backend, pattern):
    """`kill`, a timeout or a pod deletion: the temporary file, the staging folder and s5cmd's input are
    removed, and the process still ends by SIGTERM."""
    temp = tmp_path / "tmp"
    temp.mkdir()
    code, out, err = signal_a_stalled_download(s3, project, signal.SIGTERM, S3_BACKEND=backend, file=pattern,
                                               TMPDIR=str(temp))
    assert code in (-signal.SIGTERM, 128 + signal.SIGTERM), (out, err)
    assert _toolbox_files(project.path / "d") == [] and list(temp.iterdir()) == []
    assert set(read_tree(project.path / "d")) <= {"small.txt"}      # nothing partial, under any name


class MortalS3:
    """A moto server in its own process, so that a test can kill it mid-transfer (an endpoint that dies)."""

    def __init__(self):
        self.proc = subprocess.Popen([sys.executable, str(TESTS / "fixtures_s3.py")], stdout=subprocess.PIPE,
                                     text=True)
        self.url = self.proc.stdout.readline().strip()
        self.client = boto3_client(self.url)
        self.client.create_bucket(Bucket=BUCKET)

    def requests(self, kind):
        with urllib.request.urlopen(self.url + LOG_PATH, timeout=10) as answer:
            return sum(1 for row in json.loads(answer.read()) if Request(*row).kind == kind)

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


@pytest.fixture
def mortal_s3(project):
    server = MortalS3()
    yield server
    server.kill()


def boto3_client(url):
    import boto3
    from botocore.config import Config

    return boto3.client("s3", endpoint_url=url, aws_access_key_id=ACCESS_KEY, aws_secret_access_key=SECRET_KEY,
                        region_name="us-east-1", config=Config(s3={"addressing_style": "path"}))


def launch(project, server, command, backend, **make_vars):
    env = {k: v for k, v in os.environ.items() if k not in S3_VARS}
    env.update(s3_environment(server.url), S3_BACKEND=backend, S3_WORKERS="2", S3_RETRY_SECONDS="2")
    env.update(make_vars)
    return subprocess.Popen([sys.executable, "launch.py", command], cwd=project.path, env=env,
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


@pytest.mark.parametrize("backend", ["s5cmd", "boto3"])
@pytest.mark.parametrize("direction", ["download", "upload"])
def test_an_endpoint_that_dies_mid_transfer_fails_the_rest_at_once(mortal_s3, project, backend, direction):
    """The first transfer that cannot reach the endpoint after its retries (S3_RETRY_SECONDS) stops the
    batch: the keys not done are reported as such, without each one retrying in turn (minutes, before)."""
    files = {f"d/{i:03d}.bin": os.urandom(100_000) for i in range(200)}
    if direction == "download":
        for key, data in files.items():
            mortal_s3.client.put_object(Bucket=BUCKET, Key=key, Body=data)
    else:
        make_tree(project.path, files)
    kind = "GET" if direction == "download" else "PUT"
    proc = launch(project, mortal_s3, direction, backend, file="d/")
    try:
        wait_until(lambda: mortal_s3.requests(kind) >= 20, "the transfer to be under way")
        mortal_s3.kill()
        out, _ = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 1, out
    assert "transfers failed" in out
    assert "not transferred: the S3 endpoint stopped answering" in out, out


@pytest.mark.parametrize("backend", ["s5cmd", "boto3"])
def test_the_monitor_says_what_it_could_not_upload_when_s3_is_down(mortal_s3, project, backend):
    """SIGTERM with the endpoint gone: the flush ends within S3_FLUSH_SECONDS (inside Kubernetes' grace
    period) and names the files it could not upload, even when retries alone would take longer."""
    env = dict(S3_RETRY_SECONDS="60", S3_FLUSH_SECONDS="3", folder="ckpt/", interval="3600")
    proc = launch(project, mortal_s3, "monitor", backend, **env)
    lines = []
    try:
        for line in proc.stdout:
            lines.append(line)
            if line.startswith("monitoring "):
                break
        mortal_s3.kill()
        make_tree(project.path, {"ckpt/last.pt": "final weights"})
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    out = "".join(lines) + out
    assert proc.returncode == 1, out
    assert "not uploaded: ckpt/last.pt: " in out
    assert out.rstrip().endswith("monitor stopped: flushed 0 pending files, 1 not uploaded (listed above)"), out
