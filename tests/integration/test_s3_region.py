"""Regional endpoints (S3_REGIONS): the region with the fastest round trip is chosen, and both backends
then talk to its endpoint, with its keys and bucket.

Regions are real listeners: TCP proxies in front of the S3 test server, one of them answering 300 ms late,
plus a closed port. The proxies record the request lines and the access key of every signed request they forward, so a test
sees which region each backend used.
"""
import re
import socket
import threading
import time

import pytest

from fixtures_s3 import SECRET_KEY, make_tree, read_tree
from toolbox.errors import S3Error
from toolbox.s3.settings import choose_region, load_settings

from toolbox.s3utils import download_s3_path, upload_s3_path

KEYS = {name: (f"AKIA{name}REGIONKEY01", f"{name.lower()}-secret-never-printed-0123") for name in
        ("WEST", "EAST", "CENTRAL")}
LOG = re.compile(r"^s3: using region (\w+) \((.*)\)$", re.MULTILINE)


class DelayProxy:
    """A TCP proxy to 127.0.0.1:<upstream> that waits `delay` s before forwarding each connection."""

    def __init__(self, upstream, delay):
        self.upstream, self.delay = upstream, delay
        self.server = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.server.getsockname()[1]}"
        self.connections, self.keys, self.requests = 0, set(), []
        self.lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            try:
                client, _ = self.server.accept()
            except OSError:
                return
            with self.lock:
                self.connections += 1
            threading.Thread(target=self._serve, args=(client,), daemon=True).start()

    def _serve(self, client):
        time.sleep(self.delay)
        try:
            upstream = socket.create_connection(("127.0.0.1", self.upstream))
        except OSError:
            client.close()
            return
        threading.Thread(target=self._pipe, args=(upstream, client, False), daemon=True).start()
        self._pipe(client, upstream, True)

    def _pipe(self, source, target, record):
        tail = b""
        try:
            while True:
                data = source.recv(65536)
                if not data:
                    break
                if record:
                    seen = tail + data
                    with self.lock:
                        self.keys.update(k.decode() for k in re.findall(rb"Credential=([A-Z0-9]+)/", seen))
                        self.requests += [f"{m.decode()} {p.decode()}" for m, p in
                                          re.findall(rb"(?:^|\n)(GET|PUT|POST|HEAD) (/[^ ?]*)[^ ]* HTTP/", data)]
                    tail = seen[-200:]
                target.sendall(data)
        except OSError:
            pass
        finally:
            for sock, how in ((target, socket.SHUT_WR), (source, socket.SHUT_RD)):
                try:
                    sock.shutdown(how)
                except OSError:
                    pass

    def close(self):
        self.server.close()


def closed_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def regions(s3, monkeypatch):
    """WEST answers 300 ms late, EAST at once (its own bucket), CENTRAL is a closed port."""
    upstream = int(s3.url.rsplit(":", 1)[1])
    proxies = {"WEST": DelayProxy(upstream, 0.3), "EAST": DelayProxy(upstream, 0)}
    urls = dict({name: p.url for name, p in proxies.items()}, CENTRAL=f"http://127.0.0.1:{closed_port()}")
    s3.client.create_bucket(Bucket="bucket-east")
    s3.allow_keys(KEYS.values())                 # RGW checks signatures: each region's keys must be valid
    for name, url in urls.items():
        monkeypatch.setenv(f"S3_ENDPOINT_URL_{name}", url)
        monkeypatch.setenv(f"AWS_ACCESS_KEY_ID_{name}", KEYS[name][0])
        monkeypatch.setenv(f"AWS_SECRET_ACCESS_KEY_{name}", KEYS[name][1])
    monkeypatch.setenv("S3_BUCKET_NAME_EAST", "bucket-east")
    monkeypatch.setenv("S3_REGIONS", "west, east,central")
    yield proxies
    for p in proxies.values():
        p.close()


def east_keys(s3):
    return sorted(o["Key"] for o in s3.client.list_objects_v2(Bucket="bucket-east").get("Contents", ()))


