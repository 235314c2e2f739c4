"""A shared namespace: other users' objects are never changed (names cannot collide, labels are checked
before every update, replace, delete and copy), concurrent runs of one user agree, a dead or stalled API
server gives one error and lets Ctrl-C stop at once. Against the API server double, through the real client."""
import base64
import os
import re
import signal
import subprocess
import sys
import threading

import pytest

from conftest import wait_until
from kube_helpers import LAUNCH_3 as LAUNCH, deploy_key_files



@pytest.fixture
def ns(project, kubeconfig, kube_api):
    project.launch_yaml(LAUNCH)
    project.env("API_KEY=alice-Key-1111\n")
    return kube_api


def as_user(project, user, name="demo", extra=""):
    project.kube_yaml(f"project_name: {name}\nuser: {user}\nnamespace: ns\n{extra}")


def env_secret_name(cli):
    """The .env Secret a command would use (as `make dryrun` says)."""
    return re.search(r"in the Secret '([^']+)'", cli("dryrun").out).group(1)


def secret_values(secret):
    return {k: base64.b64decode(v).decode() for k, v in secret["data"].items()}


def seed_foreign(kube_api, kind, name, user="mallory", project="demo", role=None):
    labels = {"user": user, "project": project, **({"toolbox/role": role} if role else {})}
    meta = {"name": name, "labels": labels} if user else {"name": name}
    body = {"Secret": {"apiVersion": "v1", "kind": "Secret", "type": "Opaque",
                       "data": {"K": base64.b64encode(b"mallory-Value").decode()}},
            "Pod": {"apiVersion": "v1", "kind": "Pod", "spec": {"containers": [{"name": "main", "image": "x"}]}},
            }[kind]
    return kube_api.seed({**body, "metadata": meta})


# -- names that cannot collide ---------------------------------------------------------------------------------
@pytest.mark.parametrize("first, second", [
    pytest.param(("alice-x", "y"), ("alice", "x-y"), id="dash-split"),
    pytest.param(("Alice", "demo"), ("alice", "demo"), id="case"),
    pytest.param(("a_b", "demo"), ("a-b", "demo"), id="underscore"),
])
def test_users_whose_names_join_alike_keep_their_own_secret(ns, cli, project, first, second):
    as_user(project, *first)
    project.env("API_KEY=first-Key-1111\n")
    assert cli("job").code == 0
    as_user(project, *second)
    project.env("API_KEY=second-Key-2222\n")
    result = cli("job")             # job names join alike too: never taken over, a clear error instead
    assert result.code == 1, result
    assert f"belongs to user '{first[0]}' (project '{first[1]}')" in result.err
    assert "(the same for 2 more jobs)" in result.err and "hint: another user's job has this name" in result.err
    as_user(project, *second, extra="prefix: second\n")
    result = cli("job")
    assert result.code == 0, result
    secrets = {(s["metadata"]["labels"]["user"], s["metadata"]["labels"]["project"]): s
               for s in ns.list("Secret", label_selector="toolbox/role=env")}
    assert secret_values(secrets[first]) == {"API_KEY": "first-Key-1111"}
    assert secret_values(secrets[second]) == {"API_KEY": "second-Key-2222"}
    for (user, name), secret in secrets.items():   # each user's jobs read their own Secret
        for job in ns.list("Job", label_selector=f"user={user},project={name}"):
            env_from = job["spec"]["template"]["spec"]["containers"][0]["envFrom"]
            assert env_from == [{"secretRef": {"name": secret["metadata"]["name"]}}]


def test_a_foreign_secret_under_my_name_is_never_changed(ns, cli):
    name = env_secret_name(cli)
    foreign = seed_foreign(ns, "Secret", name)
    result = cli("job")
    assert result.code == 1, result
    assert (f"error: secret/{name}: belongs to user 'mallory' (project 'demo'), not to user 'alice' "
            "(project 'demo'); nothing was changed") in result.err
    assert ns.get("Secret", name)["metadata"]["resourceVersion"] == foreign["metadata"]["resourceVersion"]
    assert ns.list("Job") == []    # no job runs with someone else's keys


