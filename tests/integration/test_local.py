"""Local runs: order, output, exit codes, summary, fail_fast, parallel runs, GPU pinning, .env, dry runs."""
import json
import os
import re
import signal
import subprocess
import sys
import time

import pytest

from conftest import ROOT


def quickstart(project):
    for rel in ("data/1.txt", "data/2.txt", "src/avg.py", "src/med.py", "config/launch.yaml", "config/kube.yaml"):
        project.write(rel, (ROOT / "examples" / "quickstart" / rel).read_text(), dedent=False)


def test_quickstart_make_local_prints_the_seed_output(project, make):
    quickstart(project)
    result = make("local")
    assert result.returncode == 0, result.stderr
    assert re.findall(r"^\d\.0$", result.stdout, re.M) == ["2.0", "2.0", "5.0", "5.0"]
    first = result.stdout.split("[2/4]")[0]
    assert 'Running {\n    "_fn": "data/1.txt"\n} ... \n\npython src/avg.py data/1.txt\n\n2.0\n' in first
    assert re.search(r"^\[1/4\] user-example-average-data1-[0-9a-f]{10}$", first, re.M)
    assert "4 succeeded, 0 failed" in result.stdout


def test_failures_are_summarised_and_exit_non_zero(project, cli):
    project.launch_yaml("model:\n  m:\n    command: echo ran <x>; test <x> != b || exit 3\n"
                        "    hparam: {x: [a, b, c]}\n")
    result = cli("local")
    assert result.code == 1
    rows = [line.split(None, 1)[1].rsplit(None, 1)[0] for line in result.out.splitlines()
            if line.startswith("alice-demo-m")]
    assert rows == ["succeeded", "failed (exit 3)", "succeeded"]
    assert "2 succeeded, 1 failed, 0 not run or stopped, of 3" in result.out


def test_fail_fast_stops_at_first_failure(project, cli):
    project.launch_yaml("model:\n  m:\n    command: echo ran <x>; test <x> != b || exit 3\n"
                        "    hparam: {x: [a, b, c]}\n")
    result = cli("local", fail_fast="true")
    assert result.code == 1
    assert re.findall(r"^ran (\w)$", result.out, re.M) == ["a", "b"]
    assert "1 succeeded, 1 failed, 1 not run or stopped, of 3" in result.out


def test_parallel_runs_prefix_output_and_write_logs(project, cli):
    project.launch_yaml("model:\n  m:\n    command: sleep 0.5; echo out <x>; echo err <x> >&2\n"
                        "    hparam: {x: [1, 2, 3, 4]}\n")
    started = time.monotonic()
    result = cli("local", jobs=4)
    elapsed = time.monotonic() - started
    assert result.code == 0, result.err
    names = [line.split()[0] for line in result.out.splitlines() if line.startswith("alice-demo-m")]
    assert len(names) == 4
    for i, name in enumerate(names, 1):
        assert f"[{name}] out {i}" in result.out
        assert f"[{name}] err {i}" in result.out
        log = (project.path / "logs" / f"{name}.log").read_text()
        assert f"out {i}\n" in log and f"err {i}\n" in log and f"echo out {i}" in log
    assert elapsed < 4 * 0.5 + 1.5  # ran side by side (generous: the real target is in bench/plan.py)


def test_gpu_pinning_one_gpu_per_run(project, cli):
    project.launch_yaml("model:\n  m:\n    command: sleep 0.3; echo gpu=$CUDA_VISIBLE_DEVICES\n"
                        "    hparam: {x: [1, 2, 3, 4]}\n")
    result = cli("local", gpus="0,1")
    assert result.code == 0
    seen = re.findall(r"\] gpu=(\S*)$", result.out, re.M)
    assert sorted(seen) == ["0", "0", "1", "1"]


def test_gpu_slices(project, cli):
    project.launch_yaml("model:\n  m:\n    command: echo gpu=$CUDA_VISIBLE_DEVICES\n    hparam: {x: [1, 2]}\n")
    result = cli("local", gpus="0,1,2,3", gpus_per_run=2)
    assert sorted(re.findall(r"\] gpu=(\S*)$", result.out, re.M)) == ["0,1", "2,3"]


