"""A recording point in front of a real S3 server: a WSGI app that forwards every request unchanged.

tests/fixtures_s3.py puts its request log and fault injection (a WSGI layer) in front of moto in-process;
in front of Ceph RGW the same layer sits on this forwarder, served on 127.0.0.1 by werkzeug. The raw
path, the headers (Host included) and the body go on as they came, so the client's SigV4 signature still
holds at the gateway; the answer is streamed back.

    app = ForwardApp("http://127.0.0.1:7480")
    server = WSGIServer(RecordingApp(app)).start(); server.url; server.stop()
"""
import http.client
import logging
import threading
import urllib.parse

# Hop-by-hop headers (RFC 9110) are about one connection, never forwarded. `Expect: 100-continue` was
# already answered by the front server, which has read the whole body.
HOP_BY_HOP = {"connection", "keep-alive", "proxy-connection", "proxy-authenticate", "proxy-authorization",
              "te", "trailer", "transfer-encoding", "upgrade", "expect"}
CHUNK = 256 * 1024


def request_headers(environ):
    """[(name, value)] of the request as the client sent them (names in lower case)."""
    headers = []
    for key, value in environ.items():
        if key.startswith("HTTP_"):
            name = key[5:].replace("_", "-").lower()
        elif key in ("CONTENT_TYPE", "CONTENT_LENGTH"):
            name = key.replace("_", "-").lower()
        else:
            continue
        if name not in HOP_BY_HOP and value != "":
            headers.append((name, value))
    return headers


def read_body(environ):
    stream = environ["wsgi.input"]
    length = environ.get("CONTENT_LENGTH")
    if length:
        return stream.read(int(length))
    return stream.read() if environ.get("wsgi.input_terminated") else b""


class ForwardApp:
    """Forward each request to `upstream`, over kept-alive connections (a small pool)."""

    def __init__(self, upstream):
        parts = urllib.parse.urlsplit(upstream)
        self.host, self.port = parts.hostname, parts.port or 80
        self._idle = []
        self._lock = threading.Lock()

    def _connection(self):
        with self._lock:
            if self._idle:
                return self._idle.pop()
        return http.client.HTTPConnection(self.host, self.port, timeout=120)

    def release(self, conn, reusable):
        if reusable:
            with self._lock:
                self._idle.append(conn)
        else:
            conn.close()

    def __call__(self, environ, start_response):
        method = environ["REQUEST_METHOD"]
        target = environ.get("RAW_URI") or urllib.parse.quote(environ.get("PATH_INFO", "/")) + (
            "?" + environ["QUERY_STRING"] if environ.get("QUERY_STRING") else "")
        body = read_body(environ)
        headers = [(name, value) for name, value in request_headers(environ) if name != "content-length"]
        conn, response = self._send(method, target, headers, body)
        start_response(f"{response.status} {response.reason}",
                       [(name, value) for name, value in response.getheaders()
                        if name.lower() not in HOP_BY_HOP | {"date", "server"}])
        return _Body(self, conn, response)

    def _send(self, method, target, headers, body):
        # A kept-alive connection the gateway closed meanwhile fails at once: send again on a new one.
        for attempt in (0, 1):
            conn = self._connection() if attempt == 0 else http.client.HTTPConnection(self.host, self.port,
                                                                                        timeout=120)
            try:
                conn.putrequest(method, target, skip_host=True, skip_accept_encoding=True)
                for name, value in headers:
                    conn.putheader(name, value)
                if body or method in ("PUT", "POST"):
                    conn.putheader("content-length", str(len(body)))
                conn.endheaders(body or None)
                return conn, conn.getresponse()
            except (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError):
                conn.close()
                if attempt == 1:
                    raise
        raise AssertionError("unreachable")


class _Body:
    """The upstream answer, streamed; its connection goes back to the pool once the answer is read
    whole (a client that went away early: the connection is closed)."""

    def __init__(self, app, conn, response):
        self.app, self.conn, self.response = app, conn, response

    def __iter__(self):
        while True:
            chunk = self.response.read(CHUNK)
            if not chunk:
                return
            yield chunk

    def close(self):
        if self.conn is not None:
            complete = self.response.isclosed() and not self.response.will_close
            if not self.response.isclosed():
                self.response.close()
            self.app.release(self.conn, complete)
            self.conn = None


class WSGIServer:
    """A WSGI app on 127.0.0.1 (free port), threaded, in a daemon thread of this process."""

    def __init__(self, app):
        self.app = app
        self._server = None

    def start(self):
        from werkzeug.serving import WSGIRequestHandler, make_server

        class Handler(WSGIRequestHandler):
            disable_nagle_algorithm = True

            def log_request(self, *args, **kwargs):         # no line per request in test output
                pass

        logging.getLogger("werkzeug").setLevel(logging.WARNING)
        self._server = make_server("127.0.0.1", 0, self.app, threaded=True, request_handler=Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, daemon=True, name="s3-forward").start()
        self.url = f"http://127.0.0.1:{self._server.server_port}"
        return self

    def stop(self):
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
