"""Manifests: every kube.yaml field as rendered into Jobs and pods, checked against the strict 1.33 schema.

No cluster here: rendering is a pure function of the config (plus .env and the shipped files).
"""
import json
import os

import pytest
from hypothesis import given, settings, strategies as st

from kube_helpers import (LAUNCH, env_of, leaks, load, main_container, manifests, pod_spec, render_cells, startup_of,
                          validate)


def one(project, kube_extra="", launch=LAUNCH, env=None):
    """The first cell's Job manifest of a project with extra kube.yaml lines."""
    project.kube_yaml("project_name: demo\nuser: alice\nnamespace: ns\n" + kube_extra)
    project.launch_yaml(launch)
    return manifests(env_values=env)[0]


def resources(manifest, container=0):
    return pod_spec(manifest)["containers"][container]["resources"]


# -- resources ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("extra, requests, limits", [
    pytest.param("", {"cpu": "5", "memory": "32G", "ephemeral-storage": "100G"},
                 {"cpu": "6", "memory": "38400M", "ephemeral-storage": "120G"}, id="defaults-ratio-1.2"),
    pytest.param("gpu_count: 2\ncpu_count: 1\nmemory: 0.5\nephemeral_storage: 0\n",
                 {"cpu": "1", "memory": "500M", "nvidia.com/gpu": "2"},
                 {"cpu": "1200m", "memory": "600M", "nvidia.com/gpu": "2"}, id="gpu-limit-equals-request"),
    pytest.param("gpu_count: 1\nspecial_gpu: a100\nlimit_ratio: 1\n",
                 {"cpu": "5", "memory": "32G", "ephemeral-storage": "100G", "nvidia.com/a100": "1"},
                 {"cpu": "5", "memory": "32G", "ephemeral-storage": "100G", "nvidia.com/a100": "1"},
                 id="special-gpu-ratio-1"),
    pytest.param("cpu_count: 2.5\nmemory: 7\nlimit_ratio: 1.15\n",
                 {"cpu": "2500m", "memory": "7G", "ephemeral-storage": "100G"},
                 {"cpu": "2875m", "memory": "8050M", "ephemeral-storage": "115G"}, id="fractions"),
])
def test_resources_requests_and_limits(project, extra, requests, limits):
    res = resources(one(project, extra))
    assert res["requests"] == requests
    assert res["limits"] == limits


def test_hparam_overrides_a_resource_per_cell(project):
    launch = LAUNCH.replace("lr: [0.1, 0.01]", "lr: [0.1]\n          _gpu_count: [1, 2]")
    project.launch_yaml(launch)
    found = [resources(m)["requests"].get("nvidia.com/gpu") for m in manifests()]
    assert found == ["1", "2"]


# -- scheduling --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("extra, expressions", [
    pytest.param("gpu_whitelist: [NVIDIA-A10, NVIDIA-A40]\n",
                 [{"key": "nvidia.com/gpu.product", "operator": "In", "values": ["NVIDIA-A10", "NVIDIA-A40"]}],
                 id="gpu-whitelist"),
    pytest.param("gpu_blacklist: [Tesla-K40c]\nhostname_whitelist: [node-1]\n",
                 [{"key": "kubernetes.io/hostname", "operator": "In", "values": ["node-1"]},
                  {"key": "nvidia.com/gpu.product", "operator": "NotIn", "values": ["Tesla-K40c"]}],
                 id="gpu-blacklist-and-hostnames"),
    pytest.param("hostname_blacklist: [bad-node]\n",
                 [{"key": "kubernetes.io/hostname", "operator": "NotIn", "values": ["bad-node"]}], id="hostname-black"),
])
def test_node_affinity(project, extra, expressions):
    spec = pod_spec(one(project, extra))
    terms = spec["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"]
    assert terms == [{"matchExpressions": expressions}]


def test_no_affinity_without_lists(project):
    assert "affinity" not in pod_spec(one(project))


def test_gpu_lists_of_kube_yaml_apply_without_special_gpu(project):
    # kube.yaml's GPU lists apply to every cell without special_gpu
    spec = pod_spec(one(project, "gpu_whitelist: [NVIDIA-A100]\n"))
    assert "NVIDIA-A100" in json.dumps(spec["affinity"])


