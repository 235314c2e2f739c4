"""The API double's executor mode (pods run as local processes) and the rendezvous script a multi-node cell
runs: 2 ranks meet through a headless Service's DNS name, via the official client and via kubectl, and as two
plain local processes (what `make local` runs for a 2-node cell)."""
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

kubernetes = pytest.importorskip("kubernetes")

NS = "ns"
RENDEZVOUS = Path(__file__).resolve().parents[1] / "scripts" / "rendezvous.py"


@pytest.fixture
def dns(kube_executor):
    if kube_executor.executor_dns_problem:
        pytest.skip(f"Service DNS in executor processes: {kube_executor.executor_dns_problem}")
    return kube_executor


def job(name, command, env=(), completions=None, parallelism=None, indexed=False, backoff_limit=0,
        subdomain=None):
    spec = {"backoffLimit": backoff_limit, "template": {"metadata": {"labels": {"app": name}}, "spec": {
        "restartPolicy": "Never", "terminationGracePeriodSeconds": 1,
        "containers": [{"name": "main", "image": "python:3.11", "command": command, "env": list(env)}]}}}
    if indexed:
        spec.update(completionMode="Indexed", completions=completions, parallelism=parallelism)
    if subdomain:
        spec["template"]["spec"]["subdomain"] = subdomain
    return {"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": name}, "spec": spec}


def rendezvous_job(name, service, port, nodes=2):
    """What a multi-node cell renders: an Indexed Job whose pods find rank 0 by its stable DNS name."""
    env = [{"name": "MASTER_ADDR", "value": f"{name}-0.{service}"}, {"name": "MASTER_PORT", "value": str(port)},
           {"name": "NNODES", "value": str(nodes)}, {"name": "RENDEZVOUS_TIMEOUT", "value": "20"},
           {"name": "NODE_RANK", "valueFrom": {"fieldRef": {
               "fieldPath": "metadata.annotations['batch.kubernetes.io/job-completion-index']"}}}]
    return job(name, ["python3", str(RENDEZVOUS)], env, completions=nodes, parallelism=nodes, indexed=True,
               subdomain=service)


def headless_service(name, job_name, port):
    return {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name},
            "spec": {"clusterIP": "None", "selector": {"batch.kubernetes.io/job-name": job_name},
                     "ports": [{"name": "rdzv", "port": port}]}}


def logs(kube_api, job_name):
    """{completion index: log text} of the job's pods (the last pod of each index)."""
    found = {}
    for pod in kube_api.job_pods(job_name):
        index = int(pod["metadata"]["annotations"]["batch.kubernetes.io/job-completion-index"])
        found[index] = "".join(line for _, line in kube_api.logs.lines(NS, pod["metadata"]["name"], "main"))
    return found


def _wait_until(kube_api, predicate, timeout=15.0):
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        kube_api.store.wait_for_change(kube_api.store.changes, 0.2)


def condition(job_obj):
    return [(c["type"], c.get("reason")) for c in job_obj["status"]["conditions"]][-1]


# --- executor ---

def test_executor_runs_the_command_with_the_pod_environment(kube_executor, batch, core):
    core.create_namespaced_secret(NS, {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "creds"},
                                       "stringData": {"token": "s3cr3t"}})
    core.create_namespaced_config_map(NS, {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "cfg"},
                                           "data": {"MODE": "fast"}})
    script = 'echo "$GREETING from $POD on $NODE_NAME ($MODE, $TOKEN, $HOSTNAME)"; echo oops >&2; exit 0'
    body = job("env", ["/bin/bash", "-c", script], [
        {"name": "NAME", "value": "world"}, {"name": "GREETING", "value": "hello $(NAME) $$(NAME)"},
        {"name": "POD", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
        {"name": "NODE_NAME", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}},
        {"name": "TOKEN", "valueFrom": {"secretKeyRef": {"name": "creds", "key": "token"}}}])
    body["spec"]["template"]["spec"]["containers"][0]["envFrom"] = [{"configMapRef": {"name": "cfg"}}]
    batch.create_namespaced_job(NS, body)
    finished = kube_executor.wait_for_job("env")
    assert condition(finished) == ("Complete", "CompletionsReached")
    pod = kube_executor.job_pod("env")
    name = pod["metadata"]["name"]
    text = core.read_namespaced_pod_log(name, NS, _preload_content=False).data.decode()
    assert text == f"hello world $(NAME) from {name} on node-1 (fast, s3cr3t, {name})\noops\n"
    assert (pod["status"]["phase"], pod["status"]["podIP"], pod["spec"]["nodeName"]) == (
        "Succeeded", "127.0.0.1", "node-1")
    assert pod["status"]["containerStatuses"][0]["state"]["terminated"]["reason"] == "Completed"


