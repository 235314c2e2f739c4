"""The environment targets: `make shell`, `create_environment`, `test_environment`, `tmux`, `debug`, `lint`,
`clean` (the work is in toolbox.devtools)."""
import os
import shutil
import subprocess
import sys
from pathlib import Path

from toolbox.core.console import format_table, plural
from toolbox.core.envfile import read_env
from toolbox.core.grid import load_cells
from toolbox.core.runenv import Interpreter
from toolbox.devtools.environment import (EnvironmentPlan, conda_env_name, environment_checks, existing_file,
                                          find_conda, project_files)
from toolbox.devtools.shell import (clean_project, find_linter, lint_command, shell_activation, shell_command,
                                    shell_environment, start_tmux)
from toolbox.devtools.vscode import LAUNCH_JSON, update_for_cells, update_for_target
from toolbox.errors import ToolboxError


def cmd_create_environment(args):
    files = project_files()
    plan = EnvironmentPlan(files, find_conda() if files["environment.yml"] else None)
    for note in plan.notes:
        print(f"note: {note}")
    steps = plan.steps()
    print("create_environment will:")
    for i, (text, _) in enumerate(steps, 1):
        print(f"  {i}. {text}")
    notes_before = len(plan.notes)
    for text, action in steps:
        print(f"\n== {text}", flush=True)
        action()
    print(f"\nenvironment ready: {plan.prefix}")
    for note in plan.notes[notes_before:]:
        print(f"note: {note}")
    if plan.kind == "conda":
        print(f"activate it with `conda activate {plan.conda_name}`: make uses the active environment")
    else:
        print("make uses ./.venv/bin/python when no other environment is active")
    return 0


def cmd_test_environment(args):
    files = project_files()
    env = Interpreter()
    uv = shutil.which("uv") or existing_file(str(Path(sys.executable).parent / "uv"))
    poetry = shutil.which("poetry") or existing_file(str(Path(sys.executable).parent / "poetry"))
    conda_exe = find_conda() if files["environment.yml"] else None
    version = ".".join(map(str, sys.version_info[:3]))
    where = {"venv": "virtualenv", "conda": "conda env"}.get(env.kind, "no virtualenv or conda env:")
    print(f"python: {sys.executable} (Python {version}, {where} {env.prefix})")
    checks = environment_checks(files, env, uv=uv, poetry=poetry, conda_exe=conda_exe)
    rows = [[c.what, "ok" if c.ok and not c.warn else ("note" if c.ok else "FAILED"), c.detail] for c in checks]
    print(format_table(["check", "result", "detail"], rows))
    failed = [c for c in checks if not c.ok]
    if failed:
        raise ToolboxError("test_environment", f"{len(failed)} of {len(checks)} checks failed",
                           hint="`make create_environment` creates or updates the environment")
    print("the environment matches the project")
    return 0


def cmd_shell(args):
    env = Interpreter()
    conda_exe = find_conda() if env.kind == "plain" else None
    name = None
    if conda_exe:
        try:
            name = conda_env_name()
        except ToolboxError as err:  # a broken kube.yaml must not keep you out of a shell
            sys.stderr.write(f"note: {err.format().splitlines()[0]}; not looking for the conda env\n")
    activation, label = shell_activation(env, conda_exe, name)
    argv, extra = shell_command(bool(args.bash))
    environ = shell_environment(os.environ, activation)
    environ.update(extra)
    count = len(read_env())
    if env.kind == "plain" and "TOOLBOX_CONDA_ENV" not in activation:
        label += " (no project environment found: `make create_environment` creates one)"
    sys.stderr.write(f"make shell: {os.path.basename(argv[0])} with {label}; "
                     f"{plural(count, 'variable')} from .env; `exit` leaves\n")
    sys.stdout.flush()
    sys.stderr.flush()
    os.execve(argv[0], argv, environ)


def cmd_tmux(args):
    session, shown = start_tmux(args.target)
    print(f"started `{shown}` in the tmux session '{session}'")
    print(f"  attach: tmux attach -t {session}    (detach again: Ctrl-b d)")
    print(f"  when the run ends its window stays, with the output; `tmux kill-session -t {session}` closes it")
    return 0


def cmd_lint(args):
    paths = ["src"] if os.path.isdir("src") else ["."]
    found = find_linter()
    if not found:
        raise ToolboxError("lint", "no linter: neither ruff nor flake8 is installed",
                           hint="`pip install ruff` into the project environment (or flake8)")
    argv = lint_command(*found, paths)
    print("+ " + " ".join(argv), flush=True)
    code = subprocess.call(argv)
    if code == 0:
        print("lint: no problems")
    return 0 if code == 0 else 1


def cmd_clean(args):
    folders, files, removed_build, notes = clean_project(".")
    parts = [f"{plural(folders, 'cache folder')}",
             f"{plural(files, 'stray .pyc file')}"]
    if removed_build:
        parts.append("build/")
    print("removed " + ", ".join(parts))
    for note in notes:
        print(f"note: {note}")
    return 0


def cmd_debug(args):
    if args.target:
        config, changed = update_for_target(args.target, overwrite=bool(args.overwrite))
        what = config.get("program") or f"-m {config.get('module')}"
        print(f"{LAUNCH_JSON}: configuration '{config['name']}' ({what} {' '.join(config['args'])})"
              + ("" if changed else " (unchanged)"))
        return 0
    cells = load_cells(project_dir=".")
    configs, skipped, conflicts, changed = update_for_cells(cells, overwrite=bool(args.overwrite))
    print(f"{LAUNCH_JSON}: {plural(len(configs), 'configuration')} of the grid"
          + ("" if changed else " (unchanged)") + "; pick one in VS Code's Run and Debug view")
    if skipped:
        print(f"note: {plural(len(skipped), 'cell')} run no python and got none: "
              + ", ".join(skipped[:5]) + (", ..." if len(skipped) > 5 else ""))
    if conflicts:
        print(f"note: kept your own configuration{'s' if len(conflicts) != 1 else ''} named "
              + ", ".join(conflicts) + "; overwrite=true replaces them with the cells'")
    if changed and os.path.exists(LAUNCH_JSON + ".bak"):
        print(f"the previous file is in {LAUNCH_JSON}.bak")
    return 0
