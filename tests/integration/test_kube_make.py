"""End to end through the real Makefile (make job / status / delete / dryrun / deploy_key) and the double."""
import pytest

from kube_helpers import LAUNCH  # a 2-cell grid


@pytest.fixture
def kproject(project, kubeconfig, kube_api):
    project.launch_yaml(LAUNCH)
    project.env("API_TOKEN=make-secret-Token-42\n")
    return project


def test_make_job_status_delete(kproject, make, kube_api):
    done = make("job")
    assert done.returncode == 0, done.stderr
    assert "2 created, 0 replaced, 0 skipped, 0 failed (of 2)" in done.stdout
    again = make("job")
    assert again.returncode == 0 and "2 skipped" in again.stdout
    status = make("status")
    assert status.returncode == 0 and "2 cells: 2 running" in status.stdout
    refused = make("delete")  # no terminal, no yes=1: nothing deleted, make fails
    assert refused.returncode != 0 and len(kube_api.list("Job")) == 2
    deleted = make("delete", "yes=1")
    assert deleted.returncode == 0, deleted.stderr
    assert kube_api.list("Job") == []
    for output in (done, again, status, deleted):
        assert "make-secret-Token-42" not in output.stdout + output.stderr


def test_make_overwrite_replaces(kproject, make, kube_api):
    assert make("job").returncode == 0
    uids = {j["metadata"]["uid"] for j in kube_api.list("Job")}
    done = make("job", "overwrite=true")
    assert done.returncode == 0 and "2 replaced" in done.stdout
    assert not uids & {j["metadata"]["uid"] for j in kube_api.list("Job")}


def test_make_deploy_key_and_help(kproject, make, tmp_path, kube_api):
    key = tmp_path / "key"
    key.write_text("-----BEGIN OPENSSH PRIVATE KEY-----\nx\n-----END OPENSSH PRIVATE KEY-----\n")
    hosts = tmp_path / "hosts"
    hosts.write_text("host ssh-ed25519 AAAA\n")
    done = make("deploy_key", f"key={key}", f"known_hosts={hosts}")
    assert done.returncode == 0, done.stderr
    assert kube_api.get("Secret", "demo-deploy-key")["type"] == "kubernetes.io/ssh-auth"
    helped = make("help")
    assert "deploy_key" in helped.stdout


def test_make_dryrun_then_kubectl_apply(kproject, make, kubectl):
    done = make("dryrun")
    assert done.returncode == 0, done.stderr
    applied = kubectl("apply", "-f", str(kproject.path / "build"))
    assert applied.returncode == 0, applied.stderr
    assert applied.stdout.count("job.batch/") == 2
