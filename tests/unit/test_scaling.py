"""Scaling out without a cluster: the Job specs of retries, multi-node cells and array packs (kube/jobspec.py),
their checks with the config line that set them, placeholders of multi-node commands, names of Indexed Jobs,
array packs within their ConfigMap budget, and the view of an array cell (kube/placement.py) that `make status`,
`make status watch=1` and `make report` read."""
import pytest
import yaml
from kube_helpers import check_golden, load, render_units, validate
from toolbox.core import naming
from toolbox.core.grid import Cell
from toolbox.kube import arrays, jobspec
from toolbox.kube.placement import Placement
from toolbox.kube.status import job_state, status_text
from toolbox.kube.sweep import Sweep

BASE = {"retries": 0, "backoff_limit": 0, "nodes": 1, "fatal_exit_codes": [], "queue": None}
DISRUPTION = {"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget", "status": "True"}]}


def settings(**values):
    return {**BASE, **values}


# -- the Job spec ---------------------------------------------------------------------------------------------
def test_without_retries_a_cell_is_the_plain_job_it_always_was():
    assert jobspec.spec(settings()) == {"backoffLimit": 0}
    assert jobspec.spec(settings(backoff_limit=2, fatal_exit_codes=["3"])) == {
        "backoffLimit": 2, "podFailurePolicy": {"rules": [
            {"action": "FailJob", "onExitCodes": {"operator": "In", "values": [3]}}]}}


def test_retries_make_an_indexed_job_that_ignores_disruptions_and_stops_at_fatal_codes():
    spec = jobspec.spec(settings(retries=3, backoff_limit=9, fatal_exit_codes=["2", "1", "2"]))
    assert spec == {"completionMode": "Indexed", "completions": 1, "parallelism": 1, "backoffLimitPerIndex": 3,
                    "maxFailedIndexes": 0, "podFailurePolicy": {"rules": [
                        DISRUPTION, {"action": "FailJob", "onExitCodes": {"operator": "In", "values": [1, 2]}}]}}


def test_a_multi_node_cell_fails_whole_and_an_array_pack_cell_by_cell():
    nodes = jobspec.spec(settings(nodes=4, retries=1, fatal_exit_codes=["2"]), 4)
    assert (nodes["completions"], nodes["parallelism"], nodes["maxFailedIndexes"]) == (4, 4, 0)
    assert nodes["podFailurePolicy"]["rules"][1]["action"] == "FailJob"
    pack = jobspec.spec(settings(retries=1, fatal_exit_codes=["2"]), 1000, 50, whole=False)
    assert (pack["completions"], pack["parallelism"], pack["backoffLimitPerIndex"]) == (1000, 50, 1)
    assert "maxFailedIndexes" not in pack
    assert pack["podFailurePolicy"]["rules"][1]["action"] == "FailIndex"
    assert jobspec.spec(settings(), 10, 50, whole=False)["parallelism"] == 10


def test_a_queue_suspends_the_job_and_labels_only_the_job():
    assert jobspec.spec(settings(queue="team-a"))["suspend"] is True
    assert jobspec.job_labels(settings(queue="team-a"), {"user": "a"}) == {
        "user": "a", "kueue.x-k8s.io/queue-name": "team-a"}


def test_an_indexed_job_name_leaves_room_for_its_last_index():
    name = "a" * 52 + "-" + "0123456789"
    assert naming.indexed_job_name(name, 2) == "a" * 50 + "-0123456789"      # `-1` fits in 63
    assert len(naming.indexed_job_name(name, 10_000) + "-9999") <= 63
    assert naming.indexed_job_name("short-0123456789", 100_000) == "short-0123456789"


@pytest.mark.parametrize("field, value, message", [
    ("nodes", "0", "nodes: must be at least 1, got 0"),
    ("fatal_exit_codes", "[2, 0]", "fatal_exit_codes: '0' is not an exit code (1-255; 0 is success)"),
    ("master_port", "70000", "master_port: must be a port number (1-65535), got 70000"),
    ("queue", "'team a'", "queue: 'team a' is not a valid LocalQueue name"),
    ("parallelism", "0", "parallelism: must be at least 1, got 0"),
    ("retries", "3000000000", "retries: must be at most 2147483647, got 3000000000"),
    # the API server stores these as int32: refused here, before part of a sweep is submitted
    ("ttl_seconds_after_finished", "100000000000000000000",
     "ttl_seconds_after_finished: must be at most 2147483647, got 100000000000000000000"),
    ("backoff_limit", "2147483648", "backoff_limit: must be at most 2147483647, got 2147483648"),
    ("gpu_count", "2147483648", "gpu_count: must be at most 2147483647, got 2147483648"),
])
def test_bad_values_are_errors_at_their_line(project, cli, field, value, message):
    project.launch_yaml(f"model:\n  m:\n    command: run\n    {field}: {value}\n")
    result = cli("dryrun")
    assert result.code == 2, result
    assert result.err.startswith("error: config/launch.yaml:4:"), result.err
    assert message in result.err.splitlines()[0], result.err


