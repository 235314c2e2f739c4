"""The start-up script, run for real with bash in a simulated pod (a git checkout as WORKDIR, a fake conda,
the ConfigMap folder), and linted with shellcheck in every variant."""
import base64
import json
import os
import stat
import subprocess

import pytest

from kube_helpers import env_of, load, main_container, render_cells, startup_of

try:
    from lint_helpers import lint_shell
except ImportError:  # pragma: no cover - the image engineer's helper is not there yet
    def lint_shell(text):
        import sys
        binary = os.path.join(os.path.dirname(sys.executable), "shellcheck")
        done = subprocess.run([binary, "-s", "bash", "-f", "gcc", "-"], input=text, text=True, capture_output=True)
        return [line for line in done.stdout.splitlines() if line.strip()]

GIT_ENV = {"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@x", "GIT_COMMITTER_NAME": "t",
           "GIT_COMMITTER_EMAIL": "t@x", "GIT_CONFIG_GLOBAL": os.devnull, "GIT_CONFIG_NOSYSTEM": "1"}
FAKE_CONDA = """\
conda() {
  if [ "$1" = activate ]; then export CONDA_DEFAULT_ENV="$2"; export PATH="/fake/envs/$2/bin:$PATH"; fi
}
"""


def git(*args, cwd):
    subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True, env={**os.environ, **GIT_ENV})


@pytest.fixture
def pod_dir(tmp_path):
    """A 'pod': the image's WORKDIR is a clone of origin; origin then gets a commit the pod must pull."""
    origin, work, other = tmp_path / "origin.git", tmp_path / "workdir", tmp_path / "other"
    git("init", "--bare", "-b", "main", str(origin), cwd=tmp_path)
    git("clone", str(origin), str(other), cwd=tmp_path)
    (other / "src").mkdir()
    (other / "src" / "mod.py").write_text("X = 'imported from src'\n")
    git("add", ".", cwd=other)
    git("commit", "-m", "one", cwd=other)
    git("push", "origin", "HEAD:main", cwd=other)
    git("clone", str(origin), str(work), cwd=tmp_path)
    (other / "pulled.txt").write_text("new\n")
    git("add", ".", cwd=other)
    git("commit", "-m", "two", cwd=other)
    git("push", "origin", "HEAD:main", cwd=other)
    conda = tmp_path / "conda"
    (conda / "etc" / "profile.d").mkdir(parents=True)
    (conda / "etc" / "profile.d" / "conda.sh").write_text(FAKE_CONDA)
    home = tmp_path / "home"
    home.mkdir()
    return {"work": work, "conda": conda, "home": home, "files": tmp_path / "cm"}


def run_pod(manifest, pod_dir, configmap=None):
    """Run the main container's command as the kubelet would: env from the manifest, cwd = WORKDIR."""
    container = main_container(manifest)
    env = {"PATH": os.environ["PATH"], "HOME": str(pod_dir["home"]), **GIT_ENV}
    env.update({k: v for k, v in env_of(container).items() if isinstance(v, str)})
    script = container["command"][2]
    if configmap:  # the ConfigMap volume, at a temp folder instead of /etc/toolbox/files
        folder = pod_dir["files"]
        folder.mkdir(exist_ok=True)
        for key, text in (configmap.get("data") or {}).items():
            (folder / key).write_bytes(text.encode())
        for key, data in (configmap.get("binaryData") or {}).items():
            (folder / key).write_bytes(base64.b64decode(data))
        script = script.replace("/etc/toolbox/files", str(folder))
    command = container["command"][:2] + [script] + container["command"][3:]
    return subprocess.run(command, cwd=pod_dir["work"], env=env, capture_output=True, text=True, timeout=60)


def test_pod_pulls_activates_copies_and_runs_the_command(project, pod_dir):
    project.write("conf/run.yaml", "lr: 0.1\n")
    (project.path / "tool.sh").write_text("#!/bin/sh\necho tool\n")
    os.chmod(project.path / "tool.sh", 0o755)
    (project.path / "weights.bin").write_bytes(b"\x00\x01\xff")
    project.kube_yaml(f"project_name: demo\nuser: alice\nnamespace: ns\nconda_home: {pod_dir['conda']}\n"
                      "file: [conf, tool.sh, weights.bin]\nextra_startup_script: echo extra-ran\n")
    project.launch_yaml("""\
        model:
          m:
            command: |
              echo "cell=$TOOLBOX_CELL_NAME env=$CONDA_DEFAULT_ENV cmd=${TOOLBOX_COMMAND:-unset}"
              python3 -c "import mod; print(mod.X)"
              test -f pulled.txt && echo pulled
              cat conf/run.yaml; ./tool.sh
              exit 3
    """)
    cells, renderer, texts = render_cells()
    manifest = load(texts[0])
    done = run_pod(manifest, pod_dir, renderer.configmaps()[0])
    assert done.returncode == 3, done.stderr  # the command's exit code is the container's
    lines = done.stdout.splitlines()  # git pull's own output comes first
    assert lines[-6:] == ["extra-ran", f"cell={cells[0].name} env=demo cmd=unset", "imported from src", "pulled",
                          "lr: 0.1", "tool"]
    assert (pod_dir["work"] / "weights.bin").read_bytes() == b"\x00\x01\xff"
    assert stat.S_IMODE(os.stat(pod_dir["work"] / "tool.sh").st_mode) == 0o755
    assert (pod_dir["home"] / ".bashrc").read_text().count("conda activate demo") == 1


