"""The Kubernetes commands against the API server double, through the real official client (in-process CLI).

Rules of the resubmission table, idempotent re-runs, partial failure, the .env Secret and file ConfigMaps,
secrets absent from every request body, errors as one line, delete scoping, status reasons, logs.
"""
import base64
import io
import json
import tarfile
import threading
import time

import pytest

from kube_helpers import LAUNCH_3 as LAUNCH, deploy_key_files, leaks

SECRETS = {"AWS_SECRET_ACCESS_KEY": "aws-Secret-Value-9f8e7d", "WANDB_API_KEY": "wandb-Key-Value-1a2b3c"}


@pytest.fixture
def sweep(project, kubeconfig, kube_api):
    """A project with a 3-cell grid, a .env with distinctive secrets, and the double (reset)."""
    project.launch_yaml(LAUNCH)
    project.env("".join(f"{k}={v}\n" for k, v in SECRETS.items()) + "CUDA_VISIBLE_DEVICES=0\nWANDB_MODE=offline\n")
    return kube_api


def cell_names(cli):
    out = cli("local-dryrun").out
    return [line.split(":", 1)[0] for line in out.splitlines()]


def job(kube_api, name):
    return kube_api.get("Job", name)


def job_names(kube_api, selector="user=alice,project=demo"):
    return sorted(j["metadata"]["name"] for j in kube_api.list("Job", label_selector=selector))


# -- make job -------------------------------------------------------------------------------------------------
def test_job_submits_every_cell_after_one_list_call(sweep, cli):
    names = cell_names(cli)
    sweep.clear_requests()
    result = cli("job")
    assert result.code == 0, result
    assert job_names(sweep) == sorted(names)
    for name in names:
        assert f"Job '{name}' not found. Creating the job." in result.out
    assert "3 created, 0 replaced, 0 skipped, 0 failed (of 3)" in result.out
    assert sweep.count("list", "jobs") == 1 and sweep.count("get", "jobs") == 0
    assert sweep.count("create", "jobs") == 3
    # pods get the labels and the job-name label of the controller
    pod = sweep.job_pod(names[0])
    assert pod["metadata"]["labels"]["toolbox/cell"] == names[0]


def test_rerun_is_idempotent(sweep, cli):
    assert cli("job").code == 0
    sweep.clear_requests()
    again = cli("job")
    assert again.code == 0, again
    assert "0 created, 0 replaced, 3 skipped, 0 failed" in again.out
    assert sweep.count("create") == 0 and sweep.count("update") == 0 and sweep.count("delete") == 0
    assert "Secret 'alice-demo-env-7d32c88b' (3 variables from .env): unchanged" in again.out


def _set_state(kube_api, name, state):
    if state == "running":
        kube_api.mark_job_running(name)
    elif state == "succeeded":
        kube_api.mark_job_succeeded(name)
    elif state == "failed":
        kube_api.mark_job_failed(name)


@pytest.mark.parametrize("state, overwrite, action", [
    pytest.param("missing", False, "created", id="missing-create"),
    pytest.param("missing", True, "created", id="missing-overwrite-create"),
    pytest.param("pending", False, "skipped", id="pending-skip"),
    pytest.param("running", False, "skipped", id="running-skip"),
    pytest.param("succeeded", False, "skipped", id="succeeded-skip"),
    pytest.param("failed", False, "replaced", id="failed-recreate"),
    pytest.param("running", True, "replaced", id="running-overwrite"),
    pytest.param("succeeded", True, "replaced", id="succeeded-overwrite"),
    pytest.param("failed", True, "replaced", id="failed-overwrite"),
])
def test_resubmission_table(sweep, cli, state, overwrite, action):
    name = cell_names(cli)[0]
    if state != "missing":
        assert cli("job", model="train").code == 0
        for other in cell_names(cli)[1:]:
            sweep.delete("Job", other)
        _set_state(sweep, name, state)
    old_uid = (job(sweep, name) or {}).get("metadata", {}).get("uid")
    result = cli("job", overwrite="true" if overwrite else "false")
    assert result.code == 0, result
    new = job(sweep, name)
    assert new is not None
    if action == "skipped":
        assert new["metadata"]["uid"] == old_uid
        assert f"Job '{name}' " in result.out and "Doing nothing (overwrite=true replaces it)." in result.out
    elif action == "replaced":
        assert new["metadata"]["uid"] != old_uid
        assert not new.get("status", {}).get("failed")
    counts = {"created": 0, "replaced": 0, "skipped": 0}
    counts["created"] += 2  # the two other cells are missing
    counts[action] += 1
    assert ", ".join(f"{n} {k}" for k, n in counts.items()) + ", 0 failed" in result.out


