"""The local S3 API server: the real `launch.py server` / `make server` in a subprocess, the real client
functions of toolbox.s3utils, the S3 test servers behind.

The S3 settings are in the server's environment only: the test process (the clients) has none, so any
operation that did not go through the server would fail with "S3_BUCKET_NAME: not set".
No timing assertions: a few generous waits ("still up after 3 s with idle_timeout=1").
"""
import http.client
import json
import os
import queue
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from types import SimpleNamespace

import pytest

from fixtures_s3 import S3_VARS, Fault, make_tree, read_tree, s3_environment
from toolbox.errors import S3Error
from toolbox.s3utils import (Transferred, api_server_online, download_s3_path, get_s3_objects, keep_alive,
                             list_s3_objects, remove_s3_path, send_request, shutdown_server, upload_s3_path)

WAIT = 30
TREE = {"data/1.txt": "one", "data/sub/2.txt": "two", "data.txt": "sibling"}
KEYS = ["data/1.txt", "data/sub/2.txt"]


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class ServerProcess:
    """`python launch.py server` (or `make server`) in its own process group, its output collected."""

    def __init__(self, argv, cwd, env):
        self.proc = subprocess.Popen(argv, cwd=cwd, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT, text=True, start_new_session=True)
        self.lines, self.seen = queue.Queue(), []
        self.pump = threading.Thread(target=self._pump, daemon=True)
        self.pump.start()

    def _pump(self):
        for line in self.proc.stdout:
            self.lines.put(line.rstrip("\n"))

    def _drain(self, timeout=0.2):
        try:
            self.seen.append(self.lines.get(timeout=timeout))
        except queue.Empty:
            pass

    def wait_for(self, text, count=1):
        deadline = time.monotonic() + WAIT
        while time.monotonic() < deadline:
            if sum(text in line for line in self.seen) >= count:
                return
            if self.proc.poll() is not None and self.lines.empty():
                break
            self._drain()
        raise AssertionError(f"the server never printed {text!r} ({count}x); output: {self.seen}")

    def wait_exit(self):
        code = self.proc.wait(WAIT)
        self.pump.join(WAIT)                       # all of its output
        while not self.lines.empty():
            self.seen.append(self.lines.get())
        return code

    @property
    def output(self):
        return "\n".join(self.seen)

    def kill(self):
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()


class Hold(Fault):
    """Hold matching S3 requests on the server side until `release` is set: a slow operation in flight."""

    def __init__(self, match, count=1):
        super().__init__(count, match)
        self.entered, self.release = threading.Event(), threading.Event()

    def respond(self, app, environ, start_response):
        self.entered.set()
        self.release.wait(WAIT)
        return app.app(environ, start_response)


def hold(s3, kind="LIST"):
    fault = Hold(lambda r: r.kind == kind)
    with s3.server.app.lock:
        s3.server.app.faults.append(fault)
    return fault


@pytest.fixture
def api(s3, project, tmp_path, monkeypatch):
    """Start servers in the project; the clients (this process) use the same port and token folder."""
    runtime = tmp_path / "run"
    runtime.mkdir(mode=0o700)
    port = free_port()
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(runtime))
    monkeypatch.setenv("S3_API_PORT", str(port))
    server_env = dict(os.environ)
    for var in S3_VARS:
        monkeypatch.delenv(var, raising=False)
    started = []

    def start(*flags, make=False, **make_vars):
        env = dict(server_env, PYTHON=sys.executable, **{k: str(v) for k, v in make_vars.items()})
        argv = ["make", "server"] if make else [sys.executable, "launch.py", "server"]
        started.append(ServerProcess(argv + list(flags), project.path, env))
        started[-1].wait_for("s3 api: serving")
        return started[-1]

    yield SimpleNamespace(start=start, port=port, env=server_env,
                          token=runtime / "kube-toolbox" / f"s3-api-{port}.token")
    for server in started:
        server.kill()


def post(port, body, token=None, method="POST", path="/"):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=WAIT)
    headers = {"Content-Type": "application/json"}
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    conn.request(method, path, json.dumps(body).encode() if body is not None else None, headers)
    response = conn.getresponse()
    status, data = response.status, response.read()
    conn.close()
    return status, data


