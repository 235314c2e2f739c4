"""The one layer that talks to the user: messages beside progress bars, line output, confirmations."""
import sys
import threading

from toolbox.core.console import is_terminal


class Output:
    """Per-cell messages from worker threads (stdout), beside a progress bar (stderr)."""

    def __init__(self):
        self.lock = threading.Lock()
        self.clear = is_terminal(sys.stdout) and is_terminal(sys.stderr)

    def say(self, text, err=False):
        with self.lock:
            stream = sys.stderr if err else sys.stdout
            stream.write(("\r\x1b[K" if self.clear else "") + text + "\n")
            stream.flush()


# -- rendering the sweep ----------------------------------------------------------------------------------


class Printer:
    """Thread-safe line output with an optional per-cell prefix."""

    def __init__(self, stream=None):
        self.stream = stream or sys.stdout
        self.lock = threading.Lock()

    def line(self, text, prefix=""):
        with self.lock:
            self.stream.write(f"{prefix}{text}\n")
            self.stream.flush()


# -- the commands: make status / logs ----------------------------------------------------------------------


def confirm(question, assume_yes=False, stream=None):
    """Ask y/N on the terminal. `assume_yes` (make ... yes=1) answers yes without asking.

    Without a terminal on stdin there is nobody to ask: the answer is no.
    """
    if assume_yes:
        return True
    stream = stream or sys.stderr
    if not is_terminal(sys.stdin):
        stream.write(f"{question} [y/N] no (stdin is not a terminal; pass yes=1 to confirm)\n")
        return False
    stream.write(f"{question} [y/N] ")
    stream.flush()
    answer = sys.stdin.readline().strip().lower()
    return answer in ("y", "yes")
