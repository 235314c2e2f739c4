"""The corpus of real-world config shapes (tests/corpus/<name>/config/{kube,launch}.yaml, written for this
project): both host lists, a priority class, a raw affinity block, special_gpu with GPU product lists, a
root project_name that differs from kube.yaml's, node_selector and pod_config. Each goes through the real
`make local-dryrun`, `make plan` and `make dryrun` (every manifest valid against the strict 1.33 schema),
then `make job` against the Kubernetes API double, whose strict validation sees every new field."""
import shutil
from pathlib import Path

import pytest
import yaml

from kube_helpers import validate

CORPUS = Path(__file__).resolve().parent.parent / "corpus"
NAMES = sorted(p.name for p in CORPUS.iterdir() if (p / "config" / "launch.yaml").exists())
HOST, PRODUCT = "kubernetes.io/hostname", "nvidia.com/gpu.product"


@pytest.fixture
def corpus(project):
    def use(name):
        shutil.copytree(CORPUS / name / "config", project.path / "config", dirs_exist_ok=True)
        return project
    return use


def ok(done):
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert "Traceback" not in done.stderr
    return done


def dryrun_jobs(project):
    """build/'s Jobs after `make dryrun`, each strictly valid, by model."""
    jobs = {}
    for path in sorted((project.path / "build").glob("*.yaml")):
        manifest = validate(yaml.safe_load(path.read_text()))
        if manifest["kind"] == "Job":
            jobs.setdefault(manifest["metadata"]["annotations"]["toolbox/model"], []).append(manifest)
    return jobs


def spec(job):
    return job["spec"]["template"]["spec"]


def required_terms(job):
    return spec(job)["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"]


def container(job, name="main"):
    (found,) = [c for c in spec(job)["containers"] if c["name"] == name]
    return found


# -- what each shape must give -------------------------------------------------------------------------------
def check_both_host_lists(jobs, plan):
    assert "10 cells" in plan
    for job in jobs["conformer"]:
        assert required_terms(job) == [{"matchExpressions": [
            {"key": HOST, "operator": "In", "values": [f"gpu-0{i}.speech.example.edu" for i in (1, 2, 3)]},
            {"key": HOST, "operator": "NotIn", "values": ["gpu-02.speech.example.edu"]},
            {"key": PRODUCT, "operator": "NotIn", "values": ["NVIDIA-GeForce-GTX-1080-Ti", "Tesla-K40c"]}]}]
        assert spec(job)["priorityClassName"] == "opportunistic"
    for job in jobs["whisper-ft"]:  # its `hostname_whitelist: null` drops the whitelist, not the blacklist
        expressions = required_terms(job)[0]["matchExpressions"]
        assert {"key": HOST, "operator": "NotIn", "values": ["gpu-02.speech.example.edu"]} in expressions
        assert not [e for e in expressions if e["operator"] == "In"]


def check_special_gpu_lists(jobs, plan):
    assert plan.count("note:") == 1 and "note: 2 cells use special_gpu" in plan
    for job in jobs["esm-3b"]:
        assert container(job)["resources"]["requests"]["nvidia.com/a100"] == "2"
        assert "affinity" not in spec(job)
    for job in jobs["esm-small"]:
        assert required_terms(job) == [{"matchExpressions": [
            {"key": PRODUCT, "operator": "In", "values": ["NVIDIA-GeForce-RTX-3090", "NVIDIA-A10"]},
            {"key": PRODUCT, "operator": "NotIn", "values": ["NVIDIA-A10"]}]}]


def check_renamed_project(jobs, plan):
    assert "molgraph" in plan
    every = [job for group in jobs.values() for job in group]
    assert len(every) == 4
    for job in every:
        assert job["metadata"]["name"].startswith("okafor-molgraph-")
        assert job["metadata"]["labels"]["project"] == "molgraph"
        assert container(job)["image"] == "ghcr.io/okafor-lab/molgraph:latest"
    for job in jobs["gin"]:
        assert spec(job)["nodeSelector"] == {"nautilus.io/disktype": "nvme", "topology.kubernetes.io/region": "us-west"}
    for job in jobs["schnet"]:
        assert "nodeSelector" not in spec(job)


