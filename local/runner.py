"""Executing cells on this machine: in order, or N at a time pinned to GPUs; plus dry runs and the plan.

Every command runs as one bash script (`bash -c`), exactly as in a pod, with `.env` in the
environment, `src` on PYTHONPATH and TOOLBOX_CELL_NAME set. Exit codes are checked and summarised.
"""
import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time

from toolbox.core.console import format_table, human_duration
from toolbox.errors import EXIT_FAILED, EXIT_INTERRUPTED, UsageError, warn

LOG_DIR = "logs"


class Result:
    __slots__ = ("cell", "status", "code", "seconds", "log")

    def __init__(self, cell, status, code=None, seconds=0.0, log=None):
        self.cell, self.status, self.code, self.seconds, self.log = cell, status, code, seconds, log

    @property
    def ok(self):
        return self.status == "ok"


# -- the environment and header of a run ------------------------------------------------------------
def cell_environment(cell, base=None, gpus=None):
    """Environment of a local run: the current one (with .env), src first on PYTHONPATH, the cell's name."""
    env = dict(os.environ if base is None else base)
    src = os.path.abspath("src")
    env["PYTHONPATH"] = src + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
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
    per_run = per_run or 1
    if per_run < 1:
        raise UsageError(f"gpus_per_run={per_run}", "expected at least 1")
    if len(ids) < per_run:
        raise UsageError(f"gpus={gpus}", f"{len(ids)} GPU(s) given but gpus_per_run={per_run}")
    if len(ids) % per_run:
        warn(f"gpus={gpus}: {len(ids) % per_run} GPU(s) left unused with gpus_per_run={per_run}")
    return [ids[i:i + per_run] for i in range(0, len(ids) - len(ids) % per_run, per_run)]


# -- sequential runs: output goes straight to the terminal ----------------------------------------------
def run_sequential(cells, in_cluster, fail_fast, slot=None):
    results = []
    for position, cell in enumerate(cells, 1):
        started = time.monotonic()
        try:
            command = cell.command_for(in_cluster)
            print(header(cell, position, len(cells), command), flush=True)
            code = subprocess.call(["bash", "-c", command], env=cell_environment(cell, gpus=slot))
        except KeyboardInterrupt:
            results.append(Result(cell, "interrupted", None, time.monotonic() - started))
            raise _Interrupted(results, cells) from None
        results.append(Result(cell, "ok" if code == 0 else "failed", code, time.monotonic() - started))
        if code != 0 and fail_fast:
            break
    return results


class _Interrupted(Exception):
    def __init__(self, results, cells):
        super().__init__("interrupted")
        self.results, self.cells = results, cells


