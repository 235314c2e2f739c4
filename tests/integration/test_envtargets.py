"""The environment targets (devtools/environment.py, devtools/shell.py) with real tools: make, bash (and zsh), tmux,
venv + pip, uv, ruff/flake8.

Installs run offline from stub wheels written by the tests (PIP_NO_INDEX/PIP_FIND_LINKS, UV_OFFLINE/
UV_FIND_LINKS). Tools this machine may lack (tmux, zsh, uv, conda, poetry, a linter) skip with a reason.
"""
import base64
import hashlib
import os
import re
import shutil
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import pytest

from toolbox.core.runenv import Interpreter
from toolbox.devtools import environment
from toolbox.devtools import shell

TOOLBOX = Path(shell.__file__).resolve().parent
UV = shutil.which("uv") or (str(Path(sys.executable).parent / "uv")
                            if (Path(sys.executable).parent / "uv").exists() else None)
needs_uv = pytest.mark.skipif(not UV, reason="uv is not installed (pip install uv)")
needs_tmux = pytest.mark.skipif(not shutil.which("tmux"), reason="tmux is not installed (apt-get install tmux)")


# -- helpers ------------------------------------------------------------------------------------------
def stub_wheel(folder, name, version, module_code=None):
    """A minimal valid wheel (no build tools needed); module_code adds <name>_stub.py."""
    dist = re.sub(r"[-_.]+", "_", name).lower()
    info = f"{dist}-{version}.dist-info"
    files = {f"{info}/METADATA": f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n",
             f"{info}/WHEEL": ("Wheel-Version: 1.0\nGenerator: toolbox-tests\nRoot-Is-Purelib: true\n"
                               "Tag: py3-none-any\n")}
    if module_code is not None:
        files[f"{dist}_stub.py"] = module_code
    record = []
    for path, text in files.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(text.encode()).digest()).rstrip(b"=").decode()
        record.append(f"{path},sha256={digest},{len(text.encode())}")
    files[f"{info}/RECORD"] = "\n".join(record + [f"{info}/RECORD,,"]) + "\n"
    target = Path(folder) / f"{dist}-{version}-py3-none-any.whl"
    with zipfile.ZipFile(target, "w") as zf:
        for path, text in files.items():
            zf.writestr(path, text)
    return target


def satisfying_version(requirement):
    lower = re.search(r"(>=|==|~=)\s*([0-9][0-9.]*)", requirement)
    return lower.group(2) if lower else "1.0"


@pytest.fixture(scope="session")
def wheelhouse(tmp_path_factory):
    """Stub wheels: tinypkg 1.0 and every toolbox requirement (versions that satisfy its specifiers)."""
    folder = tmp_path_factory.mktemp("wheelhouse")
    stub_wheel(folder, "tinypkg", "1.0", "VALUE = 'tiny'\n")
    for requirement in environment.toolbox_requirements():
        name = re.match(r"[A-Za-z0-9._-]+", requirement).group()
        stub_wheel(folder, name, satisfying_version(requirement))
    return folder


def offline_env(wheelhouse, **extra):
    env = {"PIP_NO_INDEX": "1", "PIP_FIND_LINKS": str(wheelhouse), "PIP_DISABLE_PIP_VERSION_CHECK": "1",
           "UV_OFFLINE": "1", "UV_FIND_LINKS": str(wheelhouse), "UV_NO_CACHE": "1"}
    env.update(extra)
    return env


