"""The one table of commands and options: `launch.py <command>` and the Makefile's targets dispatch here.

Options come from make variables (`make job overwrite=true` exports `overwrite`), or from `--option value`
flags; the Makefile's USER_VARS and `make help` are checked against this table by the tests.
"""
import argparse
import math
import os
import re

from toolbox import TOOLBOX_DIR
from toolbox.core.console import parse_bool
from toolbox.errors import UsageError

# Options: name -> (type, help). The name is also the make variable read from the environment.
OPTIONS = {
    "model": (str, "only these models (comma-separated)"),
    "dataset": (str, "only these datasets (comma-separated)"),
    "jobs": (int, "local runs at once (default 1, or one per GPU slot with gpus=)"),
    "gpus": (str, "GPU ids to pin local runs to, e.g. 0,1,2,3"),
    "gpus_per_run": (int, "GPUs per local run when gpus= is set (default 1)"),
    "fail_fast": (bool, "stop at the first failed cell"),
    "grace": (float, "seconds a cell gets to finish after Ctrl-C/SIGTERM before SIGTERM, then SIGKILL (10)"),
    "max_cells": (int, "refuse grids of more cells than this (default 100000)"),
    "overwrite": (bool, "replace what exists (jobs) / transfer even if unchanged (S3)"),
    "yes": (bool, "answer yes to confirmations"),
    "name": (str, "a cell (job) name"),
    "node": (int, "logs: which node of a multi-node cell to follow (default 0)"),
    "pod": (str, "interactive pod name"),
    "context": (str, "kubeconfig context"),
    "watch": (bool, "status: follow the sweep live (a watch on Jobs and Pods) until every cell finished"),
    "from": (str, "report: where the states come from: cluster, local or plan (default: what ran last)"),
    "key": (str, "private key file of the read-only deploy key"),
    "known_hosts": (str, "known_hosts file of the git SSH host (default: ssh-keyscan)"),
    "file": (str, "S3 path or pattern, relative to the project root / bucket root"),
    "local_path": (str, "local folder that mirrors the bucket root (default .)"),
    "checksum": (bool, "compare content hashes instead of size+mtime"),
    "delete": (bool, "sync: also delete extraneous files on the destination"),
    "direction": (str, "sync direction: up or down"),
    "folder": (str, "folder to monitor"),
    "interval": (float, "monitor: seconds a file must stay unchanged before upload; status watch=1: seconds "
                        "between summary lines when not on a terminal (10)"),
    "delete_after_upload": (bool, "monitor: delete local files once uploaded"),
    "api": (bool, "go through the local S3 API server when one runs (else work here)"),
    "port": (int, "S3 API server port (default S3_API_PORT, else 57575)"),
    "initial_timeout": (float, "S3 API server: seconds to wait for a first request (600; 0 = forever)"),
    "idle_timeout": (float, "S3 API server: seconds after the last request before it stops (30; 0 = never)"),
    "target": (str, "a make target"),
    "bash": (bool, "make shell: use bash even if zsh is available"),
}