# -- parallel runs: prefixed output, one log file per cell ---------------------------------------------
class ParallelRunner:
    def __init__(self, cells, jobs, slots, in_cluster, fail_fast):
        self.cells, self.jobs, self.in_cluster, self.fail_fast = cells, jobs, in_cluster, fail_fast
        self.slots = queue.Queue()
        for slot in slots or [None] * jobs:
            self.slots.put(slot)
        self.lock = threading.Lock()
        self.stop = threading.Event()
        self.procs = set()
        self.results = {}

    def say(self, text):
        with self.lock:
            sys.stdout.write(text)
            sys.stdout.flush()

    def run_one(self, position, cell):
        if self.stop.is_set():
            self.results[cell.index] = Result(cell, "cancelled")
            return
        slot = self.slots.get()
        try:
            self._execute(position, cell, slot)
        finally:
            self.slots.put(slot)

    def _execute(self, position, cell, slot):
        command = cell.command_for(self.in_cluster)
        os.makedirs(LOG_DIR, exist_ok=True)
        log_path = os.path.join(LOG_DIR, f"{cell.name}.log")
        pin = f" on GPU {','.join(slot)}" if slot else ""
        self.say(f"[{cell.name}] started ({position}/{len(self.cells)}){pin}: {command}\n")
        started = time.monotonic()
        with open(log_path, "w", encoding="utf-8") as log:
            log.write(header(cell, position, len(self.cells), command) + "\n")
            log.flush()
            proc = subprocess.Popen(["bash", "-c", command], env=cell_environment(cell, gpus=slot),
                                    stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
            with self.lock:
                self.procs.add(proc)
            for raw in proc.stdout:
                line = raw.decode("utf-8", "replace")
                log.write(line)
                log.flush()
                self.say(f"[{cell.name}] {line}" if line.endswith("\n") else f"[{cell.name}] {line}\n")
            code = proc.wait()
            with self.lock:
                self.procs.discard(proc)
        seconds = time.monotonic() - started
        status = "ok" if code == 0 else ("interrupted" if self.stop.is_set() and code < 0 else "failed")
        self.results[cell.index] = Result(cell, status, code, seconds, log_path)
        self.say(f"[{cell.name}] {'finished' if code == 0 else f'FAILED (exit {code})'} "
                 f"in {human_duration(seconds)}\n")
        if code != 0 and self.fail_fast:
            self.stop.set()  # like make: start nothing new, let running cells finish

    def run(self):
        threads = []
        work = queue.Queue()
        for item in enumerate(self.cells, 1):
            work.put(item)

        def worker():
            while True:
                try:
                    position, cell = work.get_nowait()
                except queue.Empty:
                    return
                self.run_one(position, cell)

        for _ in range(min(self.jobs, len(self.cells))):
            thread = threading.Thread(target=worker, daemon=True)
            thread.start()
            threads.append(thread)
        try:
            for thread in threads:
                while thread.is_alive():
                    thread.join(0.2)
        except KeyboardInterrupt:
            self.stop.set()
            with self.lock:
                for proc in self.procs:
                    proc.send_signal(signal.SIGTERM)
            for thread in threads:
                thread.join(5)
            raise _Interrupted(self.ordered(), self.cells) from None
        return self.ordered()

    def ordered(self):
        return [self.results.get(c.index) or Result(c, "cancelled") for c in self.cells]


# -- summary ----------------------------------------------------------------------------------------
def summary(results, cells):
    """The table printed after local runs, and the exit code."""
    by_index = {r.cell.index: r for r in results}
    rows = []
    for cell in cells:
        r = by_index.get(cell.index) or Result(cell, "not run")
        status = r.status if r.code in (None, 0) else f"{r.status} (exit {r.code})"
        rows.append([cell.name, status, human_duration(r.seconds) if r.seconds else "-"])
    failed = sum(1 for r in results if r.status == "failed")
    ok = sum(1 for r in results if r.ok)
    text = "\n" + format_table(["NAME", "STATUS", "DURATION"], rows)
    text += f"\n{ok} succeeded, {failed} failed, {len(cells) - ok - failed} not run or stopped, of {len(cells)}"
    return text, (EXIT_FAILED if failed or ok < len(cells) else 0)


def run_cells(cells, jobs=None, gpus=None, gpus_per_run=None, fail_fast=False, in_cluster=False):
    """Run cells locally; returns the exit code (0 all ok, 1 some failed, 130 interrupted)."""
    slots = gpu_slots(gpus, gpus_per_run) if gpus else None
    if jobs is not None and jobs < 1:
        raise UsageError(f"jobs={jobs}", "expected at least 1")
    jobs = jobs or (len(slots) if slots else 1)
    if slots and jobs > len(slots):
        warn(f"jobs={jobs} but only {len(slots)} GPU slot(s): running {len(slots)} at a time")
        jobs = len(slots)
    try:
        if jobs == 1:
            results = run_sequential(cells, in_cluster, fail_fast, slot=slots[0] if slots else None)
        else:
            results = ParallelRunner(cells, jobs, slots, in_cluster, fail_fast).run()
    except _Interrupted as stopped:
        text, _ = summary(stopped.results, cells)
        print(text, flush=True)
        return EXIT_INTERRUPTED
    text, code = summary(results, cells)
    print(text, flush=True)
    return code
