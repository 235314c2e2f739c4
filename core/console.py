"""Text for the terminal shared by every layer: tables, sizes, durations, progress bars, booleans."""
import sys
import threading
import time


def format_table(headers, rows):
    """Rows of strings as an aligned plain-text table (header, dashes, rows)."""
    rows = [[str(c) for c in row] for row in rows]
    widths = column_widths(headers, rows)
    out = [table_line(headers, widths), table_line(["-" * w for w in widths], widths)]
    out.extend(table_line(r, widths) for r in rows)
    return "\n".join(out)


def column_widths(headers, rows):
    widths = [len(h) for h in headers]
    for row in rows:
        for i, cell in enumerate(row):
            widths[i] = max(widths[i], len(cell))
    return widths


def table_line(cells, widths):
    """One line of a table; a cell wider than its column pushes the rest of its line to the right."""
    return "  ".join(c.ljust(w) for c, w in zip(cells, widths)).rstrip()


def plural(count, word):
    """3, 'cell' -> '3 cells'; 1 -> '1 cell'."""
    return f"{count} {word}{'' if count == 1 else 's'}"


def human_bytes(n):
    """1536 -> '1.5 KiB'."""
    n = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"  # pragma: no cover


def human_duration(seconds):
    """75.2 -> '1m15s'; 3.21 -> '3.2s'."""
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, secs = divmod(int(seconds), 60)
    if minutes < 60:
        return f"{minutes}m{secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"


def is_terminal(stream):
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


class Progress:
    """Progress of a batch of items (files, jobs), optionally with bytes.

    On a terminal: a live bar redrawn in place. Elsewhere (a Job's log, a pipe): one line every
    `interval` seconds with counts, bytes and rate, so logs stay readable.
    Thread-safe: workers call advance() concurrently.
    """

    def __init__(self, label, total, total_bytes=0, stream=None, interval=5.0):
        self.label = label
        self.total = total
        self.total_bytes = total_bytes
        self.stream = stream or sys.stderr
        self.live = is_terminal(self.stream)
        self.interval = interval
        self.done = 0
        self.bytes = 0
        self.started = time.monotonic()
        self._last = 0.0
        self._lock = threading.Lock()
        self._drawn = False

    def advance(self, count=1, nbytes=0):
        with self._lock:
            self.done += count
            self.bytes += nbytes
            now = time.monotonic()
            if self.live and (now - self._last >= 0.1 or self.done >= self.total):
                self._draw_bar()
                self._last = now
            elif not self.live and now - self._last >= self.interval:
                if self._last:  # skip the very first tick: short batches print nothing extra
                    self.stream.write(self._status() + "\n")
                    self.stream.flush()
                self._last = now

    def _status(self):
        elapsed = max(time.monotonic() - self.started, 1e-9)
        text = f"{self.label}: {self.done}/{self.total}"
        if self.total_bytes or self.bytes:
            text += f", {human_bytes(self.bytes)}"
            if self.total_bytes:
                text += f"/{human_bytes(self.total_bytes)}"
            text += f", {human_bytes(self.bytes / elapsed)}/s"
        return text

    def _draw_bar(self):
        width = 24
        frac = self.done / self.total if self.total else 1.0
        filled = int(width * frac)
        bar = "#" * filled + "." * (width - filled)
        self.stream.write(f"\r[{bar}] {self._status()}\x1b[K")
        self.stream.flush()
        self._drawn = True

    def close(self):
        """End the live bar's line (the caller prints its own summary)."""
        with self._lock:
            if self._drawn:
                self.stream.write("\n")
                self.stream.flush()
                self._drawn = False


# The one table of words for true and false (make variables, hparams overriding a true/false field).
BOOL_WORDS = {"1": True, "true": True, "yes": True, "y": True, "on": True,
              "0": False, "false": False, "no": False, "n": False, "off": False}


def parse_bool(value):
    """True or False for a word of BOOL_WORDS (any case), None for anything else."""
    return BOOL_WORDS.get(str(value).strip().lower())


def number_text(value):
    """A number as a user writes it: 32, 0.5, 1e-05 (floats without a trailing .0)."""
    return f"{value:g}" if isinstance(value, float) else str(value)