def test_tolerations(project):
    spec = pod_spec(one(project, "tolerations: [nautilus.io/noceph, 'nautilus.io/reservation=lab:NoExecute']\n"))
    assert spec["tolerations"] == [
        {"key": "nautilus.io/noceph", "operator": "Exists", "effect": "NoSchedule"},
        {"key": "nautilus.io/reservation", "operator": "Equal", "value": "lab", "effect": "NoExecute"}]


# -- volumes, image, labels, env -----------------------------------------------------------------------------
def test_volumes_and_shm(project):
    manifest = one(project, "volumes: {my-data: /data, 'ckpt.store': /ckpt}\nshm_size: 8\n")
    spec = pod_spec(manifest)
    volumes = {v["name"]: v for v in spec["volumes"]}
    assert volumes["toolbox-shm"] == {"name": "toolbox-shm", "emptyDir": {"medium": "Memory", "sizeLimit": "8G"}}
    assert volumes["pvc-my-data"]["persistentVolumeClaim"] == {"claimName": "my-data"}
    assert volumes["pvc-ckpt-store"]["persistentVolumeClaim"] == {"claimName": "ckpt.store"}
    mounts = {m["mountPath"]: m["name"] for m in main_container(manifest)["volumeMounts"]}
    assert mounts["/dev/shm"] == "toolbox-shm"
    assert mounts["/data"] == "pvc-my-data" and mounts["/ckpt"] == "pvc-ckpt-store"


def test_shm_has_no_size_limit_by_default(project):
    volumes = {v["name"]: v for v in pod_spec(one(project))["volumes"]}
    assert volumes["toolbox-shm"]["emptyDir"] == {"medium": "Memory"}


def test_image_and_pull_secret_defaults(project):
    manifest = one(project)
    assert main_container(manifest)["image"] == "gitlab-registry.nrp-nautilus.io/alice/demo:latest"
    assert pod_spec(manifest)["imagePullSecrets"] == [{"name": "demo-read-registry"}]
    manifest = one(project, "image: reg.example/x/y:v1\nimage_pull_secrets: ''\n")
    assert main_container(manifest)["image"] == "reg.example/x/y:v1"
    assert "imagePullSecrets" not in pod_spec(manifest)


def test_labels_identify_user_project_sweep_and_cell(project):
    project.kube_yaml("project_name: demo\nuser: alice\nnamespace: ns\nlabels: {team: vision}\n")
    project.launch_yaml(LAUNCH)
    cells, _, texts = render_cells()
    jobs = [load(t) for t in texts]
    for cell, job in zip(cells, jobs):
        labels = job["metadata"]["labels"]
        assert labels["user"] == "alice" and labels["project"] == "demo" and labels["team"] == "vision"
        assert labels["toolbox/cell"] == cell.name == job["metadata"]["name"]
        assert job["spec"]["template"]["metadata"]["labels"] == labels  # pods carry them too
    assert len({j["metadata"]["labels"]["toolbox/sweep"] for j in jobs}) == 1
    assert json.loads(jobs[0]["metadata"]["annotations"]["toolbox/hparams"]) == {"lr": "0.1"}


def test_env_injection(project):
    manifest = one(project, "env: {WANDB_PROJECT: demo, S3_ENDPOINT_URL: 'https://s3-west.nrp-nautilus.io'}\n")
    env = env_of(main_container(manifest))
    assert env["NODE_NAME"] == {"fieldRef": {"fieldPath": "spec.nodeName"}}
    assert env["PYTHONUNBUFFERED"] == "1"
    assert env["WANDB_PROJECT"] == "demo"
    assert env["S3_ENDPOINT_URL"] == "http://rook-ceph-rgw-nautiluss3.rook"  # in-cluster endpoint
    assert env["TOOLBOX_CELL_NAME"] == manifest["metadata"]["name"]
    assert env["TOOLBOX_COMMAND"] == "python src/train.py --lr 0.1"
    assert "envFrom" not in main_container(manifest)  # no .env: no Secret


