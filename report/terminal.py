"""The text of `make status watch=1`: a frame redrawn in place on a terminal, or one plain line at a time
for a log. Pure string building: the caller writes, positions the cursor and decides when.

A frame is a list of lines, each at most `width` visible characters (a wrapped line would break the
in-place redraw) and at most `height` lines (the cursor cannot move back into the scrollback).
"""
import time

from toolbox.core.console import human_duration, plural
from toolbox.report.summary import progress, reason_groups, state_counts

# ANSI SGR colours of each state; colourless terminals get distinct bar glyphs instead.
COLOURS = {"succeeded": "32", "failed": "31", "running": "36", "pending": "33", "interrupted": "35",
           "deleting": "2", "not submitted": "2", "not run": "2"}
GLYPHS = {"succeeded": "#", "failed": "x", "running": ">", "pending": "."}
BAR_WIDTH = 40
MAX_GROUPS = 5


def _paint(text, state, colour):
    code = COLOURS.get(state)
    return f"\x1b[{code}m{text}\x1b[0m" if colour and code and text else text


class Line:
    """One line of a frame as segments (text, state or None), cut to a visible width."""

    def __init__(self, *segments):
        self.segments = [segment if isinstance(segment, tuple) else (segment, None) for segment in segments]

    def add(self, text, state=None):
        self.segments.append((text, state))
        return self

    def render(self, width, colour):
        out, room = [], width
        for text, state in self.segments:
            if room <= 0:
                break
            if len(text) > room:
                text = text[:max(room - 1, 0)] + "…"
            out.append(_paint(text, state, colour))
            room -= len(text)
        return "".join(out)


def bar(records, width=BAR_WIDTH, colour=True):
    """The sweep's progress bar: succeeded, failed, running, then the rest, each in its colour (or glyph).
    A state with any cell gets at least one character: one failure in a big sweep still shows."""
    counts = state_counts(records)
    total = max(len(records), 1)
    shown = [state for state in ("succeeded", "failed", "running") if counts.get(state)]
    sizes = {state: max(round(width * counts[state] / total), 1) for state in shown}
    while sum(sizes.values()) > width:
        sizes[max(sizes, key=sizes.get)] -= 1
    line = Line("[")
    for state in shown:
        glyph = "█" if colour and state != "running" else ("▒" if colour else GLYPHS[state])
        line.add(glyph * sizes[state], state)
    line.add(("·" if colour else ".") * (width - sum(sizes.values())))
    return line.add("]")


def _counts_line(records):
    line = Line("  ")
    for index, (state, count) in enumerate(state_counts(records).items()):
        line.add(("  " if index else "") + f"{count} {state}", state)
    return line


def _group_lines(records, state, heading, limit):
    groups = reason_groups(records, state)
    if not groups or limit <= 0:
        return []
    cells = sum(count for count, _ in groups)
    lines = [Line((f"{heading} ({plural(cells, 'cell')}):", state))]
    shown = groups if len(groups) <= limit else groups[:limit - 1]
    lines += [Line(f"  {plural(count, 'cell'):>10}: {reason}") for count, reason in shown]
    if len(shown) < len(groups):
        rest = groups[len(shown):]
        lines.append(Line(f"  {plural(sum(c for c, _ in rest), 'cell'):>10}: {len(rest)} other reasons"))
    return lines


def _change_lines(changes, limit, now):
    if not changes or limit <= 0:
        return []
    lines = [Line("Recent changes:")]
    for stamp, name, old, new in list(changes)[::-1][:limit]:
        lines.append(Line(f"  {time.strftime('%H:%M:%S', time.localtime(stamp))} "
                          f"({human_duration(max(now - stamp, 0))} ago)  ", (old, old), (" → ", None),
                          (new, new), (f"  {name}", None)))
    return lines


def frame(records, title, changes=(), problems=(), width=100, height=30, colour=True, now=None,
          footer="Ctrl-C stops watching (the cells go on)."):
    """The lines of one frame of the live view (see the module's docstring)."""
    now = time.time() if now is None else now
    done, failed, total = progress(records)
    clock = time.strftime("%H:%M:%S", time.localtime(now))
    head = [Line((f"{title}: {plural(total, 'cell')}", None), (f"   {clock}", None)),
            bar(records, min(BAR_WIDTH, max(width - 30, 10)), colour).add(f" {done}/{total} done").add(
                f", {failed} failed" if failed else "", "failed"),
            _counts_line(records)]
    tail = [Line(("! " + text, "failed")) for text in problems] + [Line(footer)]
    room = max(height - len(head) - len(tail), 0)
    for limit in range(MAX_GROUPS, 0, -1):  # fewer reasons per state until both groups fit
        body = (_group_lines(records, "pending", "Pending", limit)
                + _group_lines(records, "failed", "Failed", limit))
        if len(body) <= room:
            break
    body = body[:room]
    body += _change_lines(changes, room - len(body) - 1, now)
    return [line.render(width, colour) for line in head + body + tail][:max(height, 1)]


def plain_line(records, now=None):
    """One line for a log: '12:03:05 412/1000 done (375 succeeded, 37 failed); 120 running; 300 pending
    (250 Insufficient nvidia.com/gpu, 50 ImagePullBackOff); 168 not submitted'."""
    now = time.time() if now is None else now
    done, _, total = progress(records)
    counts = state_counts(records)
    finished = ", ".join(f"{counts[s]} {s}" for s in ("succeeded", "failed") if counts.get(s))
    parts = [f"{done}/{total} done" + (f" ({finished})" if finished else "")]
    for state, count in counts.items():
        if state in ("succeeded", "failed"):
            continue
        groups = reason_groups(records, state) if state == "pending" else []
        reasons = ", ".join(f"{n} {reason}" for n, reason in groups[:MAX_GROUPS])
        parts.append(f"{count} {state}" + (f" ({reasons})" if reasons else ""))
    return f"{time.strftime('%H:%M:%S', time.localtime(now))} " + "; ".join(parts)
