"""Executing cells on this machine: in order, or N at a time pinned to GPUs.

Every command runs as one bash script (`bash -c`), exactly as in a pod, with `.env` in the environment,
the toolbox's interpreter activated (core/runenv.py), `src` on PYTHONPATH and TOOLBOX_CELL_NAME set.
Each cell is the leader of its own process group, so that an interrupt reaches the cell and everything it
started, and only through the toolbox: Ctrl-C or SIGTERM -> SIGINT to every running cell, `grace`
seconds to finish (save a checkpoint), then SIGTERM, then SIGKILL (local/stopping.py). Exit codes are
summarised; build/local-state.json follows the run (local/state.py).
"""
import concurrent.futures
import json
import os
import signal
import subprocess
import sys
import threading
import time

from toolbox.core import multinode
from toolbox.core.console import format_table, human_duration
from toolbox.core.runenv import run_environment
from toolbox.errors import EXIT_FAILED, UsageError, warn
from toolbox.local.nodes import run_nodes
from toolbox.local.state import StateRecord
from toolbox.local.stopping import DEFAULT_GRACE, Stopper

LOG_DIR = "logs"
POLL_SECONDS = 0.1


class Result:
    """How a cell ended: a state of local/state.STATES, the exit code, the seconds it ran."""

    __slots__ = ("cell", "state", "code", "seconds")

    def __init__(self, cell, state, code=None, seconds=None):
        self.cell, self.state, self.code, self.seconds = cell, state, code, seconds


# -- the environment and header of a run ------------------------------------------------------------
def cell_environment(cell, base, gpus=None):
    """Environment of one cell: the run's environment plus the cell's name and GPUs."""
    env = dict(base)
    env["TOOLBOX_CELL_NAME"] = cell.name
    if gpus is not None:
        env["CUDA_VISIBLE_DEVICES"] = ",".join(gpus)
    return env


def header(cell, position, total, command):
    """The block printed before a run (the seed README's format, plus the cell's name)."""
    hparams = json.dumps(dict(cell.hparams), indent=4, ensure_ascii=False)
    return f"[{position}/{total}] {cell.name}\nRunning {hparams} ... \n\n{command}\n"


def gpu_slots(gpus, per_run):
    """'0,1,2,3' with 2 per run -> [['0','1'], ['2','3']]."""
    ids = [g.strip() for g in str(gpus).split(",") if g.strip()]
    per_run = 1 if per_run is None else per_run
    if not ids:
        raise UsageError(f"gpus={gpus}", "no GPU id given", hint="e.g. gpus=0,1")
    if len(ids) < per_run:
        raise UsageError(f"gpus={gpus}", f"{len(ids)} GPU(s) given but gpus_per_run={per_run}")
    if len(ids) % per_run:
        warn(f"gpus={gpus}: {len(ids) % per_run} GPU(s) left unused with gpus_per_run={per_run}")
    return [ids[i:i + per_run] for i in range(0, len(ids) - len(ids) % per_run, per_run)]


def _check_log_dir():
    """Parallel runs write logs/<cell>.log: the folder must be one (checked before anything starts)."""
    if os.path.lexists(LOG_DIR) and not os.path.isdir(LOG_DIR):
        raise UsageError(LOG_DIR, "exists but is not a folder",
                         ["parallel local runs (jobs=N, gpus=) write logs/<cell name>.log"],
                         hint="move or rename it")
    try:
        os.makedirs(LOG_DIR, exist_ok=True)
    except OSError as err:
        raise UsageError(LOG_DIR, f"cannot create the log folder: {err.strerror}") from None