@pytest.mark.parametrize("make_vars, message", [
    ({"jobs": "0"}, "error: jobs=0: expected at least 1"),
    ({"jobs": "two"}, "error: jobs=two: expected an integer"),
    ({"gpus": "0", "gpus_per_run": "2"}, "error: gpus=0: 1 GPU(s) given but gpus_per_run=2"),
    ({"fail_fast": "maybe"}, "error: fail_fast=maybe: expected true or false"),
])
def test_bad_make_variables(project, cli, make_vars, message):
    project.launch_yaml("model:\n  m: {command: touch ran}\n")
    result = cli("local", **make_vars)
    assert result.code == 2
    assert message in result.err
    assert not (project.path / "ran").exists()


def test_env_file_values_arrive_exactly(project, cli):
    project.env("""\
        PLAIN=plain value # a comment
        QUOTED="a b # not a comment $HOME 'single'"
        SINGLE='x"y $NOT_EXPANDED'
        export EXPORTED=yes
    """)
    project.write("src/show_env.py", "import json, os, sys\nprint(json.dumps({k: os.environ.get(k) for k in sys.argv[1:]}))\n")
    project.launch_yaml("model:\n  m:\n    command: python src/show_env.py PLAIN QUOTED SINGLE EXPORTED\n")
    result = cli("local")
    assert result.code == 0, result.err
    line = next(line for line in result.out.splitlines() if line.startswith("{"))
    assert json.loads(line) == {"PLAIN": "plain value", "QUOTED": "a b # not a comment $HOME 'single'",
                                "SINGLE": 'x"y $NOT_EXPANDED', "EXPORTED": "yes"}


def test_pythonpath_and_cell_name(project, cli, monkeypatch):
    monkeypatch.setenv("PYTHONPATH", "/elsewhere")
    project.launch_yaml("model:\n  m:\n    command: python -c \"import os, toolbox.core.naming; "
                        "print(os.environ['PYTHONPATH']); print(os.environ['TOOLBOX_CELL_NAME'])\"\n")
    result = cli("local")
    assert result.code == 0, result.err
    assert f"{project.path / 'src'}:/elsewhere" in result.out
    assert re.search(r"^alice-demo-m-[0-9a-f]{10}$", result.out, re.M)


def test_remote_variant_inside_a_cluster_pod(project, cli, monkeypatch):
    project.launch_yaml("model:\n  m:\n    command: '[echo local](echo remote)'\n")
    assert "\nlocal\n" in cli("local").out
    monkeypatch.setenv("NODE_NAME", "node-1")
    assert "\nremote\n" in cli("local").out


def test_local_first_runs_only_the_first_cell(project, cli):
    project.launch_yaml("model:\n  m:\n    command: echo cell <x>\n    hparam: {x: [1, 2]}\n"
                        "run:\n  - {hparam: {x: 1}}\n  - {hparam: {x: 2}}\n")
    result = cli("local-first")
    assert "cell 1" in result.out and "cell 2" not in result.out
    project.launch_yaml("model:\n  m:\n    command: echo cell <x> on $CUDA_VISIBLE_DEVICES\n    hparam: {x: [1, 2]}\n")
    result = cli("local-first", gpus="2,3")
    assert re.findall(r"^cell .*$", result.out, re.M) == ["cell 1 on 2"]


def test_local_dryrun_and_plan(project, cli):
    project.launch_yaml("model:\n  m:\n    command: |\n      echo <x>\n      echo done\n    gpu_count: 1\n"
                        "    hparam: {x: [1, 2], _h: z}\n")
    result = cli("local-dryrun")
    assert result.code == 0
    lines = result.out.splitlines()
    assert re.match(r"^alice-demo-m-x-1-[0-9a-f]{10}: echo 1$", lines[0])
    assert lines[1] == "    echo done"
    plan = cli("plan").out
    assert "NAME" in plan and "RESOURCES" in plan
    assert re.search(r"alice-demo-m-x-2-\w+\s+m\s+-\s+x=2\s+1 GPU, 5 CPU, 32 GB", plan)
    assert "2 cells" in plan


