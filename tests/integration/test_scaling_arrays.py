"""Array sweeps (`array: true`): the cells of a sweep as ONE Indexed Job and its ConfigMap, through the
official client (the CLI in-process) and kubectl against the API double and its job controller: status of
every cell by index, logs of one cell, retry of only the failed indexes, delete of the pack; and the start-up
script's pick of a cell by JOB_COMPLETION_INDEX, run by bash on the ConfigMap's files."""
import json
import os
import subprocess

import pytest
from kube_helpers import load, render_units, validate
from lint_helpers import lint_shell

pytest.importorskip("kubernetes")

LAUNCH = """\
    array: true
    parallelism: 2
    model:
      train:
        command: python src/train.py --lr <lr> --seed <seed>
        hparam:
          lr: [0.1, 0.01, 0.001]
          seed: [1, 2]
"""


@pytest.fixture
def array_sweep(project, kubeconfig, kube_api):
    project.launch_yaml(LAUNCH)
    return kube_api


def cells(cli):
    return [line.split(": ", 1) for line in cli("local-dryrun").out.splitlines()]


def packs(kube_api):
    return [j for j in kube_api.list("Job", label_selector="user=alice,project=demo")]


def rows(status_out):
    """{cell: (JOB column, POD column)} of the status table."""
    found = {}
    for line in status_out.splitlines()[2:]:
        parts = line.split()
        if parts and parts[0].startswith("alice-demo-"):
            job = " ".join(parts[1:4]) if parts[2].startswith("(array") else parts[1]
            found[parts[0]] = job
    return found


def test_an_array_sweep_is_one_indexed_job_and_one_configmap(array_sweep, cli, kubectl):
    grid = cells(cli)
    result = cli("job")
    assert result.code == 0, result
    assert "1 created" in result.out
    [job] = packs(array_sweep)
    name = job["metadata"]["name"]
    assert name.startswith("alice-demo-array-")
    spec = job["spec"]
    assert (spec["completionMode"], spec["completions"], spec["parallelism"], spec["backoffLimitPerIndex"]) == (
        "Indexed", 6, 2, 0)
    assert "maxFailedIndexes" not in spec           # one failed cell does not stop the others
    configmap = json.loads(kubectl("get", "configmap", name, "-o", "json").stdout)
    assert configmap["metadata"]["labels"]["toolbox/role"] == "array"
    assert configmap["metadata"]["ownerReferences"][0]["uid"] == job["metadata"]["uid"]
    data = configmap["data"]
    assert data["cells"].splitlines() == [name for name, _ in grid]
    commands = data["commands"].encode()
    for (cell, command), line in zip(grid, data["offsets"].splitlines()):
        offset, length = map(int, line.split())
        assert commands[offset:offset + length].decode() == command, cell
    # the pods: two at a time, each with its completion index
    assert len(array_sweep.job_pods(name)) == 2
    again = cli("job")
    assert "1 skipped" in again.out and "6 cells running, pending or done there" in again.out, again.out
    assert len(packs(array_sweep)) == 1


def test_status_logs_and_retry_of_only_the_failed_indexes(array_sweep, cli):
    grid = [name for name, _ in cells(cli)]
    assert cli("job").code == 0
    [job] = packs(array_sweep)
    pack = job["metadata"]["name"]
    array_sweep.finish_index(pack, 0, log="cell zero done\n")
    array_sweep.finish_index(pack, 1, exit_code=2, log="bad lr\n")
    array_sweep.start_pod(array_sweep.index_pod(pack, 2)["metadata"]["name"])
    status = cli("status")
    assert status.code == 0, status
    found = rows(status.out)
    assert found[grid[0]] == "succeeded (array #0)"
    assert found[grid[1]] == "failed (array #1)"
    assert found[grid[2]] == "running (array #2)"
    assert found[grid[4]] == "pending (array #4)"
    assert f"array job {pack}: 6 cells" in status.out

    logs = cli("logs", name=grid[0])
    assert "cell zero done" in logs.out and f"is index 0 of array job {pack}" in logs.out, logs

    retry = cli("retry", yes=1)
    assert retry.code == 0, retry
    jobs = {j["metadata"]["name"]: j for j in packs(array_sweep)}
    assert len(jobs) == 2 and pack in jobs        # the first pack runs on
    [new] = [j for n, j in jobs.items() if n != pack]
    assert new["spec"]["completions"] == 1
    members = array_sweep.get("ConfigMap", new["metadata"]["name"])["data"]["cells"].splitlines()
    assert members == [grid[1]]
    found = rows(cli("status").out)
    assert found[grid[1]].startswith("pending (array #0)") or found[grid[1]].startswith("running (array #0)")
    assert found[grid[0]] == "succeeded (array #0)"
    assert cli("retry", yes=1).out.startswith("No failed cells to retry")

    deleted = cli("delete", yes=1)
    assert deleted.code == 0, deleted
    assert array_sweep.list("Job", label_selector="user=alice") == []
    assert array_sweep.list("ConfigMap", label_selector="user=alice,toolbox/role=array") == []