def test_an_unlabelled_secret_under_my_name_is_never_changed(ns, cli):
    name = env_secret_name(cli)
    seed_foreign(ns, "Secret", name, user=None)
    result = cli("job")
    assert result.code == 1 and f"secret/{name}: has no user/project labels" in result.err, result
    assert secret_values(ns.get("Secret", name)) == {"K": "mallory-Value"}


def test_deploy_key_of_another_user_is_not_replaced(ns, cli, tmp_path):
    foreign = seed_foreign(ns, "Secret", "demo-deploy-key", user="bob")
    key, hosts = deploy_key_files(tmp_path)
    result = cli("deploy_key", key=str(key), known_hosts=str(hosts))
    assert result.code == 1, result
    assert "secret/demo-deploy-key: belongs to user 'bob' (project 'demo')" in result.err
    assert "hint: set deploy_key_secret" in result.err
    assert ns.get("Secret", "demo-deploy-key")["metadata"]["resourceVersion"] == \
        foreign["metadata"]["resourceVersion"]


def test_stale_env_secret_of_an_earlier_name_is_removed_by_make_delete(ns, cli):
    assert cli("job").code == 0
    seed_foreign(ns, "Secret", "alice-demo-env", user="alice", role="env")    # the name before the owner hash
    seed_foreign(ns, "Secret", "bob-demo-env", user="bob", role="env")
    current = env_secret_name(cli)
    result = cli("delete", yes="1")
    assert result.code == 0, result
    assert ns.get("Secret", "alice-demo-env") is None
    assert ns.get("Secret", "bob-demo-env") is not None and ns.get("Secret", current) is not None


# -- make copy ---------------------------------------------------------------------------------------------------
def test_copy_refuses_pods_of_other_users(ns, cli, project):
    project.write("a.txt", "x")
    as_user(project, "alice", extra="file: [a.txt]\n")
    seed_foreign(ns, "Pod", "bob-pod", user="bob")
    ns.set_pod_phase("bob-pod", "Running")
    seed_foreign(ns, "Pod", "bare-pod", user=None)
    ns.set_pod_phase("bare-pod", "Running")
    result = cli("copy", pod="bob-pod")
    assert result.code == 2 and ("error: pod=bob-pod: belongs to user 'bob' (project 'demo'), not to user "
                                 "'alice' (project 'demo'); nothing was copied") in result.err, result
    assert cli("copy", pod="bare-pod").code == 2
    assert ns.exec_calls == []


def test_copy_into_a_pod_whose_container_is_not_running(ns, cli, project):
    project.write("a.txt", "x")
    as_user(project, "alice", extra="file: [a.txt]\n")
    assert cli("pod", pod="p1").code == 0
    ns.set_container_state("p1", "waiting", reason="CrashLoopBackOff", message="back-off 5m0s", phase="Running")
    result = cli("copy", pod="p1")
    assert result.code == 1, result
    assert result.err.startswith("error: pod/p1: container 'main' is not running (CrashLoopBackOff: back-off "
                                 "5m0s); files can only be copied into a running container")
    assert "Traceback" not in result.err and ns.exec_calls == []


# -- concurrent runs and failing servers -------------------------------------------------------------------------
def job_bodies(cli, project):
    """The Jobs `make job` would create, as `make dryrun` writes them."""
    import yaml
    assert cli("dryrun").code == 0
    bodies = [yaml.safe_load(p.read_text()) for p in sorted((project.path / "build").glob("*.yaml"))]
    return [b for b in bodies if b["kind"] == "Job"]


def is_job_create(request):
    return request.method == "POST" and request.path.endswith("/jobs")


