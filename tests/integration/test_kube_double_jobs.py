"""The API double's Services and its job controller for scale-out (Indexed Jobs, parallelism, per-index
backoff, pod failure policies, suspend), through the official client and the real kubectl."""
import json
import time

import pytest

kubernetes = pytest.importorskip("kubernetes")
from doubles.kube_api.pod_failure import format_indexes, parse_indexes
from kubernetes.client.rest import ApiException

NS = "ns"
INDEX = "batch.kubernetes.io/job-completion-index"


def api_error(call, *args, **kwargs):
    with pytest.raises(ApiException) as info:
        call(*args, **kwargs)
    return info.value, json.loads(info.value.body)


def service(name="train", headless=True, **spec):
    body = {"selector": {"batch.kubernetes.io/job-name": "train"}, "ports": [{"name": "rdzv", "port": 29500}]}
    if headless:
        body["clusterIP"] = "None"
    body.update(spec)
    return {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name, "labels": {"user": "alice"}},
            "spec": body}


def job(name="train", completions=None, parallelism=None, indexed=False, policy=None, suspend=None, **spec):
    body = {"backoffLimit": 0, "template": {"metadata": {"labels": {"user": "alice"}}, "spec": {
        "restartPolicy": "Never", "subdomain": name,
        "containers": [{"name": "main", "image": "busybox:1.36", "command": ["sh", "-c", "true"]}]}}}
    for key, value in (("completions", completions), ("parallelism", parallelism), ("podFailurePolicy", policy),
                       ("suspend", suspend), ("completionMode", "Indexed" if indexed else None)):
        if value is not None:
            body[key] = value
    body.update(spec)
    body = {k: v for k, v in body.items() if v is not None}  # backoffLimit=None: the server's default
    return {"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": name, "labels": {"user": "alice"}},
            "spec": body}


def status(kube_api, name="train"):
    return kube_api.get("job", name)["status"]


def conditions(kube_api, name="train"):
    return [(c["type"], c["status"], c.get("reason")) for c in status(kube_api, name).get("conditions", [])]


def active_indexes(kube_api, name="train"):
    return sorted(int(p["metadata"]["annotations"][INDEX]) for p in kube_api.job_pods(name)
                  if p["status"]["phase"] not in ("Succeeded", "Failed"))


# --- Services ---

def test_service_defaults_allocation_and_headless(core):
    plain = core.create_namespaced_service(NS, service("plain", headless=False))
    assert plain.spec.cluster_ip.startswith("10.96.") and plain.spec.cluster_ips == [plain.spec.cluster_ip]
    assert (plain.spec.type, plain.spec.session_affinity, plain.spec.internal_traffic_policy) == (
        "ClusterIP", "None", "Cluster")
    assert (plain.spec.ip_families, plain.spec.ip_family_policy) == (["IPv4"], "SingleStack")
    port = plain.spec.ports[0]
    assert (port.protocol, port.target_port, port.port) == ("TCP", 29500, 29500)
    headless = core.create_namespaced_service(NS, service("train"))
    assert (headless.spec.cluster_ip, headless.spec.cluster_ips) == ("None", ["None"])
    assert headless.metadata.uid and headless.metadata.resource_version and headless.status.load_balancer
    other = core.create_namespaced_service(NS, service("other", headless=False))
    assert other.spec.cluster_ip != plain.spec.cluster_ip
    listed = core.list_namespaced_service(NS, field_selector="spec.clusterIP=None")
    assert [s.metadata.name for s in listed.items] == ["train"] and listed.kind == "ServiceList"
    assert len(core.list_namespaced_service(NS, label_selector="user=alice").items) == 3
    core.delete_namespaced_service("train", NS)
    error, body = api_error(core.read_namespaced_service, "train", NS)
    assert error.status == 404 and body["message"] == 'services "train" not found'


def test_node_port_services_get_node_ports(core):
    created = core.create_namespaced_service(NS, service("np", headless=False, type="NodePort"))
    assert 30000 <= created.spec.ports[0].node_port <= 32767
    assert created.spec.external_traffic_policy == "Cluster"