def test_dotenv_goes_through_a_secret_only(project):
    values = {"AWS_SECRET_ACCESS_KEY": "s3cr3t-Value-Zq9", "WANDB_API_KEY": "wandb-key-Xy77"}
    project.launch_yaml(LAUNCH)
    cells, renderer, texts = render_cells(env_values=values)
    for text in texts:
        assert leaks(text, values.values()) == []
        assert load(text)["spec"]["template"]["spec"]["containers"][0]["envFrom"] == [
            {"secretRef": {"name": "alice-demo-env-7d32c88b"}}]
    secret = validate(renderer.secret)
    assert secret["metadata"]["name"] == "alice-demo-env-7d32c88b" and secret["type"] == "Opaque"


# -- validation: every problem at once, before any API call -----------------------------------------------
def test_every_problem_is_reported_at_once(project, cli):
    project.kube_yaml("project_name: demo\nuser: alice\nnamespace: ns\nmemory: -1\n"
                      "tolerations: ['bad key!']\nfile: [missing.txt]\nlabels: {user: bob}\n")
    project.launch_yaml(LAUNCH + "      train2:\n        command: sleep infinity\n")
    result = cli("dryrun")
    assert result.code == 2, result
    for text in ("memory: must be more than 0, got -1", "'bad key!' is not a valid taint key",
                 "'missing.txt' does not exist", "'user' is set by the toolbox",
                 "a Job must end: 'sleep infinity' never does"):
        assert text in result.err
    assert "(and 2 more cells)" in result.err  # one problem shared by three cells is reported once
    assert not os.path.exists("build")


@pytest.mark.parametrize("missing", ["user", "namespace"])
def test_cluster_commands_need_user_and_namespace(project, cli, missing):
    lines = {"project_name": "demo", "user": "alice", "namespace": "ns"}
    del lines[missing]
    project.kube_yaml("".join(f"{k}: {v}\n" for k, v in lines.items()))
    project.launch_yaml(LAUNCH)
    for command in ("dryrun", "job", "status", "delete", "pod-dryrun"):
        result = cli(command)
        assert result.code == 2, (command, result)
        assert f"config/kube.yaml: {missing}: missing required key '{missing}'" in result.err


# -- file: through a ConfigMap --------------------------------------------------------------------------------
def test_files_ship_through_one_content_addressed_configmap(project):
    project.write("conf/a.yaml", "x: 1\n")
    project.write("conf/sub/b.txt", "line\r\nno newline at end", dedent=False)
    (project.path / "conf" / "blob.bin").write_bytes(bytes(range(256)))
    (project.path / "run.sh").write_text("#!/bin/sh\n")
    os.chmod(project.path / "run.sh", 0o755)
    project.kube_yaml("project_name: demo\nuser: alice\nnamespace: ns\nfile: [conf, run.sh]\n")
    project.launch_yaml(LAUNCH)
    cells, renderer, texts = render_cells()
    (configmap,) = renderer.configmaps()
    validate(configmap)
    assert configmap["metadata"]["name"].startswith("alice-demo-files-") and configmap["immutable"] is True
    files = {k: v for k, v in configmap["data"].items() if k != "toolbox-index.tsv"}
    assert sorted(files.values()) == ["#!/bin/sh\n", "line\r\nno newline at end", "x: 1\n"]
    assert list(configmap["binaryData"].values()) == ["AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8gISIjJCUmJygp"
                                                      "KissLS4vMDEyMzQ1Njc4OTo7PD0+P0BBQkNERUZHSElKS0xNTk9QUVJT"
                                                      "VFVWV1hZWltcXV5fYGFiY2RlZmdoaWprbG1ub3BxcnN0dXZ3eHl6e3x9"
                                                      "fn+AgYKDhIWGh4iJiouMjY6PkJGSk5SVlpeYmZqbnJ2en6ChoqOkpaan"
                                                      "qKmqq6ytrq+wsbKztLW2t7i5uru8vb6/wMHCw8TFxsfIycrLzM3Oz9DR"
                                                      "0tPU1dbX2Nna29zd3t/g4eLj5OXm5+jp6uvs7e7v8PHy8/T19vf4+fr7"
                                                      "/P3+/w=="]
    for text in texts:  # both cells mount the same ConfigMap and copy every file into place
        job = load(text)
        volumes = {v["name"]: v for v in pod_spec(job)["volumes"]}
        assert volumes["toolbox-files"]["configMap"]["name"] == configmap["metadata"]["name"]
        assert "/etc/toolbox/files/toolbox-index.tsv" in startup_of(job)
    index = configmap["data"]["toolbox-index.tsv"].splitlines()
    assert sorted(line.split("\t", 1)[1] for line in index) == [
        "644\tconf/a.yaml", "644\tconf/blob.bin", "644\tconf/sub/b.txt", "755\trun.sh"]