def check_raw_affinity(jobs, plan):
    blacklist = {"key": HOST, "operator": "NotIn", "values": ["node-flaky-7.example.org"]}
    for job in jobs["unet3d"] + jobs["vae"]:
        terms = required_terms(job)
        assert [t["matchExpressions"][0]["values"] for t in terms] == [["ucsd-a"], ["sdsc-b"]]
        assert all(blacklist in t["matchExpressions"] for t in terms)
        affinity = spec(job)["affinity"]
        assert affinity["nodeAffinity"]["preferredDuringSchedulingIgnoredDuringExecution"][0]["weight"] == 80
        assert affinity["podAntiAffinity"]["preferredDuringSchedulingIgnoredDuringExecution"][0]["weight"] == 100
        assert spec(job)["priorityClassName"] == "opportunistic"
    for job in jobs["vae"]:
        assert all(t["matchExpressions"][-1] == {"key": PRODUCT, "operator": "In",
                                                 "values": ["NVIDIA-A40", "NVIDIA-RTX-A6000"]} for t in required_terms(job))


def check_pod_config(jobs, plan):
    for job in jobs["ppo"] + jobs["sac"]:
        pod = spec(job)
        assert pod["runtimeClassName"] == "nvidia" and pod["terminationGracePeriodSeconds"] == 120
        assert pod["securityContext"] == {"runAsUser": 1000, "runAsGroup": 1000, "fsGroup": 1000}
        assert [c["name"] for c in pod["containers"]] == ["main", "gpu-monitor"]
        assert [c["name"] for c in pod["initContainers"]] == ["tb"]
        main = container(job)
        env = {e["name"]: e.get("value") for e in main["env"]}
        assert env["MUJOCO_GL"] == "egl" and env["TOOLBOX_COMMAND"].startswith("python -m robots.train")
        assert main["securityContext"] == {"capabilities": {"add": ["SYS_PTRACE"]}}
        assert {"name": "scratch", "mountPath": "/scratch"} in main["volumeMounts"]
        assert main["resources"]["requests"]["cpu"] == "12"
    for job in jobs["sac"]:
        volumes = {v["name"]: v for v in spec(job)["volumes"]}
        assert spec(job)["priorityClassName"] == "opportunistic"
        assert volumes["toolbox-shm"]["emptyDir"] == {"medium": "Memory", "sizeLimit": "16Gi"}
        assert "scratch" in volumes  # the model's volumes merge into kube.yaml's by name
    for job in jobs["ppo"]:
        assert "priorityClassName" not in spec(job)


CHECKS = {"both-host-lists": check_both_host_lists, "special-gpu-lists": check_special_gpu_lists,
          "renamed-project": check_renamed_project, "raw-affinity": check_raw_affinity,
          "pod-config": check_pod_config}


def test_every_corpus_project_has_its_checks():
    assert sorted(CHECKS) == NAMES


@pytest.mark.parametrize("name", NAMES)
def test_corpus_local_dryrun_plan_and_dryrun(corpus, make, name):
    project = corpus(name)
    local = ok(make("local-dryrun"))
    plan = ok(make("plan"))
    ok(make("dryrun"))
    jobs = dryrun_jobs(project)
    cells = sum(len(group) for group in jobs.values())
    assert cells == len([line for line in local.stdout.splitlines() if not line.startswith(" ")])
    CHECKS[name](jobs, plan.stdout + plan.stderr)


@pytest.mark.parametrize("name", NAMES)
def test_corpus_make_job_against_the_strict_double(corpus, make, kubeconfig, kube_api, name):
    project = corpus(name)
    namespace = yaml.safe_load((project.path / "config" / "kube.yaml").read_text())["namespace"]
    kube_api.seed({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}})
    done = ok(make("job"))
    submitted = kube_api.list("Job", namespace=namespace)
    assert submitted and f"{len(submitted)} created, 0 replaced, 0 skipped, 0 failed" in done.stdout
    by_model = {}
    for job in submitted:
        by_model.setdefault(job["metadata"]["annotations"]["toolbox/model"], []).append(job)
    CHECKS[name](by_model, make("plan").stdout)


def test_kubectl_applies_what_pod_config_changed(corpus, make, kubectl, kube_api):
    """A manifest that pod_config changed is re-written as block YAML: real kubectl (strict field
    validation against the double) reads build/ as the toolbox meant it."""
    project = corpus("pod-config")
    kube_api.seed({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "robotics"}})
    ok(make("dryrun"))
    applied = kubectl("apply", "-f", str(project.path / "build"))
    assert applied.returncode == 0, applied.stderr
    assert applied.stdout.count("job.batch/") == 6
    (job,) = [j for j in kube_api.list("Job", namespace="robotics") if "-sac-ant-" in j["metadata"]["name"]]
    assert spec(job)["priorityClassName"] == "opportunistic" and spec(job)["runtimeClassName"] == "nvidia"