@pytest.mark.parametrize("change, field", [
    pytest.param({"metadata": {"name": "rdzv.svc"}}, "metadata.name", id="dns-1035-name"),
    pytest.param({"metadata": {"name": "9lives"}}, "metadata.name", id="name-starts-with-digit"),
    pytest.param({"spec": {"clusterIP": None, "ports": []}}, "spec.ports", id="ports-required-unless-headless"),
    pytest.param({"spec": {"ports": [{"port": 1, "protocol": "HTTP"}]}}, "spec.ports[0].protocol", id="protocol"),
    pytest.param({"spec": {"ports": [{"port": 1}, {"port": 2}]}}, "spec.ports[0].name", id="names-when-several"),
    pytest.param({"spec": {"ports": [{"port": 70000}]}}, "spec.ports[0].port", id="port-range"),
    pytest.param({"spec": {"type": "Magic"}}, "spec.type", id="type"),
    pytest.param({"spec": {"clusterIP": "not-an-ip"}}, "spec.clusterIPs[0]", id="cluster-ip"),
])
def test_invalid_services_are_422(core, change, field):
    body = service()
    body["metadata"].update(change.get("metadata", {}))
    for key, value in change.get("spec", {}).items():
        if value is None:
            body["spec"].pop(key, None)
        else:
            body["spec"][key] = value
    error, status_ = api_error(core.create_namespaced_service, NS, body)
    assert (error.status, status_["reason"]) == (422, "Invalid"), status_
    assert status_["details"]["causes"][0]["field"] == field and status_["details"]["kind"] == "Service"


def test_service_unknown_field_is_400_under_strict(core):
    body = service()
    body["spec"]["clusterIp"] = "None"
    error, status_ = api_error(core.create_namespaced_service, NS, body)
    assert error.status == 400 and 'unknown field "spec.clusterIp"' in status_["message"]


def test_service_replace_keeps_the_allocated_ip_which_is_immutable(core):
    created = core.create_namespaced_service(NS, service("plain", headless=False))
    body = service("plain", headless=False)  # a hand-written file: no clusterIP
    body["metadata"]["labels"]["v"] = "2"
    replaced = core.replace_namespaced_service("plain", NS, body)
    assert replaced.spec.cluster_ip == created.spec.cluster_ip and replaced.metadata.labels["v"] == "2"
    body["spec"]["clusterIP"] = "None"
    error, status_ = api_error(core.replace_namespaced_service, "plain", NS, body)
    assert error.status == 422 and "may not change once set" in status_["message"]


def test_service_deletecollection_by_label(core):
    for name in ("a", "b"):
        core.create_namespaced_service(NS, service(name))
    core.create_namespaced_service(NS, dict(service("c"), metadata={"name": "c", "labels": {"user": "bob"}}))
    core.delete_collection_namespaced_service(NS, label_selector="user=alice")
    assert [s.metadata.name for s in core.list_namespaced_service(NS).items] == ["c"]


def test_strategic_merge_patch_merges_service_ports_by_port():
    from doubles.kube_api.patch import strategic_merge_patch
    live = {"spec": {"ports": [{"name": "a", "port": 1, "protocol": "TCP"}, {"name": "b", "port": 2}]}}
    merged = strategic_merge_patch(live, {"spec": {"ports": [{"port": 2, "name": "bee"}]}})
    assert merged["spec"]["ports"] == [{"name": "a", "port": 1, "protocol": "TCP"}, {"name": "bee", "port": 2}]


def test_kubectl_services(kubectl, tmp_path, kube_api):
    manifest = tmp_path / "svc.yaml"
    manifest.write_text(json.dumps(service()) + "\n---\n" + json.dumps(service("web", headless=False)))
    out = kubectl("apply", "-f", manifest)
    assert out.returncode == 0 and "service/train created" in out.stdout, out.stderr
    assert "service/train unchanged" in kubectl("apply", "-f", manifest).stdout
    lines = kubectl("get", "svc", "-o", "wide").stdout.splitlines()
    assert lines[0].split() == ["NAME", "TYPE", "CLUSTER-IP", "EXTERNAL-IP", "PORT(S)", "AGE", "SELECTOR"]
    rows = {line.split()[0]: line.split() for line in lines[1:]}
    assert rows["train"][1:5] == ["ClusterIP", "None", "<none>", "29500/TCP"]
    assert rows["web"][2] == kube_api.get("service", "web")["spec"]["clusterIP"]
    assert rows["train"][6] == "batch.kubernetes.io/job-name=train"
    assert 'service "web" deleted' in kubectl("delete", "svc", "web").stdout
    assert [s["metadata"]["name"] for s in kube_api.list("services")] == ["train"]


