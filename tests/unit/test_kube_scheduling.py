"""Where pods may run: both host/GPU lists, special_gpu over the GPU product lists, priority_class_name,
node_selector, a raw `affinity:` block combined with the toolbox's own, and the `pod_config:` escape hatch
(deep-merged like a strategic merge patch, checked against the strict PodSpec schema at the config line).
Every manifest is validated against the strict 1.33 schema."""
import pytest

from kube_helpers import LAUNCH, load, manifests, pod_spec, render_cells, validate

KUBE = "project_name: demo\nuser: alice\nnamespace: ns\n"
HOST = "kubernetes.io/hostname"
PRODUCT = "nvidia.com/gpu.product"


def first(project, kube_extra="", launch=LAUNCH):
    project.kube_yaml(KUBE + kube_extra)
    project.launch_yaml(launch)
    return manifests()[0]


def terms(manifest):
    node = pod_spec(manifest)["affinity"]["nodeAffinity"]
    return node["requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"]


def main(manifest):
    (container,) = [c for c in pod_spec(manifest)["containers"] if c["name"] == "main"]
    return container


# -- both lists (issue 8, item 2) ---------------------------------------------------------------------------
def test_whitelist_and_blacklist_together_give_in_and_not_in(project):
    job = first(project, "hostname_whitelist: [n1, n2, n3]\nhostname_blacklist: [n2]\n"
                         "gpu_whitelist: [NVIDIA-A10, NVIDIA-A40]\ngpu_blacklist: [NVIDIA-A40]\n")
    assert terms(job) == [{"matchExpressions": [
        {"key": HOST, "operator": "In", "values": ["n1", "n2", "n3"]},
        {"key": HOST, "operator": "NotIn", "values": ["n2"]},
        {"key": PRODUCT, "operator": "In", "values": ["NVIDIA-A10", "NVIDIA-A40"]},
        {"key": PRODUCT, "operator": "NotIn", "values": ["NVIDIA-A40"]}]}]


def test_a_blacklist_of_a_lower_layer_still_applies_under_a_whitelist(project):
    # kube.yaml keeps a broken node out of every cell; a model narrowing to a whitelist does not undo that
    job = first(project, "hostname_blacklist: [broken]\n",
                "model:\n  m:\n    command: run\n    hostname_whitelist: [broken, good]\n")
    assert terms(job)[0]["matchExpressions"] == [{"key": HOST, "operator": "In", "values": ["broken", "good"]},
                                                 {"key": HOST, "operator": "NotIn", "values": ["broken"]}]


def test_null_drops_a_lower_layers_blacklist(project):
    job = first(project, "hostname_blacklist: [broken]\n",
                "model:\n  m:\n    command: run\n    hostname_whitelist: [good]\n    hostname_blacklist: null\n")
    assert terms(job)[0]["matchExpressions"] == [{"key": HOST, "operator": "In", "values": ["good"]}]


def test_lists_that_leave_no_host_name_both_lines(project, cli):
    project.kube_yaml(KUBE + "memory: 8\nhostname_blacklist: [n1, n2]\n")
    project.launch_yaml("model:\n  m:\n    command: run\n    hostname_whitelist: [n2, n1]\n")
    result = cli("dryrun")
    assert result.code == 2, result
    assert result.err.splitlines()[:3] == [
        "error: config/launch.yaml:4:25: model.m.hostname_whitelist: no node is left: every entry of "
        "hostname_whitelist is in hostname_blacklist",
        "    hostname_blacklist: config/kube.yaml:5:1",
        "    a node must be in the whitelist and not in the blacklist"]
    assert cli("plan").code == 0 and cli("local-dryrun").code == 0  # only the cluster cares


def test_gpu_lists_that_leave_no_product_in_one_file(project, cli):
    project.kube_yaml(KUBE + "gpu_whitelist: [NVIDIA-A10]\ngpu_blacklist: [NVIDIA-A10, NVIDIA-A40]\n")
    project.launch_yaml(LAUNCH)
    result = cli("dryrun")
    assert result.code == 2
    assert "error: config/kube.yaml:4:16: gpu_whitelist: no GPU product is left" in result.err
    assert "    gpu_blacklist: config/kube.yaml:5:1" in result.err


def test_the_interactive_pod_checks_its_lists_too(project, cli):
    project.kube_yaml(KUBE + "hostname_whitelist: [n1]\nhostname_blacklist: [n1]\n")
    project.launch_yaml("model:\n  m:\n    command: run\n    hostname_whitelist: [n2]\n")
    assert cli("dryrun").code == 0  # every cell overrides the whitelist
    result = cli("pod-dryrun")
    assert result.code == 2
    assert "error: config/kube.yaml:4:21: hostname_whitelist: no node is left" in result.err