def test_file_content_changes_the_configmap_name(project):
    project.write("a.txt", "one")
    project.kube_yaml("project_name: demo\nuser: alice\nnamespace: ns\nfile: [a.txt]\n")
    project.launch_yaml(LAUNCH)
    first = render_cells()[1].configmaps()[0]["metadata"]["name"]
    project.write("a.txt", "two")
    assert render_cells()[1].configmaps()[0]["metadata"]["name"] != first


@pytest.mark.parametrize("files, message", [
    pytest.param("[.env]", "'.env': .env is never shipped as a file", id="dotenv"),
    pytest.param("[conf]", "'conf/.env': .env is never shipped as a file", id="dotenv-in-folder"),
    pytest.param("[nope.txt]", "'nope.txt' does not exist", id="missing"),
    pytest.param("['../outside.txt']", "'../outside.txt' must be a path inside the project", id="outside"),
    pytest.param("[big.bin]", "but a ConfigMap holds at most 1008 KiB", id="too-big"),
])
def test_file_problems(project, cli, files, message):
    project.env("A=b\n")
    project.write("conf/.env", "X=y\n")
    (project.path / "big.bin").write_bytes(os.urandom(900 * 1024))
    project.kube_yaml(f"project_name: demo\nuser: alice\nnamespace: ns\nfile: {files}\n")
    project.launch_yaml(LAUNCH)
    result = cli("dryrun")
    assert result.code == 2 and message in result.err, result


def test_file_null_ships_nothing(project):
    # `file: null` resets to the default (nothing)
    spec = pod_spec(one(project, "file: [x]\n", launch=LAUNCH + "    file: null\n"))
    assert "toolbox-files" not in json.dumps(spec)


# -- sidecars and interactive pods ---------------------------------------------------------------------------
def test_servers_are_native_sidecars_sharing_scratch_volumes(project):
    project.kube_yaml("project_name: demo\nuser: alice\nnamespace: ns\nserver:\n"
                      "  api-server: {command: python -m http.server 8000, port: 8000, volumes: {cache: /cache}}\n"
                      "  very-long-sidecar-name-for-port: {command: redis-server, port: 6379,"
                      " memory: 2, volumes: {cache: /cache}}\n")
    project.launch_yaml(LAUNCH)
    job = manifests()[0]
    spec = pod_spec(job)
    names = [c["name"] for c in spec["initContainers"]]
    assert names == ["api-server", "very-long-sidecar-name-for-port"]
    assert all(c["restartPolicy"] == "Always" for c in spec["initContainers"])
    assert [v["name"] for v in spec["volumes"] if "emptyDir" in v] == ["toolbox-shm", "scratch-cache"]
    redis = spec["initContainers"][1]
    assert redis["ports"] == [{"containerPort": 6379}]
    assert redis["resources"]["requests"] == {"cpu": "1", "memory": "2G"}
    assert env_of(redis)["TOOLBOX_COMMAND"] == "redis-server"
    assert {m["mountPath"] for m in redis["volumeMounts"]} >= {"/cache", "/dev/shm"}
    assert "/cache" in {m["mountPath"] for m in main_container(job)["volumeMounts"]}