# --- Indexed Jobs ---

def test_index_list_format():
    assert format_indexes({0, 1, 2, 4, 6, 7}) == "0-2,4,6,7"
    assert format_indexes(set()) == "" and format_indexes({5}) == "5"
    assert parse_indexes("0-2,4,6,7,9", 8) == {0, 1, 2, 4, 6, 7}
    assert parse_indexes("1,x,3-", 5) == {1}


def test_indexed_job_runs_parallelism_pods_with_index_identity(batch, core, kube_api):
    batch.create_namespaced_job(NS, job(completions=3, parallelism=2, indexed=True))
    pods = {int(p.metadata.annotations[INDEX]): p for p in core.list_namespaced_pod(NS).items}
    assert sorted(pods) == [0, 1]
    first = pods[0]
    assert first.metadata.labels[INDEX] == "0" and first.metadata.generate_name == "train-0-"
    assert first.metadata.name.startswith("train-0-") and len(first.metadata.name) == len("train-0-") + 5
    assert (first.spec.hostname, first.spec.subdomain) == ("train-0", "train")
    env = {e.name: e for e in first.spec.containers[0].env}
    assert env["JOB_COMPLETION_INDEX"].value_from.field_ref.field_path == f"metadata.labels['{INDEX}']"
    assert first.metadata.finalizers == ["batch.kubernetes.io/job-tracking"]
    assert status(kube_api)["active"] == 2 and "completedIndexes" not in status(kube_api)
    kube_api.start_pod(first.metadata.name)
    assert status(kube_api)["ready"] == 1
    kube_api.finish_index("train", 0)
    assert active_indexes(kube_api) == [1, 2]  # the next index starts when one ends
    assert kube_api.get("pod", first.metadata.name)["metadata"].get("finalizers") is None  # counted
    assert (status(kube_api)["completedIndexes"], status(kube_api)["succeeded"]) == ("0", 1)
    kube_api.finish_index("train", 2)
    assert status(kube_api)["completedIndexes"] == "0,2" and conditions(kube_api) == []
    kube_api.finish_index("train", 1)
    final = status(kube_api)
    assert (final["succeeded"], final["completedIndexes"], final.get("active")) == (3, "0-2", None)
    assert conditions(kube_api) == [("SuccessCriteriaMet", "True", "CompletionsReached"),
                                    ("Complete", "True", "CompletionsReached")]
    assert final["completionTime"] and final["startTime"]
    assert batch.read_namespaced_job("train", NS).status.completed_indexes == "0-2"


def test_a_wide_job_gets_its_pods_500_per_sync(batch, kube_api):
    since = kube_api.store.rv
    batch.create_namespaced_job(NS, job(completions=1200, parallelism=1200, indexed=True))
    deadline = time.monotonic() + 30
    while status(kube_api).get("active") != 1200:  # the rest comes from a background sync
        assert time.monotonic() < deadline, status(kube_api)
        kube_api.store.wait_for_change(kube_api.store.changes, 0.2)
    assert active_indexes(kube_api) == list(range(1200))
    actives = [(e.obj.get("status") or {}).get("active") for e in kube_api.store.events_after(since)
               if e.res.plural == "jobs"]
    assert actives == [None, 500, 1000, 1200]


def test_job_defaults_follow_the_api(batch):
    created = batch.create_namespaced_job(NS, job(completions=4, parallelism=4, indexed=True,
                                                  backoffLimitPerIndex=1, backoffLimit=None))
    spec = created.spec
    assert (spec.backoff_limit, spec.backoff_limit_per_index, spec.completion_mode) == (2**31 - 1, 1, "Indexed")
    assert spec.pod_replacement_policy == "TerminatingOrFailed"
    queue = job("queue", parallelism=3, policy={"rules": [{"action": "Ignore",
                                                           "onPodConditions": [{"type": "DisruptionTarget"}]}]})
    created = batch.create_namespaced_job(NS, queue)
    assert (created.spec.completions, created.spec.parallelism) == (None, 3)  # a work queue
    assert created.spec.pod_replacement_policy == "Failed"
    assert created.spec.pod_failure_policy.rules[0].on_pod_conditions[0].status == "True"
    assert created.spec.backoff_limit == 0