def test_every_command_through_the_server(api, s3, project):
    make_tree(project.path, TREE)
    server = api.start()
    assert api_server_online()

    up = upload_s3_path("data/", api_call=True)
    assert isinstance(up, Transferred) and list(up) == KEYS and up.direction == "up"
    assert s3.keys() == KEYS
    assert send_request("find", "data/")["result"] == KEYS
    assert get_s3_objects("data", api_call=True) == KEYS
    assert list_s3_objects("data/", api_call=True) == ["data/sub/", "data/1.txt"]
    assert list_s3_objects("", api_call=True) == ["data/"]

    down = download_s3_path("data/", local_path="copy", api_call=True)
    assert list(down) == KEYS and down.skipped == []
    assert read_tree(project.path / "copy") == {"data/1.txt": b"one", "data/sub/2.txt": b"two"}
    again = download_s3_path("data/", local_path="copy", api_call=True)
    assert list(again) == [] and again.skipped == KEYS
    assert send_request("alive") == {"result": "alive", "server": {
        "root": os.path.realpath(project.path), "bucket": s3.bucket, "endpoint": s3.url}}

    with pytest.raises(S3Error) as err:
        download_s3_path("nothing/", api_call=True)
    assert str(err.value) == f"s3://{s3.bucket}/nothing/: no object matches" and err.value.exit_code == 1
    with pytest.raises(S3Error) as err:
        send_request("download", "data/", local_path="/etc")
    assert err.value.exit_code == 2
    assert "local_path=/etc: outside the S3 API server's working directory" in str(err.value)
    with pytest.raises(S3Error) as err:
        send_request("downlaod", "data/")
    assert str(err.value) == "command=downlaod: unknown command"
    assert "did you mean 'download'?" in err.value.format()
    with pytest.raises(S3Error, match="not an option of find"):
        send_request("find", "data/", overwrite=True)

    assert remove_s3_path("data/", api_call=True) == KEYS
    assert s3.keys() == []
    assert api.token.exists()
    assert shutdown_server() is True
    assert server.wait_exit() == 0
    assert "s3 api: stopped (shutdown requested)" in server.output
    assert "s3 api: download data/ (local_path=" in server.output
    assert not api.token.exists()
    assert not api_server_online()
    assert shutdown_server() is False


def test_only_authenticated_posts_are_served(api, project):
    secret = "dotenv-secret-value-never-served"
    project.env(f"SOME_TOKEN={secret}\n")
    api.start()
    token = api.token.read_text()
    assert oct(api.token.stat().st_mode & 0o777) == "0o600"
    assert oct(api.token.parent.stat().st_mode & 0o777) == "0o700"

    assert post(api.port, {"command": "alive"})[0] == 401
    assert post(api.port, {"command": "alive"}, token="wrong" + token)[0] == 401
    status, data = post(api.port, {"command": "alive"}, token=token)
    assert status == 200 and json.loads(data)["result"] == "alive"
    assert post(api.port, {"command": "alive"}, token=token, path="/.env")[0] == 404
    for path in ("/.env", "/", "/launch.py", "/config/kube.yaml"):
        for auth in (None, token):
            status, data = post(api.port, None, token=auth, method="GET", path=path)
            assert status == 405 and secret.encode() not in data and b"project_name" not in data
    assert post(api.port, [1, 2], token=token)[0] == 400
    status, data = post(api.port, {"command": ["x"]}, token=token)
    assert status == 400 and b"unknown command" in data

    if os.path.exists("/proc/net/tcp"):           # listening on 127.0.0.1 only
        with open("/proc/net/tcp") as f:
            listening = [line.split()[1] for line in f.read().splitlines()[1:] if line.split()[3] == "0A"]
        assert f"0100007F:{api.port:04X}" in listening
        assert not [a for a in listening if a.endswith(f":{api.port:04X}") and a != f"0100007F:{api.port:04X}"]


