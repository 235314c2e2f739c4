"""Handlers of the S3 make targets (cli/commands.py names them; cli/main.py calls them).

They ask for what is missing, show what will be destroyed and confirm, print results; the work itself
is the public API in s3utils. Results go to stdout, progress and prompts to stderr; failures are raised
as S3Error for launch.py to print (exit 1: something failed, 2: usage/configuration).
"""
from __future__ import annotations

import os
import signal
import sys
import threading

from toolbox.cli.output import confirm
from toolbox.core.console import format_table, human_bytes, is_terminal, plural
from toolbox.core.envfile import read_env, secret_values
from toolbox.errors import S3Error, S3UsageError, UsageError, did_you_mean
from toolbox.s3 import apiclient
from toolbox.s3.apiserver import DEFAULT_IDLE_TIMEOUT, DEFAULT_INITIAL_TIMEOUT, ApiServer, remove_token, write_token
from toolbox.s3.localfiles import delete_local_files, find_local
from toolbox.s3.monitor import run_monitor
from toolbox.s3.paths import parse
from toolbox.s3.transfer import find_remote, get_backend, list_level, plan_transfer, remove_keys, run_plan

PATH_PROMPT = "S3 path or pattern, relative to the project root (wildcards * and ?): "
MAX_SHOWN = 30
ACTIONS = {"download": "download", "down": "download", "upload": "upload", "up": "upload",
           "remove": "remove", "rm": "remove", "delete": "delete", "del": "delete",
           "exit": "exit", "quit": "exit", "q": "exit", "": "exit"}


def out(text=""):
    print(text, flush=True)


def ask(prompt):
    """One line from the user, or None at end of input."""
    sys.stderr.write(prompt)
    sys.stderr.flush()
    line = sys.stdin.readline()
    return None if line == "" else line.rstrip("\n")


def path_argument(args, target, allow_empty=False):
    """file= (or the prompt's answer on a terminal). The text is data: never given to a shell."""
    text = getattr(args, "file", None)
    if text:
        return text
    if is_terminal(sys.stdin):
        answer = (ask(PATH_PROMPT) or "").strip()      # typed, not pasted into a shell: no quoting needed
        if answer or allow_empty:
            return answer
    if allow_empty:
        return ""
    raise UsageError("file=", "no path given", hint=f"make {target} file=data/  (quote patterns: file='runs/*/ckpt')")


# ------------------------------------------------------------------ transfers
def cmd_upload(args):
    return _transfer(args, "up", "upload")


def cmd_download(args):
    return _transfer(args, "down", "download")


def _transfer(args, direction, verb):
    # api=true goes through the server when one runs. (`make remove api=true` removes here: exactly the
    # keys it listed and the user confirmed; through the server, objects added meanwhile would go too.)
    if args.api:
        code = _via_api(verb, args)
        if code is not None:
            return code
    path = path_argument(args, verb)
    backend = get_backend()
    plan = plan_transfer(backend, path, direction, args.local_path or ".", bool(args.overwrite),
                         bool(args.checksum))
    return _run(backend, plan, verb)


def _run(backend, plan, verb):
    try:
        result = run_plan(backend, plan)
    except S3Error as err:
        if err.result is not None:
            out(err.result.summary(verb))
        raise
    out(result.summary(verb))
    return 0


def cmd_sync(args):
    if not args.direction:
        raise UsageError("direction=", "sync needs a direction", hint="direction=up (local -> S3) or direction=down")
    path = path_argument(args, "sync")
    backend = get_backend()
    local_path = args.local_path or "."
    plan = plan_transfer(backend, path, args.direction, local_path, False, bool(args.checksum), bool(args.delete))
    if plan.extraneous:
        where = backend.settings.url() if plan.direction == "up" else f"{local_path}/"
        _show_list(f"sync delete=true will delete {len(plan.extraneous)} extraneous files from {where}:",
                   plan.extraneous)
        if not confirm("Delete them?", bool(args.yes)):
            out("cancelled: nothing transferred or deleted")
            return 1
    return _run(backend, plan, f"sync {plan.direction}")