@pytest.mark.parametrize("spec, field, message", [
    pytest.param({"completionMode": "Indexed", "parallelism": 2}, "spec.completions", "when completion mode is Indexed",
                 id="indexed-needs-completions"),
    pytest.param({"backoffLimitPerIndex": 1}, "spec.backoffLimitPerIndex", "requires indexed completion mode",
                 id="per-index-needs-indexed"),
    pytest.param({"completionMode": "Indexed", "completions": 2, "maxFailedIndexes": 1},
                 "spec.backoffLimitPerIndex", "when maxFailedIndexes is specified", id="max-failed-needs-per-index"),
    pytest.param({"completionMode": "Indexed", "completions": 2, "podFailurePolicy": {"rules": [
        {"action": "FailIndex", "onExitCodes": {"operator": "In", "values": [3]}}]}},
        "spec.podFailurePolicy.rules[0].action", "requires the backoffLimitPerIndex to be set",
        id="fail-index-needs-per-index"),
    pytest.param({"podFailurePolicy": {"rules": [{"action": "FailJob", "onExitCodes": {
        "operator": "In", "values": [0, 2]}}]}}, "spec.podFailurePolicy.rules[0].onExitCodes.values[0]",
        "must not be 0 for the In operator", id="exit-code-zero"),
    pytest.param({"podFailurePolicy": {"rules": [{"action": "FailJob", "onExitCodes": {
        "operator": "In", "values": [3, 2]}}]}}, "spec.podFailurePolicy.rules[0].onExitCodes.values",
        "must be ordered", id="exit-codes-ordered"),
    pytest.param({"podFailurePolicy": {"rules": [{"action": "Ignore"}]}}, "spec.podFailurePolicy.rules[0]",
                 "specifying one of OnExitCodes and OnPodConditions is required", id="rule-needs-a-matcher"),
    pytest.param({"podFailurePolicy": {"rules": []}, "podReplacementPolicy": "TerminatingOrFailed"},
                 "spec.podReplacementPolicy", 'supported values: "Failed"', id="replacement-with-policy"),
    pytest.param({"completions": -1}, "spec.completions", "must be greater than or equal to 0", id="negative"),
])
def test_invalid_job_specs_are_422(batch, spec, field, message):
    body = job()
    body["spec"].update(spec)
    error, status_ = api_error(batch.create_namespaced_job, NS, body)
    assert (error.status, status_["reason"]) == (422, "Invalid"), status_
    assert status_["details"]["causes"][0]["field"] == field and message in status_["message"]


def test_pod_failure_policy_needs_restart_policy_never(batch):
    body = job(policy={"rules": [{"action": "FailJob", "onExitCodes": {"operator": "In", "values": [2]}}]})
    body["spec"]["template"]["spec"]["restartPolicy"] = "OnFailure"
    _, status_ = api_error(batch.create_namespaced_job, NS, body)
    assert 'only "Never" is supported when podFailurePolicy is specified' in status_["message"]


def test_invalid_hostname_or_subdomain_is_422(batch):
    body = job()
    body["spec"]["template"]["spec"]["subdomain"] = "Rdzv_Svc"
    _, status_ = api_error(batch.create_namespaced_job, NS, body)
    assert status_["details"]["causes"][0]["field"] == "spec.template.spec.subdomain"


def test_backoff_limit_per_index_and_fail_index(batch, kube_api):
    policy = {"rules": [{"action": "FailIndex", "onExitCodes": {"operator": "In", "values": [42]}}]}
    batch.create_namespaced_job(NS, job(completions=3, parallelism=3, indexed=True, policy=policy,
                                        backoffLimitPerIndex=1, backoffLimit=None))
    assert status(kube_api)["failedIndexes"] == ""
    kube_api.finish_index("train", 0, exit_code=1)  # first failure of index 0: retried once
    retry = kube_api.index_pod("train", 0)
    assert retry["metadata"]["annotations"]["batch.kubernetes.io/job-index-failure-count"] == "1"
    kube_api.finish_index("train", 1, exit_code=42)  # FailIndex: no retry
    assert status(kube_api)["failedIndexes"] == "1" and active_indexes(kube_api) == [0, 2]
    kube_api.finish_index("train", 2)
    kube_api.finish_index("train", 0, exit_code=1)  # second failure of index 0: the index fails
    final = status(kube_api)
    assert (final["failedIndexes"], final["completedIndexes"], final["failed"]) == ("0,1", "2", 3)
    assert conditions(kube_api) == [("FailureTarget", "True", "FailedIndexes"), ("Failed", "True", "FailedIndexes")]
    assert kube_api.get("job", "train")["status"]["conditions"][-1]["message"] == "Job has failed indexes"


