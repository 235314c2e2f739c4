"""Environment make targets: shell, tmux, lint, clean.

`make shell` and `make tmux` run with the interpreter make chose, activated as `make local` runs cells
(core/runenv.py); `make tmux` and `make debug` read make's own database of targets (make_targets) and the
variables of the make command line.
"""
import difflib
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

from toolbox import TOOLBOX_DIR as TOOLBOX_DIR_TEXT
from toolbox.core import naming
from toolbox.core.runenv import activate, with_src_on_pythonpath
from toolbox.devtools.environment import _pyproject, _tail, conda_envs, conda_root
from toolbox.errors import CommandError, ToolboxError, UsageError, choices_line, did_you_mean

TOOLBOX_DIR = Path(TOOLBOX_DIR_TEXT).resolve()
MAKE_INTERNALS = ("MAKEFLAGS", "MFLAGS", "MAKELEVEL", "MAKEOVERRIDES", "MAKE_TERMOUT", "MAKE_TERMERR")
LINE_LENGTH = 120


# -- shell --------------------------------------------------------------------------------------------
def shell_activation(interpreter, conda_exe=None, conda_name=None):
    """TOOLBOX_* variables that tell the toolbox rc file (bashrc) what to activate after the user's own rc
    file, and a label: the venv or conda env of the interpreter make chose. A plain interpreter (no
    environment active, no ./.venv) gives way to the project's conda env (conda_name) when there is one —
    entering it is what `make shell` is for; otherwise `python` becomes that interpreter, as in `make local`."""
    if interpreter.kind == "venv":
        return {"TOOLBOX_VENV": interpreter.prefix}, f"venv {interpreter.prefix}"
    if interpreter.kind == "conda":
        root = interpreter.prefix.split(os.sep + "envs" + os.sep)[0]
        return ({"TOOLBOX_CONDA_SH": os.path.join(root, "etc", "profile.d", "conda.sh"),
                 "TOOLBOX_CONDA_ENV": interpreter.prefix}, f"conda env {interpreter.prefix}")
    if conda_exe and conda_name and conda_name in conda_envs(conda_exe):
        return ({"TOOLBOX_CONDA_SH": os.path.join(conda_root(conda_exe), "etc", "profile.d", "conda.sh"),
                 "TOOLBOX_CONDA_ENV": conda_name}, f"conda env {conda_name}")
    first = activate({}, interpreter).get("PATH")  # the folder where `python` is this interpreter
    return ({"TOOLBOX_PYTHON_DIR": first} if first else {}), f"python {interpreter.executable}"


def shell_environment(base, activation):
    """The shell's environment: this one (with .env already loaded by launch.py), without make's
    internals and the make variables of `make shell`, with src first on PYTHONPATH as in local runs."""
    env = {k: v for k, v in base.items() if k not in MAKE_INTERNALS and k != "bash"}
    with_src_on_pythonpath(env)
    env["TOOLBOX_DIR"] = str(TOOLBOX_DIR)
    env.update(activation)
    return env


def shell_command(force_bash, environ=None):
    """argv of the shell and extra environment: zsh (with oh-my-zsh or as login shell) unless bash=true."""
    environ = os.environ if environ is None else environ
    rcfile = str(TOOLBOX_DIR / "bashrc")
    zsh = shutil.which("zsh", path=environ.get("PATH"))
    home = Path(environ.get("HOME", "~")).expanduser()
    wants_zsh = os.path.basename(environ.get("SHELL", "")) == "zsh" or (home / ".oh-my-zsh").is_dir()
    if zsh and wants_zsh and not force_bash:
        # zsh reads $ZDOTDIR/.zshenv and .zshrc: two one-line files under build/ hand over to bashrc,
        # which sources the user's own zsh files first.
        zdotdir = Path("build") / "toolbox-zsh"
        zdotdir.mkdir(parents=True, exist_ok=True)
        (zdotdir / ".zshenv").write_text('[ -f "$HOME/.zshenv" ] && . "$HOME/.zshenv"\n')
        (zdotdir / ".zshrc").write_text(f". {_shell_quote(rcfile)}\n")
        return [zsh, "-i"], {"ZDOTDIR": str(zdotdir.resolve()), "TOOLBOX_USER_ZDOTDIR": environ.get("ZDOTDIR", "")}
    bash = shutil.which("bash", path=environ.get("PATH")) or "/bin/bash"
    return [bash, "--rcfile", rcfile, "-i"], {}


