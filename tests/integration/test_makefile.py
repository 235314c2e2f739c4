"""The Makefile: self-documenting help, project.mk, interpreter choice, hostile values, the checkout guard,
and the README's install steps (git submodule + symlinks) end to end."""
import os
import re
import shutil
import stat
import subprocess
import sys

import pytest

from conftest import ROOT


def makefile_targets(path):
    """Every target named in a rule line of a makefile (phony helpers with % excluded)."""
    targets = set()
    for line in path.read_text().splitlines():
        match = re.match(r"^([a-zA-Z0-9_.-]+(?: [a-zA-Z0-9_.-]+)*):(?!=)", line)
        if match and not line.startswith((".", "\t")):
            targets.update(match.group(1).split())
    return targets


def test_help_lists_every_target_and_project_mk(project, make):
    project.write("project.mk", "## Train the big model on the cluster\ntrain-big:\n\t@echo big\n")
    result = make("help", env={"PYTHON": "/nonexistent/python"})  # help never starts Python
    assert result.returncode == 0, result.stderr
    documented = set()
    for line in result.stdout.splitlines():
        match = re.match(r"^  (\S+(?:, \S+)*)\s{2,}\S", line)
        if match:
            documented.update(match.group(1).split(", "))
    expected = makefile_targets(ROOT / "Makefile") - {"test", "demo"}  # development targets: checkout only
    assert expected <= documented, expected - documented
    assert "train-big" in documented
    assert "Train the big model on the cluster" in result.stdout
    assert make().stdout == result.stdout  # help is the default goal


def test_targets_are_one_line_dispatches():
    text = (ROOT / "Makefile").read_text()
    recipes = [line for line in text.splitlines() if line.startswith("\t")]
    for line in recipes:
        assert "$(file" not in line and "$(model" not in line, f"user value pasted into a recipe: {line}"


@pytest.mark.parametrize("value", [
    "a;touch pwned", "`touch pwned`", "$(touch pwned)", "$(shell touch pwned)", "a b 'c' \"d\" *", "x\ny",
    "$$HOME",
])
def test_hostile_values_stay_literal_and_run_no_shell(project, make, value):
    project.launch_yaml("model:\n  m: {command: echo hi}\n")
    result = make("local-dryrun", f"model={value}")
    assert result.returncode != 0
    assert f"unknown model '{value}'" in result.stderr
    assert not list(project.path.glob("pwned*"))


def _recording_python(directory, marker):
    """An interpreter wrapper that leaves a marker file, so a test can see which one make chose."""
    bin_dir = directory / "bin"
    bin_dir.mkdir(parents=True)
    wrapper = bin_dir / "python"
    wrapper.write_text(f"#!/bin/sh\ntouch {marker}\nexec {sys.executable} \"$@\"\n")
    wrapper.chmod(wrapper.stat().st_mode | stat.S_IEXEC)
    return directory


@pytest.mark.parametrize("variable", ["VIRTUAL_ENV", "CONDA_PREFIX"])
def test_active_environment_is_used_without_probing(project, tmp_path, variable):
    marker = tmp_path / "used"
    env_dir = _recording_python(tmp_path / "env", marker)
    project.launch_yaml("model:\n  m: {command: echo hi}\n")
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHON", "VIRTUAL_ENV", "CONDA_PREFIX")}
    env[variable] = str(env_dir)
    result = subprocess.run(["make", "local-dryrun"], cwd=project.path, env=env, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert marker.exists()
    marker.unlink()
    result = subprocess.run(["make", "local-dryrun", f"PYTHON={sys.executable}"], cwd=project.path, env=env,
                            capture_output=True, text=True)
    assert result.returncode == 0 and not marker.exists()


def test_inside_the_toolbox_checkout_only_development_targets_work():
    result = subprocess.run(["make", "local"], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 2
    assert "This is the toolbox checkout itself" in result.stderr
    assert "submodule at src/toolbox" in result.stderr
    assert subprocess.run(["make", "help"], cwd=ROOT, capture_output=True).returncode == 0


GIT = ["git", "-c", "user.name=t", "-c", "user.email=t@example.com", "-c", "protocol.file.allow=always"]


def _working_tree_repo(target):
    """A git repository holding this checkout's files as they are now (committed or not), so that the
    submodule below is the code under test rather than the last commit."""
    listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=ROOT,
                            check=True, capture_output=True).stdout.decode().split("\0")
    for rel in filter(None, listed):
        source = ROOT / rel
        if source.is_file() or source.is_symlink():
            (target / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target / rel, follow_symlinks=False)
    for cmd in (["init", "-q"], ["add", "-A"], ["commit", "-q", "-m", "snapshot"]):
        subprocess.run([*GIT, *cmd], cwd=target, check=True, capture_output=True)
    return target


@pytest.mark.skipif(not shutil.which("git"), reason="git is required")
def test_readme_install_steps_with_a_real_submodule(tmp_path):
    """README 'Install': git submodule add, two symlinks, then `make local` prints the seed's output."""
    example = tmp_path / "example"
    shutil.copytree(ROOT / "examples" / "quickstart", example)
    toolbox = _working_tree_repo(tmp_path / "toolbox")
    run = lambda *cmd: subprocess.run(cmd, cwd=example, check=True, capture_output=True, text=True)  # noqa: E731
    run("git", "init", "-q")
    run(*GIT, "submodule", "add", "-q", str(toolbox), "src/toolbox")
    run("ln", "-s", "src/toolbox/launch.py", ".")
    run("ln", "-s", "src/toolbox/Makefile", ".")
    result = subprocess.run(["make", "local", f"PYTHON={sys.executable}"], cwd=example, capture_output=True,
                            text=True)
    assert result.returncode == 0, result.stderr
    assert re.findall(r"^\d\.0$", result.stdout, re.M) == ["2.0", "2.0", "5.0", "5.0"]