def test_max_failed_indexes_fails_the_job_early_and_stops_the_rest(batch, kube_api):
    batch.create_namespaced_job(NS, job(completions=4, parallelism=4, indexed=True, backoffLimitPerIndex=0,
                                        maxFailedIndexes=1, backoffLimit=None))
    kube_api.finish_index("train", 0, exit_code=1)
    assert status(kube_api)["failedIndexes"] == "0" and conditions(kube_api) == []
    kube_api.finish_index("train", 3, exit_code=1)
    assert conditions(kube_api)[-1] == ("Failed", "True", "MaxFailedIndexesExceeded")
    assert active_indexes(kube_api) == []  # the controller deleted the running indexes


PREEMPTION_TOLERANT = {"rules": [
    {"action": "FailJob", "onExitCodes": {"containerName": "main", "operator": "In", "values": [2]}},
    {"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget", "status": "True"}]},
]}


def test_preemption_is_ignored_by_the_pod_failure_policy(batch, core, kube_api):
    batch.create_namespaced_job(NS, job(completions=2, parallelism=2, indexed=True, policy=PREEMPTION_TOLERANT))
    victim = kube_api.index_pod("train", 1)["metadata"]["name"]
    kube_api.start_pod(victim)
    stopped = kube_api.preempt_pod(victim)
    disruption = next(c for c in stopped["status"]["conditions"] if c["type"] == "DisruptionTarget")
    assert (disruption["status"], disruption["reason"]) == ("True", "PreemptionByScheduler")
    assert stopped["status"]["phase"] == "Failed" and kube_api.get("pod", victim) is None  # deleted
    events = core.list_namespaced_event(NS, field_selector=f"involvedObject.name={victim}").items
    assert [e.reason for e in events] == ["Preempted"]
    assert "failed" not in status(kube_api) and active_indexes(kube_api) == [0, 1]  # replaced, not counted
    kube_api.finish_index("train", 0)
    kube_api.finish_index("train", 1)
    assert conditions(kube_api)[-1] == ("Complete", "True", "CompletionsReached")


def test_fatal_exit_code_fails_the_job_at_once(batch, kube_api):
    batch.create_namespaced_job(NS, job(completions=2, parallelism=2, indexed=True, policy=PREEMPTION_TOLERANT,
                                        backoffLimit=5))
    rank0 = kube_api.index_pod("train", 0)["metadata"]["name"]
    failed = kube_api.finish_index("train", 1, exit_code=2)
    assert conditions(kube_api) == [("FailureTarget", "True", "PodFailurePolicy"), ("Failed", "True", "PodFailurePolicy")]
    message = status(kube_api)["conditions"][-1]["message"]
    assert message == (f"Container main for pod ns/{failed['metadata']['name']} failed with exit code 2 matching "
                       "FailJob rule at index 0")
    assert kube_api.get("pod", rank0) is None and status(kube_api)["failed"] == 2  # node 0 stopped and counted


def test_backoff_limit_counts_failures_and_replaces_pods(batch, kube_api):
    batch.create_namespaced_job(NS, job(backoffLimit=1))
    first = kube_api.job_pod("train")["metadata"]["name"]
    kube_api.finish_pod(first, exit_code=1, log="boom\n")
    pods = kube_api.job_pods("train")
    assert len(pods) == 2 and status(kube_api)["failed"] == 1 and status(kube_api)["active"] == 1
    second = next(p["metadata"]["name"] for p in pods if p["metadata"]["name"] != first)
    kube_api.finish_pod(second, exit_code=137, reason="OOMKilled")
    assert conditions(kube_api)[-1] == ("Failed", "True", "BackoffLimitExceeded")
    assert status(kube_api)["failed"] == 2 and len(kube_api.job_pods("train")) == 2


def test_deleting_a_running_pod_counts_a_failure_and_replaces_it(batch, core, kube_api):
    batch.create_namespaced_job(NS, job(backoffLimit=3))
    first = kube_api.job_pod("train")["metadata"]["name"]
    deleted = core.delete_namespaced_pod(first, NS)
    assert deleted.status.phase == "Failed" and deleted.metadata.deletion_timestamp
    (replacement,) = kube_api.job_pods("train")
    assert replacement["metadata"]["name"] != first and status(kube_api)["failed"] == 1
    batch.delete_namespaced_job("train", NS, propagation_policy="Foreground")  # a cascade replaces nothing
    assert kube_api.list("pods") == []