def test_a_multi_node_cell_cannot_share_a_gpu(project, cli):
    project.launch_yaml("model:\n  m:\n    command: run\n    nodes: 2\n    shared: 0.5\n")
    result = cli("dryrun")
    assert result.code == 2 and "a multi-node cell cannot share GPUs" in result.err, result


# -- placeholders -----------------------------------------------------------------------------------------------
def test_placeholders_are_the_cells_values_or_the_nodes_variables(project, cli):
    project.launch_yaml("""\
        model:
          m:
            command: >-
              torchrun --nnodes=<nodes> --node_rank=<node_rank> --nproc_per_node=<nproc_per_node>
              --master_addr=<master_addr> --master_port=<master_port> t.py
            hparam:
              nodes: [1, 2]
            gpu_count: 4
    """)
    result = cli("local-dryrun")
    assert "warning" not in result.err, result.err   # none of them is an unknown placeholder
    single, multi = [line.split(": ", 1)[1] for line in result.out.splitlines()]
    assert single == ("torchrun --nnodes=1 --node_rank=0 --nproc_per_node=4 --master_addr=127.0.0.1 "
                      "--master_port=29500 t.py")
    assert multi == ("torchrun --nnodes=2 --node_rank=${NODE_RANK} --nproc_per_node=4 "
                     "--master_addr=${MASTER_ADDR} --master_port=29500 t.py")


def test_a_multi_node_job_and_its_service_are_strictly_valid(project):
    project.launch_yaml("nodes: 3\ngpu_count: 2\nmodel:\n  m:\n    command: run\n")
    _, _, [unit] = render_units()
    job, service = validate(load(unit.text)), validate(unit.extras[0])
    name = job["metadata"]["name"]
    pod = job["spec"]["template"]["spec"]
    assert pod["subdomain"] == service["metadata"]["name"] == name
    env = {e["name"]: e.get("value", e.get("valueFrom")) for e in pod["containers"][0]["env"]}
    assert env["MASTER_ADDR"] == f"{name}-0.{name}"
    assert (env["NNODES"], env["WORLD_SIZE"], env["NPROC_PER_NODE"], env["MASTER_PORT"]) == ("3", "3", "2", "29500")
    assert env["NODE_RANK"] == {"fieldRef": {
        "fieldPath": "metadata.annotations['batch.kubernetes.io/job-completion-index']"}}
    assert service["spec"]["clusterIP"] == "None" and service["spec"]["publishNotReadyAddresses"] is True
    assert service["spec"]["selector"] == {"batch.kubernetes.io/job-name": name}
    assert (service["metadata"]["labels"]["user"], service["metadata"]["labels"]["project"]) == ("alice", "demo")


# -- array packs ------------------------------------------------------------------------------------------------
def cell(index, command="run", **values):
    return Cell(index, f"c{index}", "m", "d", (), command, command,
                {"user": "alice", "project_name": "demo", "namespace": "ns", "array": True, **values})


def test_array_cells_pack_by_settings_within_the_configmap_budget(monkeypatch):
    monkeypatch.setattr(arrays, "CONFIGMAP_BUDGET", 300)
    same = {"gpu_count": 1}
    cells = [cell(i, "x" * 50, **same) for i in range(7)] + [cell(7, gpu_count=2)]
    packs = arrays.pack(cells)
    assert [[c.name for c in members] for _, members in packs] == [["c0", "c1", "c2"], ["c3", "c4", "c5"],
                                                                   ["c6"], ["c7"]]
    assert len({name for name, _ in packs}) == 4


def pack_job(name, completions, completed="", failed="", created="2024-05-01T10:00:00Z"):
    return {"metadata": {"name": name, "creationTimestamp": created, "annotations": {arrays.ARRAY_ANNOTATION: "3"}},
            "spec": {"completions": completions},
            "status": {"startTime": created, "active": 1, "completedIndexes": completed, "failedIndexes": failed}}


def index_pod(job, index, phase="Running", suffix="a"):
    return {"metadata": {"name": f"{job}-{index}-{suffix}", "creationTimestamp": "2024-05-01T10:00:01Z",
                         "labels": {"job-name": job},
                         "annotations": {jobspec.INDEX_KEY: str(index)}},
            "spec": {"nodeName": "n1"}, "status": {"phase": phase}}