# -- special_gpu wins over the product lists (item 4) -------------------------------------------------------
def test_special_gpu_ignores_the_gpu_product_lists(project):
    jobs = manifests_of(project, "gpu_count: 1\ngpu_whitelist: [NVIDIA-GeForce-RTX-3090, NVIDIA-A10]\n"
                                 "hostname_blacklist: [bad]\n",
                        "model:\n  big:\n    command: run\n    special_gpu: a100\n  small:\n    command: run\n")
    big, small = jobs
    assert main(big)["resources"]["requests"]["nvidia.com/a100"] == "1"
    assert terms(big) == [{"matchExpressions": [{"key": HOST, "operator": "NotIn", "values": ["bad"]}]}]
    assert {"key": PRODUCT, "operator": "In", "values": ["NVIDIA-GeForce-RTX-3090", "NVIDIA-A10"]} \
        in terms(small)[0]["matchExpressions"]


def test_special_gpu_with_contradicting_product_lists_is_not_an_error(project):
    job = first(project, "gpu_whitelist: [A]\ngpu_blacklist: [A]\n",
                "model:\n  m:\n    command: run\n    special_gpu: a100\n    gpu_count: 1\n")
    assert "affinity" not in pod_spec(job)


def test_plan_says_once_that_the_product_lists_do_not_apply(project, cli):
    project.kube_yaml(KUBE + "gpu_count: 1\ngpu_blacklist: [NVIDIA-GeForce-GTX-1080-Ti]\n")
    project.launch_yaml("model:\n  big:\n    command: run <x>\n    special_gpu: a100\n    hparam: {x: [1, 2, 3]}\n"
                        "  small:\n    command: run\n")
    result = cli("plan")
    assert result.code == 0, result
    assert result.out.count("note:") == 1
    assert ("note: 3 cells use special_gpu: gpu_whitelist/gpu_blacklist do not apply to them "
            "(nvidia.com/<special_gpu> already picks the GPU)") in result.out
    project.kube_yaml(KUBE + "gpu_count: 1\n")
    assert "note:" not in cli("plan").out  # no lists: nothing to say


def manifests_of(project, kube_extra, launch):
    project.kube_yaml(KUBE + kube_extra)
    project.launch_yaml(launch)
    return manifests()


# -- priority_class_name and node_selector (item 3) ----------------------------------------------------------
def test_priority_class_name(project):
    spec = pod_spec(first(project, "priority_class_name: opportunistic\n"))
    assert spec["priorityClassName"] == "opportunistic"
    assert "priorityClassName" not in pod_spec(first(project))


def test_priority_class_name_per_cell_and_null_reset(project):
    jobs = manifests_of(project, "priority_class_name: opportunistic\n",
                        "model:\n  m:\n    command: run\n    hparam:\n      _priority_class_name: [high, '']\n"
                        "  n:\n    command: run\n    priority_class_name: null\n")
    assert [pod_spec(j).get("priorityClassName") for j in jobs] == ["high", None, None]


def test_node_selector_merges_key_by_key(project):
    jobs = manifests_of(project, "node_selector: {topology.kubernetes.io/region: us-west, disk: ssd}\n",
                        "model:\n  m:\n    command: run\n    node_selector: {disk: nvme}\n"
                        "  n:\n    command: run\n    node_selector: null\n")
    assert pod_spec(jobs[0])["nodeSelector"] == {"topology.kubernetes.io/region": "us-west", "disk": "nvme"}
    assert "nodeSelector" not in pod_spec(jobs[1])


@pytest.mark.parametrize("field, kube_line, key", [
    ("affinity", "affinity: {podAntiAffinity: {preferredDuringSchedulingIgnoredDuringExecution: "
                 "[{weight: 1, podAffinityTerm: {topologyKey: kubernetes.io/hostname}}]}}", "affinity"),
    ("pod_config", "pod_config: {runtimeClassName: nvidia}", "runtimeClassName"),
    ("node_selector", "node_selector: {disk: ssd}", "nodeSelector"),
    ("priority_class_name", "priority_class_name: opportunistic", "priorityClassName"),
])
def test_null_in_a_model_resets_a_scheduling_field(project, field, kube_line, key):
    jobs = manifests_of(project, kube_line + "\n", f"model:\n  a:\n    command: run\n  b:\n    command: run\n"
                                                  f"    {field}: null\n")
    assert key in pod_spec(jobs[0]) and key not in pod_spec(jobs[1])


