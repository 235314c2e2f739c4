"""Config loading and validation: a catalogue of broken configs with exact messages, and precedence."""
import json
import re
from pathlib import Path

import pytest

from toolbox.core import fields
from toolbox.core.config import load_config
from toolbox.errors import ConfigError
from toolbox.core.grid import expand

KUBE = """\
project_name: demo
user: alice
namespace: ns
"""


def problems(project, launch, kube=KUBE):
    project.kube_yaml(kube)
    project.launch_yaml(launch)
    with pytest.raises(ConfigError) as info:
        expand(load_config("."))
    return [p.format() for p in info.value.problems]


BROKEN = [
    pytest.param(
        "model:\n  a:\n    command: run\n    gpu_cout: 1\n",
        ["error: config/launch.yaml:4:5: model.a.gpu_cout: unknown key 'gpu_cout' in a model entry\n"
         "    did you mean 'gpu_count'?"],
        id="typo-in-model-field"),
    pytest.param(
        "model:\n  a:\n    command: run\n    memory: 8GB\n",
        ["error: config/launch.yaml:4:13: model.a.memory: expected a number, got '8GB' (a string)"],
        id="wrong-type"),
    pytest.param(
        "model:\n  a:\n    hparam: {x: 1}\n",
        ["error: config/launch.yaml:3:5: model.a: missing required key 'command'\n"
         "    e.g. command: python src/train.py --lr <lr>"],
        id="missing-command"),
    pytest.param(
        "model:\n  a:\n    command: [run]\n",
        ["error: config/launch.yaml:3:14: model.a.command: expected a string, got a list"],
        id="command-not-string"),
    pytest.param(
        "dataset:\n  d: {}\n",
        ["error: config/launch.yaml:1:1: missing required section 'model' (a map of model name -> entry)"],
        id="no-model-section"),
    pytest.param(
        "model:\n  a: {command: run}\nrun:\n  model: [b]\n",
        ["error: config/launch.yaml:4:11: run.model[0]: unknown model 'b'\n    valid: a"],
        id="unknown-model-in-run"),
    pytest.param(
        "model:\n  a: {command: run}\ndataset:\n  cifar10: {}\nrun:\n  dataset: [cifar01]\n",
        ["error: config/launch.yaml:6:13: run.dataset[0]: unknown dataset 'cifar01'\n"
         "    did you mean 'cifar10'?"],
        id="dataset-typo-in-run"),
    pytest.param(
        "model:\n  a: {command: run}\nrun:\n  models: [a]\n",
        ["error: config/launch.yaml:4:3: run.models: unknown key 'models' in run\n    did you mean 'model'?"],
        id="unknown-run-key"),
    pytest.param(
        "model:\n  a:\n    command: run\n    hparam:\n      train:\n        paper: {_lr: 1, _s: lin}\n"
        "        orig: {_lr: 2}\n",
        ["error: config/launch.yaml:7:15: model.a.hparam.train.orig: group 'orig' has different keys than "
         "'paper'\n    missing: _s\n    every group of one hparam must set the same keys"],
        id="inconsistent-group-keys"),
    pytest.param(
        "model:\n  a:\n    command: run\n    hparam:\n      lr: []\n",
        ["error: config/launch.yaml:5:11: model.a.hparam.lr: an empty list gives no cells\n"
         "    give at least one value"],
        id="empty-list-hparam"),
    pytest.param(
        "model:\n  a:\n    command: run\n    hparam:\n      lr: [[1, 2]]\n",
        ["error: config/launch.yaml:5:12: model.a.hparam.lr[0]: expected a value, got a list\n"
         "    for bundles of settings use named groups (see docs/grid.md, hparam)"],
        id="nested-list-hparam"),
    pytest.param(
        "model:\n  a:\n    command: run\n    namespace: other\n",
        ["error: config/launch.yaml:4:5: model.a.namespace: 'namespace' is project-wide and cannot be set in "
         "a model entry\n    set it in config/kube.yaml"],
        id="project-field-in-model"),
    pytest.param(
        "model:\n  a:\n    command: run\n    cpu_count: .inf\n    shared: .NaN\n",
        ["error: config/launch.yaml:4:16: model.a.cpu_count: expected a finite number, got .inf",
         "error: config/launch.yaml:5:13: model.a.shared: expected a finite number, got .nan"],
        id="not-finite-numbers"),
    pytest.param(
        "model:\n  a:\n    command: run\n    hparam: {_memory: [8, nan], _cpu_count: -inf}\n",
        ["error: config/launch.yaml:4:27: model.a.hparam._memory[1]: hparam '_memory' overrides the cluster field "
         "'memory': expected a finite number, got 'nan'",
         "error: config/launch.yaml:4:45: model.a.hparam._cpu_count: hparam '_cpu_count' overrides the cluster "
         "field 'cpu_count': expected a finite number, got '-inf'"],
        id="not-finite-overrides"),
    pytest.param(
        "model:\n  a: {command: \"run\\0x\"}\n",
        ["error: config/launch.yaml:2:16: model.a.command: contains a NUL character (\\0): no command, argument "
         "or variable can hold it"],
        id="nul-escape"),
    pytest.param(
        "model:\n  a: {command: run\x01x}\n",
        ["error: config/launch.yaml:2:19: the character U+0001 is not allowed in YAML\n    remove it (often pasted from a terminal or another program by mistake)"],
        id="control-character"),
    pytest.param(
        "model:\n  a: &a\n    command: run\n    hparam: {x: *a}\n",
        ["error: config/launch.yaml:2:6: model.a.hparam.x: an alias refers to the anchor it is inside of (a "
         "recursive alias)\n    aliases (*name) may only repeat a block defined before and outside of them"],
        id="recursive-alias"),
    pytest.param(
        "model:\n  a:\n    command: run\n    hparam: {_gpu_count: [1, two]}\n",
        ["error: config/launch.yaml:4:30: model.a.hparam._gpu_count[1]: hparam '_gpu_count' overrides the cluster "
         "field 'gpu_count': expected an integer, got 'two'"],
        id="override-cast-error"),
    pytest.param(
        "model:\n  a:\n    command: run <lr>\n    hparam: {lr: [1, 2]}\nrun:\n  hparam: {lrr: 1}\n",
        ["error: config/launch.yaml:6:12: run.hparam.lrr: no hparam named 'lrr' in the selected models and "
         "datasets\n    did you mean 'lr'?"],
        id="unknown-run-filter"),
    pytest.param(
        "model:\n  a: {command: run}\n  a: {command: other}\n",
        ["error: config/launch.yaml:3:3: model.a: duplicate key (YAML would silently keep only the last one)"],
        id="duplicate-key"),
    pytest.param(
        "model:\n  a:\n    command: run\n    server: {tb: {command: tensorboard}}\n",
        ["error: config/launch.yaml:4:18: model.a.server.tb: missing required key 'port'"],
        id="server-missing-port"),
    pytest.param(
        "model:\n  a:\n    command: run\nenv: [A=1]\n",
        ["error: config/launch.yaml:4:6: env: expected a map of strings, got a list"],
        id="env-not-a-map"),
    pytest.param(
        "model:\n  a:\n    command: 'x\n",
        ["error: config/launch.yaml:4:1: invalid YAML: found unexpected end of stream\n"
         "    while scanning a quoted scalar that starts at line 3, column 14:\n"
         "        command: 'x\n"
         "                 ^"],
        id="yaml-syntax"),
    pytest.param(
        "model:\n  a:\n    command: run\n    hparam: {x: !foo bar, y: !!int abc}\n",
        ["error: config/launch.yaml:4:17: model.a.hparam.x: cannot read this value: could not determine a "
         "constructor for the tag '!foo'\n    write plain values; YAML tags (!name) are not supported",
         "error: config/launch.yaml:4:30: model.a.hparam.y: cannot read this value: invalid literal for int() "
         "with base 10: 'abc'\n    write plain values; YAML tags (!name) are not supported"],
        id="yaml-tags"),
    pytest.param(
        "model:\n  a:\n    command: run\n    hparam: {lr: 0.1, _lr: 0.2, seed: [1, 2, 1]}\n",
        ["error: config/launch.yaml:4:23: model.a.hparam._lr: '_lr' and 'lr' are the same hparam (a leading _ "
         "only hides it from names)\n    keep one of them",
         "error: config/launch.yaml:4:46: model.a.hparam.seed[2]: '1' is already in this list\n"
         "    each value gives one cell; remove the repeat"],
        id="same-hparam-twice"),
    pytest.param(
        "- a\n- b\n",
        ["error: config/launch.yaml:1:1: the file must be a map of keys (key: value)"],
        id="not-a-map"),
]