@pytest.mark.parametrize("backend", ["s5cmd", "boto3"])
def test_identical_concurrent_downloads_share_one_transfer(api, s3, project, backend):
    s3.seed({"data/1.txt": "one", "data/2.txt": "two", "data/sub/3.txt": "three"})
    server = api.start(S3_BACKEND=backend)
    held = hold(s3)                                # the first download waits at its first LIST
    results = []

    def download():
        results.append(download_s3_path("data/", api_call=True))

    threads = [threading.Thread(target=download, daemon=True) for _ in range(4)]
    for t in threads:
        t.start()
    assert held.entered.wait(WAIT)
    server.wait_for("the same request is running: waiting for its result", count=3)
    held.release.set()
    for t in threads:
        t.join(WAIT)
    assert len(results) == 4 and all(list(r) == ["data/1.txt", "data/2.txt", "data/sub/3.txt"] for r in results)
    assert {k: s3.count("GET", k) for k in ("data/1.txt", "data/2.txt", "data/sub/3.txt")} == \
        {"data/1.txt": 1, "data/2.txt": 1, "data/sub/3.txt": 1}
    assert read_tree(project.path / "data") == {"1.txt": b"one", "2.txt": b"two", "sub/3.txt": b"three"}
    server.wait_for("s3 api: download data/: shared: 3 transferred", count=3)


def test_idle_shutdown_waits_for_a_request_in_flight(api, s3):
    s3.seed({"data/1.txt": "one"})
    server = api.start(idle_timeout=1)
    assert send_request("alive")                   # used: the idle clock applies from now on
    held = hold(s3)
    answers = []
    client = threading.Thread(target=lambda: answers.append(send_request("find", "data/")), daemon=True)
    client.start()
    assert held.entered.wait(WAIT)
    time.sleep(3)                                  # three idle timeouts while the request is in flight
    assert server.proc.poll() is None, server.output
    held.release.set()
    client.join(WAIT)
    assert answers == [{"result": ["data/1.txt"]}]
    assert server.wait_exit() == 0                 # then idle for 1 s after that request: it stops
    assert "s3 api: stopped (no request for 1 s)" in server.output
    assert not api.token.exists()


def test_initial_timeout_and_sigterm_stop_it_cleanly(api):
    server = api.start("--initial_timeout", "1")
    assert server.wait_exit() == 0
    assert "s3 api: stopped (no request within 1 s of start)" in server.output
    assert not api.token.exists()

    server = api.start(initial_timeout=0, idle_timeout=0)   # 0: no limit; SIGTERM stops it
    assert "waits for a first request, then runs until shutdown" in server.output
    os.kill(server.proc.pid, signal.SIGTERM)
    assert server.wait_exit() == 0
    assert "s3 api: stopped (SIGTERM)" in server.output and not api.token.exists()


def test_keep_alive_holds_off_the_idle_shutdown(api, capfd):
    server = api.start(idle_timeout=1)
    thread, event = keep_alive(interval=0.2)
    assert thread.is_alive()
    time.sleep(3)
    assert server.proc.poll() is None, server.output
    event.set()
    thread.join(WAIT)
    assert server.wait_exit() == 0
    assert keep_alive() == (None, None)
    assert f"warning: keep_alive: 127.0.0.1:{api.port}: no S3 API server is running; nothing to keep alive" \
        in capfd.readouterr().err


def test_without_a_server_the_work_is_done_here(s3, project, cli, tmp_path, monkeypatch, capfd):
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path))
    port = free_port()
    monkeypatch.setenv("S3_API_PORT", str(port))
    make_tree(project.path, TREE)
    assert not api_server_online()
    assert list(upload_s3_path("data/", api_call=True)) == KEYS
    assert get_s3_objects("data/", api_call=True) == KEYS
    assert list(download_s3_path("data/", local_path="copy", api_call=True)) == KEYS
    assert remove_s3_path("data/", api_call=True) == KEYS
    assert shutdown_server() is False
    capfd.readouterr()

    r = cli("upload", file="data/", api="true")
    assert r.code == 0 and r.out.startswith("upload: 2 transferred") and "via the S3 API" not in r.out
    assert f"s3 api: no S3 API server on port {port}: working locally" in r.err
    r = cli("remove", file="data/", api="true", yes="1")
    assert r.code == 0 and s3.keys() == []

    r = cli("server", port="70000")
    assert r.code == 2 and r.err.strip() == "error: port=70000: expected a port number (1-65535)"
    r = cli("server", idle_timeout="-1")
    assert r.code == 2 and "error: idle_timeout=-1: expected a number of seconds" in r.err
    monkeypatch.setenv("S3_API_PORT", "http")
    with pytest.raises(S3Error, match=r"S3_API_PORT=http: expected a port number"):
        api_server_online()