def test_extra_startup_script_runs_before_the_command(project, pod_dir):
    project.kube_yaml(f"project_name: demo\nuser: alice\nnamespace: ns\nconda_home: {pod_dir['conda']}\n"
                      "extra_startup_script: export FROM_EXTRA=yes\n")
    project.launch_yaml("model:\n  m:\n    command: echo extra=$FROM_EXTRA\n")
    done = run_pod(load(render_cells()[2][0]), pod_dir)
    assert done.returncode == 0 and done.stdout == "extra=yes\n", done.stderr


def test_without_conda_or_git_the_pod_still_runs(project, pod_dir, tmp_path):
    project.kube_yaml("project_name: demo\nuser: alice\nnamespace: ns\nconda_home: /nonexistent\n")
    project.launch_yaml("model:\n  m:\n    command: echo ran; echo $PYTHONPATH\n")
    pod_dir["work"] = tmp_path / "plain"
    pod_dir["work"].mkdir()
    done = run_pod(load(render_cells()[2][0]), pod_dir)
    assert done.returncode == 0
    assert done.stdout.splitlines() == ["ran", f"{pod_dir['work']}/src"]
    assert "no conda at /nonexistent" in done.stderr and "not a git checkout" in done.stderr


def test_command_runs_exactly_as_locally(project, pod_dir, cli):
    """The same multi-line command gives the same output in the 'pod' and with `make local`."""
    command = 'set -e\nprintf "%s|" "$TOOLBOX_CELL_NAME" a\\ b "c  d"\necho\necho $((6 * 7))\n'
    project.kube_yaml(f"project_name: demo\nuser: alice\nnamespace: ns\nconda_home: {pod_dir['conda']}\n")
    project.launch_yaml("model:\n  m:\n    command: |\n" + "".join(f"      {line}\n" for line in command.splitlines()))
    pod = run_pod(load(render_cells()[2][0]), pod_dir)
    local = cli("local")
    assert pod.returncode == 0 and local.code == 0
    assert pod.stdout in local.out


@pytest.mark.parametrize("extra", [
    pytest.param("", id="default"),
    pytest.param("git_pull: false\nconda_env_name: base\n", id="no-pull"),
    pytest.param("file: [a.txt, 'dir with space']\nextra_startup_script: echo \"$HOME\"\n", id="files-extra"),
    pytest.param("startup_script: |\n  echo custom\n  cd \"$TOOLBOX_ROOT\" || exit 1\n", id="custom"),
    pytest.param("conda_home: \"/opt/my conda's home\"\nconda_env_name: \"odd env\"\n", id="quoting"),
])
def test_rendered_startup_scripts_pass_shellcheck(project, extra):
    project.write("a.txt", "x")
    project.write("dir with space/it's.txt", "y")
    project.kube_yaml("project_name: demo\nuser: alice\nnamespace: ns\n" + extra)
    project.launch_yaml("model:\n  m:\n    command: echo hi\n")
    script = startup_of(load(render_cells()[2][0]))
    assert lint_shell(script) == []


# -- shared-GPU packs ---------------------------------------------------------------------------------------
SHARED_LAUNCH = """\
    model:
      small:
        shared: 0.5
        command: echo "$TOOLBOX_CELL_NAME says <x>"; test <x> != bad
        hparam:
          x: [a, b, bad, c, d]
      big:
        command: echo big
"""


def test_shared_cells_are_packed_with_summed_resources(project):
    from toolbox.kube import packing as kubeshared
    from kube_helpers import validate
    from toolbox.core.config import load_config
    from toolbox.core.grid import expand

    project.kube_yaml("project_name: a-rather-long-project-name\nuser: alice\nnamespace: ns\nmemory: 16\n")
    project.launch_yaml(SHARED_LAUNCH)
    cells = expand(load_config(".")).cells
    singles, packs = kubeshared.pack(cells)
    assert [c.model for c in singles] == ["big"]
    assert [len(members) for _, members in packs] == [2, 2, 1]
    from toolbox import kubeutils
    renderer = kubeutils.Renderer(".", {}, "sweep")
    for name, members in packs:
        assert len(name) <= 63 and name.startswith("alice-a-rather-long-project-name-shared-")
        job = validate(load(renderer.pack_manifest(name, members)))
        container = main_container(job)
        assert container["resources"]["requests"]["memory"] == f"{16 * len(members)}G"
        assert container["resources"]["requests"]["cpu"] == str(5 * len(members))
        env = env_of(container)
        assert [env[f"TOOLBOX_MEMBER_{i}_NAME"] for i in range(len(members))] == [c.name for c in members]
        assert json.loads(job["metadata"]["annotations"]["toolbox/members"]) == [c.name for c in members]
        assert lint_shell(container["command"][2]) == []
    renderer.check()


def test_pack_runs_members_side_by_side_and_fails_if_one_fails(project, pod_dir):
    from toolbox.kube import packing as kubeshared
    from toolbox import kubeutils
    from toolbox.core.config import load_config
    from toolbox.core.grid import expand

    project.kube_yaml(f"project_name: demo\nuser: alice\nnamespace: ns\nconda_home: {pod_dir['conda']}\n")
    project.launch_yaml(SHARED_LAUNCH)
    _, packs = kubeshared.pack(expand(load_config(".")).cells)
    renderer = kubeutils.Renderer(".", {}, "sweep")
    (first, members_ok), (second, members_bad) = packs[0], packs[1]
    done = run_pod(load(renderer.pack_manifest(first, members_ok)), pod_dir)
    assert done.returncode == 0, done.stderr
    for cell in members_ok:
        assert f"[{cell.name}] {cell.name} says" in done.stdout
    failed = run_pod(load(renderer.pack_manifest(second, members_bad)), pod_dir)
    assert failed.returncode == 1  # the member with x=bad failed: the whole job fails
    assert all(f"[{c.name}] {c.name} says" in failed.stdout for c in members_bad)