def test_a_job_being_deleted_is_created_again_once_gone(sweep, cli):
    name = cell_names(cli)[0]
    assert cli("job").code == 0
    stored = job(sweep, name)
    # simulate a Job still terminating (foreground deletion): deletionTimestamp set, object still there
    from doubles.kube_api.api import JOBS

    sweep.api.update_object(JOBS, "ns", name,
                            lambda j: j["metadata"].update(deletionTimestamp="2024-01-01T00:00:00Z"))
    threading.Timer(0.3, lambda: sweep.delete("Job", name)).start()
    result = cli("job")
    assert result.code == 0, result
    assert f"Job '{name}' is being deleted. Creating it again once it is gone." in result.out
    assert job(sweep, name)["metadata"]["uid"] != stored["metadata"]["uid"]


def test_partial_failure_then_rerun_submits_only_what_is_missing(sweep, cli):
    sweep.fail_next(code=500, reason="InternalError", message="etcd is sad", kind="Job", after=2)
    result = cli("job")
    assert result.code == 1, result
    assert "2 created, 0 replaced, 0 skipped, 1 failed (of 3)" in result.out
    assert "InternalError: etcd is sad" in result.err and "Traceback" not in result.err
    assert len(job_names(sweep)) == 2
    sweep.clear_requests()
    again = cli("job")
    assert again.code == 0 and "1 created, 0 replaced, 2 skipped, 0 failed" in again.out
    assert sweep.count("create", "jobs") == 1 and len(job_names(sweep)) == 3


def test_forbidden_is_one_line_with_the_server_status(sweep, cli):
    message = 'jobs.batch is forbidden: User "alice" cannot create resource "jobs" in namespace "ns"'
    sweep.fail_next(code=403, reason="Forbidden", message=message, kind="Job", times=3)
    result = cli("job")
    assert result.code == 1
    first = sorted(cell_names(cli))[0]   # the same error for every job: printed once, with a count
    assert f"error: job/{first}: Forbidden: {message}\n    (the same for 2 more jobs)" in result.err
    assert result.err.count("error:") == 1 and "Traceback" not in result.err


# -- the .env Secret and file ConfigMaps ---------------------------------------------------------------------
def test_secret_holds_rewritten_env_and_is_reapplied_only_when_changed(sweep, cli, project):
    assert cli("job").code == 0
    secret = sweep.get("Secret", "alice-demo-env-7d32c88b")
    data = {k: base64.b64decode(v).decode() for k, v in secret["data"].items()}
    assert data == {**SECRETS, "WANDB_MODE": "online"}  # CUDA_VISIBLE_DEVICES dropped, W&B online
    digest = secret["metadata"]["annotations"]["toolbox/content-hash"]
    assert all(v not in digest for v in SECRETS.values()) and len(digest) == 64
    project.env("AWS_SECRET_ACCESS_KEY=rotated-Key-0000\n")
    sweep.clear_requests()
    result = cli("job")
    assert "Secret 'alice-demo-env-7d32c88b' (1 variables from .env): updated" in result.out
    assert sweep.count("update", "secrets") == 1
    new = sweep.get("Secret", "alice-demo-env-7d32c88b")
    assert base64.b64decode(new["data"]["AWS_SECRET_ACCESS_KEY"]) == b"rotated-Key-0000"