def test_a_port_in_use_is_one_line(api, project):
    api.start()
    token = api.token.read_text()
    second = subprocess.run([sys.executable, "launch.py", "server"], cwd=project.path, env=api.env,
                            capture_output=True, text=True, timeout=WAIT)
    assert second.returncode == 1
    assert second.stderr.splitlines() == [
        f"error: an S3 API server is probably already running on port {api.port} (the port is in use)"]
    assert api.token.read_text() == token and send_request("alive")   # the first one is untouched

    with socket.create_server(("127.0.0.1", 0)) as other:             # any other listener
        busy = other.getsockname()[1]
        r = subprocess.run([sys.executable, "launch.py", "server", "--port", str(busy)], cwd=project.path,
                           env=api.env, capture_output=True, text=True, timeout=WAIT)
    assert r.returncode == 1 and f"probably already running on port {busy}" in r.stderr
    assert "Traceback" not in r.stderr


def test_make_server_on_a_custom_port_and_make_api_true(api, s3, project, make, monkeypatch):
    s3.seed({"data/1.txt": "one", "data/sub/2.txt": "two"})
    port = free_port()
    server = api.start(f"port={port}", make=True)
    assert f"on http://127.0.0.1:{port} " in server.output
    assert not api_server_online()                 # S3_API_PORT is another port
    assert api_server_online(port=port)

    r = make("download", "file=data/", "api=true", f"port={port}", "local_path=copy")
    assert r.returncode == 0, r.stderr
    assert r.stdout == (f"download: 2 transferred, 0 skipped, 0 failed, 6 B in {_seconds(r.stdout)} "
                        f"({_backend(r.stdout)}) via the S3 API server on port {port}\n")
    assert read_tree(project.path / "copy") == {"data/1.txt": b"one", "data/sub/2.txt": b"two"}
    make_tree(project.path, {"data/3.txt": "three"})
    r = make("upload", "file=data/3.txt", "api=true", f"port={port}")
    assert r.returncode == 0 and "via the S3 API server" in r.stdout, r.stderr
    project.env("".join(f"{k}={v}\n" for k, v in s3_environment(s3.url).items()))   # removal is local
    r = make("rm", "file=data/sub", "api=true", f"port={port}")        # no terminal, no yes=1: asks, no
    assert r.returncode != 0 and "cancelled: nothing removed" in r.stdout
    r = make("rm", "file=data/sub", "api=true", f"port={port}", "yes=1")   # exactly the listed keys, here
    assert r.returncode == 0 and "removed 1 objects (3 B) from s3://" in r.stdout, r.stdout
    assert s3.keys() == ["data/1.txt", "data/3.txt"]

    monkeypatch.setenv("S3_API_PORT", str(port))
    assert list(download_s3_path("data/3.txt", local_path="copy", api_call=True)) == ["data/3.txt"]
    assert shutdown_server() is True
    assert server.wait_exit() == 0
    assert "s3 api: upload data/3.txt" in server.output and "s3 api: remove" not in server.output


def _seconds(text):
    return re.search(r"in (\S+s) \(", text).group(1)


def _backend(text):
    return re.search(r"\((s5cmd|boto3)\)", text).group(1)


