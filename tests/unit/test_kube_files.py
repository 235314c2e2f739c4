"""What `file:` may ship (ConfigMaps, build/, make copy): every path resolved through symbolic links before
it is checked, nothing read before its size and kind are known, one-line errors at the `file:` entry."""
import os
import signal
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from kube_helpers import LAUNCH

ROOT = Path(__file__).resolve().parents[2]
SECRET = "dotenv-Secret-Value-77"


@pytest.fixture
def shipping(project):
    """A project with a .env holding a secret and a `file:` list set by the test (kube.yaml line 4)."""
    project.env(f"API_KEY={SECRET}\n")
    project.launch_yaml(LAUNCH)

    def ship(*entries):
        listed = "\n".join(f"  - {e!r}" for e in entries)
        project.kube_yaml(f"project_name: demo\nuser: alice\nnamespace: ns\nfile:\n{listed}\n")
    return ship


def build_text(project):
    build = project.path / "build"
    if not build.is_dir():
        return ""
    return "".join(p.read_text(errors="replace") for p in build.rglob("*") if p.is_file())


@pytest.fixture
def no_hang():
    """A read that blocks (a FIFO) fails the test instead of hanging the suite."""
    def expired(*_):
        raise TimeoutError("collecting the file: list blocked")
    previous = signal.signal(signal.SIGALRM, expired)
    signal.alarm(60)
    yield
    signal.alarm(0)
    signal.signal(signal.SIGALRM, previous)


# -- symbolic links --------------------------------------------------------------------------------------------
def test_a_link_to_dotenv_inside_a_listed_folder_is_refused(shipping, project, cli):
    project.write("configs/a.yaml", "x: 1\n")
    os.symlink("../.env", project.path / "configs" / "env.txt")
    shipping("configs")
    result = cli("dryrun")
    assert result.code == 2, result
    assert "error: config/kube.yaml:5:5: file[0]: 'configs/env.txt' is a link to .env" in result.err
    assert SECRET not in build_text(project) + result.out + result.err


def test_a_listed_link_to_dotenv_is_refused(shipping, project, cli):
    os.symlink(".env", project.path / "settings.txt")
    shipping("ok.txt", "settings.txt")
    project.write("ok.txt", "fine\n")
    result = cli("dryrun")
    assert result.code == 2 and "config/kube.yaml:6:5: file[1]: 'settings.txt' is a link to .env" in result.err
    assert SECRET not in build_text(project)


def test_links_leading_outside_the_project_are_refused(shipping, project, cli, tmp_path):
    other = tmp_path / "other-project"
    other.mkdir()
    (other / "creds.txt").write_text("other-Project-Secret-5\n")
    (other / "conf").mkdir()
    (other / "conf" / "c.yaml").write_text("other-Project-Secret-5\n")
    project.write("configs/a.yaml", "x: 1\n")
    os.symlink(other / "creds.txt", project.path / "configs" / "creds.txt")
    os.symlink(other / "conf", project.path / "shared-conf")
    shipping("configs", "shared-conf")
    result = cli("dryrun")
    assert result.code == 2, result
    assert f"file[0]: 'configs/creds.txt' leads outside the project (to {other / 'creds.txt'})" in result.err
    assert f"file[1]: 'shared-conf' leads outside the project (to {other / 'conf'})" in result.err
    assert "other-Project-Secret-5" not in build_text(project)


def test_a_folder_link_inside_the_project_is_followed_once(shipping, project, cli):
    project.write("data/small/a.txt", "a\n")
    project.write("configs/b.txt", "b\n")
    os.symlink("../data/small", project.path / "configs" / "small")
    os.symlink("..", project.path / "configs" / "up")            # a loop back to the project root
    shipping("configs")
    result = cli("dryrun")
    assert result.code == 2, result
    assert "'configs/up' is a link to a folder that contains it (a loop)" in result.err
    os.remove(project.path / "configs" / "up")
    result = cli("dryrun")
    assert result.code == 0, result
    text = build_text(project)
    assert "configs/small/a.txt" in text and "configs/b.txt" in text


@pytest.mark.parametrize("make_link, message", [
    pytest.param(lambda d: os.symlink("missing.txt", d / "dangling"), "'configs/dangling' is a symbolic link to "
                 "missing.txt, which does not exist", id="dangling"),
    pytest.param(lambda d: os.symlink("self", d / "self"), "'configs/self' is a symbolic link that loops", id="self-loop"),
])
def test_broken_links_are_one_line_errors(shipping, project, cli, make_link, message):
    project.write("configs/a.txt", "a\n")
    make_link(project.path / "configs")
    shipping("configs")
    result = cli("dryrun")
    assert result.code == 2 and message in result.err, result
    assert "Traceback" not in result.err


