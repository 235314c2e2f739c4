"""`make status watch=1`: the sweep followed live, from one list and one watch of Jobs and of Pods.

On a terminal, a frame (counts, a progress bar, pending and failure reasons grouped, the latest changes)
is redrawn in place; elsewhere (a pipe, a log) one summary line is printed every `interval` seconds when
something changed, and one line per cell that fails. It ends by itself once every cell has finished
(exit 0, or 1 if any failed); Ctrl-C stops watching (exit 130; SIGTERM: 143) and leaves the terminal
clean: the last frame whole, the cursor shown.
"""
import os
import shutil
import signal
import sys
import threading
import time

from toolbox.core.console import is_terminal, plural
from toolbox.errors import EXIT_FAILED
from toolbox.kube import arrays
from toolbox.kube.scope import selector
from toolbox.kube.status import gpu_types, jobs_of
from toolbox.kube.sweep import Sweep
from toolbox.kube.watch import SweepWatch
from toolbox.report.summary import progress
from toolbox.report.terminal import frame, plain_line

REDRAW_SECONDS = 0.25    # at most 4 frames a second, however many events arrive
TICK_SECONDS = 1.0       # the clock and the ages of changes move even without events
PLAIN_SECONDS = 10.0     # default interval= between plain lines
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)
HIDE_CURSOR, SHOW_CURSOR, CLEAR_LINE, CLEAR_BELOW = "\x1b[?25l", "\x1b[?25h", "\x1b[K", "\x1b[J"


class Screen:
    """The live frame on a terminal: each frame replaces the previous one, written in one piece."""

    def __init__(self, stream, title):
        self.stream, self.title = stream, title
        self.colour = not os.environ.get("NO_COLOR")
        self.height = 0
        self.last = 0.0
        self.hidden = False

    def begin(self):
        self._write(HIDE_CURSOR)
        self.hidden = True

    def due(self, changed, now):
        return now - self.last >= (REDRAW_SECONDS if changed else TICK_SECONDS)

    def show(self, sweep, problems, changed_cells=(), final=False):
        size = shutil.get_terminal_size((100, 30))
        lines = frame(sweep.ordered(), self.title, sweep.changes, problems.values(), size.columns - 1,
                      size.lines - 1, self.colour)
        back = f"\x1b[{self.height}F" if self.height else "\r"
        self._write(back + "".join(line + CLEAR_LINE + "\n" for line in lines) + CLEAR_BELOW)
        self.height = len(lines)
        self.last = time.monotonic()

    def end(self, message):
        self.restore()
        self._write(message + "\n")

    def restore(self):
        """The cursor shown again, whatever happened (an error too)."""
        if self.hidden:
            self.hidden = False
            self._write(SHOW_CURSOR)

    def _write(self, text):
        self.stream.write(text)
        self.stream.flush()


class Lines(Screen):
    """The same news as plain lines for a log: the summary line when it changed, at most every `interval`
    seconds; at once, a line for each cell that fails (with why) and for a lost connection."""

    def __init__(self, stream, title, interval):
        super().__init__(stream, title)
        self.interval = PLAIN_SECONDS if interval is None else max(float(interval), 0.0)
        self.summary = None   # the last summary printed, without its time
        self.unsaid = False   # the summary changed since, but too soon to print it
        self.said = {}
        self.failures = {}    # cell -> the reason printed for its failure

    def begin(self):
        self._write(f"{self.title}: watching (Ctrl-C stops)\n")

    def end(self, message):
        self._write(message + "\n")

    def due(self, changed, now):
        return changed or (self.unsaid and now - self.last >= self.interval)

    def show(self, sweep, problems, changed_cells=(), final=False):
        stamp = time.strftime("%H:%M:%S")
        text = ""
        for name in changed_cells:
            record = sweep.records[name]
            if record["state"] == "failed" and self.failures.get(name) != record["reason"]:
                text += f"{stamp} failed: {name}: {record['reason']}\n"
                self.failures[name] = record["reason"]
        for kind, problem in problems.items():
            if self.said.get(kind) != problem:
                text += f"{stamp} {problem} (retrying)\n"
        self.said = dict(problems)
        line = plain_line(sweep.ordered())
        summary = line.split(" ", 1)[1]
        self.unsaid = summary != self.summary
        if self.unsaid and (final or time.monotonic() - self.last >= self.interval):
            text += line + "\n"
            self.summary, self.unsaid, self.last = summary, False, time.monotonic()
        self._write(text)


def watch_status(cluster, cells, settings, interval=None, stream=None):
    """Follow the sweep until every cell has finished (0, or 1 if any failed) or Ctrl-C (130)."""
    stream = stream or sys.stdout
    title = f"Sweep {settings['project_name']} ({settings['user']} in {cluster.namespace})"
    live = is_terminal(stream) and os.environ.get("TERM") != "dumb"
    view = Screen(stream, title) if live else Lines(stream, title, interval)
    watch = SweepWatch(cluster, selector(settings))
    listed = watch.start()
    placement = jobs_of(cells, listed["Job"], arrays.cluster_members(cluster, settings, listed["Job"]))
    sweep = Sweep(cells, placement, gpu_types(cluster, listed["Pod"]), listed["Job"],
                  listed["Pod"])
    stop = []  # the signal that stopped the watch; the handler only records it (nothing half-written)
    interrupted = threading.Event()

    def handle(signum, _frame):
        stop.append(signum)
        interrupted.set()

    previous = {sig: signal.signal(sig, handle) for sig in STOP_SIGNALS}
    problems, changed, dirty = {}, [], True
    view.begin()
    try:
        while not interrupted.is_set():
            if view.due(dirty, time.monotonic()):
                view.show(sweep, problems, changed)
                changed, dirty = [], False
            if sweep.finished():
                break
            for update in watch.updates(REDRAW_SECONDS):
                changed += _apply(sweep, problems, update)
                dirty = True
        view.show(sweep, problems, changed, final=True)
    finally:
        watch.stop()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        view.restore()
    done, failed, total = progress(sweep.ordered())
    if interrupted.is_set():
        view.end(f"Stopped watching: {done}/{total} done. The cells go on in the cluster.")
        return 128 + int(stop[0])  # 130 for Ctrl-C, 143 for SIGTERM
    view.end(f"All {plural(total, 'cell')} finished: {total - failed} succeeded, {failed} failed.")
    return EXIT_FAILED if failed else 0


def _apply(sweep, problems, update):
    """One update of the watch applied to the sweep; returns the cells whose state or reason changed."""
    what, kind = update[0], update[1]
    if what == "reset":
        return sweep.reset(kind, update[2])
    if what == "event":
        return sweep.apply(kind, update[2], update[3])
    if what == "problem":
        problems[kind] = update[2]
    else:
        problems.pop(kind, None)
    return []