def test_s3_endpoint_map_is_a_documented_overridable_table(sweep, cli, project):
    project.env("S3_ENDPOINT_URL=https://s3.example.org\nOTHER=https://s3-west.nrp-nautilus.io\n")
    project.kube_yaml("project_name: demo\nuser: alice\nnamespace: ns\n"
                      "s3_endpoint_map: {'https://s3.example.org': 'http://minio.internal:9000'}\n")
    assert cli("job").code == 0
    data = {k: base64.b64decode(v).decode() for k, v in sweep.get("Secret", "alice-demo-env-7d32c88b")["data"].items()}
    # the table in kube.yaml replaces the Nautilus defaults
    assert data == {"S3_ENDPOINT_URL": "http://minio.internal:9000", "OTHER": "https://s3-west.nrp-nautilus.io"}


def test_no_secret_value_leaves_the_secret(sweep, cli, project):
    project.write("conf/a.yaml", "x: 1\n")
    project.kube_yaml("project_name: demo\nuser: alice\nnamespace: ns\nfile: [conf]\n")
    outputs = [cli("dryrun"), cli("job"), cli("status"), cli("job", overwrite="true"), cli("pod")]
    assert all(r.code == 0 for r in outputs), outputs
    for result in outputs:
        assert leaks(result.out + result.err, SECRETS.values()) == []
    for request in sweep.requests:
        if request.resource == "secrets" and request.method in ("POST", "PUT"):
            continue
        assert leaks(request.body.decode("utf-8", "replace"), SECRETS.values()) == [], request.path
    for path in (project.path / "build").rglob("*"):
        if path.is_file():
            assert leaks(path.read_text(), SECRETS.values()) == [], path
    for kind in ("Job", "Pod", "ConfigMap"):
        for obj in sweep.list(kind):
            assert leaks(json.dumps(obj), SECRETS.values()) == []


def test_configmap_is_shared_and_created_once(sweep, cli, project):
    project.write("conf/a.yaml", "x: 1\n")
    project.kube_yaml("project_name: demo\nuser: alice\nnamespace: ns\nfile: [conf]\n")
    assert cli("job").code == 0
    (configmap,) = sweep.list("ConfigMap", label_selector="toolbox/role=files")
    for name in cell_names(cli):
        volumes = sweep.get("Job", name)["spec"]["template"]["spec"]["volumes"]
        assert {"name": "toolbox-files", "configMap": {"name": configmap["metadata"]["name"]}} in volumes
    sweep.clear_requests()
    assert "unchanged" in cli("job", overwrite="true").out
    assert sweep.count("create", "configmaps") == 0


# -- status and logs -------------------------------------------------------------------------------------------
def test_status_shows_states_and_reasons_from_two_list_calls(sweep, cli, project):
    project.launch_yaml(LAUNCH.replace("[0.1, 0.01, 0.001]", "[0.1, 0.01, 0.001, 0.2, 0.3, 0.4]"))
    names = cell_names(cli)
    assert cli("job").code == 0
    pods = {n: sweep.job_pod(n)["metadata"]["name"] for n in names}
    sweep.set_pod_unschedulable(pods[names[0]])
    sweep.set_container_state(pods[names[1]], "waiting", reason="ImagePullBackOff",
                              message='Back-off pulling image "x"', phase="Pending")
    sweep.mark_job_failed(names[2], exit_code=137, pod_reason="OOMKilled")
    sweep.mark_job_failed(names[3], exit_code=2)
    sweep.mark_job_succeeded(names[4])
    sweep.clear_requests()
    result = cli("status")
    assert result.code == 0, result
    rows = {line.split()[0]: line for line in result.out.splitlines() if line.startswith("alice-")}
    assert "Unschedulable: 0/5 nodes are available" in rows[names[0]]
    assert "ImagePullBackOff: Back-off pulling image" in rows[names[1]]
    assert "failed" in rows[names[2]] and "OOMKilled (exit code 137)" in rows[names[2]]
    assert "Error (exit code 2)" in rows[names[3]]
    assert "succeeded" in rows[names[4]] and "Succeeded" in rows[names[4]]
    assert rows[names[5]].split()[1] == "running"
    assert "6 cells: 3 running, 1 succeeded, 2 failed" in result.out
    assert sweep.count("list") == 2 and sweep.count("get") == 0