# ------------------------------------------------------------------ removing
def cmd_remove(args):
    path = path_argument(args, "remove")
    backend = get_backend()
    pattern = parse(path)
    objects = find_remote(backend, pattern)
    where = backend.settings.url(pattern.text)
    if not objects:
        raise S3Error(where, "no object matches")
    total = sum(o.size for o in objects)
    _show_list(f"will remove {len(objects)} objects ({human_bytes(total)}) from {backend.settings.url()}:",
               [o.key for o in objects])
    if not confirm(f"Remove these {len(objects)} objects?", bool(args.yes)):
        out("cancelled: nothing removed")
        return 1
    removed = remove_keys(backend, [o.key for o in objects], where)
    out(f"removed {len(removed)} objects ({human_bytes(total)}) from {backend.settings.url()}")
    return 0


def _show_list(title, items):
    out(title)
    for item in items[:MAX_SHOWN]:
        out(f"  {item}")
    if len(items) > MAX_SHOWN:
        out(f"  ... and {len(items) - MAX_SHOWN} more")


# ------------------------------------------------------------------ looking
def cmd_list(args):
    path = path_argument(args, "list", allow_empty=True)
    backend = get_backend()
    folders, objects = list_level(backend, path)
    if not folders and not objects:
        raise S3Error(backend.settings.url(parse(path, allow_root=True).text), "no such folder or object")
    rows = [["-", "", f] for f in folders]
    rows += [[human_bytes(o.size), _date(o.mtime), o.key] for o in objects]
    out(format_table(["size", "modified", "name"], rows))
    out(f"{plural(len(folders), 'folder')}, {plural(len(objects), 'file')}, "
        f"{human_bytes(sum(o.size for o in objects))}")
    return 0


def cmd_find(args):
    path = path_argument(args, "find")
    backend = get_backend()
    pattern = parse(path)
    objects = find_remote(backend, pattern)
    if not objects:
        raise S3Error(backend.settings.url(pattern.text), "no object matches")
    for o in objects:
        out(o.key)
    sys.stderr.write(f"{plural(len(objects), 'object')}, {human_bytes(sum(o.size for o in objects))}\n")
    return 0


def _date(epoch):
    import datetime

    return datetime.datetime.fromtimestamp(epoch).strftime("%Y-%m-%d %H:%M")


# ------------------------------------------------------------------ interactive
def cmd_interactive(args):
    path = path_argument(args, "interactive")
    backend = get_backend()
    local_path = args.local_path or "."
    pattern = parse(path, root=local_path)
    local = find_local(pattern, local_path)
    remote = find_remote(backend, pattern)
    _show_matches(f"Local files matching '{pattern}' under {local_path}/",
                  [[human_bytes(f.size), _date(f.mtime), f.path] for f in local], sum(f.size for f in local))
    _show_matches(f"S3 objects matching '{pattern}' in {backend.settings.url()}",
                  [[human_bytes(o.size), _date(o.mtime), o.key] for o in remote], sum(o.size for o in remote))
    if not local and not remote:
        raise S3Error(backend.settings.url(pattern.text), "nothing matches, locally or in S3")
    while True:
        answer = ask("Choose an action [download, upload, remove (S3), delete (local), exit]: ")
        action = ACTIONS.get((answer or "").strip().lower()) if answer is not None else "exit"
        if action is not None:
            break
        hint = did_you_mean(answer.strip(), ["download", "upload", "remove", "delete", "exit"])
        sys.stderr.write(f"invalid action '{answer.strip()}'" + (f"; {hint}" if hint else "") + "\n")
    return _act(action, backend, path, pattern, local, remote, local_path, bool(args.yes))


def _show_matches(title, rows, total):
    out(f"{title}: {len(rows)} ({human_bytes(total)})")
    if rows:
        shown = rows[:MAX_SHOWN]
        out("\n".join("  " + line for line in format_table(["size", "modified", "path"], shown).splitlines()))
        if len(rows) > MAX_SHOWN:
            out(f"  ... and {len(rows) - MAX_SHOWN} more")
    out()