# Commands: name -> ("module:function" under toolbox.cli, [options]); the help of each is its `## ` line in
# the Makefile (written once, shown by `make help` and `launch.py --help`). Handlers take the parsed options
# (argparse.Namespace) and return an exit code; they raise ToolboxError for user-facing failures.
COMMANDS = {
    # grid and local runs (cli/local.py)
    "local": ("local:cmd_local", ["model", "dataset", "jobs", "gpus", "gpus_per_run", "fail_fast", "grace",
                                  "max_cells"]),
    "local-first": ("local:cmd_local_first", ["model", "dataset", "gpus", "grace"]),
    "local-dryrun": ("local:cmd_local_dryrun", ["model", "dataset", "max_cells"]),
    "plan": ("local:cmd_plan", ["model", "dataset", "max_cells"]),
    "schema": ("local:cmd_schema", []),
    # Kubernetes (cli/kube.py: submitting and deleting; cli/pod.py: pods; cli/status.py: status and logs;
    # cli/watch.py: status watch=1; cli/report.py: report)
    "job": ("kube:cmd_job", ["model", "dataset", "overwrite", "context", "max_cells"]),
    "dryrun": ("kube:cmd_dryrun", ["model", "dataset", "max_cells"]),
    "pod": ("pod:cmd_pod", ["pod", "context"]),
    "pod-dryrun": ("pod:cmd_pod_dryrun", ["pod"]),
    "copy": ("pod:cmd_copy", ["pod", "context"]),
    "status": ("status:cmd_status", ["model", "dataset", "context", "max_cells", "watch", "interval"]),
    "report": ("report:cmd_report", ["model", "dataset", "context", "max_cells", "from"]),
    "logs": ("status:cmd_logs", ["name", "node", "context"]),
    "delete": ("kube:cmd_delete", ["yes", "context"]),
    "delete_job": ("kube:cmd_delete_job", ["yes", "context"]),
    "delete_pod": ("kube:cmd_delete_pod", ["yes", "context"]),
    "clean_jobs": ("kube:cmd_clean_jobs", ["yes", "context"]),
    "retry": ("kube:cmd_retry", ["model", "dataset", "yes", "context", "max_cells"]),
    "deploy_key": ("pod:cmd_deploy_key", ["key", "known_hosts", "context"]),
    # S3 (cli/s3.py)
    "upload": ("s3:cmd_upload", ["file", "local_path", "overwrite", "checksum", "api", "port"]),
    "download": ("s3:cmd_download", ["file", "local_path", "overwrite", "checksum", "api", "port"]),
    "list": ("s3:cmd_list", ["file"]),
    "find": ("s3:cmd_find", ["file"]),
    "remove": ("s3:cmd_remove", ["file", "yes", "api", "port"]),
    "sync": ("s3:cmd_sync", ["file", "local_path", "direction", "delete", "checksum", "yes"]),
    "interactive": ("s3:cmd_interactive", ["file", "local_path", "yes"]),
    "monitor": ("s3:cmd_monitor", ["folder", "file", "interval", "delete_after_upload"]),
    "server": ("s3:cmd_server", ["port", "initial_timeout", "idle_timeout"]),
    # environment (cli/dev.py)
    "shell": ("dev:cmd_shell", ["bash"]),
    "create_environment": ("dev:cmd_create_environment", []),
    "test_environment": ("dev:cmd_test_environment", []),
    "tmux": ("dev:cmd_tmux", ["target"]),
    "debug": ("dev:cmd_debug", ["target", "overwrite"]),
    "lint": ("dev:cmd_lint", []),
    "clean": ("dev:cmd_clean", []),
}


def target_help(makefile=None):
    """target -> its `## ` description in the Makefile (one rule may name several targets: `upload up:`)."""
    helps, doc = {}, None
    with open(makefile or os.path.join(TOOLBOX_DIR, "Makefile"), encoding="utf-8") as handle:
        for line in handle:
            if line.startswith("## "):
                doc = line[3:].strip()
                continue
            rule = re.match(r"^([A-Za-z0-9_.-]+(?: [A-Za-z0-9_.-]+)*):(?!=)", line)
            if rule and doc:
                helps.update((name, doc) for name in rule.group(1).split())
            doc = None
    return helps


def _convert(name, kind, text):
    if text is None or text == "":
        return None
    if kind is bool:
        value = parse_bool(text)
        if value is None:
            raise UsageError(f"{name}={text}", "expected true or false")
        return value
    try:
        value = kind(text)
    except ValueError:
        raise UsageError(f"{name}={text}", f"expected {'an integer' if kind is int else 'a number'}") from None
    if kind is float and not math.isfinite(value):
        raise UsageError(f"{name}={text}", "expected a finite number")
    return value


def build_parser(only=None):
    """The argument parser; with `only`, just that command's sub-parser (building all 30 costs ~30 ms)."""
    parser = argparse.ArgumentParser(prog="launch.py",
                                     description="Run one Kube Toolbox command (the Makefile's targets call this).")
    sub = parser.add_subparsers(dest="command", metavar="command")
    helps = {} if only else target_help()
    for command, (_, options) in COMMANDS.items():
        if only and command != only:
            continue
        p = sub.add_parser(command, help=helps.get(command))
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