def test_logs_wait_while_pending_then_follow_across_a_dropped_stream(sweep, cli):
    name = cell_names(cli)[0]
    assert cli("job", model="train").code == 0
    pod = sweep.job_pod(name)["metadata"]["name"]
    sweep.set_pod_unschedulable(pod)

    def cluster_side():
        time.sleep(0.6)
        sweep.mark_job_running(name)
        sweep.append_pod_log(pod, "epoch 1\nepoch 2\n")
        time.sleep(0.6)
        sweep.drop_log_streams(pod)
        time.sleep(0.3)
        sweep.append_pod_log(pod, "epoch 3\n")
        time.sleep(0.6)
        sweep.mark_job_succeeded(name)

    helper = threading.Thread(target=cluster_side)
    helper.start()
    result = cli("logs", name=name)
    helper.join()
    assert result.code == 0, result
    assert "is Pending (Unschedulable: 0/5 nodes" in result.out
    lines = [line for line in result.out.splitlines() if line.startswith("epoch")]
    assert lines == ["epoch 1", "epoch 2", "epoch 3"]  # nothing lost, nothing twice across the reconnect
    assert f"pod {pod} succeeded" in result.out


def test_logs_without_a_name_follow_every_running_cell(sweep, cli):
    names = cell_names(cli)
    assert cli("job").code == 0
    for name in names[:2]:
        sweep.mark_job_running(name)
        sweep.append_pod_log(sweep.job_pod(name)["metadata"]["name"], f"hello from {name}\n")
    threading.Timer(1.0, lambda: [sweep.mark_job_succeeded(n) for n in names[:2]]).start()
    result = cli("logs")
    assert result.code == 0, result
    for name in names[:2]:
        assert f"[{name}] hello from {name}" in result.out
    assert names[2] not in result.out


def test_logs_of_an_unknown_name(sweep, cli):
    result = cli("logs", name="alice-demo-nope")
    assert result.code == 2 and "no job or pod with this name" in result.err


# -- deletes ---------------------------------------------------------------------------------------------------
def _seed_job(kube_api, name, user, project, failed=False):
    obj = {"apiVersion": "batch/v1", "kind": "Job",
           "metadata": {"name": name, "labels": {"user": user, "project": project}},
           "spec": {"template": {"spec": {"restartPolicy": "Never",
                                          "containers": [{"name": "c", "image": "busybox"}]}}}}
    if failed:
        obj["status"] = {"failed": 1, "conditions": [{"type": "Failed", "status": "True",
                                                      "reason": "BackoffLimitExceeded"}]}
    return kube_api.seed(obj)


def _seed_pod(kube_api, name, user, project):
    return kube_api.seed({"apiVersion": "v1", "kind": "Pod",
                          "metadata": {"name": name, "labels": {"user": user, "project": project}},
                          "spec": {"containers": [{"name": "c", "image": "busybox"}]}})


@pytest.fixture
def crowded(sweep, cli):
    """alice's sweep plus bob's jobs of the same project and alice's jobs of another project."""
    assert cli("job").code == 0
    _seed_job(sweep, "bob-demo-x", "bob", "demo")
    _seed_pod(sweep, "bob-demo-interactive-pod", "bob", "demo")
    _seed_job(sweep, "alice-other-x", "alice", "other")
    _seed_pod(sweep, "alice-demo-interactive-pod", "alice", "demo")
    _seed_job(sweep, "alice-demo-old-failed", "alice", "demo", failed=True)
    return sweep


def test_delete_only_touches_this_user_and_project(crowded, cli):
    result = cli("delete", yes="1")
    assert result.code == 0, result
    assert "alice-demo-interactive-pod" in result.out and "bob-demo-x" not in result.out
    assert job_names(crowded, "project in (demo,other)") == ["alice-other-x", "bob-demo-x"]
    assert crowded.get("Pod", "bob-demo-interactive-pod") is not None
    assert crowded.get("Pod", "alice-demo-interactive-pod") is None