@pytest.fixture
def linked_venv(tmp_path):
    """A fresh venv (no pip of its own, 0.1 s) that sees the test interpreter's packages through a .pth
    file, so launch.py runs in it; what is installed into it lands in its own site-packages."""
    import sysconfig

    folder = tmp_path / "linked-venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(folder)], check=True)
    python = folder / "bin" / "python"
    site = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                          capture_output=True, text=True, check=True).stdout.strip()
    Path(site, "_toolbox_tests.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    return python


def listing(root):
    return sorted(str(p.relative_to(root)) for p in Path(root).rglob("*") if "src/toolbox" not in str(p))


# -- make shell ---------------------------------------------------------------------------------------
TRICKY_ENV = """\
SPACES="two  words  "
QUOTES="say \\"hi\\" and it's"
HASH="a # not a comment"
DOLLAR='$HOME ${X} $(date) `id`'
BACKSLASH="C:\\\\temp"
EQUALS=a=b=c
"""


def _expected_env(project):
    from toolbox.core.envfile import read_env

    return read_env(str(project.path / ".env"))


def test_shell_exports_env_values_exactly_and_activates_the_environment(project, make, tmp_path):
    project.env(TRICKY_ENV)
    expected = _expected_env(project)
    assert len(expected) == 6 and expected["QUOTES"] == 'say "hi" and it\'s'  # the file says what we think
    assert expected["SPACES"] == "two  words  " and expected["DOLLAR"].startswith("$HOME ${X}")
    script = "".join(f'printf "%s=[%s]\\n" {k} "${k}"\n' for k in expected)
    script += 'echo "VENV=[$VIRTUAL_ENV]"\necho "PP=[$PYTHONPATH]"\necho "MF=[${MAKEFLAGS-unset}]"\nexit 7\n'
    result = make("shell", env={"HOME": str(tmp_path), "SHELL": "/bin/bash"}, input=script)
    assert result.returncode != 0  # `exit 7` ends the shell, make reports the failure
    for key, value in expected.items():
        assert f"{key}=[{value}]" in result.stdout.splitlines(), result.stdout
    assert f"VENV=[{sys.prefix}]" in result.stdout
    assert f"PP=[{project.path / 'src'}" in result.stdout
    assert "MF=[unset]" in result.stdout
    assert "make shell: bash with venv" in result.stderr and "6 variables from .env" in result.stderr


def test_shell_sources_the_users_bashrc_first_then_the_project_env_wins(project, make, tmp_path):
    (tmp_path / ".bashrc").write_text('export FROM_USER_RC=yes\nexport VIRTUAL_ENV=/somewhere/else\n')
    result = make("shell", "bash=true", env={"HOME": str(tmp_path)},
                  input='echo "rc=$FROM_USER_RC venv=$VIRTUAL_ENV"\ntype make\n')
    assert f"rc=yes venv={sys.prefix}" in result.stdout
    assert "--no-print-directory" in result.stdout


@pytest.mark.skipif(not shutil.which("zsh"), reason="zsh is not installed (apt-get install zsh)")
def test_shell_uses_zsh_for_zsh_users_unless_bash_is_forced(project, make, tmp_path):
    project.env(TRICKY_ENV)
    expected = _expected_env(project)
    (tmp_path / ".zshrc").write_text("export FROM_ZSHRC=1\n")
    script = 'echo "shell=${ZSH_VERSION:+zsh} zshrc=$FROM_ZSHRC venv=$VIRTUAL_ENV"\nprintf "[%s]\\n" "$QUOTES"\n'
    result = make("shell", env={"HOME": str(tmp_path), "SHELL": shutil.which("zsh")}, input=script)
    assert f"shell=zsh zshrc=1 venv={sys.prefix}" in result.stdout, result.stdout + result.stderr
    assert f"[{expected['QUOTES']}]" in result.stdout
    forced = make("shell", "bash=true", env={"HOME": str(tmp_path), "SHELL": shutil.which("zsh")},
                  input='echo "bash=${BASH_VERSION:+yes}"\n')
    assert "bash=yes" in forced.stdout


def test_shell_activates_the_interpreter_make_chose(project, tmp_path):
    venv = Interpreter("/x/venv/bin/python", "/x/venv", "/usr")
    assert shell.shell_activation(venv) == ({"TOOLBOX_VENV": "/x/venv"}, "venv /x/venv")
    (tmp_path / "envs" / "demo" / "conda-meta").mkdir(parents=True)
    prefix = str(tmp_path / "envs" / "demo")
    conda = Interpreter(prefix + "/bin/python", prefix, prefix)
    assert shell.shell_activation(conda)[0] == {"TOOLBOX_CONDA_SH": str(tmp_path / "etc/profile.d/conda.sh"),
                                                     "TOOLBOX_CONDA_ENV": prefix}
    # a plain interpreter: `python` becomes it (a ./.venv that make did not choose stays inactive)
    (project.path / ".venv" / "bin").mkdir(parents=True)
    (project.path / ".venv" / "bin" / "activate").write_text("")
    plain = Interpreter("/usr/bin/python3", "/usr", "/usr")
    activation, label = shell.shell_activation(plain)
    assert list(activation) == ["TOOLBOX_PYTHON_DIR"] and label == "python /usr/bin/python3"
    assert os.path.realpath(Path(activation["TOOLBOX_PYTHON_DIR"]) / "python") == os.path.realpath("/usr/bin/python3")


@pytest.mark.skipif(not os.path.exists("/usr/bin/python3"), reason="needs a plain /usr/bin/python3")
def test_shell_with_a_plain_python3_makes_python_that_interpreter(project, make, tmp_path):
    """The bare machine: no `python` command, no environment; make chose /usr/bin/python3 (the toolbox's
    packages reach it through PYTHONPATH here)."""
    import sysconfig

    plain = {"PYTHON": "/usr/bin/python3", "PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "SHELL": "/bin/bash",
             "PYTHONPATH": sysconfig.get_paths()["purelib"], "VIRTUAL_ENV": ""}
    result = make("shell", env=plain, input='readlink -f "$(command -v python)"\necho "venv=[$VIRTUAL_ENV]"\n')
    assert result.stdout.splitlines()[:2] == [os.path.realpath("/usr/bin/python3"), "venv=[]"], result.stderr
    assert "with python /usr/bin/python3 (no project environment found" in result.stderr


# -- make tmux ----------------------------------------------------------------------------------------
@pytest.fixture
def tmux_env(tmp_path):
    """A private tmux server for the test (TMUX_TMPDIR), killed afterwards."""
    folder = tmp_path / "tmux"
    folder.mkdir()
    env = {"TMUX_TMPDIR": str(folder), "TMUX": ""}
    yield env
    subprocess.run(["tmux", "kill-server"], env={**os.environ, **env}, capture_output=True)


def _wait_for(path, timeout=15):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists() and path.read_text():
            return path.read_text()
        time.sleep(0.05)
    raise AssertionError(f"{path} did not appear within {timeout}s")


@needs_tmux
def test_tmux_runs_the_target_detached_with_the_make_variables(project, make, tmux_env):
    project.write("project.mk", """\
        ## write the greeting
        greet:
        \t@printf '%s|%s\\n' "$$who" "$$PYTHON" > greeting.txt
    """)
    who = "who=a  b; $$HOME '\"\\ x;"
    direct = make("greet", who)  # what make itself does with the same command line
    expected = (project.path / "greeting.txt").read_text()
    assert direct.returncode == 0 and expected == f"a  b; $HOME '\"\\ x;|{sys.executable}\n"
    (project.path / "greeting.txt").unlink()
    result = make("tmux", "target=greet", who, env=tmux_env)
    assert result.returncode == 0, result.stderr
    assert "tmux session 'greet'" in result.stdout and "tmux attach -t greet" in result.stdout
    assert _wait_for(project.path / "greeting.txt") == expected
    sessions = subprocess.run(["tmux", "list-sessions", "-F", "#{session_name}"], capture_output=True, text=True,
                              env={**os.environ, **tmux_env}).stdout.split()
    assert sessions == ["greet"]  # remain-on-exit keeps the window (and its output) after the run
    again = make("tmux", "target=greet", env=tmux_env)
    assert "tmux session 'greet-2'" in again.stdout


@needs_tmux
def test_tmux_runs_the_target_with_the_interpreter_make_chose_activated(project, make, tmux_env, tmp_path):
    """A tmux server started earlier from another shell (other PATH, another venv) gives its sessions its own
    environment; the target still runs as `make` would here: `python` is make's interpreter."""
    elsewhere = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "VIRTUAL_ENV": "/some/other/venv", **tmux_env}
    subprocess.run(["tmux", "new-session", "-d", "-s", "earlier", "sleep 600"], env=elsewhere, check=True)
    project.write("project.mk", """\
        ## which python runs
        which:
        \t@printf '%s|%s\\n' "$$(command -v python)" "$$VIRTUAL_ENV" > which.txt
    """)
    result = make("tmux", "target=which", env=tmux_env)
    assert result.returncode == 0, result.stderr
    assert _wait_for(project.path / "which.txt") == f"{Path(sys.prefix) / 'bin' / 'python'}|{sys.prefix}\n"