def test_executor_exit_codes_drive_the_job_controller(kube_executor, batch):
    batch.create_namespaced_job(NS, job("crash", ["/bin/sh", "-c", "echo trying; exit 3"], backoff_limit=1))
    finished = kube_executor.wait_for_job("crash")
    assert condition(finished) == ("Failed", "BackoffLimitExceeded") and finished["status"]["failed"] == 2
    pods = kube_executor.job_pods("crash")
    assert [p["status"]["containerStatuses"][0]["state"]["terminated"]["exitCode"] for p in pods] == [3, 3]


def test_a_container_ends_with_its_main_process(kube_executor, batch):
    batch.create_namespaced_job(NS, job("bg", ["/bin/sh", "-c", "sleep 120 & echo main done"]))
    finished = kube_executor.wait_for_job("bg", timeout=20)  # not held up by the background sleep
    assert condition(finished) == ("Complete", "CompletionsReached")


def test_executor_missing_secret_is_a_config_error(kube_executor, core):
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}, "spec": {"restartPolicy": "Never",
           "containers": [{"name": "main", "image": "x", "command": ["true"],
                           "env": [{"name": "T", "valueFrom": {"secretKeyRef": {"name": "nope", "key": "k"}}}]}]}}
    core.create_namespaced_pod(NS, pod)

    def waiting():
        statuses = (kube_executor.get("pod", "p").get("status") or {}).get("containerStatuses") or []
        return statuses and statuses[0]["state"].get("waiting", {}).get("reason") == "CreateContainerConfigError"
    _wait_until(kube_executor, waiting)
    state = kube_executor.get("pod", "p")["status"]["containerStatuses"][0]["state"]["waiting"]
    assert state["message"] == 'secret "nope" not found'


def test_deleting_a_job_stops_its_processes(kube_executor, batch, tmp_path):
    marker = tmp_path / "stopped"
    script = f"trap 'echo SIGTERM > {marker}; exit 143' TERM; echo started; sleep 60 & wait"
    batch.create_namespaced_job(NS, job("long", ["/bin/bash", "-c", script]))
    _wait_until(kube_executor, lambda: any(
        "started" in line for p in kube_executor.job_pods("long")
        for _, line in kube_executor.logs.lines(NS, p["metadata"]["name"], "main")))
    batch.delete_namespaced_job("long", NS, propagation_policy="Background")
    _wait_until(kube_executor, marker.exists)
    assert marker.read_text() == "SIGTERM\n"


def test_hosts_names_resolve_only_inside_pods(dns, batch):
    before = Path("/etc/hosts").read_text()
    dns.seed(headless_service("svc", "lookup", 1))
    body = job("lookup", ["/bin/sh", "-c", "hostname; getent hosts lookup-0.svc.ns.svc.cluster.local svc"],
               indexed=True, completions=1, parallelism=1, subdomain="svc")
    batch.create_namespaced_job(NS, body)
    assert condition(dns.wait_for_job("lookup")) == ("Complete", "CompletionsReached")
    lines = logs(dns, "lookup")[0].splitlines()
    assert lines[0] == "lookup-0"  # the pod's hostname, in its own UTS namespace
    assert [line.split()[0] for line in lines[1:]] == ["127.0.0.1", "127.0.0.1"]
    assert Path("/etc/hosts").read_text() == before and socket.gethostname() != "lookup-0"
    assert subprocess.run(["getent", "hosts", "lookup-0.svc.ns.svc.cluster.local"], check=False).returncode != 0