def test_delete_asks_first(crowded, cli):
    result = cli("delete")  # stdin is not a terminal and no yes=1: nothing happens
    assert result.code == 1 and "Nothing deleted." in result.out
    assert len(job_names(crowded)) == 4


def test_delete_pod_keeps_jobs_and_their_pods(crowded, cli):
    names = cell_names(cli)
    assert cli("delete_pod", yes="1").code == 0
    assert crowded.get("Pod", "alice-demo-interactive-pod") is None
    assert len(job_names(crowded)) == 4 and crowded.job_pods(names[0])


def test_clean_jobs_deletes_failed_jobs_only(crowded, cli):
    names = cell_names(cli)
    crowded.mark_job_failed(names[0])
    result = cli("clean_jobs", yes="1")
    assert result.code == 0, result
    assert sorted(job_names(crowded)) == sorted(names[1:])
    assert job_names(crowded, "user=bob") == ["bob-demo-x"]


def test_retry_recreates_failed_cells_only(sweep, cli):
    names = cell_names(cli)
    assert cli("job").code == 0
    sweep.mark_job_failed(names[1])
    sweep.mark_job_succeeded(names[2])
    uids = {n: job(sweep, n)["metadata"]["uid"] for n in names}
    result = cli("retry", yes="1")
    assert result.code == 0, result
    assert "0 created, 1 replaced, 0 skipped, 0 failed (of 1)" in result.out
    after = {n: job(sweep, n)["metadata"]["uid"] for n in names}
    assert [after[n] != uids[n] for n in names] == [False, True, False]


# -- interactive pod, copy, deploy key ----------------------------------------------------------------------
def test_pod_names_increment_when_taken(sweep, cli):
    first = cli("pod")
    assert first.code == 0, first
    assert "Pod 'alice-demo-interactive-pod' created" in first.out
    second = cli("pod")
    assert "Pod 'alice-demo-interactive-pod-1' created" in second.out
    _seed_pod(sweep, "alice-demo-interactive-pod-2", "someone", "else")  # not ours: found by a failed create
    third = cli("pod")
    assert third.code == 0 and "Pod 'alice-demo-interactive-pod-3' created" in third.out
    named = cli("pod", pod="scratch")
    assert named.code == 0 and "Pod 'scratch' created" in named.out
    pod = sweep.get("Pod", "scratch")
    env = {e["name"]: e.get("value") for e in pod["spec"]["containers"][0]["env"]}
    assert env["TOOLBOX_COMMAND"] == "sleep infinity"


def test_copy_pushes_the_file_list_through_exec(sweep, cli, project):
    project.write("conf/a.yaml", "x: 1\n")
    (project.path / "conf" / "w.bin").write_bytes(b"\x00\xff")
    project.kube_yaml("project_name: demo\nuser: alice\nnamespace: ns\nfile: [conf]\n")
    assert cli("pod").code == 0
    sweep.set_pod_phase("alice-demo-interactive-pod", "Running")
    result = cli("copy")
    assert result.code == 0, result
    assert "Copied 2 files" in result.out and "alice-demo-interactive-pod" in result.out
    (call,) = sweep.exec_calls
    assert call.command == ["tar", "-xmf", "-"] and call.container == "main"
    with tarfile.open(fileobj=io.BytesIO(call.stdin)) as archive:
        contents = {m.name: archive.extractfile(m).read() for m in archive.getmembers()}
    assert contents == {"conf/a.yaml": b"x: 1\n", "conf/w.bin": b"\x00\xff"}


def test_copy_reports_a_failing_tar(sweep, cli, project):
    project.write("a.txt", "x")
    project.kube_yaml("project_name: demo\nuser: alice\nnamespace: ns\nfile: [a.txt]\n")
    assert cli("pod", pod="p1").code == 0
    sweep.set_pod_phase("p1", "Running")
    sweep.set_exec_result(stderr="tar: a.txt: Cannot open: Read-only file system\n", exit_code=2, times=1)
    result = cli("copy", pod="p1")
    assert result.code == 1
    assert "error: pod/p1: copying failed (tar exit code 2)" in result.err and "Read-only" in result.err