def _act(action, backend, path, pattern, local, remote, local_path, yes):
    if action == "exit":
        return 0
    if action in ("download", "upload"):
        direction = "down" if action == "download" else "up"
        plan = plan_transfer(backend, path, direction, local_path)
        return _run(backend, plan, action)
    if action == "remove":
        if not remote:
            raise S3Error(backend.settings.url(pattern.text), "no object matches")
        if not confirm(f"Remove these {len(remote)} objects from {backend.settings.url()}?", yes):
            out("cancelled: nothing removed")
            return 1
        removed = remove_keys(backend, [o.key for o in remote], backend.settings.url(pattern.text))
        out(f"removed {len(removed)} objects")
        return 0
    if not local:
        raise S3Error(f"{local_path}/{pattern}", "no local file matches")
    if not confirm(f"Delete these {len(local)} local files?", yes):
        out("cancelled: nothing deleted")
        return 1
    deleted = delete_local_files([f.path for f in local], local_path)
    out(f"deleted {len(deleted)} local files")
    return 0


def _via_api(verb, args):
    """`make download|upload api=true`: through the server; None when none runs (work locally)."""
    port = apiclient.api_port(args.port)
    path = path_argument(args, verb)
    via = f"via the S3 API server on port {port}"
    try:
        result = apiclient.forward(verb, path, port, local_path=args.local_path or ".", overwrite=bool(args.overwrite),
                         checksum=bool(args.checksum))
    except S3Error as err:
        if err.result is not None:
            out(f"{err.result.summary(verb)} {via}")
        raise
    if result is not None:
        out(f"{result.summary(verb)} {via}")
        return 0
    apiclient.log(f"s3 api: no S3 API server on port {port}: working locally")
    return None


# ------------------------------------------------------------------ monitor
def cmd_monitor(args):
    folder = args.folder or args.file
    if not folder:
        if is_terminal(sys.stdin):
            folder = ask("Folder to monitor, relative to the project root: ")
        if not folder:
            raise UsageError("folder=", "no folder given", hint="make monitor folder=checkpoints/ interval=30")
    interval = 5.0 if args.interval is None else args.interval
    if interval <= 0:
        raise UsageError(f"interval={interval:g}", "expected a number of seconds above 0")
    return run_monitor(get_backend(), folder, interval, bool(args.delete_after_upload), report=out)


# ------------------------------------------------------------------ `make server`
def cmd_server(args):
    """`make server`: serve the project folder on 127.0.0.1 until a timeout, `shutdown` or SIGTERM."""
    port = apiclient.api_port(args.port)
    initial = _seconds("initial_timeout", args.initial_timeout, DEFAULT_INITIAL_TIMEOUT)
    idle = _seconds("idle_timeout", args.idle_timeout, DEFAULT_IDLE_TIMEOUT)
    server = ApiServer(port, os.getcwd(), initial, idle, secret_values(read_env()))
    path = apiclient.token_file(port)
    try:
        server.token = write_token(path)
        _handle_sigterm(server)
        apiclient.log(f"s3 api: serving {server.root} on http://{apiclient.HOST}:{port} (token file {path}); "
            + _lifetime(initial, idle))
        reason = server.serve()
    finally:
        server.server_close()
        if server.token:
            remove_token(path, server.token)
    apiclient.log(f"s3 api: stopped ({reason})")
    return 0


def _seconds(name, value, default):
    if value is None:
        return default
    if value < 0:
        raise S3UsageError(f"{name}={value:g}", "expected a number of seconds (0 = no limit)")
    return value


def _lifetime(initial, idle):
    first = f"stops if no request comes within {initial:g} s" if initial else "waits for a first request"
    return first + (f", then {idle:g} s after the last request" if idle else ", then runs until shutdown")


def _handle_sigterm(server):
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, lambda signum, frame: server.stop("SIGTERM"))

