"""Golden manifests for representative configs (TOOLBOX_RECORD_GOLDEN=1 re-records them), template overrides
from config/templates/, and what `make dryrun` / `make pod-dryrun` write to build/."""
import os
import shutil
from pathlib import Path

import pytest

from kube_helpers import check_golden, leaks, load, render_cells, validate

ENV = {"AWS_SECRET_ACCESS_KEY": "golden-secret-Qw7", "S3_ENDPOINT_URL": "https://s3-west.nrp-nautilus.io"}

CONFIGS = {
    "minimal": ("", "model:\n  avg:\n    command: python src/avg.py <fn>\n    hparam:\n      _fn: data/1.txt\n"),
    "full": ("""\
gpu_count: 2
special_gpu: a100
cpu_count: 8
memory: 64
ephemeral_storage: 50
shm_size: 16
gpu_whitelist: [NVIDIA-A100-SXM4-80GB]
hostname_blacklist: [bad-node]
tolerations: [nautilus.io/reservation=lab:NoSchedule]
volumes: {datasets: /data}
labels: {team: vision}
env: {WANDB_PROJECT: demo}
file: [conf]
backoff_limit: 1
ttl_seconds_after_finished: 3600
active_deadline_seconds: 86400
extra_startup_script: pip install -e .
server:
  s3-api: {command: make server, port: 8080, memory: 2, volumes: {cache: /cache}}
""", """\
model:
  train:
    command: |
      python src/train.py --lr <lr> \\
        --out "runs/<lr>"
    hparam:
      lr: [0.1, 0.001]
"""),
    # where pods run, and pod_config (the manifest is re-written as block YAML after the merge)
    "scheduling": ("""\
hostname_whitelist: [node-1, node-2]
hostname_blacklist: [node-2]
gpu_blacklist: [NVIDIA-GeForce-GTX-1080-Ti]
priority_class_name: opportunistic
node_selector: {nautilus.io/disktype: nvme}
affinity:
  nodeAffinity:
    requiredDuringSchedulingIgnoredDuringExecution:
      nodeSelectorTerms:
        - matchExpressions: [{key: topology.kubernetes.io/region, operator: In, values: [us-west]}]
  podAntiAffinity:
    preferredDuringSchedulingIgnoredDuringExecution:
      - weight: 100
        podAffinityTerm: {topologyKey: kubernetes.io/hostname, labelSelector: {matchLabels: {project: demo}}}
pod_config:
  runtimeClassName: nvidia
  securityContext: {runAsUser: 1000}
  containers:
    - name: main
      securityContext: {allowPrivilegeEscalation: false}
""", "model:\n  m:\n    command: python src/m.py --seed <seed>\n    hparam:\n      seed: [1]\n"),
}


@pytest.mark.parametrize("config", sorted(CONFIGS))
def test_golden_jobs(project, config):
    kube, launch = CONFIGS[config]
    project.write("conf/a.yaml", "x: 1\n")
    project.kube_yaml("project_name: demo\nuser: alice\nnamespace: ns\n" + kube)
    project.launch_yaml(launch)
    _, renderer, texts = render_cells(env_values=ENV)
    for i, text in enumerate(texts):
        validate(load(text))
        assert leaks(text, [ENV["AWS_SECRET_ACCESS_KEY"]]) == []
        check_golden(f"{config}-job{i}.yaml", text)
    for configmap in renderer.configmaps():
        validate(configmap)


def test_golden_shared_pack(project):
    from toolbox.kube import packing as kubeshared
    from toolbox import kubeutils
    from toolbox.core.config import load_config
    from toolbox.core.grid import expand

    project.kube_yaml("project_name: demo\nuser: alice\nnamespace: ns\ngpu_count: 1\nmemory: 20\n")
    project.launch_yaml("model:\n  m:\n    shared: 0.25\n    command: python src/train.py --seed <seed>\n"
                        "    hparam:\n      seed: [1, 2, 3]\n")
    singles, packs = kubeshared.pack(expand(load_config(".")).cells)
    assert not singles and len(packs) == 1
    renderer = kubeutils.Renderer(".", ENV, "sweep")
    text = renderer.pack_manifest(*packs[0])
    renderer.check()
    validate(load(text))
    check_golden("shared-pack.yaml", text)


def test_golden_pod(project, cli):
    project.kube_yaml("project_name: demo\nuser: alice\nnamespace: ns\ngpu_count: 4\nmemory: 64\n"
                      "server_command: jupyter lab --port 8888\n")
    result = cli("pod-dryrun")
    assert result.code == 0, result
    assert "more than the cluster allows (pod_max_gpu: 2)" in result.err
    text = (project.path / "build" / "alice-demo-interactive-pod.yaml").read_text()
    validate(load(text))
    check_golden("pod.yaml", text)


# -- template overrides -------------------------------------------------------------------------------------
LAUNCH = "model:\n  m:\n    command: echo <x>\n    hparam:\n      x: [a, b, c]\n"