def test_a_pack_of_another_user_is_never_touched(array_sweep, cli):
    assert cli("job").code == 0
    [job] = packs(array_sweep)
    name = job["metadata"]["name"]
    # bob's ConfigMap under the name of a pack alice is about to create (hers went with her Job: it owned it)
    array_sweep.delete("Job", name)
    assert array_sweep.list("ConfigMap", label_selector="toolbox/role=array") == []
    array_sweep.seed({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {
        "name": name, "labels": {"user": "bob", "project": "demo"}}, "data": {"cells": "x\n"}}, "ns")
    result = cli("job")
    assert result.code == 1
    assert f"configmap/{name}: belongs to user 'bob'" in result.err
    assert array_sweep.get("ConfigMap", name)["data"] == {"cells": "x\n"}
    assert packs(array_sweep) == []


def test_the_start_up_script_runs_the_command_of_its_index(project, tmp_path):
    project.launch_yaml("""\
        array: true
        git_pull: false
        model:
          m:
            command: |
              echo "cell $TOOLBOX_CELL_NAME: <word>"
              printf '%s\\n' 'two lines, quotes '"'"' and $HOME untouched'
            hparam:
              word: [ünïcödé, plain, 'a;b && c']
    """)
    _, _, [unit] = render_units()
    manifest = validate(load(unit.text))
    configmap = validate(unit.extras[0])
    folder = tmp_path / "array"
    folder.mkdir()
    for key, value in configmap["data"].items():
        (folder / key).write_bytes(value.encode())
    assert manifest["spec"]["template"]["spec"]["containers"][0]["command"][2].startswith(
        "exec /bin/bash /etc/toolbox/array/startup.sh")
    script = configmap["data"]["startup.sh"].replace("/etc/toolbox/array", str(folder))
    work = tmp_path / "checkout"
    work.mkdir()
    names = configmap["data"]["cells"].splitlines()
    for index, name in enumerate(names):
        env = dict(os.environ, JOB_COMPLETION_INDEX=str(index), TOOLBOX_CELL_NAME=unit.name, HOME="/home/x")
        done = subprocess.run(["bash", "-c", script, "toolbox-startup"], cwd=work, env=env, capture_output=True,
                              text=True, timeout=30, check=False)
        assert done.returncode == 0, done.stderr
        word = ["ünïcödé", "plain", "a;b && c"][index]
        assert done.stdout == f"cell {name}: {word}\ntwo lines, quotes ' and $HOME untouched\n"
    done = subprocess.run(["bash", "-c", script, "toolbox-startup"], cwd=work, capture_output=True, text=True,
                          env=dict(os.environ, JOB_COMPLETION_INDEX="3"), timeout=30, check=False)
    assert done.returncode == 1 and "no cell for index 3" in done.stderr
    assert lint_shell(configmap["data"]["startup.sh"]) == []


def test_dryrun_writes_what_kubectl_apply_creates(project, kubeconfig, kube_api, cli, kubectl):
    project.launch_yaml(LAUNCH + """\
      ddp:
        command: torchrun train.py
        nodes: 2
        array: false
""")
    result = cli("dryrun")
    assert result.code == 0, result
    assert "6 cells run as 1 array job(s)" in result.out and "x 2 nodes" in result.out, result.out
    applied = kubectl("apply", "-f", "build/")
    assert applied.returncode == 0, applied.stderr
    kinds = sorted((o["kind"], o["metadata"]["labels"]["toolbox/role"]) for kind in ("Job", "Service", "ConfigMap")
                   for o in kube_api.list(kind, label_selector="user=alice,project=demo"))
    assert kinds == [("ConfigMap", "array"), ("Job", "job"), ("Job", "job"), ("Service", "service")]
