#!/usr/bin/env python3
"""Command-line entry point of the toolbox: `python launch.py <command>`; the Makefile dispatches here.

Options come from make variables (`make job overwrite=true` exports `overwrite`), or from
`--option value` flags. This module parses them, calls one handler and turns errors into
messages and exit codes: 0 ok, 1 something failed, 2 usage/config error (nothing started),
130 interrupted. TOOLBOX_FULL_ERROR=1 shows tracebacks.
"""
import argparse
import importlib
import importlib.util
import os
import sys


def _register_toolbox_package():
    """Make `import toolbox.x` work whatever the checkout folder is called (src/toolbox, a clone...)."""
    if "toolbox" in sys.modules:
        return
    here = os.path.dirname(os.path.realpath(__file__))
    spec = importlib.util.spec_from_file_location(
        "toolbox", os.path.join(here, "__init__.py"), submodule_search_locations=[here])
    module = importlib.util.module_from_spec(spec)
    sys.modules["toolbox"] = module
    spec.loader.exec_module(module)


# Options: name -> (type, help). The name is also the make variable read from the environment.
OPTIONS = {
    "model": (str, "only these models (comma-separated)"),
    "dataset": (str, "only these datasets (comma-separated)"),
    "jobs": (int, "local runs at once (default 1, or one per GPU slot with gpus=)"),
    "gpus": (str, "GPU ids to pin local runs to, e.g. 0,1,2,3"),
    "gpus_per_run": (int, "GPUs per local run when gpus= is set (default 1)"),
    "fail_fast": (bool, "stop at the first failed cell"),
    "overwrite": (bool, "replace what exists (jobs) / transfer even if unchanged (S3)"),
    "yes": (bool, "answer yes to confirmations"),
    "name": (str, "a cell (job) name"),
    "pod": (str, "interactive pod name"),
    "context": (str, "kubeconfig context"),
    "key": (str, "private key file of the read-only deploy key"),
    "known_hosts": (str, "known_hosts file of the git SSH host (default: ssh-keyscan)"),
    "file": (str, "S3 path or pattern, relative to the project root / bucket root"),
    "local_path": (str, "local folder that mirrors the bucket root (default .)"),
    "checksum": (bool, "compare content hashes instead of size+mtime"),
    "delete": (bool, "sync: also delete extraneous files on the destination"),
    "direction": (str, "sync direction: up or down"),
    "folder": (str, "folder to monitor"),
    "interval": (float, "monitor: seconds a file must stay unchanged before upload"),
    "delete_after_upload": (bool, "monitor: delete local files once uploaded"),
    "api": (bool, "go through the local S3 API server when one runs (else work here)"),
    "port": (int, "S3 API server port (default S3_API_PORT, else 57575)"),
    "initial_timeout": (float, "S3 API server: seconds to wait for a first request (600; 0 = forever)"),
    "idle_timeout": (float, "S3 API server: seconds after the last request before it stops (30; 0 = never)"),
    "target": (str, "a make target"),
    "bash": (bool, "make shell: use bash even if zsh is available"),
}

