"""The client of the local S3 API server (apiserver.py) and the protocol both sides share.

`POST /` on 127.0.0.1:<port> with a JSON object {"command", "path", options} and the header
`Authorization: Bearer <token>`, the token being read from token_file(port), which only the user can
read. The body also carries the client's identity (its project folder, bucket, endpoint): a server of
another project refuses the work (see foreign). The answer is JSON: {"result": ...} (200) or {"error": "<where>: <what>", ...} (400 usage,
401 token, 500 failure), turned back into the result (a `Transferred` for transfers) or an S3Error here.
The public functions are re-exported by toolbox.s3utils.
"""
from __future__ import annotations

import json
import os
import sys
import threading

from toolbox.errors import EXIT_USAGE, S3Error, S3UsageError, warn
from toolbox.s3.settings import redact_url_credentials
from toolbox.s3.transfer import Transferred

HOST = "127.0.0.1"
DEFAULT_PORT = 57575
# Client read timeouts (seconds without an answer); the server answers when the operation is done.
TIMEOUTS = {"alive": 10, "shutdown": 10, "find": 600, "list": 600, "remove": 3600, "download": 24 * 3600,
            "upload": 24 * 3600}

# ------------------------------------------------------------------ settings shared by server and clients
def api_port(port=None, environ=None) -> int:
    """`port` if given, else S3_API_PORT, else 57575."""
    env = os.environ if environ is None else environ
    name, text = ("port", port) if port not in (None, "") else ("S3_API_PORT", env.get("S3_API_PORT", "").strip())
    if text in (None, ""):
        return DEFAULT_PORT
    try:
        value = int(text)
    except (TypeError, ValueError):
        value = 0
    if not 1 <= value <= 65535:
        raise S3UsageError(f"{name}={text}", "expected a port number (1-65535)")
    return value


def token_file(port, environ=None) -> str:
    """S3_API_TOKEN_FILE, else $XDG_RUNTIME_DIR/kube-toolbox/, else ~/.cache/kube-toolbox/: s3-api-<port>.token"""
    env = os.environ if environ is None else environ
    if env.get("S3_API_TOKEN_FILE"):
        return env["S3_API_TOKEN_FILE"]
    runtime = env.get("XDG_RUNTIME_DIR", "")
    base = runtime if runtime and os.path.isdir(runtime) else os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "kube-toolbox", f"s3-api-{port}.token")


def where(port):
    return f"{HOST}:{port}"


# ------------------------------------------------------------------ whose server
def identity(root=None, environ=None) -> dict:
    """What a server serves, or what a client works on: the project folder (its real path) and, when
    set, the bucket and the endpoint. Every request carries the client's; the server states its own."""
    env = os.environ if environ is None else environ
    found = {"root": os.path.realpath(root or os.getcwd())}
    for name, variable in (("bucket", "S3_BUCKET_NAME"), ("endpoint", "S3_ENDPOINT_URL")):
        value = redact_url_credentials(env.get(variable, "").strip().rstrip("/"))
        if value:
            found[name] = value
    return found


def foreign(server: dict, client: dict):
    """Why a server must not do a client's work (None: it may). The client's folder must be the
    server's project or inside it; bucket and endpoint, when both sides set them, must be the same:
    otherwise `remove_s3_path(..., api_call=True)` of one project would delete another's objects."""
    root, theirs = server.get("root", ""), str(client.get("root", ""))
    if not (theirs == root or theirs.startswith(root.rstrip(os.sep) + os.sep)):
        return f"it serves the project {root}, not {theirs}"
    for name in ("bucket", "endpoint"):
        mine, other = server.get(name), client.get(name)
        if mine and other and mine != other:
            return f"it uses the {name} {mine}, this project {other}"
    return None


def log(text):
    sys.stderr.write(text + "\n")
    sys.stderr.flush()


class Unavailable(S3Error):
    """No server answers on the port (not running, or gone before answering): work locally instead."""


def read_token(port) -> str:
    path = token_file(port)
    try:
        with open(path) as f:
            return f.read().strip()
    except OSError as err:
        if not _port_open(port):
            raise Unavailable(where(port), "no S3 API server is running") from None
        raise S3Error(where(port), f"cannot read the S3 API token file {path}: {err.strerror}",
                      hint="is the server running as another user, or with another XDG_RUNTIME_DIR / "
                           "S3_API_TOKEN_FILE?") from None


def _port_open(port):
    import socket

    try:
        socket.create_connection((HOST, port), timeout=2).close()
        return True
    except OSError:
        return False