@needs_tmux
def test_tmux_rejects_unknown_or_missing_targets_with_close_matches(project, make, tmux_env):
    project.write("project.mk", "train_model:\n\t@true\n")
    result = make("tmux", "target=train_modle", env=tmux_env)
    assert result.returncode == 2
    assert "error: target=train_modle: not a make target of this project" in result.stderr
    assert "did you mean 'train_model'" in result.stderr
    missing = make("tmux", env=tmux_env)
    assert missing.returncode == 2 and "which target should run in tmux" in missing.stderr
    assert "Traceback" not in result.stderr + missing.stderr


def test_tmux_missing_is_a_clear_error(cli, monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))  # no tmux there
    result = cli("tmux", target="local")
    assert result.code == 1
    assert "error: tmux: tmux is not installed" in result.err and "apt-get install tmux" in result.err


def test_make_targets_come_from_makes_database(project):
    project.write("project.mk", "VAR := 1\nbuild_data data.txt:\n\t@true\n%.o: %.c\n\t@true\n.hidden:\n\t@true\n")
    targets = shell.make_targets()
    assert {"build_data", "data.txt", "local", "help", "upload", "up", "tmux"} <= targets
    assert not {"Makefile", "project.mk", ".hidden", "%.o", "VAR"} & targets


@pytest.mark.parametrize("makeflags, expected", [
    pytest.param("", [], id="none"),
    pytest.param("s", [], id="flags-only"),
    pytest.param(" -- target=local jobs=4", ["target=local", "jobs=4"], id="simple"),
    pytest.param("s -- a=x\\ y b=$$HOME; c=it's\\ \"q\" d=back\\\\slash e=",
                 ["a=x y", "b=$HOME;", "c=it's \"q\"", "d=back\\slash", "e="], id="escapes"),
])
def test_make_command_line_variables_parses_makeflags(makeflags, expected):
    assert shell.make_command_line_variables({"MAKEFLAGS": makeflags}) == expected