def test_copy_needs_a_running_pod(sweep, cli, project):
    project.write("a.txt", "x")
    project.kube_yaml("project_name: demo\nuser: alice\nnamespace: ns\nfile: [a.txt]\n")
    result = cli("copy")
    assert result.code == 2 and "no running interactive pod" in result.err


def test_deploy_key_secret(sweep, cli, project, tmp_path):
    key, hosts = deploy_key_files(tmp_path)
    result = cli("deploy_key", key=str(key), known_hosts=str(hosts))
    assert result.code == 0, result
    assert "Secret 'demo-deploy-key'" in result.out and "created" in result.out
    assert "PRIVATE KEY" not in result.out + result.err
    secret = sweep.get("Secret", "demo-deploy-key")
    assert base64.b64decode(secret["data"]["ssh-privatekey"]) == key.read_bytes()
    assert base64.b64decode(secret["data"]["known_hosts"]) == hosts.read_bytes()
    assert cli("deploy_key", key=str(key), known_hosts=str(hosts)).out.rstrip().endswith("unchanged.")
    assert cli("deploy_key").code == 2
    assert cli("deploy_key", key=str(hosts), known_hosts=str(hosts)).code == 2  # not a private key


# -- cluster access --------------------------------------------------------------------------------------------
def test_unreachable_cluster_is_one_line(project, cli, tmp_path, monkeypatch):
    project.launch_yaml(LAUNCH)
    config = tmp_path / "dead"
    config.write_text("apiVersion: v1\nkind: Config\ncurrent-context: c\n"
                      "clusters: [{name: c, cluster: {server: 'http://127.0.0.1:9'}}]\n"
                      "users: [{name: u, user: {token: t}}]\n"
                      "contexts: [{name: c, context: {cluster: c, user: u}}]\n")
    monkeypatch.setenv("KUBECONFIG", str(config))
    result = cli("status")
    assert result.code == 1
    assert result.err.splitlines()[0] == ("error: http://127.0.0.1:9: cannot reach the Kubernetes API server: "
                                          "Connection refused")
    assert "Traceback" not in result.err


def test_missing_kubeconfig_and_unknown_context(project, cli, tmp_path, monkeypatch, kubeconfig):
    project.launch_yaml(LAUNCH)
    result = cli("status", context="nope")
    assert result.code == 1 and "with context 'nope'" in result.err
    assert cli("status", context="double").code == 0
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "none"))
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    result = cli("status")
    assert result.code == 1 and "no kubeconfig at" in result.err
    (tmp_path / "corrupt").write_text("garbage: [\n")
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "corrupt"))
    result = cli("status")
    assert result.code == 1 and result.err.startswith(f"error: kubeconfig: cannot use {tmp_path / 'corrupt'}")
    assert "Traceback" not in result.err


# -- kubectl works on what the toolbox writes and labels ----------------------------------------------------
def test_kubectl_applies_build_and_selects_by_labels(sweep, cli, kubectl, project):
    project.write("conf/a.yaml", "x: 1\n")
    project.kube_yaml("project_name: demo\nuser: alice\nnamespace: ns\nfile: [conf]\n")
    assert cli("dryrun").code == 0
    applied = kubectl("apply", "-f", "build/")
    assert applied.returncode == 0, applied.stderr
    listed = kubectl("get", "jobs", "-n", "ns", "-l", "user=alice,project=demo", "-o", "name")
    assert listed.returncode == 0, listed.stderr
    assert sorted(listed.stdout.split()) == sorted(f"job.batch/{n}" for n in cell_names(cli))
    again = cli("job")  # the applied jobs are found (running): nothing is submitted twice
    assert again.code == 0 and "0 created" in again.out