def test_credentials_in_a_folder_are_left_out_unless_named(shipping, project, cli):
    project.write("deploy/app.yaml", "x: 1\n")
    project.write("deploy/.env.production", "PROD_KEY=prod-Secret-31\n")
    project.write("deploy/.envrc", "export K=envrc-Secret-32\n")
    project.write("deploy/.aws/credentials", "aws_secret_access_key=aws-Secret-33\n")
    shipping("deploy")
    result = cli("dryrun")
    assert result.code == 0, result
    text = build_text(project)
    assert "deploy/app.yaml" in text
    for leaked in ("prod-Secret-31", "envrc-Secret-32", "aws-Secret-33"):
        assert leaked not in text
    assert ("warning: file: not shipped (credentials; name them in file: to ship them): deploy/.aws/, "
            "deploy/.env.production, deploy/.envrc") in result.err
    shipping("deploy", "deploy/.envrc")
    result = cli("dryrun")
    assert result.code == 0 and "envrc-Secret-32" in build_text(project)


# -- special and huge files ------------------------------------------------------------------------------------
def test_a_fifo_is_refused_without_blocking(shipping, project, cli, no_hang):
    project.write("configs/a.txt", "a\n")
    os.mkfifo(project.path / "configs" / "pipe")
    shipping("configs")
    result = cli("dryrun")
    assert result.code == 2 and "'configs/pipe' is a FIFO (named pipe), not a file: only regular files are shipped" in result.err


def test_a_socket_is_refused(shipping, project, cli):
    project.write("configs/a.txt", "a\n")
    with socket.socket(socket.AF_UNIX) as sock:
        sock.bind(str(project.path / "configs" / "sock"))
        shipping("configs")
        result = cli("dryrun")
    assert result.code == 2 and "'configs/sock' is a socket, not a file: only regular files are shipped" in result.err


def test_a_link_to_a_device_is_refused(shipping, project, cli, no_hang):
    os.symlink("/dev/zero", project.path / "zero")
    shipping("zero")
    result = cli("dryrun")
    assert result.code == 2 and "'zero' leads outside the project (to /dev/zero)" in result.err
    assert "Traceback" not in result.err


def test_a_device_node_is_refused(shipping, project, cli, no_hang):
    try:
        os.mknod(project.path / "null", 0o600 | 0o020000, os.makedev(1, 3))
    except PermissionError:
        pytest.skip("creating a device node needs root")
    shipping("null")
    result = cli("dryrun")
    assert result.code == 2 and "'null' is a character device, not a file: only regular files are shipped" in result.err


def test_a_huge_sparse_file_is_refused_before_it_is_read(project, tmp_path):
    """Measured in a child process: its peak memory stays small (the whole file was read before)."""
    if not os.path.exists("/proc/self/status"):
        pytest.skip("needs /proc (Linux) to read the peak memory")
    project.write("small.txt", "x\n")
    with open(project.path / "huge.bin", "wb") as handle:
        handle.truncate(64 * 1024 * 1024)     # sparse: no disk used, 64 MiB of zeros when read
    script = textwrap.dedent(f"""
        import importlib.util as u, sys
        s = u.spec_from_file_location('b', {str(ROOT / 'launch.py')!r}); m = u.module_from_spec(s)
        s.loader.exec_module(m); m._register_toolbox_package()
        from toolbox.kube import objects
        settings = {{"user": "alice", "project_name": "demo", "namespace": "ns"}}
        fileset, problems = objects.collect_files(["small.txt", "huge.bin"], settings, ".")
        print(problems[0].what if problems else "no problem")
        # VmHWM: this process's own peak (ru_maxrss would include the parent's, inherited through exec)
        print(next(int(l.split()[1]) for l in open("/proc/self/status") if l.startswith("VmHWM:")) // 1024)
    """)
    done = subprocess.run([sys.executable, "-c", script], cwd=project.path, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    message, peak_mib = done.stdout.splitlines()[-2:]
    assert message.startswith("the files to ship take 64.0 MiB but a ConfigMap holds at most 1008 KiB"), message
    assert int(peak_mib) < 60, f"peak memory {peak_mib} MiB: the file was read"


def test_the_size_message_lists_the_biggest_files(shipping, project, cli):
    (project.path / "big.bin").write_bytes(os.urandom(700 * 1024))
    (project.path / "mid.bin").write_bytes(os.urandom(400 * 1024))
    shipping("big.bin", "mid.bin")
    result = cli("dryrun")
    assert result.code == 2, result
    assert "largest: big.bin (700 KiB), mid.bin (400 KiB)" in result.err

