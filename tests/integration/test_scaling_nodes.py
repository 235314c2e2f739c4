"""Multi-node cells (`nodes: 2`): the same command runs as two local processes (`make local`) and as the two
pods of an Indexed Job behind a headless Service (the API double's executor runs them as processes, with the
Service's DNS names resolving); the rendezvous script proves every rank reached rank 0 in both places. Then
status, logs (node 0 by default, node=1), delete, and a failing node failing the whole cell."""
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import wait_until

pytest.importorskip("kubernetes")

RENDEZVOUS = Path(__file__).resolve().parents[1] / "scripts" / "rendezvous.py"
KUBE = """\
    project_name: demo
    user: alice
    namespace: ns
    git_pull: false
    image_pull_secrets: ''
"""


@pytest.fixture
def two_nodes(project, free_port):
    project.kube_yaml(KUBE)
    project.launch_yaml(f"""\
        nodes: 2
        master_port: {free_port}
        env: {{RENDEZVOUS_TIMEOUT: '20'}}
        model:
          rdzv:
            command: {sys.executable} {RENDEZVOUS} --rank <node_rank> --of <nodes>
    """)
    return free_port


@pytest.fixture
def dns(kube_executor):
    if kube_executor.executor_dns_problem:
        pytest.skip(f"Service DNS in executor processes: {kube_executor.executor_dns_problem}")
    return kube_executor


def only_cell(cli):
    lines = cli("local-dryrun").out.splitlines()
    assert len(lines) == 1, lines
    return lines[0].split(":", 1)[0]


def test_a_two_node_cell_runs_as_two_local_processes(two_nodes, cli):
    result = cli("local")
    assert result.code == 0, result
    assert "[node 0] rank 0/2: all 2 ranks reached rank 0 (ranks 1)" in result.out
    assert f"[node 1] rank 1/2: reached rank 0 at 127.0.0.1:{two_nodes}" in result.out
    assert "--rank ${NODE_RANK} --of 2" in result.out   # the placeholders, as the header shows the command


def test_a_two_node_cell_runs_as_an_indexed_job_with_a_headless_service(two_nodes, cli, dns, kubectl):
    name = only_cell(cli)
    result = cli("job")
    assert result.code == 0, result
    finished = dns.wait_for_job(name, timeout=60)
    assert [c["type"] for c in finished["status"]["conditions"]][-1] == "Complete", finished["status"]
    assert finished["status"]["completedIndexes"] == "0,1"

    out = cli("logs", name=name)
    assert out.code == 0 and "rank 0/2: all 2 ranks reached rank 0 (ranks 1)" in out.out, out
    out = cli("logs", name=name, node=1)
    assert f"rank 1/2: reached rank 0 at {name}-0.{name}:{two_nodes}" in out.out, out
    assert cli("logs", name=name, node=2).code == 2

    status = cli("status")
    assert "succeeded (2 nodes)" in status.out, status.out

    services = json.loads(kubectl("get", "services", "-l", "user=alice,project=demo,toolbox/role=service",
                                  "-o", "json").stdout)["items"]
    assert [s["metadata"]["name"] for s in services] == [name]
    assert services[0]["spec"]["clusterIP"] == "None"
    assert services[0]["metadata"]["ownerReferences"][0]["uid"] == finished["metadata"]["uid"]

    deleted = cli("delete", yes=1)
    assert deleted.code == 0, deleted
    assert "Service" in deleted.out
    assert dns.list("Service", label_selector="user=alice") == []
    assert dns.list("Job", label_selector="user=alice") == []


def test_one_failing_node_fails_the_cell_and_stops_the_other(project, cli, kube_api, kubeconfig):
    project.kube_yaml(KUBE)
    project.launch_yaml("nodes: 3\nmodel:\n  train:\n    command: python src/train.py --rank <node_rank>\n")
    name = only_cell(cli)
    assert cli("job").code == 0
    assert sorted(kube_api.get("Job", name)["spec"][k] for k in ("completions", "parallelism")) == [3, 3]
    kube_api.start_pod(kube_api.index_pod(name, 0)["metadata"]["name"])
    kube_api.finish_index(name, 1, exit_code=1, log="CUDA error\n")
    job = kube_api.get("Job", name)
    assert [c["reason"] for c in job["status"]["conditions"] if c["type"] == "Failed"] == ["MaxFailedIndexesExceeded"]
    assert all(p["status"]["phase"] == "Failed" for p in kube_api.job_pods(name))  # the others were stopped
    status = cli("status").out
    assert "failed (3 nodes)" in status and "Error (exit code 1)" in status, status
    assert "1 multi-node cell: 1 of their headless Services in the namespace" in status, status
    retried = cli("retry", yes=1)                      # the cell again, whole: a new Job, its Service anew
    assert retried.code == 0 and "1 replaced" in retried.out, retried
    job = kube_api.get("Job", name)
    assert len(kube_api.job_pods(name)) == 3
    assert kube_api.get("Service", name)["metadata"]["ownerReferences"][0]["uid"] == job["metadata"]["uid"]


def test_status_says_when_a_multi_node_cell_lost_its_service(project, cli, kube_api, kubeconfig):
    project.kube_yaml(KUBE)
    project.launch_yaml("nodes: 2\nmodel:\n  train:\n    command: python src/train.py\n")
    name = only_cell(cli)
    assert cli("job").code == 0
    kube_api.delete("Service", name)
    status = cli("status").out
    assert f"no Service {name}: the nodes cannot find each other" in status, status
    assert "0 of their headless Services" in status


def test_a_failing_node_stops_the_other_local_nodes(project, cli):
    project.launch_yaml("nodes: 2\nmodel:\n  m:\n    command: 'if [ <node_rank> = 1 ]; then exit 3; fi; sleep 60'\n")
    result = cli("local")
    assert result.code == 1
    assert "[node 1] failed (3): stopping the other nodes" in result.out
    assert "failed (exit 3)" in result.out


def test_ctrl_c_gives_every_local_node_sigint_and_time_to_save(project):
    project.write("src/node.py", """\
import pathlib, sys, time
rank = sys.argv[1]
pathlib.Path(f"ready-{rank}").write_text("")
try:
    time.sleep(120)
except KeyboardInterrupt:
    time.sleep(0.5)
    pathlib.Path(f"saved-{rank}").write_text("checkpoint")
""")
    # `sleep` is left running when a node's command ends: it goes with it (as in a container), nobody waits for it
    project.launch_yaml("nodes: 2\nmodel:\n  m:\n    command: sleep 300 & python src/node.py <node_rank>\n")
    proc = subprocess.Popen([sys.executable, str(project.path / "launch.py"), "local"], cwd=project.path,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    wait_until(lambda: all((project.path / f"ready-{rank}").exists() for rank in (0, 1)), "both nodes to start")
    os.killpg(proc.pid, signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "SIGINT sent to 2 running cell(s)" in err   # both nodes' process groups, under the cell's name
    assert all((project.path / f"saved-{rank}").read_text() == "checkpoint" for rank in (0, 1))
    assert "interrupted" in out
    assert "SIGTERM sent" not in err                   # the nodes ended within the grace period
