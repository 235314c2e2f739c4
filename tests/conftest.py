"""Shared fixtures: the `toolbox` package, temp projects, an in-process CLI and `make` runners.

Server fixtures live in fixtures_s3.py (moto S3 server) and fixtures_kube.py (Kubernetes API double).
"""
import importlib.util
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
TESTS = Path(__file__).resolve().parent
sys.path.insert(0, str(TESTS))


def _register_toolbox():
    spec = importlib.util.spec_from_file_location("_toolbox_bootstrap", ROOT / "launch.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    module._register_toolbox_package()


_register_toolbox()

pytest_plugins = ["fixtures_s3", "fixtures_kube"]

# Make variables the CLI reads from the environment (every option of the command table, and the S3 and
# runtime settings): cleared for every test so that a developer's shell cannot change results.
from toolbox.cli.commands import OPTIONS  # noqa: E402 (the toolbox package is registered just above)

MAKE_VARS = [*OPTIONS, "S3_API_PORT", "S3_API_TOKEN_FILE", "S3_REGIONS", "S3_REGION", "S3_REGION_SELECT",
             "NODE_NAME", "CUDA_VISIBLE_DEVICES", "TOOLBOX_FULL_ERROR"]


@pytest.fixture(autouse=True)
def _clean_make_vars(monkeypatch):
    for var in MAKE_VARS:
        monkeypatch.delenv(var, raising=False)


class Project:
    """A temporary user project laid out as the README says: src/toolbox -> this checkout,
    Makefile and launch.py symlinked at the root."""

    def __init__(self, path):
        self.path = Path(path)
        (self.path / "src").mkdir(parents=True, exist_ok=True)
        (self.path / "config").mkdir(exist_ok=True)
        os.symlink(ROOT, self.path / "src" / "toolbox")
        os.symlink("src/toolbox/Makefile", self.path / "Makefile")
        os.symlink("src/toolbox/launch.py", self.path / "launch.py")

    def write(self, relpath, text, dedent=True):
        target = self.path / relpath
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(textwrap.dedent(text) if dedent else text)
        return target

    def launch_yaml(self, text, dedent=True):
        return self.write("config/launch.yaml", text, dedent)

    def kube_yaml(self, text, dedent=True):
        return self.write("config/kube.yaml", text, dedent)

    def env(self, text):
        return self.write(".env", text)

    def read(self, relpath):
        return (self.path / relpath).read_text()


@pytest.fixture
def project(tmp_path, monkeypatch):
    """An empty project (cwd is its root) with a minimal kube.yaml."""
    proj = Project(tmp_path / "proj")
    proj.kube_yaml("""\
        project_name: demo
        user: alice
        namespace: ns
    """)
    monkeypatch.chdir(proj.path)
    return proj


class CliResult:
    def __init__(self, code, out, err):
        self.code, self.out, self.err = code, out, err

    def __repr__(self):
        return f"CliResult(code={self.code}, out={self.out!r}, err={self.err!r})"


@pytest.fixture
def cli(project, capfd, monkeypatch):
    """Run `launch.py <args>` in-process in the project; make variables go in as keyword arguments."""
    from toolbox import launch

    def run(*argv, **make_vars):
        with monkeypatch.context() as m:
            for key, value in make_vars.items():
                m.setenv(key, str(value))
            capfd.readouterr()
            code = launch.main(list(argv))
            out, err = capfd.readouterr()
        return CliResult(code, out, err)

    return run


@pytest.fixture
def make(project):
    """Run the real `make <target> VAR=value ...` in the project with this interpreter."""

    def run(*args, env=None, timeout=120, input=None):
        full_env = dict(os.environ, PYTHON=sys.executable)
        full_env.update(env or {})
        return subprocess.run(["make", *args], cwd=project.path, env=full_env, capture_output=True,
                              text=True, timeout=timeout, input=input)

    return run


def wait_until(condition, what, limit=30):
    """Poll `condition` until it holds; fail after `limit` seconds (a generous wait, not a timing test)."""
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")
