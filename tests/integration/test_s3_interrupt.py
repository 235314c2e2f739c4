"""An interrupted download (Ctrl-C while bytes are in flight) leaves no partial file, on both backends;
and s5cmd's command line never carries credentials."""
import os
import signal
import subprocess
import sys
import threading

import pytest

from conftest import wait_until

from fixtures_s3 import ACCESS_KEY, SECRET_KEY, make_tree, read_tree


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



@pytest.mark.parametrize("backend", ["s5cmd", "boto3"])
def test_ctrl_c_mid_download_leaves_no_partial_file(s3, project, backend):
    s3.seed({"d/big.bin": os.urandom(200_000), "d/small.txt": "small"})
    make_tree(project.path, {"d/big.bin": "the old version stays intact"})
    hold = threading.Event()
    s3.cut_bodies(1, keep=50_000, hold=hold, key="d/big.bin")   # 50 kB arrive, then the server stalls
    env = dict(os.environ, S3_BACKEND=backend, file="d/", overwrite="1")
    proc = subprocess.Popen([sys.executable, "launch.py", "download"], cwd=project.path, env=env,
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        wait_until(lambda: s3.count("GET", "d/big.bin") >= 1, "the download to start")
        wait_until(lambda: any(n.startswith(".toolbox-") for n in os.listdir(project.path / "d")),
                   "the temporary file to appear")
        if backend == "s5cmd":
            (child,) = children_of(proc.pid)
            with open(f"/proc/{child}/cmdline", "rb") as f:
                cmdline = f.read().decode()
            assert "s5cmd" in cmdline and "run" in cmdline
            assert SECRET_KEY not in cmdline and ACCESS_KEY not in cmdline
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=30)
    finally:
        hold.set()
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, (out, err)
    assert "interrupted" in err
    files = read_tree(project.path / "d")
    assert files.pop("big.bin") == b"the old version stays intact"
    assert files in ({}, {"small.txt": b"small"})            # nothing partial, no temporary file