def _shell_quote(text):
    import shlex

    return shlex.quote(text)


def make_targets(cwd=".", environ=None):
    """Every target make knows in this project (Makefile + project.mk), from make's own database."""
    environ = dict(os.environ if environ is None else environ)
    for key in MAKE_INTERNALS:
        environ.pop(key, None)
    proc = subprocess.run(["make", "--no-print-directory", "-pRrq", ":"], cwd=cwd, env=environ,
                          capture_output=True, text=True)
    if "# Files" not in proc.stdout:
        raise CommandError("make -p", "cannot read make's targets", _tail(proc.stderr))
    targets, in_files, previous = set(), False, ""
    for line in proc.stdout.splitlines():
        if line.startswith("# Files"):
            in_files = True
        elif line.startswith("# Finished Make data base"):
            in_files = False
        elif in_files:
            match = re.match(r"^([^#\s:=%][^:=%]*?)::?(?:\s|$)", line)
            if match and previous != "# Not a target:" and not match.group(1).startswith("."):
                targets.add(match.group(1))
        previous = line
    return targets


def make_command_line_variables(environ=None):
    """The VAR=value assignments of the make command line, as written (from MAKEFLAGS)."""
    environ = os.environ if environ is None else environ
    flags = environ.get("MAKEFLAGS", "")
    if " -- " in flags:
        flags = flags.split(" -- ", 1)[1]
    elif flags.startswith("-- "):
        flags = flags[3:]
    else:
        return []
    words, word, i = [], "", 0
    while i < len(flags):
        char = flags[i]
        if char == "\\" and i + 1 < len(flags):
            word += flags[i + 1]
            i += 2
            continue
        if char == " ":
            if word:
                words.append(word)
            word = ""
        else:
            word += char
        i += 1
    if word:
        words.append(word)
    return [w.replace("$$", "$") for w in words if "=" in w]


def tmux_session_name(target, existing):
    """tmux session names cannot hold '.' or ':'; a running session of the same name gets -2, -3..."""
    base = re.sub(r"[^A-Za-z0-9_-]+", "-", target).strip("-") or "make"
    return naming.next_free_name(base, existing, first=2, limit=None)


def _tmux_arg(text):
    """tmux ends a command at an argument ending in ';' (a command list); '\\;' keeps it literal."""
    return text[:-1] + "\\;" if text.endswith(";") else text


RUFF_CONFIGS = ("ruff.toml", ".ruff.toml")
FLAKE8_CONFIGS = (".flake8", "setup.cfg", "tox.ini")


def find_linter(python=None, search_path=None):
    """('ruff'|'flake8', argv prefix) for the first linter found: beside the interpreter, as its module,
    or on PATH. None when there is neither."""
    python = python or sys.executable
    search_path = os.environ.get("PATH", "") if search_path is None else search_path
    for name in ("ruff", "flake8"):
        beside = Path(python).parent / name
        if beside.exists():
            return name, [str(beside)]
        if subprocess.run([python, "-c", f"import {name}"], capture_output=True).returncode == 0:
            return name, [python, "-m", name]
        found = shutil.which(name, path=search_path)
        if found:
            return name, [found]
    return None


def _has_own_config(linter):
    if linter == "ruff":
        return any(os.path.isfile(f) for f in RUFF_CONFIGS) or "[tool.ruff" in _pyproject()
    for name in FLAKE8_CONFIGS:
        try:
            if "[flake8]" in Path(name).read_text(encoding="utf-8", errors="replace"):
                return True
        except OSError:
            pass
    return False


def lint_command(linter, prefix, paths):
    own = _has_own_config(linter)
    if linter == "ruff":
        style = [] if own else ["--line-length", str(LINE_LENGTH), "--extend-select", "E501"]
        return [*prefix, "check", *style, "--extend-exclude", "src/toolbox", *paths]
    style = [] if own else ["--max-line-length", str(LINE_LENGTH)]
    return [*prefix, *style, "--extend-exclude", "src/toolbox", *paths]


