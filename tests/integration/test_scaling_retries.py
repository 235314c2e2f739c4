"""Preemption-tolerant retries (`retries`, `fatal_exit_codes`) and queues (`queue`, Kueue), against the API
double's job controller: a preempted pod is replaced without using a retry, a failure uses one, a fatal exit
code fails the cell at once; `make status` shows the restarts and the last disruption. A queued Job is created
suspended with the Kueue label, and runs once admitted."""
import json

import pytest

pytest.importorskip("kubernetes")


def only_cell(cli):
    [line] = cli("local-dryrun").out.splitlines()
    return line.split(":", 1)[0]


def status_row(cli, name):
    out = cli("status").out
    [row] = [line for line in out.splitlines() if line.startswith(name)]
    return row


@pytest.fixture
def retried(project, kubeconfig, kube_api):
    project.launch_yaml("""\
        retries: 2
        fatal_exit_codes: [2]
        priority_class_name: opportunistic
        model:
          train:
            command: python src/train.py
    """)
    return kube_api


def test_disruptions_do_not_use_retries_failures_do_and_fatal_codes_end_the_cell(retried, cli):
    name = only_cell(cli)
    assert cli("job").code == 0
    job = retried.get("Job", name)
    assert job["spec"]["backoffLimitPerIndex"] == 2 and job["spec"]["completions"] == 1
    assert job["spec"]["podFailurePolicy"]["rules"] == [
        {"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget", "status": "True"}]},
        {"action": "FailJob", "onExitCodes": {"operator": "In", "values": [2]}}]

    retried.preempt_pod(retried.index_pod(name, 0)["metadata"]["name"])        # opportunistic: preempted
    retried.start_pod(retried.index_pod(name, 0)["metadata"]["name"])
    row = status_row(cli, name)
    assert " running " in row and " 1 " in row, row                            # one restart
    assert "last disruption: Preempted: Preempted by pod" in row, row

    retried.finish_index(name, 0, exit_code=1)                                 # a real failure: a retry used
    assert retried.get("Job", name)["status"].get("failed") == 1
    row = status_row(cli, name)
    assert " 2 " in row and " Pending " in row, row                           # a new pod waits

    retried.finish_index(name, 0, exit_code=2, log="bad config\n")             # fatal: no more retries
    job = retried.get("Job", name)
    assert [c["reason"] for c in job["status"]["conditions"] if c["type"] == "Failed"] == ["PodFailurePolicy"]
    row = status_row(cli, name)
    assert " failed " in row and "exit code 2" in row, row


def test_without_retries_a_preemption_fails_the_cell_as_before(project, kubeconfig, kube_api, cli):
    project.launch_yaml("model:\n  train:\n    command: python src/train.py\n")
    name = only_cell(cli)
    assert cli("job").code == 0
    job = kube_api.get("Job", name)
    assert job["spec"]["backoffLimit"] == 0 and "podFailurePolicy" not in job["spec"]
    kube_api.preempt_pod(kube_api.job_pod(name)["metadata"]["name"])
    assert [c["type"] for c in kube_api.get("Job", name)["status"]["conditions"]][-1] == "Failed"


def test_a_queued_job_waits_suspended_until_kueue_admits_it(project, kubeconfig, kube_api, cli, kubectl, batch):
    project.launch_yaml("queue: team-a\nmodel:\n  train:\n    command: python src/train.py\n")
    name = only_cell(cli)
    assert cli("job").code == 0
    job = kube_api.get("Job", name)
    assert job["spec"]["suspend"] is True
    assert job["metadata"]["labels"]["kueue.x-k8s.io/queue-name"] == "team-a"
    assert "kueue.x-k8s.io/queue-name" not in job["spec"]["template"]["metadata"]["labels"]
    assert kube_api.job_pods(name) == []
    row = status_row(cli, name)
    assert " pending " in row and "queued: suspended until Kueue admits it (queue team-a)" in row, row
    listed = json.loads(kubectl("get", "jobs", "-l", "kueue.x-k8s.io/queue-name=team-a", "-o", "json").stdout)
    assert [j["metadata"]["name"] for j in listed["items"]] == [name]
    batch.patch_namespaced_job(name, "ns", {"spec": {"suspend": False}})       # what Kueue does on admission
    assert len(kube_api.job_pods(name)) == 1
    assert "queued" not in status_row(cli, name)