def test_a_concurrent_run_of_the_same_user_counts_as_submitted(ns, cli, project):
    same, foreign, free = job_bodies(cli, project)
    taken = {**foreign, "metadata": {**foreign["metadata"], "labels": {"user": "bob", "project": "demo"}}}
    raced = []

    def other_run_first(request):   # another `make job` creates two jobs between our list and our creates
        if is_job_create(request) and not raced:
            raced.append(True)
            ns.seed(same)
            ns.seed(taken)
    ns.request_hook = other_run_first
    result = cli("job")
    assert result.code == 1, result
    assert f"Job '{same['metadata']['name']}' was created meanwhile with the same spec (another make job?)" \
        in result.out
    assert (f"error: job/{foreign['metadata']['name']}: belongs to user 'bob' (project 'demo'), not to user "
            "'alice' (project 'demo'); nothing was changed") in result.err
    assert "1 created, 0 replaced, 1 skipped, 1 failed (of 3)" in result.out
    assert ns.get("Job", free["metadata"]["name"]) is not None
    assert ns.get("Job", foreign["metadata"]["name"])["metadata"]["labels"]["user"] == "bob"


def test_a_dead_api_server_mid_job_is_one_error_and_a_count(ns, cli, project):
    project.launch_yaml(LAUNCH.replace("[0.1, 0.01, 0.001]", "[" + ", ".join(str(i) for i in range(40)) + "]"))
    ns.request_hook = lambda request: "drop" if is_job_create(request) else None
    result = cli("job")
    assert result.code == 1, result
    errors = [line for line in result.err.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, result.err
    assert errors[0].startswith(f"error: {ns.url}: cannot reach the Kubernetes API server")
    assert "40 jobs not submitted" in result.err
    assert "0 created, 0 replaced, 0 skipped, 40 failed (of 40)" in result.out
    assert ns.count("create", "jobs") <= 16 * 3       # no request after the server was found dead


@pytest.fixture
def stalled(ns):
    """Job creates that the server never answers (until the test ends)."""
    release, seen = threading.Event(), threading.Event()

    def stall(request):
        if is_job_create(request):
            seen.set()
            release.wait(120)
            return "drop"      # never handled, even after the test
    ns.request_hook = stall
    yield seen
    release.set()


def test_api_timeout_bounds_a_stalled_request(ns, cli, project, stalled):
    as_user(project, "alice", extra="api_timeout: 1\n")
    result = cli("job")
    assert result.code == 1, result
    errors = [line for line in result.err.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "did not answer within 1 s (api_timeout)" in errors[0], result.err


def test_ctrl_c_against_a_stalled_api_server_stops_at_once(ns, project, stalled):
    env = dict(os.environ, PYTHON=sys.executable)
    proc = subprocess.Popen(["make", "job"], cwd=project.path, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        wait_until(stalled.is_set, "the first job create")
        os.killpg(proc.pid, signal.SIGINT)                 # what Ctrl-C in a terminal does
        out, err = proc.communicate(timeout=20)            # the read timeout alone is far longer
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate()
    assert "interrupted" in err and "Traceback" not in err, err
    assert "Jobs in namespace 'ns': 0 created" in out and "3 in flight" in out, out


def test_delete_never_removes_an_object_that_took_the_name_since_the_list(ns, cli):
    assert cli("job").code == 0
    names = sorted(j["metadata"]["name"] for j in ns.list("Job"))
    swapped = []

    def swap_first(request):   # between our list and our delete, bob's job takes the name of one of ours
        if request.method == "DELETE" and request.path.endswith(f"/jobs/{names[0]}") and not swapped:
            swapped.append(True)
            ns.delete("Job", names[0])
            ns.seed({"apiVersion": "batch/v1", "kind": "Job",
                     "metadata": {"name": names[0], "labels": {"user": "bob", "project": "demo"}},
                     "spec": {"template": {"spec": {"restartPolicy": "Never",
                                                    "containers": [{"name": "c", "image": "busybox"}]}}}})
    ns.request_hook = swap_first
    result = cli("delete_job", yes="1")
    assert result.code == 1, result
    assert f"error: job/{names[0]}: Conflict" in result.err and "Deleted 2 of 3." in result.out
    assert ns.get("Job", names[0])["metadata"]["labels"]["user"] == "bob"
