"""Following a pod's log: waits while it is Pending (saying why), reconnects when the stream drops without
showing a line twice, ends when the pod has finished."""
import time

from toolbox.errors import KubeError, Unreachable
from toolbox.kube.status import parse_time, pod_reason

POLL_SECONDS = 2.0


def _split_timestamp(line):
    stamp, sep, text = line.partition(" ")
    if not sep or not stamp[:4].isdigit() or "T" not in stamp:
        return None, line
    return stamp, text


def _stamp_key(stamp):
    """RFC 3339 (nano) timestamps as comparable tuples (fractions have no trailing zeros)."""
    whole, _, fraction = stamp.rstrip("Z").partition(".")
    return whole, fraction.ljust(9, "0")


class LogFollower:
    """Follows one pod's log: waits while it is Pending (saying why), reconnects when the stream drops
    (no line twice: after a reconnect, lines up to the last one shown are skipped by their timestamps),
    ends when the pod has finished."""

    def __init__(self, cluster, pod_name, write, say, container=None, poll=POLL_SECONDS):
        self.cluster, self.pod_name, self.write, self.say = cluster, pod_name, write, say
        self.container, self.poll = container, poll
        self.last_key, self.last_count = None, 0   # timestamp of the last line shown, lines shown with it
        self.replaying, self.skip = False, 0

    def wait_started(self):
        """The pod once it runs or has finished (None if it disappeared)."""
        said = None
        while True:
            pod = self.cluster.get("Pod", self.pod_name)
            if pod is None:
                return None
            phase = (pod.get("status") or {}).get("phase") or "Pending"
            started = any("running" in (c.get("state") or {}) or "terminated" in (c.get("state") or {})
                          for c in (pod.get("status") or {}).get("containerStatuses") or [])
            if phase != "Pending" or started:
                return pod
            reason = pod_reason(pod)
            message = f"pod {self.pod_name} is Pending" + (f" ({reason})" if reason else "") + "; waiting"
            if message != said:
                self.say(message)
                said = message
            time.sleep(self.poll)

    def follow(self):
        """Follow until the pod has finished; returns its final phase ('Gone' if it was deleted)."""
        if self.wait_started() is None:
            self.say(f"pod {self.pod_name} is gone")
            return "Gone"
        phase, attempt = None, 0
        while True:
            since = None
            if attempt and self.last_key is not None:
                last = parse_time(self.last_key[0] + "Z")
                since = max(int(time.time() - last.timestamp()) + 10, 1) if last else None
                self.replaying, self.skip = True, self.last_count
            attempt += 1
            try:
                self._stream(since)
            except (Unreachable, KubeError) as err:
                self.say(f"log stream of {self.pod_name} interrupted ({err.what}); reconnecting")
            except Exception as err:  # noqa: BLE001 - a dropped stream (urllib3 ProtocolError...)
                if "Timeout" not in type(err).__name__:  # a quiet pod: reconnect without a word
                    self.say(f"log stream of {self.pod_name} dropped ({type(err).__name__}); reconnecting")
            pod = self.cluster.get("Pod", self.pod_name)
            phase = ((pod or {}).get("status") or {}).get("phase")
            if pod is None or phase in ("Succeeded", "Failed"):
                return phase or "Gone"
            time.sleep(min(self.poll, 1.0))

    def _stream(self, since):
        response = self.cluster.log_stream(self.pod_name, self.container, since_seconds=since)
        try:
            pending = b""
            for chunk in response.stream(4096, decode_content=True):
                pending += chunk
                *lines, pending = pending.split(b"\n")
                for raw in lines:
                    self._line(raw.decode("utf-8", "replace"))
            if pending:
                self._line(pending.decode("utf-8", "replace"))
        finally:
            response.release_conn()

    def _line(self, line):
        stamp, text = _split_timestamp(line)
        if stamp is None:
            self.write(text)
            return
        key = _stamp_key(stamp)
        if self.replaying:
            if key < self.last_key:
                return
            if key == self.last_key and self.skip > 0:
                self.skip -= 1
                return
            self.replaying = False
        if key == self.last_key:
            self.last_count += 1
        else:
            self.last_key, self.last_count = key, 1
        self.write(text)