CACHE_DIRS = frozenset({"__pycache__", ".pytest_cache", ".ruff_cache", ".mypy_cache"})
SKIP_DIRS = frozenset({".git", "node_modules", ".tox", ".nox"})


def _is_environment(path):
    return os.path.exists(os.path.join(path, "pyvenv.cfg")) or os.path.isdir(os.path.join(path, "conda-meta"))


def clean_project(root="."):
    """Remove Python caches under root and root/build. Symlinks are never followed (src/toolbox may be
    one): a symlinked cache is unlinked, not emptied. Environments (.venv, conda) and .git are skipped.
    Returns (removed cache folders, removed files, whether build/ went, notes)."""
    folders = files = 0
    notes = []
    for current, dirs, names in os.walk(root, followlinks=False):
        keep = []
        for d in dirs:
            path = os.path.join(current, d)
            if d in CACHE_DIRS:
                if os.path.islink(path):
                    os.unlink(path)
                else:
                    shutil.rmtree(path)
                folders += 1
            elif d in SKIP_DIRS or os.path.islink(path) or _is_environment(path) or \
                    os.path.normpath(path) == os.path.normpath(os.path.join(root, "build")):
                continue
            else:
                keep.append(d)
        dirs[:] = keep
        for name in names:
            if name.endswith((".pyc", ".pyo")):
                os.unlink(os.path.join(current, name))
                files += 1
    build = os.path.join(root, "build")
    removed_build = False
    if os.path.islink(build):
        notes.append("build is a symbolic link: left alone (its target is outside the project's control)")
    elif os.path.isdir(build):
        shutil.rmtree(build)
        removed_build = True
    return folders, files, removed_build, notes


def activating_env(environ, interpreter=None):
    """An `env ...` prefix that activates the interpreter make chose (as `make local` does) for a command
    that does not inherit this environment — a tmux server started earlier gives its sessions its own."""
    activated = activate(dict(environ), interpreter)
    keys = set(activate({}, interpreter)) | {k for k, v in activated.items() if environ.get(k) != v}
    unset = sorted(set(environ) - set(activated))
    return ["env", *[arg for key in unset for arg in ("-u", key)], *[f"{key}={activated[key]}" for key in sorted(keys)]]


def start_tmux(target):
    """Start `make <target>` (with this make line's variables) in a new detached tmux session; returns
    (session name, the make command shown)."""
    tmux = shutil.which("tmux")
    if not tmux:
        raise ToolboxError("tmux", "tmux is not installed",
                           hint="install it (`sudo apt-get install tmux`, `brew install tmux`, `conda install tmux`)")
    targets = make_targets()
    if not target:
        raise UsageError("target", "which target should run in tmux? e.g. `make tmux target=local`",
                         [choices_line(targets)])
    if target not in targets:
        close = difflib.get_close_matches(target, sorted(targets), n=3, cutoff=0.5)
        details = [did_you_mean(target, close, n=3)] if close else []
        raise UsageError(f"target={target}", "not a make target of this project",
                         [d for d in details if d] + [choices_line(targets, limit=40)])
    if target == "tmux":
        raise UsageError("target=tmux", "tmux cannot run itself; name the target to run, e.g. target=local")
    environ = {k: v for k, v in os.environ.items() if k not in MAKE_INTERNALS}
    listing = subprocess.run([tmux, "list-sessions", "-F", "#{session_name}"], capture_output=True, text=True,
                             env=environ)
    existing = set(listing.stdout.split()) if listing.returncode == 0 else set()
    session = tmux_session_name(target, existing)
    forwarded = [v for v in make_command_line_variables()
                 if not v.startswith(("target=", "PYTHON="))]
    command = [*activating_env(environ), "make", target, *forwarded, f"PYTHON={sys.executable}"]
    argv = [tmux, "new-session", "-d", "-s", session, "-c", os.getcwd(), "--", *map(_tmux_arg, command),
            ";", "set-option", "-t", session, "remain-on-exit", "on"]
    proc = subprocess.run(argv, capture_output=True, text=True, env=environ)
    if proc.returncode != 0:
        raise CommandError(f"tmux session {session}", "could not start it", _tail(proc.stderr))
    return session, " ".join(["make", target, *forwarded])
