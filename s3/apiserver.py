"""The local S3 API server (`make server`): one process serving the S3 operations of this machine.

Processes of one machine (cells packed on one GPU, a training container and its sidecar) send their S3
operations to one server on 127.0.0.1, so they do not race on the same download: identical requests that
arrive while one is running wait for it and share its result. The work is the s3utils API itself; the
protocol and the client are in apiclient.py.

Security: it listens on 127.0.0.1 only, serves nothing but authenticated `POST /` (no GET, no files), and
the token is a fresh random one in a file only the user can read; it serves only clients of its own
project (folder, bucket, endpoint). Threaded: keep-alives are answered while transfers run. Lifetime: it
stops when no request came within `initial_timeout` of its start or, once used, `idle_timeout` after the
end of the last request; never while a request is in flight. Only authenticated requests count: a
process without the token cannot keep it running.
"""
from __future__ import annotations

import errno
import hmac
import json
import os
import secrets
import threading
import time
from concurrent.futures import Future
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from toolbox.core.envfile import redact
from toolbox.core.files import write_atomically
from toolbox.errors import EXIT_USAGE, S3Error, S3UsageError, did_you_mean
from toolbox.s3 import operations
from toolbox.s3.apiclient import HOST, encode, encode_error, foreign, identity, log, token_file, where
from toolbox.s3.paths import parse, printable, text_problem

DEFAULT_INITIAL_TIMEOUT = 600.0
DEFAULT_IDLE_TIMEOUT = 30.0
MAX_BODY = 64 * 1024
TRANSFER_OPTIONS = {"local_path": str, "overwrite": bool, "checksum": bool}
OPTIONS = {"find": {}, "list": {}, "remove": {}, "download": TRANSFER_OPTIONS, "upload": TRANSFER_OPTIONS,
           "alive": {}, "shutdown": {}}


# ------------------------------------------------------------------ token file
def write_token(path) -> str:
    """A fresh token in a file only this user can read (folder 0700, file 0600), replaced atomically."""
    token = secrets.token_urlsafe(32)
    folder = os.path.dirname(path) or "."
    try:
        os.makedirs(folder, mode=0o700, exist_ok=True)
        _keep_private(folder)
        write_atomically(path, token, mode=0o600)
    except OSError as err:
        raise S3Error(path, f"cannot write the S3 API token file: {err.strerror or err}") from None
    return token


def _keep_private(folder):
    """The token's folder is this user's alone (0700), even when something else created it first (e.g.
    ~/.cache/kube-toolbox made by another part of the toolbox with the default mode)."""
    st = os.stat(folder)
    if st.st_uid != os.getuid():
        raise OSError(0, f"{folder} belongs to another user")
    if st.st_mode & 0o077:
        os.chmod(folder, 0o700)


def remove_token(path, token):
    try:
        with open(path) as f:
            if f.read().strip() != token:
                return                   # another server wrote it since
        os.unlink(path)
    except OSError:
        pass