# ------------------------------------------------------------------ JSON encoding of results and errors
_FIELDS = ("direction", "backend", "skipped", "failed", "deleted", "nbytes", "seconds")


def encode(result):
    answer = {"result": list(result)}
    if hasattr(result, "summary"):
        answer.update({name: getattr(result, name) for name in _FIELDS})
    return answer


def decode(answer):
    if "direction" not in answer:
        return answer["result"]
    return Transferred(answer["result"], **{name: answer[name] for name in _FIELDS})


def encode_error(err):
    answer = {"error": str(err), "where": err.where, "what": err.what, "details": err.details,
              "hint": err.hint, "exit_code": err.exit_code}
    if err.result is not None:
        answer["partial"] = encode(err.result)
    return answer


def decode_error(answer, port):
    partial = decode(answer["partial"]) if isinstance(answer.get("partial"), dict) else None
    kind = S3UsageError if answer.get("exit_code") == EXIT_USAGE else S3Error
    if "what" not in answer:
        return kind(where(port), str(answer["error"]))
    return kind(answer.get("where", ""), answer["what"], answer.get("details") or (), answer.get("hint"),
                result=partial)


# ------------------------------------------------------------------ the client
def request(command, path="", port=None, timeout=None, **options):
    """POST one command; the decoded answer, or S3Error (Unavailable when no server answers)."""
    import http.client
    import socket

    port = api_port(port)
    token = read_token(port)
    timeout = timeout or TIMEOUTS.get(command, 600)
    body = json.dumps(dict(options, command=command, path=path, client=identity())).encode()
    conn = http.client.HTTPConnection(HOST, port, timeout=timeout)
    try:
        conn.request("POST", "/", body, {"Content-Type": "application/json", "Authorization": f"Bearer {token}"})
        response = conn.getresponse()
        status, data = response.status, response.read()
    except ConnectionRefusedError:
        raise Unavailable(where(port), "no S3 API server is running") from None
    except (ConnectionResetError, http.client.RemoteDisconnected):
        raise Unavailable(where(port), "the S3 API server closed the connection without answering") from None
    except socket.timeout:
        raise S3Error(where(port), f"no answer to {command} {path} within {timeout:g} s",
                      hint="pass a larger timeout= (the server goes on with the work)") from None
    except OSError as err:
        raise S3Error(where(port), f"cannot reach the S3 API server: {err.strerror or err}") from None
    finally:
        conn.close()
    try:
        answer = json.loads(data)
    except ValueError:
        answer = None
    if not isinstance(answer, dict):
        raise S3Error(where(port), f"not an S3 API server answer (HTTP {status})")
    if status == 401:
        raise S3Error(where(port), "the S3 API server refused the token",
                      hint=f"was {token_file(port)} written by the server on this port?")
    if status == 503:                      # stopping: it takes no new work
        raise Unavailable(where(port), str(answer.get("error", "the S3 API server is stopping")))
    if "error" in answer:
        raise decode_error(answer, port)
    return answer


def probe(port=None):
    """None if a server answers `alive` on the port, else why not (one line)."""
    port = api_port(port)                  # a bad S3_API_PORT is an error, not "no server"
    try:
        request("alive", port=port, timeout=5)
        return None
    except S3Error as err:
        return str(err)


def forward(command, path, port=None, **options):
    """Run an operation through the server; None when no server runs (the caller works locally)."""
    if "local_path" in options or command in ("download", "upload"):
        options["local_path"] = os.path.abspath(options.get("local_path") or ".")
    try:
        answer = request(command, path, port, **options)
    except Unavailable:
        return None
    return decode(answer)


def keep_alive(interval=5, stop_event=None, port=None):
    """A daemon thread sending `alive` every `interval` s until stop_event is set: (thread, event);
    (None, None) with a warning when no server answers."""
    port = api_port(port)
    reason = probe(port)
    if reason:
        warn(f"keep_alive: {reason}; nothing to keep alive")
        return None, None
    event = stop_event or threading.Event()

    def loop():
        while not event.wait(interval):
            try:
                request("alive", port=port, timeout=max(10, interval))
            except Unavailable as err:
                warn(f"keep_alive: {err}; stopping")
                return
            except S3Error as err:
                warn(f"keep_alive: {err}")

    thread = threading.Thread(target=loop, name="s3-api-keep-alive", daemon=True)
    thread.start()
    return thread, event


def shutdown(port=None) -> bool:
    """Ask the server to stop (it finishes the requests in flight). False when none was running."""
    try:
        request("shutdown", port=port)
        return True
    except Unavailable:
        return False