def test_project_templates_override_the_toolbox_ones(project):
    from toolbox.kube.render import TEMPLATE_DIR

    os.makedirs("config/templates")
    text = Path(TEMPLATE_DIR, "job.yaml.j2").read_text()
    text = text.replace("    spec:\n{% filter", "    spec:\n      priorityClassName: research\n{% filter")
    # a cell's value used as given inside a longer string: still one render per settings
    text = text.replace("  annotations: {{ annotations|json }}\nspec:",
                        "  annotations: {\"cell\": {{ (\"cell \" ~ name)|q }}}\nspec:")
    Path("config/templates/job.yaml.j2").write_text(text)
    project.launch_yaml(LAUNCH)
    cells, _, texts = render_cells()
    jobs = [validate(load(t)) for t in texts]
    for cell, job in zip(cells, jobs):
        assert job["metadata"]["annotations"] == {"cell": f"cell {cell.name}"}
        assert job["spec"]["template"]["spec"]["priorityClassName"] == "research"


@pytest.mark.parametrize("old, new", [
    pytest.param("name: {{ name|q }}", "name: {{ name|upper|q }}", id="changed"),
    pytest.param("annotations: {{ annotations|json }}\nspec:", "annotations: {cmd: '{{ main.command }}'}\nspec:",
                 id="without-q"),
])
def test_a_template_that_changes_a_cells_values_is_refused(project, cli, old, new):
    """Every cell's manifest is the template rendered once per settings, with the cell's values
    substituted: a template must use them as given (|q, |json), or other cells would get wrong manifests."""
    from toolbox.kube.render import TEMPLATE_DIR

    os.makedirs("config/templates")
    text = Path(TEMPLATE_DIR, "job.yaml.j2").read_text()
    assert old in text
    Path("config/templates/job.yaml.j2").write_text(text.replace(old, new, 1))
    project.launch_yaml(LAUNCH)
    result = cli("dryrun")
    assert result.code == 2, result
    assert result.err.startswith("error: config/templates/job.yaml.j2: template error: the cell's values (name, "
                                 "cell_name, main.command, labels, annotations) must be used as given")
    assert not os.path.exists("build")


def test_broken_template_is_a_config_error(project, cli):
    os.makedirs("config/templates")
    Path("config/templates/pod-spec.yaml.j2").write_text("restartPolicy: Never\n{% if %}\n")
    project.launch_yaml(LAUNCH)
    result = cli("dryrun")
    assert result.code == 2
    assert "config/templates/pod-spec.yaml.j2:2: template error:" in result.err
    # an error while rendering (not parsing) is located too
    Path("config/templates/pod-spec.yaml.j2").write_text("restartPolicy: Never\nnodeName: {{ no_such_variable }}\n")
    result = cli("dryrun")
    assert result.code == 2
    assert "error: config/templates/pod-spec.yaml.j2:2: template error: 'no_such_variable' is undefined" in result.err


# -- build/ ---------------------------------------------------------------------------------------------------
def test_dryrun_writes_every_cell_and_no_secret(project, cli):
    secret = "dryrun-secret-Zx81"
    project.env(f"WANDB_API_KEY={secret}\n")
    project.write("conf/a.yaml", "x: 1\n")
    project.kube_yaml("project_name: demo\nuser: alice\nnamespace: ns\nfile: [conf]\n")
    project.launch_yaml(LAUNCH)
    result = cli("dryrun")
    assert result.code == 0, result
    files = sorted(p.name for p in Path("build").glob("*.yaml"))
    assert len(files) == 4 and any(f.startswith("alice-demo-files-") for f in files)
    assert "NAME" in result.out and "Wrote 3 Job manifests and 1 ConfigMap(s) to build/" in result.out
    assert "Secret 'alice-demo-env-7d32c88b'" in result.out
    for path in Path("build").iterdir():
        assert leaks(path.read_text(), [secret]) == []
        if path.suffix == ".yaml":
            assert path.read_text().startswith("# Generated by Kube Toolbox")
            validate(load(path.read_text()))
    assert leaks(result.out + result.err, [secret]) == []


def test_dryrun_removes_its_stale_files_and_keeps_unchanged_ones(project, cli):
    project.launch_yaml(LAUNCH)
    assert cli("dryrun").code == 0
    Path("build/mine.yaml").write_text("kept: not written by dryrun\n")
    before = {p.name: p.stat().st_mtime_ns for p in Path("build").glob("*.yaml")}
    assert cli("dryrun").code == 0
    after = {p.name: p.stat().st_mtime_ns for p in Path("build").glob("*.yaml")}
    assert after == before  # unchanged files are not rewritten
    project.launch_yaml(LAUNCH.replace("[a, b, c]", "[a, b]"))
    assert cli("dryrun").code == 0
    names = {p.name for p in Path("build").glob("*.yaml")}
    assert len(names) == 3 and "mine.yaml" in names  # the cell x=c is gone; a user's file stays


def test_pod_dryrun_does_not_touch_the_cluster(project, cli, monkeypatch):
    monkeypatch.setenv("KUBECONFIG", "/nonexistent/kubeconfig")
    result = cli("pod-dryrun", pod="my-pod")
    assert result.code == 0, result
    assert load(Path("build/my-pod.yaml").read_text())["metadata"]["name"] == "my-pod"
    shutil.rmtree("build")
    assert cli("pod-dryrun", pod="Bad_Name").code == 2