# -- one cell ---------------------------------------------------------------------------------------
class _Run:
    """What every cell of one `make local` shares: options, output, the stopper and the state record."""

    def __init__(self, cells, in_cluster, piped, stopper, record):
        self.cells, self.in_cluster, self.piped = cells, in_cluster, piped
        self.stopper, self.record = stopper, record
        self.environment = run_environment()
        self.output_lock = threading.Lock()

    def say(self, text):
        with self.output_lock:
            sys.stdout.write(text)
            sys.stdout.flush()

    def execute(self, position, cell, slot):
        """Run one cell to its end (worker thread); returns its Result."""
        command = cell.command_for(self.in_cluster)
        total = len(self.cells)
        log_path = os.path.join(LOG_DIR, f"{cell.name}.log") if self.piped else None
        if self.piped:
            pin = f" on GPU {','.join(slot)}" if slot else ""
            self.say(f"[{cell.name}] started ({position}/{total}){pin}: {command}\n")
        else:
            self.say(header(cell, position, total, command) + "\n")
        self.record.update(cell, state="running", started=time.time(), log=log_path,
                           gpus=",".join(slot) if slot else None)
        started = time.monotonic()
        env = cell_environment(cell, self.environment, slot)
        try:
            if self.piped:
                with open(log_path, "w", encoding="utf-8") as log:
                    log.write(header(cell, position, total, command) + "\n")
                    log.flush()
                    code = self._piped(cell, command, env, log)
            elif multinode.is_multinode(cell.settings):
                code = self._nodes(cell, command, env)
            else:
                code = self.stopper.follow(self._start(command, env), cell.name)
        except OSError as err:   # bash missing, the log not writable: this cell fails, the others go on
            self.say(f"[{cell.name}] cannot start: {err.strerror}: {err.filename or 'bash'}\n")
            code = 127
        seconds = time.monotonic() - started
        state = "interrupted" if self.stopper.stopped(cell.name) else ("succeeded" if code == 0 else "failed")
        self.record.update(cell, state=state, exit_code=code, seconds=round(seconds, 3))
        if self.piped:
            self.say(f"[{cell.name}] {'finished' if state == 'succeeded' else f'{state.upper()} ({exit_text(code)})'} "
                     f"in {human_duration(seconds)}\n")
        return Result(cell, state, code, seconds)

    def _start(self, command, env, **streams):
        # start_new_session: the cell leads its own process group (and has no controlling terminal), so
        # the terminal's Ctrl-C reaches only the toolbox, which hands it on gently.
        return subprocess.Popen(["bash", "-c", command], env=env, start_new_session=True, **streams)

    def _nodes(self, cell, command, env, log=None):
        """A multi-node cell: one process per node (local/nodes.py), each line prefixed with its node."""
        def write(line):
            if log is not None:
                log.write(line)
                log.flush()
            self.say(f"[{cell.name}] {line}" if log is not None else line)

        return run_nodes(cell, command, env, self.stopper, write)

    def _piped(self, cell, command, env, log):
        if multinode.is_multinode(cell.settings):
            return self._nodes(cell, command, env, log)
        proc = self._start(command, env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        self.stopper.add(proc, cell.name)
        for raw in proc.stdout:
            line = raw.decode("utf-8", "replace")
            log.write(line)
            log.flush()
            self.say(f"[{cell.name}] {line}" if line.endswith("\n") else f"[{cell.name}] {line}\n")
        return self.stopper.follow(proc, cell.name)


def exit_text(code):
    """'exit 3', or 'signal SIGKILL' for a process killed by a signal."""
    if code is not None and code < 0:
        try:
            return f"signal {signal.Signals(-code).name}"
        except ValueError:
            return f"signal {-code}"
    return f"exit {code}"


# -- scheduling -----------------------------------------------------------------------------------------
def _schedule(run, jobs, slots, fail_fast):
    """Start cells in order, at most `jobs` at a time (each with a free GPU slot); stop starting new ones
    after a failure with fail_fast or once the stopper has a signal. The main thread waits here, so that
    the signal handlers run and the stopper's steps happen on time."""
    results = {}
    free = list(slots[:jobs] if slots else [None] * jobs)
    pending = iter(enumerate(run.cells, 1))
    running = {}
    failed = False
    with concurrent.futures.ThreadPoolExecutor(max_workers=jobs) as pool:
        while True:
            while free and not run.stopper.stopping and not (failed and fail_fast):
                item = next(pending, None)
                if item is None:
                    break
                slot = free.pop(0)
                running[pool.submit(run.execute, item[0], item[1], slot)] = slot
            if not running:
                break
            done, _ = concurrent.futures.wait(running, timeout=POLL_SECONDS,
                                              return_when=concurrent.futures.FIRST_COMPLETED)
            for future in done:
                free.append(running.pop(future))
                result = future.result()
                results[result.cell.index] = result
                failed = failed or result.state == "failed"
            run.stopper.tick()
            run.record.flush()
    return [results.get(cell.index) or Result(cell, "not run") for cell in run.cells]


# -- summary ----------------------------------------------------------------------------------------
def summary(results):
    """The table printed after local runs, and the last line."""
    rows = []
    for r in results:
        status = r.state if r.code in (None, 0) else f"{r.state} ({exit_text(r.code)})"
        rows.append([r.cell.name, status, human_duration(r.seconds) if r.seconds is not None else "-"])
    failed = sum(1 for r in results if r.state == "failed")
    ok = sum(1 for r in results if r.state == "succeeded")
    text = "\n" + format_table(["NAME", "STATUS", "DURATION"], rows)
    text += f"\n{ok} succeeded, {failed} failed, {len(results) - ok - failed} not run or stopped, of {len(results)}"
    return text, (EXIT_FAILED if ok < len(results) else 0)


def run_cells(cells, jobs=None, gpus=None, gpus_per_run=None, fail_fast=False, in_cluster=False, grace=None):
    """Run cells locally; returns the exit code (0 all ok, 1 some failed, 130/143 interrupted)."""
    if gpus_per_run is not None and gpus_per_run < 1:
        raise UsageError(f"gpus_per_run={gpus_per_run}", "expected at least 1")
    if jobs is not None and jobs < 1:
        raise UsageError(f"jobs={jobs}", "expected at least 1")
    if grace is not None and grace < 0:
        raise UsageError(f"grace={grace:g}", "expected a number of seconds, at least 0")
    if gpus_per_run is not None and not gpus:
        warn(f"gpus_per_run={gpus_per_run} has no effect without gpus=")
    slots = gpu_slots(gpus, gpus_per_run) if gpus else None
    jobs = jobs or (len(slots) if slots else 1)
    if slots and jobs > len(slots):
        warn(f"jobs={jobs} but only {len(slots)} GPU slot(s): running {len(slots)} at a time")
        jobs = len(slots)
    piped = jobs > 1
    if piped:
        _check_log_dir()
    stopper = Stopper(DEFAULT_GRACE if grace is None else grace)
    record = StateRecord(cells)
    run = _Run(cells, in_cluster, piped, stopper, record)
    with stopper.handling_signals():  # until the summary is out: a late Ctrl-C cannot cut it
        record.flush(force=True)
        results = _schedule(run, jobs, slots, fail_fast)
        for result in results:
            if result.state == "not run":
                record.update(result.cell, state="not run")
        record.flush(force=True)
        text, code = summary(results)
        print(text, flush=True)
    return stopper.exit_code() or code