@pytest.mark.parametrize("backend", ["s5cmd", "boto3"])
def test_the_fastest_region_is_used_by_both_backends(regions, s3, project, backend, monkeypatch, capfd):
    monkeypatch.setenv("S3_BACKEND", backend)
    make_tree(project.path, {"data/1.txt": "one", "data/sub/2.txt": "two"})
    assert list(upload_s3_path("data/", progress=False)) == ["data/1.txt", "data/sub/2.txt"]
    assert list(download_s3_path("data/", local_path="copy", overwrite=True, progress=False)) == \
        ["data/1.txt", "data/sub/2.txt"]
    assert read_tree(project.path / "copy") == {"data/1.txt": b"one", "data/sub/2.txt": b"two"}
    assert east_keys(s3) == ["data/1.txt", "data/sub/2.txt"] and s3.keys() == []   # EAST's own bucket
    assert regions["EAST"].keys == {KEYS["EAST"][0]}                 # EAST's keys, through EAST only
    for request in ("PUT /bucket-east/data/1.txt", "GET /bucket-east/data/sub/2.txt"):
        assert request in regions["EAST"].requests, regions["EAST"].requests
    assert regions["WEST"].keys == set()

    err = capfd.readouterr().err
    found = LOG.findall(err)
    assert len(found) == 1 and found[0][0] == "EAST", err             # measured once for the process
    assert re.fullmatch(r"[\d.]+ ms; WEST \d+ ms, CENTRAL unreachable", found[0][1]), found
    assert not any(secret in err for pair in KEYS.values() for secret in pair) and SECRET_KEY not in err


def test_s3_region_forces_one_without_measuring(regions, s3, project, monkeypatch, capfd):
    monkeypatch.setenv("S3_REGION", "west")
    make_tree(project.path, {"w.txt": "west"})
    upload_s3_path("w.txt", progress=False)
    assert s3.keys() == ["w.txt"] and regions["WEST"].keys == {KEYS["WEST"][0]}
    assert regions["EAST"].connections == 0
    assert "s3: using region WEST (S3_REGION)" in capfd.readouterr().err


def test_auto_selection_takes_complete_triples_only(regions, monkeypatch, capfd):
    monkeypatch.delenv("S3_REGIONS")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY_CENTRAL")           # CENTRAL is no longer a complete triple
    assert load_settings().site is None                           # no S3_REGIONS, no auto: plain settings
    monkeypatch.setenv("S3_REGION_SELECT", "auto")
    settings = load_settings()
    assert (settings.site, settings.endpoint_url, settings.bucket) == ("EAST", regions["EAST"].url, "bucket-east")
    assert "credentials" not in repr(settings) and KEYS["EAST"][1] not in repr(settings)
    assert re.search(r"^s3: using region EAST \([\d.]+ ms; WEST \d+ ms\)$", capfd.readouterr().err, re.MULTILINE)
    probes = regions["EAST"].connections
    assert load_settings().site == "EAST" and regions["EAST"].connections == probes   # cached: no new probe
    monkeypatch.setenv("S3_REGION_SELECT", "off")
    assert load_settings().site is None


def test_no_region_reachable_keeps_the_default_endpoint(s3, monkeypatch, capfd):
    monkeypatch.setenv("S3_REGIONS", "central")
    monkeypatch.setenv("S3_ENDPOINT_URL_CENTRAL", f"http://127.0.0.1:{closed_port()}")
    settings = load_settings()
    assert settings.site is None and settings.endpoint_url == s3.url
    assert "s3: no region reachable (CENTRAL unreachable); using S3_ENDPOINT_URL" in capfd.readouterr().err


@pytest.mark.parametrize("variables, message", [
    ({"S3_REGIONS": "west,north"}, ("error: S3_ENDPOINT_URL_NORTH: not set\nhint: S3_REGIONS=west,north names "
                                    "region NORTH: set S3_ENDPOINT_URL_NORTH, AWS_ACCESS_KEY_ID_NORTH and "
                                    "AWS_SECRET_ACCESS_KEY_NORTH")),
    ({"S3_REGION": "north"}, "error: S3_ENDPOINT_URL_NORTH: not set"),
    ({"S3_REGIONS": "west", "AWS_SECRET_ACCESS_KEY_WEST": ""},
     "error: AWS_SECRET_ACCESS_KEY_WEST: not set (but AWS_ACCESS_KEY_ID_WEST is)"),
    ({"S3_REGIONS": "we-st"}, "error: S3_REGIONS=we-st: expected region names like west,central,east"),
    ({"S3_REGION": "west,east"}, "error: S3_REGION=west,east: expected one region name"),
    ({"S3_REGION_SELECT": "fastest"}, "error: S3_REGION_SELECT=fastest: expected auto or off"),
    ({"S3_REGIONS": "west", "S3_ENDPOINT_URL_WEST": "s3-west.example.org"},
     "error: S3_ENDPOINT_URL_WEST=s3-west.example.org: expected a URL starting with http:// or https://"),
], ids=["missing-endpoint", "forced-unknown", "half-keys", "bad-name", "forced-two", "bad-select", "bad-url"])
def test_region_problems_name_the_variable(s3, monkeypatch, variables, message):
    monkeypatch.setenv("S3_ENDPOINT_URL_WEST", "http://127.0.0.1:9")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID_WEST", KEYS["WEST"][0])
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY_WEST", KEYS["WEST"][1])
    for name, value in variables.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(S3Error) as err:
        choose_region()
    assert err.value.format().startswith(message) and err.value.exit_code == 2
