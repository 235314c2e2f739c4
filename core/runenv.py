"""The environment the project's commands run in: the interpreter the Makefile chose, activated, and
`src` first on PYTHONPATH — the same things the start-up script's `conda activate` does in a pod.

`python` in a cell's command is then the toolbox's own interpreter, whatever PATH says: its virtualenv or
conda env is activated as its activate script would (bin folder first on PATH, VIRTUAL_ENV or
CONDA_PREFIX set); a plain interpreter (e.g. /usr/bin/python3 on a machine without a `python` command)
gets a private folder holding only `python` and `python3` links to it, so no other command changes.
"""
import hashlib
import os
import sys
import tempfile

PYTHON_NAMES = ("python", "python3")


class Interpreter:
    """Where an interpreter lives: its executable, its prefix, and what kind of environment that is."""

    def __init__(self, executable=None, prefix=None, base_prefix=None):
        self.executable = executable or sys.executable
        self.prefix = prefix or sys.prefix
        base_prefix = base_prefix or getattr(sys, "base_prefix", self.prefix)
        if self.prefix != base_prefix:
            self.kind = "venv"
        elif os.path.isdir(os.path.join(self.prefix, "conda-meta")):
            self.kind = "conda"
        else:
            self.kind = "plain"

    @property
    def bin_dir(self):
        """The folder an activate script puts first on PATH."""
        candidate = os.path.join(self.prefix, "bin")
        if self.kind != "plain" and os.path.isfile(os.path.join(candidate, "python")):
            return candidate
        return os.path.dirname(self.executable)


def with_src_on_pythonpath(env, root="."):
    """`<root>/src` first on PYTHONPATH (the project's code imports as in a pod)."""
    src = os.path.abspath(os.path.join(root, "src"))
    old = env.get("PYTHONPATH")
    env["PYTHONPATH"] = src + (os.pathsep + old if old else "")
    return env


def _prepend_path(env, folder):
    parts = [p for p in env.get("PATH", "").split(os.pathsep) if p]
    if not parts or parts[0] != folder:
        parts.insert(0, folder)
    env["PATH"] = os.pathsep.join(parts)


def _resolves_to(env, name, target):
    """Whether `name` on env's PATH is the interpreter `target` (same file after links)."""
    for folder in env.get("PATH", "").split(os.pathsep):
        candidate = os.path.join(folder or ".", name)
        if os.path.isfile(candidate) and os.access(candidate, os.X_OK):
            return os.path.realpath(candidate) == os.path.realpath(target)
    return False


def _link_folder(executable):
    """A folder with `python` and `python3` -> executable (created once per interpreter, per user)."""
    digest = hashlib.blake2b(os.path.realpath(executable).encode("utf-8"), digest_size=6).hexdigest()
    cache = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    for base in (os.path.join(cache, "kube-toolbox"), None):
        try:
            folder = os.path.join(base, f"python-{digest}") if base else tempfile.mkdtemp(prefix="toolbox-python-")
            os.makedirs(folder, mode=0o700, exist_ok=True)
            for name in PYTHON_NAMES:
                link = os.path.join(folder, name)
                if os.path.islink(link) and os.readlink(link) == executable:
                    continue
                temp = f"{link}.{os.getpid()}"
                os.symlink(executable, temp)
                os.replace(temp, link)  # atomic: another toolbox process may be doing the same
            return folder
        except OSError:
            continue
    return None


def activate(env, interpreter=None):
    """env with `interpreter` (default: this one) activated; returns env."""
    interp = interpreter or Interpreter()
    if interp.kind == "venv":
        _prepend_path(env, interp.bin_dir)
        env["VIRTUAL_ENV"] = interp.prefix
        env.pop("PYTHONHOME", None)
        return env
    if env.get("VIRTUAL_ENV") and os.path.realpath(env["VIRTUAL_ENV"]) != os.path.realpath(interp.prefix):
        env.pop("VIRTUAL_ENV")  # another venv's leftover: `python` is not that one any more
    if interp.kind == "conda":
        _prepend_path(env, interp.bin_dir)
        env["CONDA_PREFIX"] = interp.prefix
        env["CONDA_DEFAULT_ENV"] = _conda_env_name(interp.prefix)
        return env
    if all(_resolves_to(env, name, interp.executable) for name in PYTHON_NAMES):
        return env
    folder = _link_folder(interp.executable)
    if folder:
        _prepend_path(env, folder)
    return env


def _conda_env_name(prefix):
    """'base' for the conda installation itself, else the env's folder name (as `conda activate` says)."""
    if os.path.isdir(os.path.join(prefix, "condabin")):
        return "base"
    return os.path.basename(prefix.rstrip(os.sep))


def run_environment(base=None, root=".", interpreter=None):
    """The environment of a project command: base (default: this process's, with .env) + the activated
    interpreter + src on PYTHONPATH."""
    env = dict(os.environ if base is None else base)
    return with_src_on_pythonpath(activate(env, interpreter), root)