def test_interrupt_stops_runs_and_exits_130(project):
    project.launch_yaml("model:\n  m:\n    command: echo started; sleep 30\n    hparam: {x: [1, 2]}\n")
    proc = subprocess.Popen([sys.executable, str(project.path / "launch.py"), "local"], cwd=project.path,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    deadline = time.monotonic() + 10
    line = ""
    while line != "started\n" and time.monotonic() < deadline:
        line = proc.stdout.readline()
    os.killpg(proc.pid, signal.SIGINT)
    out, _ = proc.communicate(timeout=10)
    assert proc.returncode == 130
    assert "interrupted" in out and "not run" in out


def test_error_messages_never_show_secret_values(project, cli):
    project.env("AWS_SECRET_ACCESS_KEY=sekrit-value-123\nS3_BUCKET_NAME=my-bucket\n")
    project.launch_yaml("model:\n  m: {command: x}\n")
    result = cli("local-dryrun", model="sekrit-value-123")
    assert result.code == 2
    assert "sekrit-value-123" not in result.err and "unknown model '***'" in result.err
    result = cli("local-dryrun", model="my-bucket")
    assert "unknown model 'my-bucket'" in result.err  # public settings (bucket, endpoint) stay readable


def test_a_non_utf8_env_file_is_a_clear_error(project, cli):
    (project.path / ".env").write_bytes(b"A=\xff\n")
    project.launch_yaml("model:\n  m: {command: x}\n")
    result = cli("plan")
    assert result.code == 2 and result.err.startswith("error: .env: not UTF-8 text (byte 2)")


def test_the_state_file_records_every_cell(project, cli):
    project.launch_yaml("model:\n  m:\n    command: echo <x>; test <x> != b || exit 3\n"
                        "    hparam: {x: [a, b], _h: z}\n  n: {command: 'true'}\n"
                        "dataset:\n  d1: {}\nrun: {model: [m, n]}\n")
    assert cli("local", fail_fast="true").code == 1
    state = json.loads((project.path / "build" / "local-state.json").read_text())
    assert state["version"] == 1 and isinstance(state["updated"], float)
    assert state["grid"] == {"models": ["m", "n"], "datasets": ["d1"]}
    cells = list(state["cells"].values())
    assert [(c["model"], c["dataset"], c["hparams"], c["state"], c["exit_code"], c["log"], c["gpus"])
            for c in cells] == [("m", "d1", {"x": "a", "_h": "z"}, "succeeded", 0, None, None),
                                ("m", "d1", {"x": "b", "_h": "z"}, "failed", 3, None, None),
                                ("n", "d1", {}, "not run", None, None, None)]
    assert all(isinstance(c["started"], float) and c["seconds"] >= 0 for c in cells[:2])
    assert cells[2]["started"] is None and cells[2]["seconds"] is None
    assert not list((project.path / "build").glob(".*tmp"))   # written through a temporary file, renamed

    assert cli("local", jobs=2, gpus="0,1").code == 1
    cells = json.loads((project.path / "build" / "local-state.json").read_text())["cells"]
    gpus = [c["gpus"] for c in cells.values()]
    assert sorted(gpus[:2]) == ["0", "1"] and gpus[2] in ("0", "1")   # the third takes the first freed GPU
    assert all(c["log"] == f"logs/{name}.log" for name, c in cells.items())


def test_logs_existing_as_a_file_is_a_clear_error_before_anything_runs(project, cli):
    project.launch_yaml("model:\n  m:\n    command: touch ran<x>\n    hparam: {x: [1, 2]}\n")
    (project.path / "logs").write_text("notes\n")
    result = cli("local", jobs=2)
    assert result.code == 2
    assert result.err.startswith("error: logs: exists but is not a folder\n")
    assert not list(project.path.glob("ran*"))


@pytest.mark.parametrize("make_vars, message", [
    ({"gpus_per_run": "0"}, "error: gpus_per_run=0: expected at least 1"),
    ({"gpus": ",", "jobs": "2"}, "error: gpus=,: no GPU id given"),
    ({"model": ","}, "error: model=,: no model name given\n    valid: m"),
    ({"dataset": " , "}, "error: dataset= , : no dataset name given"),
])
def test_empty_or_zero_make_values_say_what_is_wrong(project, cli, make_vars, message):
    project.launch_yaml("model:\n  m: {command: touch ran}\ndataset:\n  d: {}\n")
    result = cli("local", **make_vars)
    assert result.code == 2 and result.err.startswith(message), result.err
    assert not (project.path / "ran").exists()