def test_interactive_pod_caps_with_warning(project):
    from toolbox import kubeutils
    from toolbox.core.config import load_config
    from toolbox.kube.scope import project_settings

    project.kube_yaml("project_name: demo\nuser: alice\nnamespace: ns\ngpu_count: 4\nmemory: 64\ncpu_count: 20\n"
                      "server: {side: {command: x, port: 80, cpu_count: 5, memory: 16}}\n")
    settings = project_settings(load_config(".", need_launch=False))
    renderer = kubeutils.Renderer(".", {})
    pod = validate(load(renderer.pod_manifest(settings, "alice-demo-interactive-pod")))
    renderer.check()
    assert len(renderer.warnings) == 3 and "more than the cluster allows (pod_max_gpu: 2)" in renderer.warnings[0]
    containers = pod["spec"]["containers"] + pod["spec"]["initContainers"]
    assert main_container(pod)["resources"]["limits"]["nvidia.com/gpu"] == "2"
    total_memory = sum(int(c["resources"]["limits"]["memory"].rstrip("MG")) * (1000 if c["resources"]["limits"][
        "memory"].endswith("G") else 1) for c in containers)
    assert total_memory <= 32000
    requests = [c["resources"]["requests"] for c in containers]
    millicores = [int(r["cpu"][:-1]) if r["cpu"].endswith("m") else int(float(r["cpu"]) * 1000) for r in requests]
    assert sum(millicores) == 16000                                            # 25 requested: scaled to fit


def test_default_resources_fit_the_interactive_caps_silently(project):
    from toolbox import kubeutils
    from toolbox.core.config import load_config
    from toolbox.kube.scope import project_settings

    settings = project_settings(load_config(".", need_launch=False))        # memory 32 GB, limit ratio 1.2
    renderer = kubeutils.Renderer(".", {})
    pod = validate(load(renderer.pod_manifest(settings, "alice-demo-interactive-pod")))
    assert renderer.warnings == []
    resources = main_container(pod)["resources"]
    assert resources["requests"]["memory"] == "32G" and resources["limits"]["memory"] == "32G"
    assert resources["requests"]["cpu"] == "5" and resources["limits"]["cpu"] == "6"
    assert env_of(main_container(pod))["TOOLBOX_COMMAND"] == "sleep infinity"
    assert pod["metadata"]["labels"]["toolbox/role"] == "interactive"


# -- the start-up script ---------------------------------------------------------------------------------------
def test_startup_variants(project):
    default = startup_of(one(project))
    assert "git pull --ff-only" in default and "conda activate demo" in default and "conda run -n" not in default
    no_pull = one(project, "git_pull: false\nconda_env_name: base\nextra_startup_script: echo extra-step\n")
    script = startup_of(no_pull)
    assert "git pull" not in script and "conda activate base" in script and "echo extra-step" in script
    assert "toolbox-deploy-key" not in json.dumps(pod_spec(no_pull))
    custom = startup_of(one(project, "startup_script: echo custom-start\n"))
    assert "echo custom-start" in custom and "git pull" not in custom and "conda activate" not in custom
    assert custom.rstrip().endswith('exec bash -c "$cell_command"')  # the command still runs after it


def test_deploy_key_is_mounted_optionally(project):
    spec = pod_spec(one(project))
    volume = next(v for v in spec["volumes"] if v["name"] == "toolbox-deploy-key")
    assert volume["secret"] == {"secretName": "demo-deploy-key", "optional": True, "defaultMode": 0o400}
    mount = next(m for m in main_container(one(project))["volumeMounts"] if m["name"] == "toolbox-deploy-key")
    assert mount == {"name": "toolbox-deploy-key", "mountPath": "/etc/toolbox/deploy-key", "readOnly": True}


# -- quoting: no value can break the YAML ------------------------------------------------------------------
@settings(max_examples=300, deadline=None)
@given(st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=60))
def test_quoted_scalars_round_trip(text):
    from toolbox.kube.render import flow, q

    assert load(f"key: {q(text)}\n") == {"key": text}
    assert load(f"key: {flow({'a': [text]})}\n") == {"key": {"a": [text]}}


