"""Following a sweep as it changes: ONE list call per kind (Jobs, Pods), then a watch of each kind from the
list's resourceVersion — the list-then-watch of Kubernetes' own controllers — never a call per cell.

Two threads read the two watch streams and only queue what arrives; the caller's thread applies it to a
`kube.sweep.Sweep` (which is therefore never shared between threads). A watch that the server ends (its
timeout) resumes from the last resourceVersion seen (bookmarks keep it recent); one that fell out of the
server's history (410 Gone) is replaced by a new list; a lost connection is retried with a pause.
"""
import json
import queue
import threading
import time

from toolbox.errors import KubeError, ToolboxError
from toolbox.kube.client import translate

WATCH_SECONDS = 240          # the server ends each watch after this; it is reopened at once
RETRY_PAUSES = (1, 2, 5, 10)  # seconds before reopening after a failure (the last one repeats)
QUICK_END_SECONDS = 1.0      # a watch that ended sooner is reopened after this pause, not in a busy loop
KINDS = ("Job", "Pod")
GONE = 410


def watch_events(response):
    """The events of a watch stream: one JSON object per line, lines possibly split across chunks."""
    pending = b""
    for chunk in response.stream(amt=None, decode_content=False):
        pending += chunk
        lines = pending.split(b"\n")
        pending = lines.pop()
        for line in lines:
            if line.strip():
                yield json.loads(line)
    if pending.strip():
        yield json.loads(pending)


class SweepWatch:
    """List, then watch, the Jobs and Pods of one label selector; `updates()` hands over what arrived:
    ("reset", kind, items), ("event", kind, type, object), ("problem", kind, text), ("ok", kind, "")."""

    def __init__(self, cluster, selector, timeout_seconds=WATCH_SECONDS):
        self.cluster = cluster
        self.selector = selector
        self.timeout_seconds = timeout_seconds
        self.queue = queue.Queue()
        self.stopping = threading.Event()
        self._responses = {}
        self._lock = threading.Lock()

    def start(self):
        """The two list calls, then the two watching threads; returns {kind: listed objects}."""
        listed = {}
        for kind in KINDS:
            listed[kind], version = self.cluster.list_versioned(kind, self.selector)
            threading.Thread(target=self._follow, args=(kind, version), name=f"watch-{kind}", daemon=True).start()
        return listed

    def updates(self, timeout):
        """Everything queued so far, waiting up to `timeout` seconds for the first one ([] if nothing came)."""
        try:
            found = [self.queue.get(timeout=timeout)]
        except queue.Empty:
            return []
        while True:
            try:
                found.append(self.queue.get_nowait())
            except queue.Empty:
                return found

    def stop(self):
        """End both watches now (their sockets are shut, so no thread stays blocked on a read)."""
        self.stopping.set()
        with self._lock:
            responses = list(self._responses.values())
        for response in responses:
            shutdown = getattr(response, "shutdown", None)
            try:
                (shutdown or response.close)()
            except Exception:  # noqa: BLE001, S110 - closing a stream that may already be gone
                pass

    # -- one thread per kind ----------------------------------------------------------------------------
    def _follow(self, kind, version):
        failures = 0
        while not self.stopping.is_set():
            opened, watching = time.monotonic(), bool(version)
            try:
                version = self._watch_once(kind, version) if watching else self._relist(kind)
                if failures:
                    self.queue.put(("ok", kind, ""))
                failures = 0
                if watching and time.monotonic() - opened < QUICK_END_SECONDS:  # a server ending watches at once
                    self.stopping.wait(QUICK_END_SECONDS)
            except ToolboxError as err:
                if self.stopping.is_set():
                    return
                if isinstance(err, KubeError) and err.code == GONE:  # too old a version: list again
                    version = None
                    continue
                failures += 1
                self.queue.put(("problem", kind, err.format().splitlines()[0]))
                self.stopping.wait(RETRY_PAUSES[min(failures, len(RETRY_PAUSES)) - 1])

    def _watch_once(self, kind, version):
        """One watch stream until the server ends it; returns the last resourceVersion seen."""
        response = self.cluster.watch_stream(kind, self.selector, version, self.timeout_seconds)
        with self._lock:
            self._responses[kind] = response
        try:
            for event in watch_events(response):
                if self.stopping.is_set():
                    break
                obj = event.get("object") or {}
                if event.get("type") == "ERROR":  # 410 Gone: the server's history moved past `version`
                    raise KubeError(f"{kind.lower()}s", obj.get("code"), obj.get("reason") or "Error",
                                    obj.get("message") or "", obj)
                version = (obj.get("metadata") or {}).get("resourceVersion") or version
                if event.get("type") != "BOOKMARK":
                    self.queue.put(("event", kind, event.get("type"), obj))
        except ToolboxError:
            raise
        except Exception as err:  # noqa: BLE001 - a broken stream, translated like any client failure
            raise _stream_error(err, kind, self.cluster.host) from None
        finally:
            with self._lock:
                self._responses.pop(kind, None)
            response.close()  # not back to the pool: a stream ended early has unread bytes
        return version

    def _relist(self, kind):
        items, version = self.cluster.list_versioned(kind, self.selector)
        self.queue.put(("reset", kind, items))
        return version


def _stream_error(err, kind, host):
    """A failure while reading a watch stream as a ToolboxError (a dropped connection, a garbled line)."""
    try:
        return translate(err, f"{kind.lower()}s", host)
    except Exception:  # noqa: BLE001 - not a client failure: say what was wrong with the stream
        return ToolboxError(f"{kind.lower()}s", f"unreadable watch stream: {err}")