# --- rendezvous: 2 nodes meet at rank 0 ---

def test_two_node_indexed_job_rendezvous_through_the_client(dns, batch, core, free_port):
    core.create_namespaced_service(NS, headless_service("train-nodes", "train", free_port))
    batch.create_namespaced_job(NS, rendezvous_job("train", "train-nodes", free_port))
    finished = dns.wait_for_job("train")
    assert condition(finished) == ("Complete", "CompletionsReached"), logs(dns, "train")
    assert (finished["status"]["succeeded"], finished["status"]["completedIndexes"]) == (2, "0,1")
    assert logs(dns, "train") == {0: "rank 0/2: all 2 ranks reached rank 0 (ranks 1)\n",
                                  1: f"rank 1/2: reached rank 0 at train-0.train-nodes:{free_port}\n"}


def test_two_node_indexed_job_rendezvous_with_kubectl(dns, kubectl, tmp_path, free_port):
    manifest = tmp_path / "cell.yaml"
    documents = [headless_service("rdzv", "cell", free_port), rendezvous_job("cell", "rdzv", free_port)]
    manifest.write_text("\n---\n".join(json.dumps(d) for d in documents))
    applied = kubectl("apply", "-f", manifest)
    assert applied.returncode == 0, applied.stderr
    assert applied.stdout.splitlines() == ["service/rdzv created", "job.batch/cell created"]
    waited = kubectl("wait", "--for=condition=complete", "job/cell", "--timeout=30s", timeout=40)
    assert waited.returncode == 0, (waited.stderr, logs(dns, "cell"))
    assert kubectl("get", "jobs").stdout.splitlines()[1].split()[:3] == ["cell", "Complete", "2/2"]
    printed = kubectl("logs", "-l", "batch.kubernetes.io/job-name=cell", "--prefix").stdout.splitlines()
    assert sorted(line.split("] ", 1)[1] for line in printed) == [
        "rank 0/2: all 2 ranks reached rank 0 (ranks 1)", f"rank 1/2: reached rank 0 at cell-0.rdzv:{free_port}"]


def _rank(rank, port, nodes=2, timeout=20, addr="127.0.0.1"):
    env = dict(os.environ, MASTER_ADDR=addr, MASTER_PORT=str(port), NODE_RANK=str(rank), NNODES=str(nodes),
               RENDEZVOUS_TIMEOUT=str(timeout))
    return subprocess.Popen([sys.executable, str(RENDEZVOUS)], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def test_rendezvous_as_local_processes(free_port):
    ranks = [_rank(1, free_port), _rank(0, free_port)]  # rank 1 first: it retries until rank 0 listens
    results = [(p.wait(30), p.stdout.read()) for p in ranks]
    assert results == [(0, f"rank 1/2: reached rank 0 at 127.0.0.1:{free_port}\n"),
                       (0, "rank 0/2: all 2 ranks reached rank 0 (ranks 1)\n")]


def test_rendezvous_fails_when_a_rank_never_comes(free_port):
    alone = _rank(0, free_port, nodes=3, timeout=1)
    assert alone.wait(30) == 1 and "waiting for ranks 1,2" in alone.stderr.read()
    lost = _rank(1, free_port, timeout=1)
    assert lost.wait(30) == 1 and f"could not reach rank 0 at 127.0.0.1:{free_port}" in lost.stderr.read()
    bad = subprocess.run([sys.executable, str(RENDEZVOUS)], env={"NNODES": "2"}, capture_output=True, text=True,
                         check=False)
    assert bad.returncode == 2 and "set NODE_RANK or JOB_COMPLETION_INDEX" in bad.stderr
