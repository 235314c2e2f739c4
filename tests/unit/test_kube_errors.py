"""One-line errors instead of tracebacks around the Kubernetes commands (no cluster needed), and the pure
rules behind ownership and error reports: owner-hashed names, the next free name, spec comparison, grouping."""
import subprocess
import sys
from pathlib import Path

import pytest

from kube_helpers import LAUNCH
from toolbox.core import naming
from toolbox.errors import KubeError, Unreachable
from toolbox.kube import objects, submit

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("command", ["dryrun", "pod-dryrun"])
def test_build_existing_as_a_file(project, cli, command):
    project.launch_yaml(LAUNCH)
    project.write("build", "my notes\n")
    result = cli(command)
    assert result.code == 2, result
    assert result.err.startswith("error: build: exists and is not a folder; dry runs write their manifests")
    assert "Traceback" not in result.err and project.read("build") == "my notes\n"


def test_missing_kubernetes_package_says_what_to_install(project, tmp_path):
    """The toolbox in a Python where every package but `kubernetes` is installed."""
    import yaml

    project.launch_yaml(LAUNCH)
    site_packages = Path(yaml.__file__).resolve().parents[1]
    without = tmp_path / "site-packages"
    without.mkdir()
    for entry in site_packages.iterdir():
        if not entry.name.startswith("kubernetes"):
            (without / entry.name).symlink_to(entry)
    script = (f"import importlib.util as u, sys; s = u.spec_from_file_location('b', {str(ROOT / 'launch.py')!r}); "
              "m = u.module_from_spec(s); s.loader.exec_module(m); m._register_toolbox_package(); "
              "from toolbox.cli import main; sys.exit(main.main(['status']))")
    done = subprocess.run([sys.executable, "-S", "-c", script], cwd=project.path, capture_output=True, text=True,
                          timeout=60, env={"PYTHONPATH": str(without), "PATH": "/usr/bin:/bin"})
    assert done.returncode == 1, done
    assert done.stderr.startswith("error: kubernetes: the Python package 'kubernetes' is not installed"), done.stderr
    assert "hint: install the toolbox's requirements" in done.stderr and "Traceback" not in done.stderr


# -- names ---------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("one, other", [
    pytest.param(("alice", "x-y"), ("alice-x", "y"), id="dash-split"),
    pytest.param(("Alice", "demo"), ("alice", "demo"), id="case"),
    pytest.param(("a_b", "demo"), ("a-b", "demo"), id="underscore"),
])
def test_per_user_names_never_collide(one, other):
    def names(user, project):
        settings = {"user": user, "project_name": project, "namespace": "ns"}
        files = objects._configmap([objects.ShippedFile("a.txt", "f0-a.txt", 0o644, b"x", True)], settings)
        return objects.env_secret_name(settings), files["metadata"]["name"]

    first, second = names(*one), names(*other)
    assert first[0] != second[0] and first[1] != second[1]
    for name in first + second:
        assert naming.is_dns_label(name)
    assert names("alice", "demo") == ("alice-demo-env-7d32c88b", names("alice", "demo")[1])
    assert names("a" * 40, "b" * 40)[0].endswith("-" + naming.owner_hash("a" * 40, "b" * 40))


def test_next_free_name_is_the_one_rule():
    assert naming.next_free_name("p", {"p", "p-1"}) == "p-2"
    long = "x" * 63
    assert naming.is_dns_label(naming.next_free_name(long, {long})) and naming.next_free_name(long, {long})[-2:] == "-1"
    assert naming.next_free_name("make-test", {"make-test"}, first=2, limit=None) == "make-test-2"


# -- a Job created meanwhile --------------------------------------------------------------------------------
def test_a_server_adds_defaults_but_the_spec_is_the_same():
    sent = {"containers": [{"name": "main", "image": "x", "env": [{"name": "A", "value": "1"}]}]}
    stored = {"containers": [{"name": "main", "image": "x", "env": [{"name": "A", "value": "1"}],
                              "imagePullPolicy": "Always"}], "dnsPolicy": "ClusterFirst"}
    assert submit.contains(stored, sent)
    assert not submit.contains(stored, {"containers": [{"name": "main", "image": "y"}]})
    assert not submit.contains({"containers": []}, sent)


def test_identical_errors_are_grouped():
    errors = [KubeError(f"job/j{i}", 409, "AlreadyExists", f'jobs.batch "j{i}" already exists') for i in range(3)]
    errors += [KubeError("job/k", 403, "Forbidden", "no"), Unreachable("https://h:6443", "cannot reach"),
               Unreachable("https://h:6443", "cannot reach")]
    groups = submit.grouped_errors(errors)
    assert [(err.where, count) for err, count in groups] == [("https://h:6443", 2), ("job/j0", 3), ("job/k", 1)]


def test_a_bad_cell_late_in_the_grid_leaves_build_as_it_was(project, cli):
    """The dry run streams the grid, but checks every cell before it writes the first file."""
    project.launch_yaml(LAUNCH)
    assert cli("dryrun").code == 0
    before = {p.name: p.read_text() for p in (project.path / "build").iterdir()}
    changed = LAUNCH.replace("--lr <lr>", "--lr <lr> --v2")     # every manifest would change...
    project.launch_yaml(changed + "      zz-last:\n        command: sleep infinity\n")  # ...but one cell is bad
    result = cli("dryrun")
    assert result.code == 2 and "a Job must end: 'sleep infinity' never does" in result.err, result
    assert {p.name: p.read_text() for p in (project.path / "build").iterdir()} == before


def test_api_timeout_must_be_positive(project, cli):
    project.launch_yaml(LAUNCH)
    project.kube_yaml("project_name: demo\nuser: alice\nnamespace: ns\napi_timeout: 0\n")
    result = cli("status")
    assert result.code == 2, result
    assert "config/kube.yaml:4:14: api_timeout: must be a number of seconds above 0, got 0" in result.err
