"""`pods/exec` over a websocket (subprotocols v5.channel.k8s.io and v4.channel.k8s.io), as `kubectl exec` and
`kubernetes.stream.stream(...connect_get_namespaced_pod_exec...)` speak it.

Nothing runs: the call (command, container, stdin bytes) is recorded and the configured stdout, stderr and
exit status are sent back, the status as a v1 Status on channel 3. With stdin, the answer waits for the end of
stdin (v5's close-channel message for channel 0, or the client closing the websocket).
"""
import base64
import hashlib
import json
import struct
from dataclasses import dataclass, field

from .api import PODS
from .status import ApiError, bad_request

GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
PROTOCOLS = ("v5.channel.k8s.io", "v4.channel.k8s.io")
STDIN, STDOUT, STDERR, ERROR, RESIZE, CLOSE = 0, 1, 2, 3, 4, 255
OP_CONT, OP_TEXT, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG = 0, 1, 2, 8, 9, 10


@dataclass
class ExecCall:
    namespace: str
    pod: str
    container: str
    command: list
    stdin: bytes = b""
    tty: bool = False
    protocol: str = ""
    websocket_closed: bool = field(default=False, repr=False)  # the client closed before any answer


def _check_pod(double, namespace, name, container):
    pod = double.store.get(PODS, namespace, name)
    names = [c["name"] for c in pod["spec"].get("containers", [])]
    container = container or names[0]
    if container not in names:
        raise bad_request(f"container {container} is not valid for pod {name}")
    phase = pod.get("status", {}).get("phase")
    if phase in ("Succeeded", "Failed"):
        raise bad_request(f"cannot exec into a container in a completed pod; current phase is {phase}")
    running = any(s["name"] == container and "running" in s.get("state", {})
                  for s in pod.get("status", {}).get("containerStatuses", []))
    if not running:
        raise bad_request(f'unable to upgrade connection: container not found ("{container}")')
    return container


def serve_exec(handler, namespace, name):
    double, lists = handler.double, handler.query_lists
    if "websocket" not in (handler.headers.get("Upgrade") or "").lower():
        raise bad_request("Upgrade request required")
    container = _check_pod(double, namespace, name, (lists.get("container") or [None])[-1])
    offered = [p.strip() for p in (handler.headers.get("Sec-WebSocket-Protocol") or "").split(",")]
    protocol = next((p for p in PROTOCOLS if p in offered), None)
    if protocol is None:
        raise ApiError(400, "BadRequest", f"unsupported websocket subprotocols {offered}: this double speaks "
                                          f"{', '.join(PROTOCOLS)}")
    call = ExecCall(namespace, name, container, lists.get("command", []),
                    tty=(lists.get("tty") or ["false"])[-1].lower() in ("true", "1"), protocol=protocol)
    _handshake(handler, protocol)
    handler.close_connection = True
    if (lists.get("stdin") or ["false"])[-1].lower() in ("true", "1"):
        _read_stdin(handler, call)
    double.exec_calls.append(call)
    stdout, stderr, exit_code = _result(double, call)
    if call.websocket_closed:
        return
    conn = _Frames(handler)
    if stdout:
        conn.send(OP_BINARY, bytes([STDOUT]) + stdout)
    if stderr:
        conn.send(OP_BINARY, bytes([STDERR]) + stderr)
    conn.send(OP_BINARY, bytes([ERROR]) + json.dumps(_status(call, exit_code)).encode())
    conn.send(OP_CLOSE, struct.pack("!H", 1000))


def _result(double, call):
    if double.exec_handler is not None:
        stdout, stderr, exit_code = double.exec_handler(call)
        return _bytes(stdout), _bytes(stderr), exit_code
    result = double._next_exec_result()
    return result["stdout"], result["stderr"], result["exit_code"]


def _bytes(value):
    return value.encode() if isinstance(value, str) else bytes(value or b"")


def _status(call, exit_code):
    if not exit_code:
        return {"metadata": {}, "status": "Success"}
    return {"metadata": {}, "status": "Failure",
            "message": f"command terminated with non-zero exit code: error executing command "
                       f"[{' '.join(call.command)}], exit code {exit_code}",
            "reason": "NonZeroExitCode",
            "details": {"causes": [{"reason": "ExitCode", "message": str(exit_code)}]}}


def _handshake(handler, protocol):
    key = handler.headers.get("Sec-WebSocket-Key") or ""
    accept = base64.b64encode(hashlib.sha1((key + GUID).encode()).digest()).decode()
    handler.send_response(101, "Switching Protocols")
    handler.send_header("Upgrade", "websocket")
    handler.send_header("Connection", "Upgrade")
    handler.send_header("Sec-WebSocket-Accept", accept)
    handler.send_header("Sec-WebSocket-Protocol", protocol)
    handler.end_headers()
    handler.wfile.flush()


def _read_stdin(handler, call):
    """Collect stdin until it is closed (v5) or the client closes the websocket."""
    conn = _Frames(handler)
    while True:
        opcode, payload = conn.receive()
        if opcode is None or opcode == OP_CLOSE:
            call.websocket_closed = True
            if opcode == OP_CLOSE:
                conn.send(OP_CLOSE, payload[:2] or struct.pack("!H", 1000))
            return
        if opcode == OP_PING:
            conn.send(OP_PONG, payload)
            continue
        if not payload:
            continue
        channel, data = payload[0], payload[1:]
        if channel == STDIN:
            call.stdin += data
        elif channel == CLOSE and data[:1] == bytes([STDIN]):
            return


def _unmask(data, mask):
    # XOR as one big integer: a per-byte loop would take seconds for a few MB of tar on stdin.
    if not data:
        return data
    key = (mask * (len(data) // 4 + 1))[:len(data)]
    return (int.from_bytes(data, "little") ^ int.from_bytes(key, "little")).to_bytes(len(data), "little")


class _Frames:
    """RFC 6455 framing over the handler's socket files (server side: we never mask)."""

    def __init__(self, handler):
        self.rfile, self.wfile = handler.rfile, handler.wfile

    def _read(self, count):
        data = self.rfile.read(count)
        if len(data) < count:
            raise EOFError
        return data

    def receive(self):
        """One whole message (continuations joined): (opcode, payload), or (None, b"") at EOF."""
        message, first_opcode = b"", None
        try:
            while True:
                head = self._read(2)
                fin, opcode = head[0] & 0x80, head[0] & 0x0F
                length = head[1] & 0x7F
                if length == 126:
                    length = struct.unpack("!H", self._read(2))[0]
                elif length == 127:
                    length = struct.unpack("!Q", self._read(8))[0]
                mask = self._read(4) if head[1] & 0x80 else b"\0\0\0\0"
                payload = _unmask(self._read(length), mask)
                if opcode >= OP_CLOSE:  # control frames may arrive between fragments
                    return opcode, payload
                first_opcode = opcode if first_opcode is None else first_opcode
                message += payload
                if fin:
                    return first_opcode, message
        except (EOFError, ConnectionError, OSError):
            return None, b""

    def send(self, opcode, payload):
        length = len(payload)
        if length < 126:
            header = struct.pack("!BB", 0x80 | opcode, length)
        elif length < 1 << 16:
            header = struct.pack("!BBH", 0x80 | opcode, 126, length)
        else:
            header = struct.pack("!BBQ", 0x80 | opcode, 127, length)
        try:
            self.wfile.write(header + payload)
            self.wfile.flush()
        except (ConnectionError, OSError):
            pass