def test_work_queue_completes_at_the_first_success(batch, kube_api):
    batch.create_namespaced_job(NS, job(parallelism=2))
    first, second = (p["metadata"]["name"] for p in kube_api.job_pods("train"))
    kube_api.finish_pod(first)
    assert conditions(kube_api) == [] and status(kube_api)["active"] == 1  # waits for the others to end
    kube_api.finish_pod(second)
    assert conditions(kube_api)[-1] == ("Complete", "True", "CompletionsReached")


def test_suspended_job_waits_for_the_queue(batch, kube_api):
    body = job(completions=2, parallelism=2, indexed=True, suspend=True)
    body["metadata"]["labels"]["kueue.x-k8s.io/queue-name"] = "team-a"
    batch.create_namespaced_job(NS, body)
    assert kube_api.job_pods("train") == [] and conditions(kube_api) == [("Suspended", "True", "JobSuspended")]
    assert "startTime" not in status(kube_api)
    # What Kueue does on admission: place the pods (labels, node selector), then unsuspend.
    batch.patch_namespaced_job("train", NS, {"spec": {"template": {"spec": {"nodeSelector": {"pool": "a"}}}}})
    batch.patch_namespaced_job("train", NS, {"spec": {"suspend": False}})
    assert active_indexes(kube_api) == [0, 1]
    assert kube_api.index_pod("train", 0)["spec"]["nodeSelector"] == {"pool": "a"}
    assert conditions(kube_api) == [("Suspended", "False", "JobResumed")] and status(kube_api)["startTime"]
    error, _ = api_error(batch.patch_namespaced_job, "train", NS,
                         {"spec": {"template": {"spec": {"nodeSelector": {"pool": "b"}}}}})
    assert error.status == 422  # started: the template is fixed again
    batch.patch_namespaced_job("train", NS, {"spec": {"suspend": True}})
    assert active_indexes(kube_api) == [] and conditions(kube_api) == [("Suspended", "True", "JobSuspended")]
    assert "failed" not in status(kube_api)  # suspending is not a failure


def test_elastic_indexed_job_scales_with_parallelism(batch, kube_api):
    batch.create_namespaced_job(NS, job(completions=2, parallelism=2, indexed=True))
    batch.patch_namespaced_job("train", NS, {"spec": {"completions": 3, "parallelism": 3}})
    assert active_indexes(kube_api) == [0, 1, 2]
    error, status_ = api_error(batch.patch_namespaced_job, "train", NS, {"spec": {"completions": 4}})
    assert error.status == 422 and "in tandem with spec.parallelism" in status_["message"]
    batch.patch_namespaced_job("train", NS, {"spec": {"parallelism": 1}})
    assert len(active_indexes(kube_api)) == 1


def test_scripted_hooks_still_finish_indexed_jobs(batch, kube_api):
    batch.create_namespaced_job(NS, job(completions=3, parallelism=3, indexed=True))
    kube_api.mark_job_running("train")
    assert (status(kube_api)["active"], status(kube_api)["ready"]) == (3, 3)
    kube_api.mark_job_succeeded("train")
    assert (status(kube_api)["succeeded"], status(kube_api)["completedIndexes"]) == (3, "0-2")


def test_kubectl_apply_indexed_job_and_follow_it(kubectl, tmp_path, kube_api):
    manifest = tmp_path / "job.yaml"
    manifest.write_text(json.dumps(job(completions=2, parallelism=1, indexed=True)))
    assert kubectl("apply", "-f", manifest).returncode == 0
    kube_api.finish_index("train", 0)
    row = kubectl("get", "jobs").stdout.splitlines()[1].split()
    assert row[:3] == ["train", "Running", "1/2"]
    out = kubectl("get", "job", "train", "-o", "jsonpath={.status.completedIndexes}")
    assert out.stdout == "0"
    kube_api.finish_index("train", 1)
    assert "condition met" in kubectl("wait", "--for=condition=complete", "job/train", "--timeout=5s").stdout
    pods = kubectl("get", "pods", "-l", f"{INDEX}=1", "-o", "name").stdout.split()
    assert len(pods) == 1 and pods[0].startswith("pod/train-1-")