def test_shared_gpu_cells_are_submitted_as_packs(sweep, cli, project):
    project.launch_yaml(LAUNCH.replace("    command:", "    shared: 0.5\n        command:"))
    names = cell_names(cli)
    result = cli("job")
    assert result.code == 0, result
    assert "2 created" in result.out and len(job_names(sweep)) == 2
    packs = job_names(sweep)
    assert all("-shared-" in name for name in packs)
    members = sorted(n for p in packs for n in json.loads(job(sweep, p)["metadata"]["annotations"]["toolbox/members"]))
    assert members == sorted(names)
    status = cli("status")
    assert status.out.count("running (shared)") == 3 and "shared job " in status.out
    assert "0 created, 0 replaced, 2 skipped" in cli("job").out


def test_deploy_key_without_ssh_keyscan_says_how(sweep, cli, tmp_path, monkeypatch):
    key = tmp_path / "id_deploy"
    key.write_text("-----BEGIN OPENSSH PRIVATE KEY-----\nabc\n-----END OPENSSH PRIVATE KEY-----\n")
    monkeypatch.setenv("PATH", str(tmp_path))  # no ssh-keyscan here
    result = cli("deploy_key", key=str(key))
    assert result.code == 2
    assert "ssh-keyscan is not installed" in result.err
    assert "ssh-keyscan -p 30622 gitlab-ssh.nrp-nautilus.io > known_hosts" in result.err
    assert sweep.get("Secret", "demo-deploy-key") is None


def test_missing_pull_and_deploy_key_secrets_are_warned_about(sweep, cli):
    result = cli("job")
    assert result.code == 0
    assert "warning: Secret 'demo-read-registry' not found in namespace 'ns'" in result.err
    assert "warning: Secret 'demo-deploy-key' not found" in result.err and "make deploy_key" in result.err
    sweep.seed({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "demo-read-registry"},
                "type": "kubernetes.io/dockerconfigjson", "data": {".dockerconfigjson": "e30="}})
    again = cli("job")
    assert "demo-read-registry" not in again.err and "demo-deploy-key" in again.err


def test_light_client_import_keeps_the_whole_client_usable():
    """kubeapi imports only the client modules it needs; anything else still works on first use."""
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    code = "\n".join([
        "import importlib.util as u, sys",
        "s = u.spec_from_file_location('b', sys.argv[1]); m = u.module_from_spec(s); s.loader.exec_module(m)",
        "m._register_toolbox_package()",
        "from toolbox.kube import client; client.client_modules()",
        "print(len([n for n in sys.modules if n.startswith('kubernetes.client.models.')]))",
        "import kubernetes; from kubernetes import client, watch",
        "print(kubernetes.__version__ != '', client.V1Pod.__name__, client.CoreV1Api.__name__, watch.Watch.__name__)",
    ])
    done = subprocess.run([sys.executable, "-c", code, str(root / "launch.py")], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    models_before, rest = done.stdout.splitlines()
    assert int(models_before) < 10  # the ~700 generated model modules were not imported
    assert rest == "True V1Pod CoreV1Api Watch"


def test_a_grown_grid_keeps_running_packs_and_packs_only_new_cells(sweep, cli, project):
    """Cells already running in a shared-GPU pack are not submitted again when the grid grows."""
    shared = LAUNCH.replace("    command:", "    shared: 0.5\n        command:")
    project.launch_yaml(shared)
    assert cli("job").code == 0
    first = {p: json.loads(job(sweep, p)["metadata"]["annotations"]["toolbox/members"]) for p in job_names(sweep)}
    project.launch_yaml(shared.replace("[0.1, 0.01, 0.001]", "[1.0, 0.1, 0.01, 0.001]"))
    result = cli("job")
    assert result.code == 0, result
    assert "1 created, 0 replaced, 2 skipped" in result.out
    members = {p: json.loads(job(sweep, p)["metadata"]["annotations"]["toolbox/members"]) for p in job_names(sweep)}
    assert {p: m for p, m in members.items() if p in first} == first        # the running packs are untouched
    (new,) = [m for p, m in members.items() if p not in first]
    ran_before = {n for m in first.values() for n in m}
    assert len(new) == 1 and new[0] not in ran_before                     # only the new cell, once
    status = cli("status", model="train")
    assert status.out.count("running (shared)") == 4 and "missing" not in status.out
