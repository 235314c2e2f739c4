"""What every bench script needs: a temporary project laid out like a user's (the toolbox as its
src/toolbox submodule), and the peak memory of one command."""
import os
import subprocess
import sys
from pathlib import Path

TOOLBOX = Path(__file__).resolve().parent.parent


def make_project(path, launch, user="alice", env_text=None):
    """A project at `path`: src/toolbox links to this checkout; config/kube.yaml names `user`; launch.yaml
    is `launch`; `.env` holds env_text when given."""
    path = Path(path)
    (path / "src").mkdir(parents=True)
    (path / "config").mkdir()
    os.symlink(TOOLBOX, path / "src" / "toolbox")
    os.symlink("src/toolbox/Makefile", path / "Makefile")
    os.symlink("src/toolbox/launch.py", path / "launch.py")
    (path / "config" / "kube.yaml").write_text(f"project_name: bench\nuser: {user}\nnamespace: ns\n")
    (path / "config" / "launch.yaml").write_text(launch)
    if env_text is not None:
        (path / ".env").write_text(env_text)
    return path


# Run in a fresh Python parent, so that RUSAGE_CHILDREN's maximum is this command's process tree alone.
_PROBE = ("import resource, subprocess, sys, time; t = time.perf_counter(); "
          "done = subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE); "
          "sys.stderr.buffer.write(done.stderr[-2000:]); "
          "print(done.returncode, time.perf_counter() - t, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)")


def peak_rss(command, cwd, env=None):
    """(wall seconds, peak RSS in MiB) of `command` and its children; exits when the command fails."""
    out = subprocess.run([sys.executable, "-c", _PROBE, *command], cwd=cwd, env=env, capture_output=True,
                         text=True, check=True)
    code, seconds, kib = out.stdout.split()
    if code != "0":
        sys.exit(f"{' '.join(command)} failed ({code}):\n{out.stderr}")
    return float(seconds), int(kib) / 1024
