"""Container logs: lines written by test hooks, served with the real endpoint's options and errors.

Every line keeps the time it was written, so `timestamps` and `sinceTime` behave like the kubelet's.
"""
import datetime
import threading

from . import kubelet
from .status import bad_request


def rfc3339nano(when):
    return when.strftime("%Y-%m-%dT%H:%M:%S.") + f"{when.microsecond:06d}000Z"


def parse_time(text):
    try:
        return datetime.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise bad_request(f'parsing time "{text}" as "2006-01-02T15:04:05Z07:00": cannot parse')


class LogBook:
    def __init__(self, store):
        self.store = store
        self._lock = threading.Lock()
        self._lines = {}  # (namespace, pod, container) -> [(datetime, text)]
        self._drops = {}  # (namespace, pod) -> how many times a hook dropped its followers

    def clear(self):
        with self._lock:
            self._lines.clear()
            self._drops.clear()

    def write(self, namespace, pod, container, text, replace=False):
        stamp = datetime.datetime.now(datetime.timezone.utc)
        lines = [(stamp, line) for line in text.splitlines(keepends=True)]
        with self._lock:
            key = (namespace, pod, container)
            self._lines[key] = lines if replace else self._lines.get(key, []) + lines
        self.store.notify()  # wake followers

    def lines(self, namespace, pod, container):
        with self._lock:
            return list(self._lines.get((namespace, pod, container), []))

    def drop(self, namespace, pod):
        with self._lock:
            self._drops[(namespace, pod)] = self._drops.get((namespace, pod), 0) + 1
        self.store.notify()

    def drops(self, namespace, pod):
        with self._lock:
            return self._drops.get((namespace, pod), 0)


def pick_container(pod, requested):
    """The container a log request is for, with the real server's 400s when it cannot tell."""
    names = [c["name"] for c in pod["spec"].get("containers", [])]
    names_all = names + [c["name"] for c in pod["spec"].get("initContainers") or []]
    name = pod["metadata"]["name"]
    if requested:
        if requested not in names_all:
            raise bad_request(f"container {requested} is not valid for pod {name}")
        return requested
    if len(names) != 1:
        raise bad_request(f"a container name must be specified for pod {name}, choose one of: "
                          f"[{' '.join(names)}]")
    return names[0]


def check_started(pod, container):
    name = pod["metadata"]["name"]
    scheduled = [c for c in pod.get("status", {}).get("conditions", []) if c["type"] == "PodScheduled"]
    if not pod["spec"].get("nodeName") and scheduled and scheduled[0]["status"] == "False":
        raise bad_request(f"pod {name} does not have a host assigned")
    reason = kubelet.waiting_reason(pod, container)
    if reason is None:
        return
    detail = {"ErrImagePull": "image can't be pulled",
              "ImagePullBackOff": "trying and failing to pull image"}.get(reason, reason)
    raise bad_request(f'container "{container}" in pod "{name}" is waiting to start: {detail}')


class LogQuery:
    """The log options of one request."""

    def __init__(self, query):
        self.follow = query.get("follow", "false").lower() in ("true", "1")
        self.timestamps = query.get("timestamps", "false").lower() in ("true", "1")
        self.since = parse_time(query["sinceTime"]) if query.get("sinceTime") else None
        if query.get("sinceSeconds"):
            self.since = datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(
                seconds=int(query["sinceSeconds"]))
        self.tail = int(query["tailLines"]) if query.get("tailLines") else None
        self.limit = int(query["limitBytes"]) if query.get("limitBytes") else None

    def render(self, lines, first=True):
        """The bytes for `lines`; `first` applies tailLines (only the initial batch of a follow)."""
        if self.since is not None:
            lines = [(t, text) for t, text in lines if t >= self.since]
        if first and self.tail is not None:
            lines = lines[-self.tail:] if self.tail > 0 else []
        out = "".join((rfc3339nano(t) + " " if self.timestamps else "") + text for t, text in lines)
        data = out.encode()
        return data[:self.limit] if self.limit is not None else data