def test_make_command_line_variables_round_trip_through_real_make(project, make):
    project.write("project.mk", "show:\n\t@$(PYTHON) -c 'import json,os,sys; sys.path.insert(0, \"src\"); "
                  "from toolbox.devtools.shell import make_command_line_variables as f; print(json.dumps(f()))'\n")
    values = ["x y", "$$HOME;", "it's \"q\"", "back\\slash", ""]
    result = make("show", *[f"v{i}={v}" for i, v in enumerate(values)])
    import json

    got = dict(item.split("=", 1) for item in json.loads(result.stdout))
    assert [got[f"v{i}"] for i in range(len(values))] == values


@pytest.mark.parametrize("target, existing, expected", [
    ("local", set(), "local"),
    ("local", {"local"}, "local-2"),
    ("local", {"local", "local-2"}, "local-3"),
    ("data.txt", set(), "data-txt"),
    ("a:b", set(), "a-b"),
])
def test_tmux_session_names(target, existing, expected):
    assert shell.tmux_session_name(target, existing) == expected


# -- make create_environment / test_environment -------------------------------------------------------
def test_create_environment_with_requirements_makes_dot_venv_before_any_env_exists(project, make, wheelhouse):
    project.write("requirements.txt", "tinypkg==1.0\n")
    project.write("environment.yml", "name: demo\ndependencies:\n  - python=3.11\n")
    conda = environment.find_conda()
    result = make("create_environment", env=offline_env(wheelhouse), timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    python = project.path / ".venv" / "bin" / "python"
    if conda:  # environment.yml went to conda: nothing more to check here
        return
    assert "conda is not installed: environment.yml is left to the image; creating ./.venv instead" in result.stdout
    probe = subprocess.run([str(python), "-c", "import tinypkg_stub; print(tinypkg_stub.VALUE)"],
                           capture_output=True, text=True)
    assert probe.stdout.strip() == "tiny"
    assert environment.missing_in(str(python), environment.toolbox_requirements()) == []
    assert "installed the toolbox's requirements" in result.stdout and "add them to requirements.txt" in result.stdout
    # a second run reuses .venv and has nothing to add
    again = make("create_environment", env=offline_env(wheelhouse), timeout=300)
    assert again.returncode == 0 and "(exists: reused)" in again.stdout and "already installed" in again.stdout


@needs_uv
def test_create_environment_with_uv_lock_syncs_dot_venv(project, make, wheelhouse):
    project.write("pyproject.toml", '[project]\nname = "demo"\nversion = "0.1.0"\nrequires-python = ">=3.9"\n'
                  'dependencies = ["tinypkg"]\n')
    subprocess.run([UV, "lock"], cwd=project.path, env={**os.environ, **offline_env(wheelhouse)}, check=True,
                   capture_output=True)
    result = make("create_environment", env=offline_env(wheelhouse, PATH=f"{Path(UV).parent}:{os.environ['PATH']}"),
                  timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "uv sync --locked" in result.stdout
    python = project.path / ".venv" / "bin" / "python"
    probe = subprocess.run([str(python), "-c", "import tinypkg_stub"], capture_output=True)
    assert probe.returncode == 0
    assert environment.missing_in(str(python), environment.toolbox_requirements()) == []
    assert "uv add" in result.stdout  # told to put the toolbox's requirements into pyproject.toml


@pytest.mark.skipif(environment.find_conda() is not None, reason="conda is installed here")
def test_create_environment_needs_conda_for_environment_yml_alone(project, make):
    project.write("environment.yml", "name: demo\ndependencies:\n  - python=3.11\n")
    result = make("create_environment")
    assert result.returncode != 0
    assert "error: environment.yml: conda is not installed" in result.stderr
    assert "hint: install Miniforge" in result.stderr and "Traceback" not in result.stderr


@pytest.mark.skipif(shutil.which("poetry") is not None, reason="poetry is installed here")
def test_create_environment_needs_poetry_for_poetry_lock(project, make):
    project.write("pyproject.toml", "[tool.poetry]\nname = 'demo'\n")
    project.write("poetry.lock", "")
    result = make("create_environment")
    assert result.returncode != 0
    assert "error: poetry: not installed, but the project uses poetry" in result.stderr
    assert not (project.path / ".venv").exists()  # checked before anything was created


def test_create_environment_without_any_description(project, make):
    result = make("create_environment")
    assert result.returncode != 0
    assert "error: create_environment: nothing describes the project environment" in result.stderr


@pytest.mark.parametrize("files, tool", [
    ({"uv.lock": True, "poetry.lock": True, "requirements.txt": True}, "uv"),
    ({"poetry.lock": True, "requirements.txt": True}, "poetry"),
    ({"poetry-pyproject": True, "pyproject.toml": True}, "poetry"),
    ({"requirements.txt": True, "pyproject.toml": True}, "pip-requirements"),
    ({"pyproject.toml": True}, "pip-project"),
    ({"environment.yml": True}, None),
])
def test_dependency_tool_order(files, tool):
    base = dict.fromkeys(["environment.yml", "uv.lock", "poetry.lock", "requirements.txt", "pyproject.toml",
                          "poetry-pyproject"], False)
    assert environment.dependency_tool({**base, **files}) == tool


def test_missing_requirements_compares_versions():
    import importlib.metadata

    pytest_version = importlib.metadata.version("pytest")
    major = int(pytest_version.split(".")[0])
    missing = environment.missing_requirements([
        "pytest>=1", f"pytest<{major}", f"pytest>={major},<{major + 1}", "surely-not-a-package-xyz",
        "PyYAML>=999", "pyyaml[extra]>=1", "pytest==1.0", "tomli>=1; python_version < '3.11'"])
    assert missing == [f"pytest<{major}", "surely-not-a-package-xyz", "PyYAML>=999", "pytest==1.0"]


def test_missing_requirements_follows_pep_440_and_markers():
    import importlib.metadata

    major = int(importlib.metadata.version("pytest").split(".")[0])
    missing = environment.missing_requirements([
        f"pytest~={major}.0",            # >= major.0, < major+1
        f"pytest~={major - 1}.0",        # >= major-1.0, < major: the installed major is too new
        f"pytest>={major}.0.0rc1",       # pre-releases order before the release
        f"pytest=={major}.*",
        "surely-not-a-package-xyz; python_version >= '3'",  # a marker that holds: checked
        "surely-not-a-package-abc; python_version < '3'",   # a marker that does not: skipped
    ])
    assert missing == [f"pytest~={major - 1}.0", "surely-not-a-package-xyz; python_version >= '3'"]


def test_without_packaging_every_requirement_counts_as_missing(monkeypatch):
    """An environment made before the toolbox needed `packaging` cannot verify versions: everything is
    reinstalled (pip skips what is there) rather than only part of it."""
    monkeypatch.setitem(sys.modules, "packaging.requirements", None)
    assert environment.missing_requirements(["pytest>=1", "pyyaml"]) == ["pytest>=1", "pyyaml"]


def test_missing_in_checks_another_interpreter_by_its_facts(linked_venv, tmp_path):
    """A venv with its own (older) copy of a package and another python: its versions and markers count."""
    site = subprocess.run([str(linked_venv), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                          capture_output=True, text=True, check=True).stdout.strip()
    stub_wheel(tmp_path, "tinypkg", "1.4.2")
    with zipfile.ZipFile(tmp_path / "tinypkg-1.4.2-py3-none-any.whl") as wheel:
        wheel.extractall(site)
    facts = environment._installed_in(str(linked_venv), ["tinypkg"])
    assert facts["versions"] == {"tinypkg": "1.4.2"}
    assert facts["markers"]["python_version"] == ".".join(map(str, sys.version_info[:2]))
    assert environment.missing_in(str(linked_venv), ["tinypkg~=1.4", "tinypkg~=1.5", "tinypkg>=1,!=1.4.2"]) == [
        "tinypkg~=1.5", "tinypkg>=1,!=1.4.2"]


def test_test_environment_checks_requirements_txt_and_leaves_no_files(project, make, linked_venv, wheelhouse):
    project.write("requirements.txt", "tinypkg==1.0\n")
    before = listing(project.path)
    failing = make("test_environment", env={"PYTHON": str(linked_venv)})
    assert failing.returncode != 0
    assert re.search(r"requirements\.txt\s+FAILED", failing.stdout), failing.stdout
    assert "error: test_environment: 1 of" in failing.stderr
    subprocess.run([str(linked_venv), "-m", "pip", "install", "-q", "tinypkg"], check=True,
                   env={**os.environ, **offline_env(wheelhouse)})
    passing = make("test_environment", env={"PYTHON": str(linked_venv)})
    assert passing.returncode == 0, passing.stdout + passing.stderr
    assert re.search(r"requirements\.txt\s+ok\s+satisfied", passing.stdout)
    assert re.search(r"toolbox requirements\s+ok", passing.stdout)
    assert f"python: {linked_venv}" in passing.stdout
    assert listing(project.path) == before


@needs_uv
def test_test_environment_checks_uv_lock(project, make, linked_venv, wheelhouse):
    project.write("pyproject.toml", '[project]\nname = "demo"\nversion = "0.1.0"\nrequires-python = ">=3.9"\n'
                  'dependencies = ["tinypkg"]\n')
    env = offline_env(wheelhouse, PATH=f"{Path(UV).parent}:{os.environ['PATH']}", PYTHON=str(linked_venv))
    subprocess.run([UV, "lock"], cwd=project.path, env={**os.environ, **env}, check=True, capture_output=True)
    before = listing(project.path)
    failing = make("test_environment", env=env)
    assert failing.returncode != 0
    assert re.search(r"uv sync --check .*FAILED", failing.stdout), failing.stdout
    assert re.search(r"uv lock --check .*ok", failing.stdout)
    subprocess.run([UV, "pip", "install", "--python", str(linked_venv), "tinypkg"], check=True,
                   env={**os.environ, **env}, capture_output=True)
    passing = make("test_environment", env=env)
    assert passing.returncode == 0, passing.stdout + passing.stderr
    assert listing(project.path) == before


# -- make lint ----------------------------------------------------------------------------------------
@pytest.mark.skipif(shell.find_linter() is None, reason="neither ruff nor flake8 is installed")
def test_lint_reports_problems_in_src_but_not_in_the_toolbox(project, make):
    project.write("src/good.py", "VALUE = 1\n")
    project.write("src/bad.py", "import os\n\nX = '" + "x" * 130 + "'\n")
    result = make("lint")
    assert result.returncode != 0
    out = result.stdout + result.stderr
    assert "bad.py" in out and "E501" in out and "F401" in out
    assert "good.py" not in out and "src/toolbox" not in out.replace("--extend-exclude src/toolbox", "")
    (project.path / "src" / "bad.py").write_text("X = 1\n")
    clean = make("lint")
    assert clean.returncode == 0, clean.stdout + clean.stderr
    assert "lint: no problems" in clean.stdout


def test_find_linter_none_when_nothing_is_installed(tmp_path):
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(tmp_path / "bare")], check=True)
    assert shell.find_linter(python=str(tmp_path / "bare" / "bin" / "python"), search_path=str(tmp_path)) is None


def test_lint_command_respects_a_projects_own_config(project):
    assert shell.lint_command("ruff", ["ruff"], ["src"]) == [
        "ruff", "check", "--line-length", "120", "--extend-select", "E501", "--extend-exclude", "src/toolbox", "src"]
    project.write("pyproject.toml", "[tool.ruff]\nline-length = 100\n")
    assert shell.lint_command("ruff", ["ruff"], ["src"]) == [
        "ruff", "check", "--extend-exclude", "src/toolbox", "src"]
    assert shell.lint_command("flake8", ["flake8"], ["src"])[:3] == ["flake8", "--max-line-length", "120"]


# -- make clean ---------------------------------------------------------------------------------------
def test_clean_removes_caches_and_build_but_nothing_else(project, make, tmp_path):
    p = project.path
    outside = tmp_path / "outside"
    (outside / "__pycache__").mkdir(parents=True)
    (outside / "__pycache__" / "keep.pyc").write_text("x")
    (outside / "data.pyc").write_text("x")
    files = {
        "src/pkg/__pycache__/mod.cpython-311.pyc": True, "src/stray.pyc": True, "src/old.pyo": True,
        ".pytest_cache/v/x": True, "build/job.yaml": True, "build/sub/x.sh": True,
        "src/pkg/mod.py": False, "data/results.pyc.txt": False, "notes/__pycache__.md": False,
        ".venv/lib/__pycache__/site.pyc": False, ".venv/pyvenv.cfg": False, ".git/objects/x.pyc": False,
    }
    for rel in files:
        project.write(rel, "x")
    os.symlink(outside, p / "src" / "linked")
    toolbox_caches_before = sorted(str(x) for x in TOOLBOX.rglob("*.pyc"))
    result = make("clean")
    assert result.returncode == 0, result.stderr
    for rel, removed in files.items():
        assert (p / rel).exists() != removed, rel
    assert not (p / "build").exists() and not (p / "src" / "pkg" / "__pycache__").exists()
    assert (outside / "__pycache__" / "keep.pyc").exists() and (outside / "data.pyc").exists()
    assert (p / "src" / "linked").is_symlink()
    assert sorted(str(x) for x in TOOLBOX.rglob("*.pyc")) == toolbox_caches_before  # symlink not followed
    assert "removed 2 cache folders, 2 stray .pyc files, build/" in result.stdout


def test_clean_leaves_a_symlinked_build_folder_alone(project, make, tmp_path):
    target = tmp_path / "big-disk"
    target.mkdir()
    (target / "manifest.yaml").write_text("x")
    os.symlink(target, project.path / "build")
    result = make("clean")
    assert result.returncode == 0
    assert (target / "manifest.yaml").exists() and (project.path / "build").is_symlink()
    assert "build is a symbolic link: left alone" in result.stdout


def _files(**present):
    base = dict.fromkeys(["environment.yml", "uv.lock", "poetry.lock", "requirements.txt", "pyproject.toml",
                          "poetry-pyproject"], False)
    return {**base, **{k.replace("_", "."): v for k, v in present.items()}}


def test_conda_plan_names_the_env_after_kube_yaml(project):
    """The conda path as far as a machine without conda allows: the plan (nothing runs)."""
    files = {**_files(environment_yml=True, requirements_txt=True)}
    plan = environment.EnvironmentPlan(files, "/opt/conda/bin/conda")
    assert plan.kind == "conda" and plan.conda_name == "demo"  # project_name of kube.yaml
    assert [text for text, _ in plan.steps()] == [
        "conda env create/update --name demo --file environment.yml",
        "pip install --requirement requirements.txt into the conda env demo",
        "the toolbox's own requirements, if missing"]
    project.kube_yaml("project_name: demo\nuser: alice\nnamespace: ns\nconda_env_name: research\n")
    assert environment.EnvironmentPlan(files, "/opt/conda/bin/conda").conda_name == "research"
    alone = environment.EnvironmentPlan(_files(environment_yml=True), "/opt/conda/bin/conda")
    assert [text for text, _ in alone.steps()][1:] == ["the toolbox's own requirements, if missing"]


def test_venv_plans(project):
    plan = environment.EnvironmentPlan(_files(requirements_txt=True), None)
    assert (plan.kind, plan.prefix) == ("venv", str(project.path / ".venv"))
    assert [text for text, _ in plan.steps()][:2] == ["python -m venv .venv",
                                                    "pip install --requirement requirements.txt into ./.venv"]
    project.write("pyproject.toml", "[tool.ruff]\nline-length = 100\n")  # tool settings only: nothing to install
    assert environment.project_files()["pyproject.toml"] is False
