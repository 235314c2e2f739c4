"""Stopping local runs with real processes: Ctrl-C (SIGINT) and SIGTERM give every running cell SIGINT and
`grace` seconds to save, then SIGTERM, then SIGKILL; the summary is always printed; exit 130 / 143."""
import os
import re
import signal
import subprocess
import sys

import pytest

from conftest import wait_until

# A training script that saves a checkpoint for ~2 s when interrupted (as PyTorch Lightning & co. do).
CHECKPOINTING = """\
import pathlib, sys, time
target = pathlib.Path(sys.argv[1])
pathlib.Path(sys.argv[1] + ".ready").write_text("")
try:
    time.sleep(120)
except KeyboardInterrupt:
    with open(target, "w") as out:
        for step in range(20):
            out.write(f"part {step}\\n")
            out.flush()
            time.sleep(0.1)
        out.write("complete\\n")
"""


def start(project, **make_vars):
    """launch.py local in its own session, so that a test's signal reaches the toolbox alone."""
    env = dict(os.environ, **{k: str(v) for k, v in make_vars.items()})
    return subprocess.Popen([sys.executable, str(project.path / "launch.py"), "local"], cwd=project.path, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)


def ready(project, *names):
    wait_until(lambda: all((project.path / f"{n}.ready").exists() for n in names), "the cells to start")


def checkpointing_grid(project, count):
    project.write("src/train.py", CHECKPOINTING)
    values = ", ".join(f"c{i}" for i in range(count))
    project.launch_yaml(f"model:\n  m:\n    command: python src/train.py <x>\n    hparam: {{x: [{values}]}}\n")


@pytest.mark.parametrize("jobs", [1, 2])
@pytest.mark.parametrize("sig, code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_cells_get_sigint_and_time_to_save(project, jobs, sig, code):
    checkpointing_grid(project, 3)
    proc = start(project, jobs=jobs)
    running = [f"c{i}" for i in range(jobs)]
    ready(project, *running)
    os.killpg(proc.pid, sig)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == code, err
    for name in running:   # the whole checkpoint was written: nothing was killed while saving
        assert (project.path / name).read_text().endswith("part 19\ncomplete\n")
    assert not (project.path / "c2.ready").exists()   # no new cell started
    assert f"{sig.name} received: starting no new cell; SIGINT sent to {jobs} running cell(s)" in err
    assert statuses(out) == {f"c{i}": "interrupted" if i < jobs else "not run" for i in range(3)}
    assert "0 succeeded, 0 failed, 3 not run or stopped, of 3" in out


def statuses(out):
    """x value -> STATUS of the summary table."""
    return {re.search(r"-x-(\w+)-[0-9a-f]{10}$", line.split()[0]).group(1): line.split(None, 1)[1].rsplit(None, 1)[0]
            for line in out.splitlines() if line.startswith("alice-demo-")}


def test_a_cell_that_ignores_sigint_gets_sigterm_after_the_grace_period_then_sigkill(project):
    project.launch_yaml("""\
        model:
          m:
            command: trap '' INT; trap 'echo got TERM' TERM; touch <x>.ready; for i in $(seq 600); do sleep 0.05; done
            hparam: {x: [stubborn]}
          n:
            command: trap '' INT TERM; touch <x>.ready; for i in $(seq 600); do sleep 0.05; done
            hparam: {x: [deaf]}
    """)
    proc = start(project, jobs=2, grace=0.5)
    ready(project, "stubborn", "deaf")
    os.killpg(proc.pid, signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130
    assert "SIGTERM sent to 2 cell(s) still running" in err
    assert "SIGKILL sent to" in err
    assert "got TERM" in out
    assert "interrupted (signal SIGKILL)" in out


def test_a_second_ctrl_c_moves_to_the_next_step_at_once(project):
    project.launch_yaml("model:\n  m:\n    command: trap '' INT; trap 'echo got TERM; exit 5' TERM; touch <x>.ready;"
                        " for i in $(seq 600); do sleep 0.05; done\n    hparam: {x: [a]}\n")
    proc = start(project, grace=600)
    ready(project, "a")
    os.killpg(proc.pid, signal.SIGINT)
    while "SIGINT received" not in proc.stderr.readline():   # the first one was handled: not coalesced
        pass
    os.killpg(proc.pid, signal.SIGINT)
    out, err = proc.communicate(timeout=60)   # well before the 600 s grace period
    assert proc.returncode == 130
    assert "got TERM" in out and "interrupted (exit 5)" in out


@pytest.mark.parametrize("grace", ["-1", "nan", "soon"])
def test_bad_grace_values(project, cli, grace):
    project.launch_yaml("model:\n  m: {command: touch ran}\n")
    result = cli("local", grace=grace)
    assert result.code == 2 and result.err.startswith(f"error: grace={grace}: ")
    assert not (project.path / "ran").exists()