@pytest.mark.parametrize("launch, expected", BROKEN)
def test_broken_config_messages(project, launch, expected):
    assert problems(project, launch) == expected


def test_all_problems_reported_at_once_across_files(project):
    found = problems(project, "model:\n  a:\n    command: run\n    imag: x\n",
                     kube=KUBE + "gpu_cout: 1\nmemory: lots\n")
    assert [p.split(": ")[1] for p in found] == ["config/kube.yaml:4:1", "config/kube.yaml:5:9",
                                                 "config/launch.yaml:4:5"]


def test_kube_yaml_sections_are_pointed_to_launch_yaml(project):
    found = problems(project, "model:\n  a: {command: run}\n", kube=KUBE + "model: {}\n")
    assert found == ["error: config/kube.yaml:4:1: model: 'model' does not belong in config/kube.yaml\n"
                     "    'model' is a section of config/launch.yaml (at its top level)"]


def test_missing_project_name(project):
    found = problems(project, "model:\n  a: {command: run}\n", kube="user: alice\n")
    assert found == ["error: config/kube.yaml: project_name: missing required key 'project_name'\n"
                     "    set it in config/kube.yaml (e.g. project_name: example)"]


def test_missing_launch_yaml_is_a_clear_error(project, cli):
    result = cli("local")
    assert result.code == 2
    assert "error: config/launch.yaml: file not found" in result.err
    assert "Traceback" not in result.err