@pytest.mark.parametrize("line, message", [
    ("priority_class_name: [a]\n", "config/kube.yaml:4:22: priority_class_name: expected a string, got a list"),
    ("priority_class_name: Not_Valid\n", "priority_class_name: 'Not_Valid' is not a valid PriorityClass name"),
    ("node_selector: [a]\n", "config/kube.yaml:4:16: node_selector: expected a map of strings, got a list"),
    ("node_selector: {'bad key!': x}\n", "node_selector: 'bad key!' is not a valid label key"),
    ("affinity: [a]\n", "config/kube.yaml:4:11: affinity: expected a map"),
    ("pod_config: 3\n", "config/kube.yaml:4:13: pod_config: expected a map"),
])
def test_scheduling_fields_are_checked(project, cli, line, message):
    project.kube_yaml(KUBE + line)
    project.launch_yaml(LAUNCH)
    result = cli("dryrun")
    assert result.code == 2, result
    assert message in result.err


# -- a raw affinity block -------------------------------------------------------------------------------------
AFFINITY = """\
affinity:
  nodeAffinity:
    requiredDuringSchedulingIgnoredDuringExecution:
      nodeSelectorTerms:
        - matchExpressions: [{key: topology.kubernetes.io/zone, operator: In, values: [ucsd]}]
        - matchExpressions: [{key: nautilus.io/group, operator: Exists}]
          matchFields: [{key: metadata.name, operator: NotIn, values: [node-9]}]
    preferredDuringSchedulingIgnoredDuringExecution:
      - weight: 50
        preference: {matchExpressions: [{key: nvidia.com/gpu.memory, operator: Gt, values: ['40000']}]}
  podAntiAffinity:
    preferredDuringSchedulingIgnoredDuringExecution:
      - weight: 10
        podAffinityTerm: {topologyKey: kubernetes.io/hostname, labelSelector: {matchLabels: {project: demo}}}
"""


def test_raw_affinity_terms_each_carry_the_toolbox_expressions(project):
    spec = pod_spec(first(project, AFFINITY + "hostname_blacklist: [bad]\ngpu_whitelist: [NVIDIA-A10]\n"))
    ours = [{"key": HOST, "operator": "NotIn", "values": ["bad"]},
            {"key": PRODUCT, "operator": "In", "values": ["NVIDIA-A10"]}]
    node = spec["affinity"]["nodeAffinity"]
    assert node["requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"] == [
        {"matchExpressions": [{"key": "topology.kubernetes.io/zone", "operator": "In", "values": ["ucsd"]}, *ours]},
        {"matchExpressions": [{"key": "nautilus.io/group", "operator": "Exists"}, *ours],
         "matchFields": [{"key": "metadata.name", "operator": "NotIn", "values": ["node-9"]}]}]
    assert node["preferredDuringSchedulingIgnoredDuringExecution"][0]["weight"] == 50
    assert spec["affinity"]["podAntiAffinity"]["preferredDuringSchedulingIgnoredDuringExecution"][0]["weight"] == 10


def test_raw_affinity_without_required_terms_and_no_lists(project):
    spec = pod_spec(first(project, "affinity: {podAffinity: {requiredDuringSchedulingIgnoredDuringExecution: "
                                   "[{topologyKey: kubernetes.io/hostname, labelSelector: {matchLabels: {a: b}}}]}}\n"))
    assert list(spec["affinity"]) == ["podAffinity"]


