"""Names: always valid DNS-1123 labels, <= 63 characters, readable, deterministic and unique."""
import json

import pytest
from hypothesis import given, settings, strategies as st

from toolbox.core import naming
from toolbox.core.config import load_config
from toolbox.core.grid import expand


@pytest.mark.parametrize("text, expected", [
    ("Average", "average"),
    ("learning_rate", "learning-rate"),
    ("0.001", "0p001"),
    ("1e-5", "1e-5"),
    ("-1", "m1"),
    ("True", "true"),
    ("/data/x.txt", "data-x-txt"),
    ("Über Straße", "uber-strae"),
    ("数据", ""),
    ("", ""),
    ("a--b__c", "a-b-c"),
])
def test_slug(text, expected):
    assert naming.slug(text) == expected


@pytest.mark.parametrize("word, expected", [
    ("learning-rate", "lr"), ("cosine-with-restarts", "cwr"), ("dropout", "dro"), ("seed", "seed"),
    ("0p001", "0p001"), ("1e-5", "1e-5"), ("m1", "m1")])
def test_abbreviate(word, expected):
    assert naming.abbreviate(word) == expected


def names(project, launch):
    project.launch_yaml(launch)
    return [c.name for c in expand(load_config(".")).cells]


def test_readable_name_with_hash(project):
    (name,) = names(project, "model:\n  average: {command: x}\ndataset:\n  data1: {hparam: {lr: 0.1, _fn: a}}\n")
    assert name.startswith("alice-demo-average-data1-lr-0p1-")
    assert len(name.rsplit("-", 1)[1]) == naming.HASH_CHARS


def test_hidden_hparams_change_the_hash_only(project):
    a, b = names(project, "model:\n  m: {command: x, hparam: {_fn: [a, b]}}\n")
    assert a.rsplit("-", 1)[0] == b.rsplit("-", 1)[0] == "alice-demo-m"
    assert a != b


def test_long_names_are_abbreviated_then_cut(project):
    (name,) = names(project, """\
        model:
          transformer_large_pretrained: {command: x}
        dataset:
          imagenet_full_resolution:
            hparam: {learning_rate: 0.001, scheduler: cosine_with_restarts, weight_decay: 0.01}
    """)
    assert len(name) <= 63 and naming.is_dns_label(name)
    # model and dataset are shortened so that the hparams stay readable
    assert name.startswith("alice-demo-transformer-imagenet-lr-0p001-sch-cwr-")


def test_model_and_dataset_are_part_of_the_hash(project):
    # long model/dataset names are cut away; the identity hash still tells the two cells apart
    long = "x" * 70
    launch = f"model:\n  {long}a: {{command: x}}\n  {long}b: {{command: y}}\n"
    a, b = names(project, launch)
    assert a != b and len(a) <= 63 and len(b) <= 63


def test_prefix_field_and_empty_prefix(project):
    project.kube_yaml("project_name: demo\nuser: alice\nnamespace: ns\nprefix: Team_A\n")
    assert names(project, "model:\n  m: {command: x}\n")[0].startswith("team-a-demo-m-")
    project.kube_yaml("project_name: demo\nuser: alice\nnamespace: ns\nprefix: ''\n")
    assert names(project, "model:\n  m: {command: x}\n")[0].startswith("demo-m-")


def test_names_are_deterministic(project):
    launch = "model:\n  m: {command: x, hparam: {a: [1, 2], _b: [x, y]}}\n"
    assert names(project, launch) == names(project, launch)


def test_pod_names():
    assert naming.pod_name("alice", "demo") == "alice-demo-interactive-pod"
    assert naming.next_free_name("p", {"p", "p-1"}) == "p-2"
    long = naming.pod_name("a" * 40, "b" * 40)
    assert naming.is_dns_label(naming.next_free_name(long, {long}))


# -- properties over random grids ----------------------------------------------------------------------
_text = st.text(st.characters(blacklist_categories=("Cs", "Cc", "Co", "Cn")), max_size=30)
_value = st.one_of(_text, st.integers(-10**6, 10**6), st.floats(allow_nan=False, allow_infinity=False),
                   st.booleans(), st.just("1e-5"), st.just(""))
def _yaml_text(value):
    """The text a value has in the config (1 and "1" are the same hparam value)."""
    return value if isinstance(value, str) else json.dumps(value)


_key = st.from_regex(r"\A_?[A-Za-z][A-Za-z0-9_]{0,20}\Z")


@settings(max_examples=60, deadline=None)
@given(model=_text.filter(lambda t: t.strip() and ":" not in t), hparams=st.dictionaries(
    _key, st.lists(_value, min_size=1, max_size=3, unique_by=_yaml_text), min_size=1, max_size=4).filter(
        lambda hps: len({k.lstrip("_") for k in hps}) == len(hps)))   # `_x` and `x` are the same hparam
def test_names_always_valid_and_unique(tmp_path_factory, model, hparams):
    from conftest import Project

    project = Project(tmp_path_factory.mktemp("p"))
    project.kube_yaml("project_name: Demo_Project\nuser: Alice.Smith\nnamespace: ns\n")
    spec = {"model": {model: {"command": "run", "hparam": hparams}}}
    project.launch_yaml(json.dumps(spec, ensure_ascii=False), dedent=False)  # JSON is YAML: arbitrary text round-trips
    cells = expand(load_config(str(project.path))).cells
    names = [c.name for c in cells]
    assert all(naming.is_dns_label(n) for n in names), names
    identities = {(c.model, c.dataset, c.hparams) for c in cells}
    assert len(set(names)) == len(identities) == len(cells)


@settings(max_examples=200, deadline=None)
@given(st.lists(_text, min_size=1, max_size=8))
def test_cell_name_is_a_label_for_any_fragments(parts):
    head = naming.join_words(*(naming.slug(p) for p in parts[:2]))
    full = [naming.slug(p) for p in parts[2:]]
    short = [naming.abbreviate(f) for f in full]
    name = naming.cell_name([head], full, short, naming.cell_hash("|".join(parts)))
    assert naming.is_dns_label(name)