def test_config_error_exit_code_and_nothing_runs(project, cli):
    project.launch_yaml("model:\n  a:\n    command: touch ran.txt\n    gpu_cout: 1\n")
    result = cli("local")
    assert result.code == 2
    assert "1 configuration problem; nothing was run." in result.err
    assert not (project.path / "ran.txt").exists()


# -- precedence: default < kube.yaml < launch root < dataset < model < hparam -------------------------
PRECEDENCE = [
    pytest.param({}, {}, {}, {}, None, 0, id="default"),
    pytest.param({"gpu_count": 3}, {}, {}, {}, None, 3, id="kube"),
    pytest.param({"gpu_count": 3}, {"gpu_count": 4}, {}, {}, None, 4, id="launch-root"),
    pytest.param({"gpu_count": 3}, {"gpu_count": 4}, {"gpu_count": 5}, {}, None, 5, id="dataset"),
    pytest.param({"gpu_count": 3}, {"gpu_count": 4}, {"gpu_count": 5}, {"gpu_count": 6}, None, 6, id="model"),
    pytest.param({"gpu_count": 3}, {"gpu_count": 4}, {"gpu_count": 5}, {"gpu_count": 6}, "7", 7, id="hparam"),
]


def _yaml_map(values, indent):
    return "".join(f"{' ' * indent}{k}: {json.dumps(v)}\n" for k, v in values.items())


@pytest.mark.parametrize("kube, root, dataset, model, hparam, expected", PRECEDENCE)
def test_one_precedence_rule(project, kube, root, dataset, model, hparam, expected):
    project.kube_yaml(KUBE + _yaml_map(kube, 0))
    hp = f"    hparam: {{_gpu_count: {hparam}}}\n" if hparam else ""
    project.launch_yaml("model:\n  m:\n    command: run\n" + _yaml_map(model, 4) + hp +
                        "dataset:\n  d:\n    hparam: {x: 1}\n" + _yaml_map(dataset, 4) + _yaml_map(root, 0))
    (cell,) = expand(load_config(".")).cells
    assert cell.settings["gpu_count"] == expected


def test_map_fields_merge_key_by_key(project):
    project.kube_yaml(KUBE + "volumes: {data: /data, home: /home}\nenv: {A: kube, B: kube}\n")
    project.launch_yaml("""\
        env: {B: root, C: root}
        model:
          m:
            command: run
            env: {C: model}
            volumes: {scratch: /scratch}
        dataset:
          d: {env: {D: dataset}}
    """)
    (cell,) = expand(load_config(".")).cells
    assert cell.settings["env"] == {"A": "kube", "B": "root", "C": "model", "D": "dataset"}
    assert cell.settings["volumes"] == {"data": "/data", "home": "/home", "scratch": "/scratch"}