def test_each_array_cell_has_the_state_of_its_index_in_its_newest_pack():
    cells = [cell(i) for i in range(4)]
    old = pack_job("p1", 3, completed="0", failed="1,2")
    new = pack_job("p2", 2, created="2024-05-01T11:00:00Z")      # the retry of c1 and c2
    members = {"p1": ["c0", "c1", "c2"], "p2": ["c1", "c2"]}
    placement = Placement(cells, [old, new], members)
    assert (placement["c0"], placement["c1"], placement["c3"]) == ("p1", "p2", "c3")
    assert (placement.index["c1"], placement.index["c2"], placement.index["c3"]) == (0, 1, None)
    pods = [index_pod("p2", 0), index_pod("p2", 1, "Pending")]
    jobs = {"p1": old, "p2": new}
    states = [job_state(placement.view(name, jobs.get(placement[name]), pods if placement[name] == "p2" else [])[0])
              for name in ("c0", "c1", "c2", "c3")]
    assert states == ["succeeded", "running", "running", "missing"]
    text = status_text(cells, [old, new], pods, job_of=placement)
    assert "succeeded (array #0)" in text and "array job p2: 2 cells" in text and "missing" in text

    sweep = Sweep(cells, placement, jobs=[old, new], pods=pods)
    assert [r["state"] for r in sweep.ordered()] == ["succeeded", "running", "pending", "not submitted"]
    finished = dict(index_pod("p2", 1, "Failed"))
    assert sweep.apply("Pod", "MODIFIED", finished) == []      # the pod alone; the Job says when the index failed
    changed = sweep.apply("Job", "MODIFIED", pack_job("p2", 2, failed="1", created="2024-05-01T11:00:00Z"))
    assert changed == ["c2"]
    assert sweep.records["c2"]["state"] == "failed"


# -- golden manifests and old templates ---------------------------------------------------------------------
def test_golden_manifests_of_a_multi_node_cell_and_an_array_pack(project):
    project.launch_yaml("""\
        model:
          ddp:
            command: >-
              torchrun --nnodes=$NNODES --node_rank=$NODE_RANK --nproc_per_node=$NPROC_PER_NODE
              --master_addr=$MASTER_ADDR --master_port=$MASTER_PORT train.py
            nodes: 2
            gpu_count: 2
            retries: 2
            fatal_exit_codes: [2]
          sweep:
            command: python src/sweep.py --seed <seed>
            array: true
            parallelism: 2
            queue: team-a
            hparam:
              seed: [1, 2, 3]
    """)
    _, _, (nodes, pack) = render_units()
    for unit, stem in ((nodes, "multinode"), (pack, "array")):
        validate(load(unit.text))
        check_golden(f"{stem}-job.yaml", unit.text)
        extra = validate(unit.extras[0])
        check_golden(f"{stem}-{extra['kind'].lower()}.yaml", yaml.safe_dump(extra, sort_keys=False, width=120))


def test_a_job_template_from_before_indexed_jobs_is_refused_for_them(project, cli):
    template = (project.path / "src" / "toolbox" / "templates" / "job.yaml.j2").read_text()
    old = template.replace("{% for key, value in job.items() %}\n  {{ key }}: {{ value|json }}\n{% endfor %}\n",
                           "  backoffLimit: {{ s.backoff_limit|int }}\n")
    assert old != template
    project.write("config/templates/job.yaml.j2", old, dedent=False)
    project.launch_yaml("model:\n  m:\n    command: run\n")
    assert cli("dryrun").code == 0                     # plain cells: the old template is fine
    project.launch_yaml("model:\n  m:\n    command: run\n    nodes: 2\n")
    result = cli("dryrun")
    assert result.code == 2 and "writes no Indexed completion (completionMode)" in result.err, result


def test_a_shared_gpu_pack_with_retries_has_a_name_an_indexed_job_can_take(project):
    project.kube_yaml("project_name: a-project-name-long-enough-to-fill-a-name\nuser: alice-with-a-long-name\n"
                      "namespace: ns\n")
    project.launch_yaml("shared: 0.5\nretries: 1\nmodel:\n  m:\n    command: run <x>\n    hparam: {x: [1, 2]}\n")
    _, _, [unit] = render_units()
    job = validate(load(unit.text))
    assert job["spec"]["completionMode"] == "Indexed"
    assert len(job["metadata"]["name"] + "-0") <= 63


def test_pods_are_named_by_their_cell_in_logs():
    cells = [cell(0), cell(1), Cell(2, "ddp", "m", "d", (), "run", "run",
                                    {"user": "alice", "project_name": "demo", "namespace": "ns", "nodes": 2})]
    placement = Placement(cells, [pack_job("p1", 2)], {"p1": ["c0", "c1"]})
    assert placement.label("p1", 1) == "c1"
    assert placement.label("ddp", 1) == "ddp node 1"
    assert placement.label("other-job", None) == "other-job"
