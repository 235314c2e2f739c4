"""A machine whose only Python is a plain interpreter and whose PATH has no `python`: the demo and local
runs still work, because a cell's `python` is the interpreter the Makefile chose (core/runenv.py)."""
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import ROOT

BARE_PATH = "/usr/local/bin:/usr/bin:/bin"


def bare_environment(**extra):
    """What `env -i HOME=$HOME PATH=/usr/local/bin:/usr/bin:/bin` leaves: no VIRTUAL_ENV, no python shim."""
    return {"HOME": os.environ.get("HOME", "/tmp"), "PATH": BARE_PATH, **extra}


def test_the_demo_runs_with_a_bare_path_and_nothing_activated(tmp_path):
    demo = tmp_path / "demo"
    result = subprocess.run([sys.executable, str(ROOT / "examples" / "demo.py"), str(demo)], env=bare_environment(),
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "command not found" not in result.stderr
    assert re.findall(r"^\d\.0$", result.stdout, re.M) == ["2.0", "2.0", "5.0", "5.0"]
    assert "4 succeeded, 0 failed" in result.stdout
    assert (demo / "build").is_dir()   # make dryrun wrote its manifests


def _base_interpreter():
    """The interpreter this test's virtualenv was made from: a plain one (no venv, no conda)."""
    base = getattr(sys, "_base_executable", None) if sys.prefix != sys.base_prefix else sys.executable
    if not base or not os.path.isfile(base):
        pytest.skip("no interpreter outside a virtualenv")
    return base


def test_a_plain_interpreter_is_the_cells_python_and_nothing_else_changes(project, tmp_path):
    base = _base_interpreter()
    project.write("src/which.py", "import os, sys\nprint('python is', os.path.realpath(sys.executable))\n")
    project.launch_yaml("model:\n  m:\n    command: python src/which.py; python3 src/which.py; "
                        "echo VENV=${VIRTUAL_ENV:-none}; command -v make\n")
    site = next(Path(sys.prefix, "lib").glob("python3*/site-packages"))   # the toolbox's own dependencies
    env = bare_environment(PYTHONPATH=str(site), XDG_CACHE_HOME=str(tmp_path / "cache"),
                           VIRTUAL_ENV="/some/other/venv")
    result = subprocess.run(["make", "local", f"PYTHON={base}"], cwd=project.path, env=env, capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert re.findall(r"^python is (.*)$", result.stdout, re.M) == [os.path.realpath(base)] * 2
    assert "VENV=none" in result.stdout                      # a leftover VIRTUAL_ENV is not this interpreter
    assert re.search(r"^/usr/bin/make$|^/bin/make$", result.stdout, re.M)   # other commands: PATH as it was
    links = tmp_path / "cache" / "kube-toolbox"
    assert sorted(p.name for p in next(links.iterdir()).iterdir()) == ["python", "python3"]


def test_the_virtualenv_is_activated(project):
    project.launch_yaml("model:\n  m:\n    command: echo VENV=$VIRTUAL_ENV; command -v python; command -v pip\n")
    result = subprocess.run(["make", "local", f"PYTHON={sys.executable}"], cwd=project.path,
                            env=bare_environment(), capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    venv_bin = os.path.join(sys.prefix, "bin")
    assert f"VENV={sys.prefix}\n" in result.stdout
    assert f"\n{venv_bin}/python\n{venv_bin}/pip\n" in result.stdout
