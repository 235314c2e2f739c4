"""`make status watch=1` against the API double: one list and one watch per kind (no call per cell), the
watch resumed after the server ends it and replaced by a new list after 410 Gone; plain lines in a pipe;
the live view in a real terminal (tmux), redrawn in place, and a clean terminal after Ctrl-C."""
import os
import queue
import shutil
import subprocess
import sys
import threading
import time

import pytest
from conftest import wait_until
from toolbox.kube.client import Cluster
from toolbox.kube.sweep import Sweep
from toolbox.kube.watch import SweepWatch

LAUNCH = """\
    model:
      train:
        command: python src/train.py --lr <lr>
        hparam:
          lr: [0.1, 0.01, 0.001, 0.0001]
"""
needs_tmux = pytest.mark.skipif(not shutil.which("tmux"), reason="tmux is not installed (apt-get install tmux)")


@pytest.fixture
def sweep(project, kubeconfig, kube_api, make):
    project.launch_yaml(LAUNCH)
    done = make("job")
    assert done.returncode == 0, done.stderr
    kube_api.clear_requests()
    return kube_api


def job_names(kube_api):
    return sorted(j["metadata"]["name"] for j in kube_api.list("Job"))


class Reader:
    """The lines a process writes, collected by a thread, to wait for."""

    def __init__(self, stream):
        self.lines = []
        self.thread = threading.Thread(target=self._read, args=(stream,), daemon=True)
        self.thread.start()

    def _read(self, stream):
        for line in stream:
            self.lines.append(line.rstrip("\n"))

    def wait_for(self, text):
        wait_until(lambda: any(text in line for line in self.lines), f"a line with {text!r} in {self.lines}")

    @property
    def text(self):
        return "\n".join(self.lines)


def watch_in_a_pipe(project):
    """`make status watch=1 interval=0` with its output in a pipe, and a reader of its lines."""
    proc = subprocess.Popen(["make", "status", "watch=1", "interval=0"], cwd=project.path, text=True,
                            env=dict(os.environ, PYTHON=sys.executable), stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT)
    return proc, Reader(proc.stdout)


def test_plain_lines_follow_the_sweep_until_every_cell_finished(sweep, project):
    names = job_names(sweep)
    proc, out = watch_in_a_pipe(project)
    try:
        out.wait_for("0/4 done; 4 pending")
        for name in names[:2]:
            sweep.set_pod_unschedulable(sweep.job_pod(name)["metadata"]["name"])
        out.wait_for("2 Insufficient nvidia.com/gpu")
        sweep.mark_job_running(names[2])
        out.wait_for("1 running")
        sweep.mark_job_failed(names[2], exit_code=137, pod_reason="OOMKilled")
        out.wait_for(f"failed: {names[2]}: OOMKilled (exit code 137)")
        for name in names[:2] + names[3:]:
            sweep.mark_job_succeeded(name)
        assert proc.wait(30) != 0  # ends by itself once every cell finished; a failure makes it fail
    finally:
        proc.kill()
    out.thread.join(5)
    assert "All 4 cells finished: 3 succeeded, 1 failed." in out.text
    assert "4/4 done (3 succeeded, 1 failed)" in out.text
    assert "\x1b[" not in out.text  # no terminal codes in a log
    assert sweep.count("list", "Job") == 1 and sweep.count("list", "Pod") == 1
    assert sweep.count("watch", "Job") >= 1 and sweep.count("watch", "Pod") >= 1
    assert sweep.count("get") == 0  # never a call per cell


def test_a_lost_watch_connection_is_reported_and_retried(sweep, project):
    names = job_names(sweep)
    dropping = threading.Event()
    dropping.set()
    sweep.request_hook = lambda request: "drop" if (
        dropping.is_set() and request.query.get("watch") and request.path.endswith("/pods")) else None
    proc, out = watch_in_a_pipe(project)
    try:
        out.wait_for("cannot reach the Kubernetes API server")
        assert "(retrying)" in out.text
        dropping.clear()
        time.sleep(0.5)
        sweep.mark_job_running(names[0])  # seen through the Pods watch once it is back
        out.wait_for("1 running")
        for name in names:
            sweep.mark_job_succeeded(name)
        assert proc.wait(30) == 0
    finally:
        proc.kill()