# ------------------------------------------------------------------ the server
class ApiServer(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False               # serve() waits for requests in flight itself

    def __init__(self, port, root, initial_timeout, idle_timeout, secrets_=()):
        self.port, self.root, self.token = port, root, None
        self.identity = identity(root)
        self.initial_timeout, self.idle_timeout = initial_timeout, idle_timeout
        self.secrets = list(secrets_)
        self._cond = threading.Condition()
        self._in_flight, self._used, self._closing = 0, False, None
        self._started = self._last_end = time.monotonic()
        self._running = {}               # (command, path, options) -> Future of the request doing the work
        try:
            super().__init__((HOST, port), Handler)
        except OSError as err:
            if err.errno == errno.EADDRINUSE:
                raise S3Error("", f"an S3 API server is probably already running on port {port} "
                                  "(the port is in use)") from None
            raise S3Error(where(port), f"cannot listen: {err.strerror or err}") from None

    def server_bind(self):               # HTTPServer's version does a reverse DNS lookup of the host
        import socketserver

        socketserver.TCPServer.server_bind(self)
        self.server_name, self.server_port = "localhost", self.port

    # -------------------------------------------------------- lifetime
    def begin_request(self) -> bool:
        """An authenticated request starts: False once the server is stopping (it takes no new work).
        Only these count for the timeouts, so a process without the token cannot keep it running."""
        with self._cond:
            if self._closing is not None:
                return False
            self._in_flight += 1
            return True

    def end_request(self):
        with self._cond:
            self._in_flight -= 1
            self._last_end = time.monotonic()
            self._cond.notify_all()

    def mark_used(self):
        with self._cond:
            self._used = True

    def stop(self, reason):
        with self._cond:
            if self._closing is None:
                self._closing = reason
            self._cond.notify_all()

    def _time_left(self):
        """Seconds until the timeout that applies fires; None: no timeout applies now."""
        if self._in_flight:
            return None
        limit = self.idle_timeout if self._used else self.initial_timeout
        if not limit:
            return None
        return (self._last_end if self._used else self._started) + limit - time.monotonic()

    def _watch(self):
        with self._cond:
            while self._closing is None:
                left = self._time_left()
                if left is not None and left <= 0:
                    self._closing = (f"no request for {self.idle_timeout:g} s" if self._used
                                     else f"no request within {self.initial_timeout:g} s of start")
                    break
                self._cond.wait(left)
        self.shutdown()

    def serve(self):
        """Serve until a timeout, `shutdown` or SIGTERM, then finish the requests in flight."""
        threading.Thread(target=self._watch, name="s3-api-watchdog", daemon=True).start()
        self.serve_forever(poll_interval=0.2)
        with self._cond:
            if self._closing is None:
                self._closing = "stopped"
            while self._in_flight:
                self._cond.wait()
        return self._closing

    # -------------------------------------------------------- requests
    def answer(self, body):
        """(HTTP status, JSON answer) for an authenticated request."""
        self.mark_used()
        command, path = body.get("command"), body.get("path", "")
        label = f"{command} {path or repr(path)}"
        try:
            options = self._options(command, path, body)
            if command == "alive":
                return 200, {"result": "alive", "server": self.identity}
            if command == "shutdown":
                self.stop("shutdown requested")
                return 200, {"result": "shutting down"}
            if options.get("local_path", self.root) != self.root:
                label += f" (local_path={options['local_path']})"
            key = (command, _normal(path), tuple(sorted(options.items())))
            result, shared = self._shared(key, lambda: run_operation(command, path, options), label)
        except S3Error as err:
            self._log(f"s3 api: {label}: {err}")
            return (400 if err.exit_code == EXIT_USAGE else 500), encode_error(err)
        except Exception as err:  # noqa: BLE001 - a bug: one line here, the server keeps serving
            self._log(f"s3 api: {label}: internal error: {type(err).__name__}: {err}")
            return 500, {"error": f"internal error: {type(err).__name__}: {err}", "exit_code": 1}
        self._log(f"s3 api: {label}: " + ("shared: " if shared else "") + describe(command, result))
        return 200, encode(result)

    def _options(self, command, path, body):
        if not isinstance(command, str) or command not in OPTIONS:
            hint = did_you_mean(command, OPTIONS) if isinstance(command, str) else None
            raise S3UsageError(f"command={command}", "unknown command",
                          ([hint] if hint else []) + ["valid: " + ", ".join(OPTIONS)])
        if not isinstance(path, str):
            raise S3UsageError(f"path={path}", "expected a string")
        self._check_client(command, body.get("client"))
        allowed = OPTIONS[command]
        options = {}
        for name, value in body.items():
            if name in ("command", "path", "client"):
                continue
            if name not in allowed:
                raise S3UsageError(f"{name}=", f"not an option of {command}",
                              ["valid: " + (", ".join(allowed) or "(none)")])
            if not isinstance(value, allowed[name]):
                raise S3UsageError(f"{name}={value}", f"expected a {allowed[name].__name__}")
            if isinstance(value, str) and text_problem(value):    # the filesystem would raise, not answer
                raise S3UsageError(f"{name}={printable(value)}", text_problem(value))
            options[name] = value
        if "local_path" in allowed:
            options["local_path"] = self._local_path(options.get("local_path", "."))
        return options

    def _check_client(self, command, client):
        """Work only for clients of this project: a server of project B must not delete project A's
        objects, nor write into A's folders. `alive` is answered for anyone (with this server's identity)."""
        if command == "alive" or client is None:
            return
        why = foreign(self.identity, client) if isinstance(client, dict) else "the request names no project"
        if why:
            raise S3UsageError(where(self.port), f"this S3 API server belongs to another project: {why}",
                               hint="stop it, or give each project its own port (S3_API_PORT=<port> in .env)")

    def _local_path(self, text):
        """Relative to the server's working directory, and inside it (lexically: symlinks inside count)."""
        path = os.path.normpath(os.path.join(self.root, text))
        if path != self.root and not path.startswith(self.root.rstrip(os.sep) + os.sep):
            raise S3UsageError(f"local_path={text}", f"outside the S3 API server's working directory {self.root}")
        return path

    def _shared(self, key, work, label):
        """Run work(), unless the same request is running: then wait for it and return its result."""
        with self._cond:
            future = self._running.get(key)
            owner = future is None
            if owner:
                future = self._running[key] = Future()
        if not owner:
            self._log(f"s3 api: {label}: the same request is running: waiting for its result")
            return future.result(), True
        try:
            result = work()
        except BaseException as err:     # handed to the waiting requests too, then re-raised
            self._forget(key)
            future.set_exception(err)
            raise
        self._forget(key)
        future.set_result(result)
        return result, False

    def _forget(self, key):
        with self._cond:                 # a request arriving from now on does the work again
            del self._running[key]

    def _log(self, text):

        log(redact(text, self.secrets))


class Handler(BaseHTTPRequestHandler):
    server_version = "toolbox-s3-api"
    timeout = 60                         # to read a request: a silent client cannot hold a thread forever

    def do_POST(self):
        if self.path != "/":
            return self._send(404, {"error": f"{self.path}: not found (POST / only)"})
        token = self.server.token or ""
        given = self.headers.get("Authorization", "")
        if not token or not hmac.compare_digest(given.encode(), f"Bearer {token}".encode()):
            return self._send(401, {"error": "missing or wrong token (Authorization: Bearer <the server's "
                                             f"token file, {token_file(self.server.port)}>)"})
        try:
            length = int(self.headers.get("Content-Length") or 0)
            if not 0 < length <= MAX_BODY:
                raise ValueError(f"expected a JSON body of 1 to {MAX_BODY} bytes")
            body = json.loads(self.rfile.read(length))
        except ValueError as err:
            return self._send(400, {"error": f"bad request: {err}"})
        if not isinstance(body, dict):
            return self._send(400, {"error": "bad request: expected a JSON object"})
        if not self.server.begin_request():
            return self._send(503, {"error": "the S3 API server is stopping"})
        try:
            return self._send(*self.server.answer(body))
        finally:
            self.server.end_request()

    def refuse(self):
        self._send(405, {"error": f"{self.command}: not served (POST / with a token only)"})

    do_GET = do_HEAD = do_PUT = do_DELETE = do_PATCH = do_OPTIONS = refuse

    def _send(self, status, answer):
        data = json.dumps(answer).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        if status == 405:
            self.send_header("Allow", "POST")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    def version_string(self):
        return self.server_version

    def log_message(self, format, *args):  # no access log
        pass


def _normal(path):
    try:
        return parse(path, allow_root=True).text
    except S3Error:
        return path


def run_operation(command, path, options):
    """The s3utils function for a command: the server adds no S3 rule of its own."""
    if command == "find":
        return operations.get_s3_objects(path)
    if command == "list":
        return operations.list_s3_objects(path)
    if command == "remove":
        return operations.remove_s3_path(path)
    func = operations.download_s3_path if command == "download" else operations.upload_s3_path
    return func(path, progress=False, **options)


def describe(command, result):
    if hasattr(result, "summary"):
        return result.summary(command)[len(command) + 2:]      # without the leading "<command>: "
    return f"{len(result)} key" + ("" if len(result) == 1 else "s")