# Commands: name -> ("module:function", [options], help). Handlers take the parsed options
# (argparse.Namespace) and return an exit code; they raise ToolboxError for user-facing failures.
COMMANDS = {
    # grid and local runs (runners.py)
    "local": ("runners:cmd_local", ["model", "dataset", "jobs", "gpus", "gpus_per_run", "fail_fast"],
              "run every cell of the grid on this machine"),
    "local-first": ("runners:cmd_local_first", ["model", "dataset", "gpus"], "run only the first cell"),
    "local-dryrun": ("runners:cmd_local_dryrun", ["model", "dataset"], "print <name>: <command> per cell"),
    "plan": ("runners:cmd_plan", ["model", "dataset"], "table of every cell and what it requests"),
    "schema": ("fields:cmd_schema", [], "print the modelines that enable the JSON Schemas in editors"),
    # Kubernetes (kubecli.py: submitting and deleting; kubepod.py: the interactive pod; kubestatus.py)
    "job": ("kubecli:cmd_job", ["model", "dataset", "overwrite", "context"], "submit one Job per cell"),
    "dryrun": ("kubecli:cmd_dryrun", ["model", "dataset"], "write build/<name>.yaml for every cell"),
    "pod": ("kubepod:cmd_pod", ["pod", "context"], "start an interactive pod"),
    "pod-dryrun": ("kubepod:cmd_pod_dryrun", ["pod"], "write the interactive pod manifest"),
    "copy": ("kubepod:cmd_copy", ["pod", "context"], "push the file: list into a running pod"),
    "status": ("kubestatus:cmd_status", ["model", "dataset", "context"], "state of every cell of the sweep"),
    "logs": ("kubestatus:cmd_logs", ["name", "context"], "follow the logs of one cell, or of all running"),
    "delete": ("kubecli:cmd_delete", ["yes", "context"], "delete this user's pods and jobs of this project"),
    "delete_job": ("kubecli:cmd_delete_job", ["yes", "context"], "delete this user's jobs of this project"),
    "delete_pod": ("kubecli:cmd_delete_pod", ["yes", "context"], "delete this user's pods of this project"),
    "clean_jobs": ("kubecli:cmd_clean_jobs", ["yes", "context"], "delete failed jobs"),
    "retry": ("kubecli:cmd_retry", ["model", "dataset", "yes", "context"], "recreate failed cells"),
    "deploy_key": ("kubepod:cmd_deploy_key", ["key", "known_hosts", "context"],
                   "store the git deploy key as a Secret for pods"),
    # S3 (s3utils.py)
    "upload": ("s3utils:cmd_upload", ["file", "local_path", "overwrite", "checksum", "api", "port"], "upload to S3"),
    "download": ("s3utils:cmd_download", ["file", "local_path", "overwrite", "checksum", "api", "port"],
                 "download from S3"),
    "list": ("s3utils:cmd_list", ["file"], "list one level of the bucket"),
    "find": ("s3utils:cmd_find", ["file"], "find keys matching a pattern"),
    "remove": ("s3utils:cmd_remove", ["file", "yes", "api", "port"], "remove keys from S3"),
    "sync": ("s3utils:cmd_sync", ["file", "local_path", "direction", "delete", "checksum", "yes"],
             "upload or download only what differs"),
    "interactive": ("s3utils:cmd_interactive", ["file", "local_path", "yes"], "show matches, then act"),
    "monitor": ("s3utils:cmd_monitor", ["folder", "file", "interval", "delete_after_upload"],
                "upload new or changed files of a folder as they appear"),
    "server": ("s3server:cmd_server", ["port", "initial_timeout", "idle_timeout"],
               "local S3 API server for the processes of this machine"),
    # environment (envtargets.py, debugutils.py)
    "shell": ("envtargets:cmd_shell", ["bash"], "interactive shell with the environment and .env"),
    "create_environment": ("envtargets:cmd_create_environment", [], "create the project environment"),
    "test_environment": ("envtargets:cmd_test_environment", [], "check the project environment"),
    "tmux": ("envtargets:cmd_tmux", ["target"], "run a make target in a detached tmux session"),
    "debug": ("debugutils:cmd_debug", ["target", "overwrite"], "VS Code debug configurations"),
    "lint": ("envtargets:cmd_lint", [], "lint src/"),
    "clean": ("envtargets:cmd_clean", [], "remove caches and build/"),
}


def _convert(name, kind, text):
    from toolbox.console import truthy
    from toolbox.errors import UsageError

    if text is None or text == "":
        return None
    if kind is bool:
        if str(text).strip().lower() not in ("1", "0", "true", "false", "yes", "no", "y", "n", "on", "off"):
            raise UsageError(f"{name}={text}", "expected true or false")
        return truthy(text)
    try:
        return kind(text)
    except ValueError:
        raise UsageError(f"{name}={text}", f"expected {'an integer' if kind is int else 'a number'}") from None


def build_parser(only=None):
    """The argument parser; with `only`, just that command's sub-parser (building all 30 costs ~30 ms)."""
    parser = argparse.ArgumentParser(prog="launch.py", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", metavar="command")
    for command, (_, options, help_text) in COMMANDS.items():
        if only and command != only:
            continue
        p = sub.add_parser(command, help=help_text)
        for opt in options:
            p.add_argument(f"--{opt}", dest=opt, default=None, help=OPTIONS[opt][1])
    return parser


def parse_options(argv, environ=None):
    """argv flags win over make variables in the environment; values are converted to their types."""
    environ = os.environ if environ is None else environ
    args = build_parser(argv[0] if argv and argv[0] in COMMANDS else None).parse_args(argv)
    if not args.command:
        return args
    for opt in COMMANDS[args.command][1]:
        raw = getattr(args, opt)
        if raw is None:
            raw = environ.get(opt)
        setattr(args, opt, _convert(opt, OPTIONS[opt][0], raw))
    return args


def main(argv=None):
    _register_toolbox_package()
    from toolbox.errors import EXIT_INTERRUPTED, ToolboxError, full_tracebacks

    from toolbox.envfile import load_into_environ, read_env, redact, secret_values

    argv = sys.argv[1:] if argv is None else argv
    secrets = []
    try:
        dotenv = read_env()
        secrets = secret_values(dotenv)
        load_into_environ(dotenv)
        args = parse_options(argv)
        if not args.command:
            build_parser().print_help()
            return 2
        module_name, func_name = COMMANDS[args.command][0].split(":")
        handler = getattr(importlib.import_module(f"toolbox.{module_name}"), func_name)
        return int(handler(args) or 0)
    except ToolboxError as err:
        if full_tracebacks():
            raise
        sys.stdout.flush()
        print(redact(err.format(), secrets), file=sys.stderr)
        return err.exit_code
    except KeyboardInterrupt:
        print("\ninterrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:  # e.g. `make local-dryrun | head`: not an error
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


if __name__ == "__main__":
    sys.exit(main())