def test_raw_affinity_alone_on_the_interactive_pod(project, cli):
    project.kube_yaml(KUBE + AFFINITY)
    assert cli("pod-dryrun").code == 0
    pod = validate(load((project.path / "build" / "alice-demo-interactive-pod.yaml").read_text()))
    assert len(pod["spec"]["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
               ["nodeSelectorTerms"]) == 2


def test_a_misspelled_affinity_field_points_at_its_line(project, cli):
    project.kube_yaml(KUBE + AFFINITY.replace("preferredDuringSchedulingIgnoredDuringExecution:\n      - weight: 50",
                                              "preferedDuringSchedulingIgnoredDuringExecution:\n      - weight: 50"))
    project.launch_yaml(LAUNCH)
    result = cli("dryrun")
    assert result.code == 2
    assert result.err.splitlines()[:2] == [
        "error: config/kube.yaml:11:5: affinity.nodeAffinity.preferedDuringSchedulingIgnoredDuringExecution: "
        "unknown field 'preferedDuringSchedulingIgnoredDuringExecution' in NodeAffinity",
        "    did you mean 'preferredDuringSchedulingIgnoredDuringExecution'?"]
    assert "Traceback" not in result.err


# -- pod_config: any PodSpec field --------------------------------------------------------------------------
POD_CONFIG = """\
pod_config:
  runtimeClassName: nvidia
  securityContext: {runAsUser: 1000, fsGroup: 100}
  dnsPolicy: ClusterFirst
  nodeSelector: {disk: ssd}
  containers:
    - name: main
      imagePullPolicy: Always
      securityContext: {capabilities: {add: [SYS_PTRACE]}}
      env: [{name: NCCL_DEBUG, value: INFO}, {name: PYTHONUNBUFFERED, value: "0"}]
      volumeMounts: [{name: cache, mountPath: /cache}]
      resources: {limits: {nvidia.com/gpu: 1}}
    - name: watcher
      image: busybox:1.36
      command: [sleep, infinity]
  volumes:
    - {name: cache, emptyDir: {medium: Memory}}
    - {name: toolbox-shm, emptyDir: {medium: Memory, sizeLimit: 8Gi}}
"""


def test_pod_config_is_merged_like_a_strategic_merge_patch(project):
    job = first(project, "node_selector: {zone: west}\n" + POD_CONFIG)
    spec = pod_spec(job)
    assert spec["runtimeClassName"] == "nvidia" and spec["dnsPolicy"] == "ClusterFirst"
    assert spec["securityContext"] == {"runAsUser": 1000, "fsGroup": 100}
    assert spec["nodeSelector"] == {"zone": "west", "disk": "ssd"}
    assert spec["restartPolicy"] == "Never"  # what pod_config does not name stays
    assert [c["name"] for c in spec["containers"]] == ["main", "watcher"]
    container = main(job)
    assert container["imagePullPolicy"] == "Always" and container["command"][:2] == ["/bin/bash", "-c"]
    assert container["securityContext"] == {"capabilities": {"add": ["SYS_PTRACE"]}}
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["NCCL_DEBUG"] == "INFO" and env["PYTHONUNBUFFERED"] == "0" and "TOOLBOX_CELL_NAME" in env
    mounts = [m["mountPath"] for m in container["volumeMounts"]]
    assert mounts[0] == "/dev/shm" and mounts[-1] == "/cache"
    assert container["resources"]["limits"]["nvidia.com/gpu"] == 1 and container["resources"]["requests"]["cpu"] == "5"
    volumes = {v["name"]: v for v in spec["volumes"]}
    assert volumes["cache"] == {"name": "cache", "emptyDir": {"medium": "Memory"}}
    # a volume of the same name is replaced as a whole (its source is a union: retainKeys)
    assert volumes["toolbox-shm"] == {"name": "toolbox-shm", "emptyDir": {"medium": "Memory", "sizeLimit": "8Gi"}}


def test_pod_config_keeps_cell_values_per_cell(project):
    jobs = manifests_of(project, POD_CONFIG, 'model:\n  m:\n    command: echo "<x>"\n    hparam: {x: [a, "b c"]}\n')
    commands = [{e["name"]: e.get("value") for e in main(j)["env"]}["TOOLBOX_COMMAND"] for j in jobs]
    assert commands == ['echo "a"', 'echo "b c"']
    assert len({j["metadata"]["name"] for j in jobs}) == 2


def test_pod_config_null_removes_a_generated_field(project):
    spec = pod_spec(first(project, "pod_config: {imagePullSecrets: null}\n"))
    assert "imagePullSecrets" not in spec


def test_pod_config_affinity_is_combined_like_the_affinity_field(project):
    spec = pod_spec(first(project, "hostname_blacklist: [bad]\npod_config:\n  affinity: {nodeAffinity: "
                                   "{requiredDuringSchedulingIgnoredDuringExecution: {nodeSelectorTerms: "
                                   "[{matchExpressions: [{key: zone, operator: In, values: [a]}]}]}}}\n"))
    assert terms({"kind": "Pod", "spec": spec}) == [{"matchExpressions": [
        {"key": "zone", "operator": "In", "values": ["a"]}, {"key": HOST, "operator": "NotIn", "values": ["bad"]}]}]


def test_pod_config_layers_merge_like_patches(project):
    # a model's pod_config is a patch over kube.yaml's: it adds a volume and a security setting instead
    # of replacing kube.yaml's lists and maps (which a mount of kube.yaml's volume still needs)
    job = first(project, "pod_config:\n  runtimeClassName: nvidia\n  securityContext: {runAsUser: 1000}\n"
                         "  volumes: [{name: scratch, emptyDir: {}}]\n"
                         "  containers: [{name: main, volumeMounts: [{name: scratch, mountPath: /scratch}]}]\n",
                "model:\n  m:\n    command: run\n    pod_config:\n      securityContext: {runAsGroup: 5}\n"
                "      volumes: [{name: cache, emptyDir: {}}]\n      containers: [{name: main, stdin: null}]\n"
                "      runtimeClassName: null\n")
    spec = pod_spec(job)
    assert "runtimeClassName" not in spec  # null removes it, from any layer
    assert spec["securityContext"] == {"runAsUser": 1000, "runAsGroup": 5}
    assert [v["name"] for v in spec["volumes"]][-2:] == ["scratch", "cache"]
    assert main(job)["volumeMounts"][-1] == {"name": "scratch", "mountPath": "/scratch"}


def test_affinity_layers_merge_like_patches(project):
    job = first(project, "affinity: {nodeAffinity: {requiredDuringSchedulingIgnoredDuringExecution: "
                         "{nodeSelectorTerms: [{matchExpressions: [{key: zone, operator: In, values: [a]}]}]}}}\n",
                "model:\n  m:\n    command: run\n    affinity: {podAntiAffinity: {preferredDuringScheduling"
                "IgnoredDuringExecution: [{weight: 1, podAffinityTerm: {topologyKey: kubernetes.io/hostname}}]}}\n")
    assert sorted(pod_spec(job)["affinity"]) == ["nodeAffinity", "podAntiAffinity"]


def test_pod_config_on_the_interactive_pod(project, cli):
    project.kube_yaml(KUBE + POD_CONFIG)
    assert cli("pod-dryrun").code == 0
    pod = validate(load((project.path / "build" / "alice-demo-interactive-pod.yaml").read_text()))
    assert pod["spec"]["runtimeClassName"] == "nvidia"
    assert [c["name"] for c in pod["spec"]["containers"]] == ["main", "watcher"]


@pytest.mark.parametrize("config, lines", [
    pytest.param("pod_config:\n  containers:\n    - name: main\n      securityContext: {runAsUsr: 1}\n",
                 ["error: config/kube.yaml:7:25: pod_config.containers[0].securityContext.runAsUsr: "
                  "unknown field 'runAsUsr' in SecurityContext", "    did you mean 'runAsUser'?"], id="nested-typo"),
    pytest.param("pod_config:\n  priorityClasName: x\n",
                 ["error: config/kube.yaml:5:3: pod_config.priorityClasName: unknown field 'priorityClasName' in "
                  "PodSpec", "    did you mean 'priorityClassName'?"], id="top-typo"),
    pytest.param("pod_config:\n  securityContext: {runAsUser: lots}\n",
                 ["error: config/kube.yaml:5:32: pod_config.securityContext.runAsUser: expected an integer, "
                  "got 'lots' (a string)"], id="type"),
    pytest.param("pod_config:\n  containers:\n    - image: x\n",
                 ["error: config/kube.yaml:6:7: pod_config.containers[0]: missing required field 'name' of Container"],
                 id="required"),
    pytest.param("pod_config:\n  containers:\n    - name: helper\n",
                 ["error: config/kube.yaml:5:3: pod_config: containers: 'helper' is a new container (not main) and "
                  "needs an image"], id="new-container-without-image"),
    pytest.param("pod_config:\n  containers: [{name: main, volumeMounts: [{name: scratch, mountPath: /s}]}]\n",
                 ["error: config/kube.yaml:5:3: pod_config: containers: 'main' mounts 'scratch', which is not a "
                  "volume of the pod (add it to pod_config's volumes)"], id="mount-of-no-volume"),
])
def test_pod_config_mistakes_point_at_the_config_line(project, cli, config, lines):
    project.kube_yaml(KUBE + config)
    project.launch_yaml(LAUNCH)
    result = cli("dryrun")
    assert result.code == 2, result
    assert result.err.splitlines()[:len(lines)] == lines
    assert "Traceback" not in result.err


def test_the_strict_schema_rejects_what_the_toolbox_check_rejects(project):
    """The toolbox's check of pod_config is the strict 1.33 PodSpec schema of kubernetes-validate: the
    same typo merged into a manifest behind the toolbox's back fails the strict validation."""
    from toolbox.core import podschema

    project.launch_yaml(LAUNCH)
    project.kube_yaml(KUBE)
    _, _, texts = render_cells()
    job = load(texts[0])
    patch = {"containers": [{"name": "main", "securityContext": {"runAsUsr": 1}}], "priorityClasName": "x"}
    assert [path for path, *_ in podschema.problems(podschema.POD_SPEC, patch)] == [
        ("containers", 0, "securityContext", "runAsUsr"), ("priorityClasName",)]
    podschema.merge(pod_spec(job), patch)
    with pytest.raises(AssertionError, match="runAsUsr|priorityClasName"):
        validate(job)
