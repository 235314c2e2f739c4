"""`make monitor`: the real launch.py in a subprocess watching a folder, uploading to the S3 test servers.

No timing assertions: the tests wait (with generous limits) for what the server shows.
"""
import os
import queue
import signal
import subprocess
import sys
import threading
import time

import pytest

from conftest import wait_until

from fixtures_s3 import ACCESS_KEY, SECRET_KEY, make_tree

WAIT = 30


class MonitorProcess:
    def __init__(self, project, backend, **make_vars):
        env = dict(os.environ, S3_BACKEND=backend, **{k: str(v) for k, v in make_vars.items()})
        self.proc = subprocess.Popen([sys.executable, "launch.py", "monitor"], cwd=project.path, env=env,
                                     stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                     text=True)
        self.lines = queue.Queue()
        self.seen = []
        threading.Thread(target=self._pump, daemon=True).start()

    def _pump(self):
        for line in self.proc.stdout:
            self.lines.put(line.rstrip("\n"))

    def wait_for(self, text):
        deadline = time.monotonic() + WAIT
        while time.monotonic() < deadline:
            try:
                line = self.lines.get(timeout=0.2)
            except queue.Empty:
                if self.proc.poll() is not None and self.lines.empty():
                    break
                continue
            self.seen.append(line)
            if text in line:
                return line
        raise AssertionError(f"monitor never printed {text!r}; output so far: {self.seen}")

    def stop(self, sig=signal.SIGTERM):
        self.proc.send_signal(sig)
        code = self.proc.wait(WAIT)
        while not self.lines.empty():
            self.seen.append(self.lines.get())
        return code

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


@pytest.fixture
def monitor(s3, project):
    started = []

    def start(backend="s5cmd", **make_vars):
        started.append(MonitorProcess(project, backend, **make_vars))
        started[-1].wait_for("monitoring ")
        return started[-1]

    yield start
    for m in started:
        m.kill()



@pytest.mark.parametrize("backend", ["s5cmd", "boto3"])
def test_a_file_is_uploaded_once_complete_and_again_when_changed(s3, project, monitor, backend):
    m = monitor(backend, folder="ckpt/", interval="2")
    path = project.path / "ckpt" / "epoch-1.pt"
    with open(path, "wb") as f:                  # written in several steps, each well within `interval`
        for part in (b"first;", b"second;", b"third"):
            f.write(part)
            f.flush()
            time.sleep(0.1)
    m.wait_for("uploaded ckpt/epoch-1.pt")
    assert s3.get("ckpt/epoch-1.pt") == b"first;second;third"
    assert s3.count("PUT", "ckpt/epoch-1.pt") == 1

    path.write_bytes(b"rewritten later")
    m.wait_for("uploaded ckpt/epoch-1.pt")
    assert s3.get("ckpt/epoch-1.pt") == b"rewritten later"
    assert m.stop() == 0
    assert s3.count("PUT", "ckpt/epoch-1.pt") == 2
    assert s3.keys() == ["ckpt/epoch-1.pt"]                 # the lock file is never uploaded


def test_sigterm_flushes_what_is_pending(s3, project, monitor):
    m = monitor(folder="ckpt", interval="3600")            # nothing would ever become "stable"
    make_tree(project.path, {"ckpt/last.pt": "final weights", "ckpt/sub/log.txt": "done"})
    assert m.stop(signal.SIGTERM) == 0
    assert any("flushed 2 pending files" in line for line in m.seen), m.seen
    assert s3.get("ckpt/last.pt") == b"final weights" and s3.get("ckpt/sub/log.txt") == b"done"


def test_sigint_flushes_too_and_unchanged_files_are_not_resent(s3, project, monitor):
    make_tree(project.path, {"ckpt/a.pt": "a"})
    m = monitor(folder="ckpt/", interval="3600")
    assert m.stop(signal.SIGINT) == 0
    assert s3.keys() == ["ckpt/a.pt"]
    s3.clear_log()
    m = monitor(folder="ckpt/", interval="3600")           # a restarted monitor: a.pt is already there
    assert m.stop() == 0
    assert s3.count("PUT") == 0


def test_one_monitor_per_folder(s3, project, monitor):
    first = monitor(folder="ckpt/", interval="5")
    second = MonitorProcess(project, "s5cmd", folder="ckpt", interval="5")
    assert second.proc.wait(WAIT) == 1
    second.stop()
    assert second.seen == [f"error: ckpt/: another monitor (pid {first.proc.pid}) is already watching this folder"]
    assert first.stop() == 0


def test_delete_after_upload(s3, project, monitor):
    m = monitor(folder="out/", interval="0.5", delete_after_upload="true")
    make_tree(project.path, {"out/result.json": "{}"})
    m.wait_for("uploaded out/result.json")
    wait_until(lambda: not (project.path / "out/result.json").exists(), "the local file to be deleted")
    assert m.stop() == 0
    assert s3.get("out/result.json") == b"{}"


def test_monitor_output_has_no_credentials_and_bad_input_is_rejected(s3, project, monitor):
    m = monitor(folder="ckpt/", interval="5")
    m.stop()
    text = "\n".join(m.seen)
    assert ACCESS_KEY not in text and SECRET_KEY not in text
    bad = MonitorProcess(project, "s5cmd", folder="ckpt/*", interval="5")
    assert bad.proc.wait(WAIT) == 2
    bad.stop()
    assert bad.seen == ["error: folder=ckpt/*: expected a folder, not a pattern with wildcards"]


@pytest.mark.parametrize("start", ["folder=checkpoints/ interval=30 python launch.py monitor",
                                   "make monitor folder=checkpoints/ interval=30"])
def test_the_documented_job_recipe_keeps_the_last_checkpoint(s3, project, start):
    """The README's Job script: the checkpoint written just before training ends is uploaded
    (make passes SIGTERM on to the monitor)."""
    train = "import time, pathlib; pathlib.Path('checkpoints/last.pt').write_text('final'); time.sleep(0.2)"
    script = (
        f"{start} &\n"
        "monitor=$!\n"
        "trap 'kill -TERM $monitor; wait $monitor; exit 143' TERM\n"
        # the test waits for the monitor to be up; a real Job trains for hours
        "until [ -e checkpoints/.toolbox-monitor.lock ]; do sleep 0.05; done\n"
        f"python -c \"{train}\"\n"
        "kill -TERM $monitor; wait $monitor; echo \"monitor exit $?\"\n")
    env = dict(os.environ, PATH=os.path.dirname(sys.executable) + os.pathsep + os.environ["PATH"],
               PYTHON=sys.executable)
    (project.path / "checkpoints").mkdir()
    r = subprocess.run(["bash", "-c", script], cwd=project.path, env=env, capture_output=True, text=True,
                       timeout=WAIT)
    assert r.returncode == 0, r
    assert "flushed 1 pending files" in r.stdout
    # make reports the signal that ended it (143); the monitor itself exits 0 after flushing
    assert r.stdout.rstrip().endswith("monitor exit 143" if start.startswith("make") else "monitor exit 0")
    assert s3.get("checkpoints/last.pt") == b"final"
