"""Stopping local runs gently: a cell gets SIGINT and time to save before anything harsher.

On Ctrl-C (SIGINT) or SIGTERM, the toolbox starts no new cell and sends SIGINT to the process group of
every running cell; `grace` seconds later SIGTERM to those still running, and min(grace, 5) seconds
after that SIGKILL. Each further Ctrl-C/SIGTERM moves to the next step at once. The signal handler only
records the request: the main thread's tick() sends the signals (so no lock is ever taken inside a
handler), and the process exits with 128 + the first signal's number once the cells are done.
"""
import contextlib
import os
import signal
import sys
import threading
import time

DEFAULT_GRACE = 10.0
MAX_KILL_WAIT = 5.0
STEPS = (signal.SIGINT, signal.SIGTERM, signal.SIGKILL)
HANDLED = (signal.SIGINT, signal.SIGTERM)


class Stopper:
    def __init__(self, grace=DEFAULT_GRACE):
        self.grace = grace
        self.signal = None        # the first signal the toolbox received
        self.requests = 0         # signals received (the handler only counts)
        self.handled = 0          # requests tick() has acted on
        self.step = -1            # index in STEPS reached
        self.step_time = 0.0
        self.lock = threading.Lock()
        self.groups = {}          # process group id -> [cell name, index of the last step sent]
        self.signalled = set()    # cells that received a stop signal

    # -- the signal handler (main thread, between two bytecodes) ------------------------------------------
    def _handle(self, signum, frame):
        if self.signal is None:
            self.signal = signum
        self.requests += 1

    @contextlib.contextmanager
    def handling_signals(self):
        if threading.current_thread() is not threading.main_thread():
            yield self
            return
        previous = {sig: signal.signal(sig, self._handle) for sig in HANDLED}
        try:
            yield self
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)

    @property
    def stopping(self):
        return self.signal is not None

    def exit_code(self):
        """128 + the first signal (130 for Ctrl-C, 143 for SIGTERM), or None."""
        return 128 + int(self.signal) if self.signal is not None else None

    # -- cells (worker threads) ------------------------------------------------------------------------------
    def add(self, proc, name):
        with self.lock:
            self.groups.setdefault(proc.pid, [name, -1])

    def follow(self, proc, name):
        """Wait for a cell's process; returns its exit code."""
        self.add(proc, name)
        waitid = getattr(os, "waitid", None)
        if waitid is not None:
            # wait without reaping: until the group is forgotten, its id cannot be reused by another
            # process, so tick() never signals a stranger
            try:
                waitid(os.P_PID, proc.pid, os.WEXITED | os.WNOWAIT)
            except ChildProcessError:
                pass
        with self.lock:
            self.groups.pop(proc.pid, None)
        return proc.wait()

    def stopped(self, name):
        """Whether the cell received a stop signal."""
        with self.lock:
            return name in self.signalled

    # -- the main thread --------------------------------------------------------------------------------------
    def tick(self):
        """Move to the next step when a signal came or the step's time is over; signal the groups."""
        if self.signal is None:
            return
        now = time.monotonic()
        step = self.step
        while self.handled < self.requests:
            self.handled += 1
            step += 1
        if step == self.step == 0 and now - self.step_time >= self.grace:
            step = 1
        elif step == self.step == 1 and now - self.step_time >= min(self.grace, MAX_KILL_WAIT):
            step = 2
        step = min(step, len(STEPS) - 1)
        if step != self.step:
            self.step, self.step_time = step, now
            self._announce()
        with self.lock:
            for pgid, entry in self.groups.items():
                if entry[1] < self.step:
                    entry[1] = self.step
                    self.signalled.add(entry[0])
                    try:
                        os.killpg(pgid, STEPS[self.step])
                    except (ProcessLookupError, PermissionError):
                        pass

    def _announce(self):
        with self.lock:
            count = len(self.groups)
        sent = STEPS[self.step].name
        if self.step == 0:
            received = signal.Signals(self.signal).name
            what = (f"{sent} sent to {count} running cell(s); they have {self.grace:g}s to finish "
                    f"(Ctrl-C again to stop them now)") if count else "no cell is running"
            text = f"\n{received} received: starting no new cell; {what}"
        else:
            text = f"{sent} sent to {count} cell(s) still running" if count else ""
        if text:
            print(text, file=sys.stderr, flush=True)