def test_a_server_of_another_project_refuses_the_work(api, s3, project, tmp_path, monkeypatch):
    """Project B's server holds the port; project A's `remove_s3_path(..., api_call=True)` must not
    delete B's objects (nor anything else): the server states its project, the client's request is refused."""
    s3.seed({"data/1.txt": "B's object", "data/2.txt": "B's too"})
    server = api.start()                                     # project B: the `project` folder
    other = tmp_path / "project-a"                           # project A: another folder, same port
    other.mkdir()
    monkeypatch.chdir(other)
    for call in (lambda: remove_s3_path("data/", api_call=True), lambda: get_s3_objects("data/", api_call=True),
                 lambda: download_s3_path("data/", api_call=True)):
        with pytest.raises(S3Error) as err:
            call()
        assert err.value.exit_code == 2
        assert str(err.value) == (f"127.0.0.1:{api.port}: this S3 API server belongs to another project: it "
                                  f"serves the project {os.path.realpath(project.path)}, not {os.path.realpath(other)}")
        assert "S3_API_PORT" in err.value.hint
    assert s3.keys() == ["data/1.txt", "data/2.txt"] and not (other / "data").exists()

    monkeypatch.chdir(project.path)                          # B's own folder, but A's bucket
    monkeypatch.setenv("S3_BUCKET_NAME", "project-a-bucket")
    with pytest.raises(S3Error, match="it uses the bucket toolbox-test, this project project-a-bucket"):
        remove_s3_path("data/", api_call=True)
    assert s3.keys() == ["data/1.txt", "data/2.txt"]

    monkeypatch.setenv("S3_BUCKET_NAME", s3.bucket)          # B itself, from a sub-folder: served
    (project.path / "src" / "scripts").mkdir(parents=True)
    monkeypatch.chdir(project.path / "src" / "scripts")
    assert get_s3_objects("data/", api_call=True) == ["data/1.txt", "data/2.txt"]
    assert send_request("alive")["server"]["root"] == os.path.realpath(project.path)   # it says whose it is
    assert shutdown_server() is True and server.wait_exit() == 0


def test_a_client_without_the_token_cannot_keep_the_server_running(api):
    server = api.start(initial_timeout=1, idle_timeout=1)
    stop = threading.Event()

    def pester():                                            # requests without the token, and a silent connection
        silent = socket.create_connection(("127.0.0.1", api.port))
        try:
            while not stop.is_set():
                try:
                    post(api.port, {"command": "alive"})
                except OSError:
                    return
                time.sleep(0.1)
        finally:
            silent.close()

    thread = threading.Thread(target=pester, daemon=True)
    thread.start()
    try:
        assert server.wait_exit() == 0
    finally:
        stop.set()
    assert "s3 api: stopped (no request within 1 s of start)" in server.output


@pytest.mark.parametrize("body,field", [
    ({"command": "find", "path": "data/\x00x"}, "file=data/\\0x"),
    ({"command": "find", "path": "data/\ud800"}, "file=data/\\ud800"),
    ({"command": "download", "path": "data/", "local_path": "x\x00y"}, "local_path=x\\0y"),
    ({"command": "download", "path": "data/", "local_path": "x\udcff"}, "local_path=x\\udcff"),
])
def test_nul_and_surrogates_are_bad_requests_not_server_errors(api, body, field):
    api.start()
    status, data = post(api.port, body, token=api.token.read_text())
    answer = json.loads(data)
    assert status == 400 and answer["exit_code"] == 2, answer
    assert answer["error"].startswith(field + ": ")
    assert send_request("alive")["result"] == "alive"        # and it keeps serving


def test_the_token_folder_is_private_even_when_it_existed(api, project, tmp_path, monkeypatch):
    """~/.cache/kube-toolbox may have been made 0755 by another part of the toolbox (the template cache):
    the server makes it 0700 before writing the token there."""
    home = tmp_path / "home"
    (home / ".cache" / "kube-toolbox" / "jinja").mkdir(parents=True, mode=0o755)
    os.chmod(home / ".cache" / "kube-toolbox", 0o755)
    env = dict(api.env, HOME=str(home))
    env.pop("XDG_RUNTIME_DIR", None)
    server = ServerProcess([sys.executable, "launch.py", "server"], project.path, env)
    try:
        server.wait_for("s3 api: serving")
        token = home / ".cache" / "kube-toolbox" / f"s3-api-{api.port}.token"
        assert token.exists()
        assert oct(token.parent.stat().st_mode & 0o777) == "0o700"
        assert oct(token.stat().st_mode & 0o777) == "0o600"
    finally:
        server.kill()