def test_whitelist_and_blacklist_are_two_fields(project):
    # each list replaces only its own kind below it: kube.yaml's blacklist still applies under a model's
    # whitelist (both together are valid: a node must be in the one and not in the other)
    project.kube_yaml(KUBE + "gpu_blacklist: [NVIDIA-A10]\nhostname_whitelist: [n1]\n")
    project.launch_yaml("model:\n  m:\n    command: run\n    gpu_whitelist: [NVIDIA-A100]\n"
                        "    hostname_blacklist: [n2]\n")
    (cell,) = expand(load_config(".")).cells
    assert cell.settings["gpu_whitelist"] == ["NVIDIA-A100"] and cell.settings["gpu_blacklist"] == ["NVIDIA-A10"]
    assert cell.settings["hostname_whitelist"] == ["n1"] and cell.settings["hostname_blacklist"] == ["n2"]


def test_null_resets_to_default(project):
    project.kube_yaml(KUBE + "file: [a.txt]\nmemory: 64\n")
    project.launch_yaml("model:\n  m:\n    command: run\n    file: null\n    memory: ~\n")
    (cell,) = expand(load_config(".")).cells
    assert cell.settings["file"] == []
    assert cell.settings["memory"] == 32


def test_derived_defaults(project):
    project.kube_yaml(KUBE)
    project.launch_yaml("model:\n  m: {command: run}\n")
    (cell,) = expand(load_config(".")).cells
    s = cell.settings
    assert s["image"] == "gitlab-registry.nrp-nautilus.io/alice/demo:latest"
    assert s["image_pull_secrets"] == "demo-read-registry"
    assert s["conda_env_name"] == "demo"
    assert s["prefix"] == "alice"
    assert s["deploy_key_secret"] == "demo-deploy-key"


def test_hparam_override_of_gitlab_user_changes_default_image(project):
    project.kube_yaml(KUBE)
    project.launch_yaml("model:\n  m:\n    command: run\n    hparam: {_gitlab_user: [bob, carol]}\n")
    images = [c.settings["image"] for c in expand(load_config(".")).cells]
    assert images == ["gitlab-registry.nrp-nautilus.io/bob/demo:latest",
                      "gitlab-registry.nrp-nautilus.io/carol/demo:latest"]


def test_launch_root_may_repeat_project_name(project):
    project.kube_yaml(KUBE)
    project.launch_yaml("project_name: demo\nmodel:\n  m: {command: run}\n")
    assert load_config(".").project["project_name"] == "demo"


def test_launch_root_project_fields_win_everywhere(project, cli):
    project.kube_yaml(KUBE + "s3_endpoint_map: {https://a: http://in-a}\n")
    project.launch_yaml("project_name: other\nuser: bob\ns3_endpoint_map: {https://b: http://in-b}\n"
                        "model:\n  m: {command: run}\n")
    config = load_config(".")
    assert config.project["s3_endpoint_map"] == {"https://a": "http://in-a", "https://b": "http://in-b"}
    (cell,) = expand(config).cells
    assert cell.name.startswith("bob-other-m-")
    s = cell.settings
    assert (s["project_name"], s["user"], s["namespace"]) == ("other", "bob", "ns")
    assert s["image"] == "gitlab-registry.nrp-nautilus.io/bob/other:latest"
    assert (s["image_pull_secrets"], s["conda_env_name"]) == ("other-read-registry", "other")
    plan = cli("plan")
    assert plan.code == 0, plan.err
    assert "Project-wide settings:" in plan.out
    assert re.search(r"^  project_name +other +config/launch.yaml:1:1 \(over 'demo' at config/kube.yaml:1:1\)$",
                     plan.out, re.M)
    assert re.search(r"^  namespace +ns +config/kube.yaml:3:1$", plan.out, re.M)
    dryrun = cli("dryrun")
    assert dryrun.code == 0, dryrun.err
    manifests = "".join(p.read_text() for p in (project.path / "build").glob("*.yaml"))
    assert "demo" not in manifests and "alice" not in manifests
    assert '"project": "other"' in manifests and '"user": "bob"' in manifests