_TEXT = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=20)
_SCALAR = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False), _TEXT)
_NESTED = st.recursive(_SCALAR, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.dictionaries(st.one_of(_TEXT, st.integers()), inner, max_size=4)), max_leaves=20)


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(_TEXT, _NESTED, max_size=6))
def test_block_yaml_round_trips(value):
    """The `yaml` filter (and the manifests pod_config changed) reads back as the data it was given."""
    from toolbox.kube.yamltext import block

    assert load(block(value) + "\n") == (value or None)


def test_hostile_command_text_stays_data(project):
    command = "echo \"a\" 'b' $HOME `id`; x: y # not a comment\n  - not: a list\n\u2028 {{ raw }} \x85 \x7f"
    launch = f"model:\n  m:\n    command: {json.dumps(command)}\n"
    manifest = one(project, launch=launch)
    assert env_of(main_container(manifest))["TOOLBOX_COMMAND"] == command


@pytest.mark.parametrize("line, message", [
    pytest.param("user: alice smith", "user: 'alice smith' must be a valid label value", id="user"),
    pytest.param("namespace: My_NS", "namespace: 'My_NS' is not a valid namespace name", id="namespace"),
])
def test_identity_fields_must_fit_selectors(project, cli, line, message):
    key = line.split(":")[0]
    base = {"project_name": "demo", "user": "alice", "namespace": "ns"}
    base.pop(key)
    project.kube_yaml("".join(f"{k}: {v}\n" for k, v in base.items()) + line + "\n")
    project.launch_yaml(LAUNCH)
    for command in ("dryrun", "delete", "status"):
        result = cli(command)
        assert result.code == 2 and message in result.err, (command, result)


def test_a_huge_startup_script_is_refused(project, cli):
    project.kube_yaml("project_name: demo\nuser: alice\nnamespace: ns\n"
                      f"extra_startup_script: '{'echo x; ' * 20000}'\n")
    project.launch_yaml(LAUNCH)
    result = cli("dryrun")
    assert result.code == 2 and "a container command argument holds at most 120 KiB" in result.err


def test_cluster_problems_point_at_the_line_that_set_the_field(project, cli):
    project.kube_yaml("project_name: demo\nuser: alice\nnamespace: ns\nmemory: 64\n")
    project.launch_yaml("model:\n  m:\n    command: run\n    hparam: {x: [1, 2]}\n    memory: -3\n"
                        "    tolerations: ['bad key!']\n")
    result = cli("dryrun")
    assert result.code == 2
    lines = result.err.splitlines()
    assert lines[0] == "error: config/launch.yaml:5:13: model.m.memory: must be more than 0, got -3"
    assert lines[1].startswith("    (in alice-demo-m-x-1-") and lines[2] == "    (and 1 more cell)"
    assert lines[3] == "error: config/launch.yaml:6:18: model.m.tolerations: 'bad key!' is not a valid taint key"
    project.kube_yaml("project_name: demo\nuser: alice\nnamespace: My_NS\n")
    result = cli("pod-dryrun")
    assert result.err.startswith("error: config/kube.yaml:3:12: namespace: 'My_NS' is not a valid namespace name")


def test_the_partly_imported_client_still_works_for_other_code():
    """kubeapi imports only the parts of `kubernetes` it uses; user code in the same process that imports
    the rest afterwards must get the whole package (a fresh interpreter, so sys.modules starts clean)."""
    import subprocess
    import sys

    from conftest import ROOT

    code = (f"import importlib.util as u; s = u.spec_from_file_location('b', {str(ROOT / 'launch.py')!r}); "
            "m = u.module_from_spec(s); s.loader.exec_module(m); m._register_toolbox_package()\n"
            "from toolbox.kube.client import client_modules; client_modules()\n"
            "import kubernetes\n"
            "from kubernetes import client, config, watch\n"
            "assert client.CoreV1Api and client.V1Pod(metadata=client.V1ObjectMeta(name='x')).metadata.name == 'x'\n"
            "assert kubernetes.client.BatchV1Api is client.BatchV1Api and watch.Watch and config.load_kube_config\n"
            "print('ok')\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0 and result.stdout == "ok\n", result.stderr