def test_watch_resumes_when_the_server_ends_it_and_relists_after_410(sweep, project):
    from toolbox.core.grid import load_cells

    cells = load_cells(".")
    names = [cell.name for cell in cells]
    with Cluster("ns") as cluster:
        watch = SweepWatch(cluster, "user=alice,project=demo", timeout_seconds=1)
        listed = watch.start()
        state = Sweep(cells, jobs=listed["Job"], pods=listed["Pod"])
        seen = queue.Queue()

        def apply_until(condition, what):
            deadline = time.monotonic() + 30
            while not condition():
                assert time.monotonic() < deadline, f"timed out waiting for {what}"
                for update in watch.updates(0.2):
                    seen.put(update[0])
                    if update[0] == "reset":
                        state.reset(update[1], update[2])
                    elif update[0] == "event":
                        state.apply(update[1], update[2], update[3])

        try:
            time.sleep(1.5)  # the server has ended the first watches: these events come on resumed ones
            sweep.mark_job_running(names[0])
            apply_until(lambda: state.records[names[0]]["state"] == "running", "the resumed watch")
            assert sweep.count("watch", "Job") >= 2
            sweep.forget_history()  # a compaction: the watches' versions are gone (410)
            sweep.mark_job_succeeded(names[1])
            apply_until(lambda: state.records[names[1]]["state"] == "succeeded", "a new list after 410")
        finally:
            watch.stop()
    kinds = list(seen.queue)
    assert "reset" in kinds and "problem" not in kinds
    assert sweep.count("list", "Job") >= 2  # the first list and the one after 410
    assert [state.records[n]["state"] for n in names] == ["running", "succeeded", "pending", "pending"]


def test_watch_of_a_finished_sweep_prints_it_once_and_ends(sweep, make):
    for name in job_names(sweep):
        sweep.mark_job_succeeded(name)
    done = make("status", "watch=1")
    assert done.returncode == 0, done.stderr
    assert "4/4 done (4 succeeded)" in done.stdout and "All 4 cells finished: 4 succeeded, 0 failed." in done.stdout


# -- a real terminal --------------------------------------------------------------------------------------------
class Tmux:
    """A private tmux server (its own socket) with one window of a fixed size."""

    def __init__(self, folder, width=100, height=30):
        self.socket = str(folder / "tmux.sock")
        self.width, self.height = width, height

    def __call__(self, *args):
        return subprocess.run(["tmux", "-S", self.socket, *args], capture_output=True, text=True, timeout=30,
                              check=False)

    def start(self, command, env):
        done = subprocess.run(["tmux", "-S", self.socket, "-f", "/dev/null", "new-session", "-d", "-s", "w",
                               "-x", str(self.width), "-y", str(self.height), command],
                              env=env, capture_output=True, text=True, timeout=30, check=False)
        assert done.returncode == 0, done.stderr

    def screen(self, escapes=False):
        return self("capture-pane", "-p", "-t", "w", *(["-e"] if escapes else [])).stdout

    def history(self):
        return self("capture-pane", "-p", "-t", "w", "-S", "-").stdout

    def wait_for(self, text):
        wait_until(lambda: text in self.screen(), f"{text!r} on the screen:\n{self.screen()}")

    def stop(self):
        self("kill-server")


@needs_tmux
def test_live_view_in_a_terminal_redraws_in_place_and_ctrl_c_leaves_it_clean(sweep, project, tmp_path,
                                                                           kubeconfig):
    names = job_names(sweep)
    script = tmp_path / "watch.sh"
    # like an interactive shell, the script outlives a Ctrl-C of its command (and says how it ended)
    script.write_text(f"trap true INT\ncd {project.path}\nmake status watch=1\necho \"exit=$?\"\nsleep 120\n")
    env = dict(os.environ, PYTHON=sys.executable, KUBECONFIG=str(kubeconfig), TERM="xterm-256color")
    env.pop("NO_COLOR", None)
    tmux = Tmux(tmp_path)
    tmux.start(f"bash {script}", env)
    try:
        tmux.wait_for("0/4 done")
        assert tmux("display", "-p", "-t", "w", "#{cursor_flag}").stdout.strip() == "0"  # hidden while drawing
        for name in names[:2]:
            sweep.set_pod_unschedulable(sweep.job_pod(name)["metadata"]["name"])
        tmux.wait_for("2 cells: Insufficient nvidia.com/gpu")
        sweep.mark_job_failed(names[2], exit_code=137, pod_reason="OOMKilled")
        tmux.wait_for("1 cell: OOMKilled (exit code 137)")
        tmux.wait_for(f"pending → failed  {names[2]}")
        sweep.mark_job_succeeded(names[3])
        tmux.wait_for("2/4 done, 1 failed")
        coloured = tmux.screen(escapes=True)
        assert "\x1b[31m" in coloured and "\x1b[32m" in coloured  # failed red, succeeded green
        tmux("send-keys", "-t", "w", "C-c")
        tmux.wait_for("exit=")
        screen = tmux.screen()
        assert "exit=130" in screen
        assert tmux("display", "-p", "-t", "w", "#{cursor_flag}").stdout.strip() == "1"  # cursor shown again
        history = tmux.history()
    finally:
        tmux.stop()
    lines = history.splitlines()
    # redrawn in place: one frame on the screen, not one per refresh
    assert sum(line.startswith("Sweep demo (alice in ns): 4 cells") for line in lines) == 1
    assert sum(line.startswith("Ctrl-C stops watching") for line in lines) == 1
    stopped = [i for i, line in enumerate(lines) if line.startswith("Stopped watching: 2/4 done.")]
    assert stopped and lines[stopped[0] - 1].startswith("Ctrl-C stops watching")  # the last frame is whole
    assert "Traceback" not in history and "interrupted" not in history