def test_cluster_only_problems_of_kube_yaml_do_not_block_local_work(project, cli):
    project.kube_yaml(KUBE + "gpu_cout: 1\nmemory: lots\nshared: .nan\n")
    project.launch_yaml("model:\n  m: {command: echo ran}\n")
    for command in ("local", "local-first", "local-dryrun", "plan"):
        result = cli(command)
        assert result.code == 0, (command, result.err)
        assert ("warning: config/kube.yaml:4:1: gpu_cout: unknown key 'gpu_cout' in config/kube.yaml (ignored here; "
                "commands that use the cluster stop on it)\n    did you mean 'gpu_count'?") in result.err
        assert "warning: config/kube.yaml:5:9: memory: expected a number" in result.err
        assert "warning: config/kube.yaml:6:9: shared: expected a finite number, got .nan" in result.err
    for command in ("dryrun", "job", "status"):
        result = cli(command)
        assert result.code == 2 and "error: config/kube.yaml:4:1: gpu_cout: unknown key" in result.err
    project.launch_yaml("model:\n  m: {command: echo ran, gpu_cout: 1}\n")   # launch.yaml: errors everywhere
    assert cli("local-dryrun").code == 2
    project.kube_yaml("project_name: [x]\nuser: alice\n")                     # names need project_name
    assert "error: config/kube.yaml:1:15: project_name: expected a string" in cli("plan").err


def test_kube_yaml_that_is_a_directory_is_said_so(project, cli):
    (project.path / "config" / "kube.yaml").unlink()
    (project.path / "config" / "kube.yaml").mkdir()
    project.launch_yaml("project_name: p\nmodel:\n  m: {command: run}\n")
    result = cli("plan")
    assert result.code == 2
    assert result.err.startswith("error: config/kube.yaml: is a directory, not a file\n")


def test_alias_bombs_are_refused_with_the_line(project):
    laughs = "".join(f"l{i}: &l{i} [" + ", ".join([f"*l{i - 1}"] * 10) + "]\n" for i in range(1, 8))
    found = problems(project, "l0: &l0 [x, x, x, x, x, x, x, x, x, x]\n" + laughs + "model:\n  a: {command: run}\n")
    assert len(found) == 1
    assert re.match(r"error: config/launch.yaml:\d+:\d+: l\d[.\[].*aliases expand to more than 100,000 values", found[0])


def test_local_only_project_without_kube_yaml(project):
    (project.path / "config" / "kube.yaml").unlink()
    project.launch_yaml("project_name: solo\nmodel:\n  m: {command: run}\n")
    (cell,) = expand(load_config(".")).cells
    assert cell.name.startswith("solo-m-")
    assert cell.settings["image"] is None  # needs user: only cluster commands require it


def test_yaml_anchors_and_merge_keys(project):
    project.launch_yaml("""\
        model:
          a: &a
            command: run <x>
            gpu_count: 2
            hparam: {x: 1}
          b:
            <<: *a
            gpu_count: 1
    """)
    cells = expand(load_config(".")).cells
    assert [(c.model, c.settings["gpu_count"], c.command) for c in cells] == [("a", 2, "run 1"), ("b", 1, "run 1")]


# -- JSON Schema ---------------------------------------------------------------------------------------
def test_shipped_schemas_match_the_field_table(tmp_path):
    fields.write_schemas(str(tmp_path))
    for name in fields.SCHEMAS:
        shipped = Path(fields.SCHEMA_DIR, name).read_text()
        assert (tmp_path / name).read_text() == shipped, f"schemas/{name} is stale: run `make docs`"


def test_schemas_accept_the_example_and_reject_typos():
    import jsonschema
    import yaml

    from conftest import ROOT

    example = ROOT / "examples" / "quickstart" / "config"
    launch = yaml.safe_load((example / "launch.yaml").read_text())
    kube = yaml.safe_load((example / "kube.yaml").read_text())
    jsonschema.validate(launch, fields.launch_schema())
    jsonschema.validate(kube, fields.kube_schema())
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({**kube, "gpu_cout": 1}, fields.kube_schema())
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({"model": {"a": {"command": "x", "memory": "lots"}}}, fields.launch_schema())


def test_every_field_is_documented():
    from conftest import ROOT

    page = (ROOT / "docs" / "grid.md").read_text()
    missing = [f.name for f in fields.FIELDS if f"`{f.name}`" not in page]
    assert not missing, f"fields missing from docs/grid.md: {missing}"
