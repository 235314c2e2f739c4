"""A real S3 server for tests and benchmarks: Ceph's RADOS Gateway on 127.0.0.1.

One monitor, one OSD on memstore (objects live in the OSD's RAM: keep test data small) and radosgw, from
Debian 12's packages (`apt-get install -y --no-install-recommends ceph-mon ceph-osd radosgw ceph-common`,
Ceph 16.2.15). No mgr, no auth (cephx off; S3 SigV4 signatures are checked). Everything binds 127.0.0.1 and
lives in one temp folder (ceph.conf, stores, sockets, logs) that `stop()` removes.

Standard library only, Python 3.9+: boto3 is imported lazily by `client()` and `reset()` only.

    from servers.ceph_rgw import CephRGW, available
    ok, reason = available()                    # reason names the apt-get command when not ok
    rgw = CephRGW().start()                     # ~0.7 s here (2 cores), stop ~0.3-0.6 s
    rgw.endpoint_url, rgw.access_key, rgw.secret_key, rgw.region, rgw.env(bucket)
    rgw.create_bucket("toolbox-test"); ...; rgw.reset(); rgw.stop()
    rgw.pause(2.0); rgw.kill_gateway(); rgw.restart_gateway()      # faults
    rgw.add_key(access, secret); rgw.perf_counters()                # another key pair; request counters
    rgw.collect_garbage()                       # free deleted multipart data now (radosgw's GC waits)

By hand, for a developer (Ctrl-C or SIGTERM stops it):

    python tests/servers/ceph_rgw.py start [--bucket NAME] [--keep]

Where the start time goes (measured): mkfs + mon up + `osd new` ~0.1-0.3 s, 7 pools created in parallel
~0.1 s, OSD up ~0.15 s, user ~0.1 s, radosgw ~0.1 s. Idle RSS ~140 MiB (mon 35, OSD 50, radosgw 55).

Behaviour of this RGW that differs from AWS or moto (see tests/servers/test_ceph_rgw_smoke.py):
- CompleteMultipartUpload answers `<ETag></ETag>` (empty); HEAD/GET/listings carry "<md5 of part md5s>-N".
- CopyObjectResult's ETag has no quotes. Error responses have an empty Message (boto3: None).
- MaxKeys above 1000 is capped to 1000; DeleteObjects with more than 1000 keys is a bare 400, and so is
  DeleteObjects naming a key with a control character XML 1.0 cannot carry (e.g. \x07): DeleteObject works.
- A DeleteObjects key refused by a bucket policy: <Code>AccessDenied</Code><Message>AccessDenied</Message>.
- Anonymous listing needs a public-read bucket ACL (as on AWS; moto lists anyway).
- get_bucket_location says "default"; a LocationConstraint other than that is InvalidLocationConstraint.
"""
import atexit
import concurrent.futures
import datetime
import hashlib
import hmac
import os
import random
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid

APT_PACKAGES = "ceph-mon ceph-osd radosgw ceph-common"
APT_COMMAND = f"apt-get update && apt-get install -y --no-install-recommends {APT_PACKAGES}"
BINARIES = ("ceph-mon", "ceph-osd", "radosgw", "radosgw-admin", "monmaptool", "ceph")

# The pools radosgw would otherwise create lazily (about 1 s each, on the first bucket, PUT or multipart).
POOLS = (".rgw.root", "default.rgw.log", "default.rgw.control", "default.rgw.meta",
         "default.rgw.buckets.index", "default.rgw.buckets.data", "default.rgw.buckets.non-ec")

# Same credentials as the moto fixtures (tests/fixtures_s3.py), so that a test can run against either.
ACCESS_KEY = "AKIATESTKEYEXAMPLE01"
SECRET_KEY = "tEsTsEcReT/kEy+vAlUe/NeVeR-PrInTeD-0123"
REGION = "us-east-1"            # RGW accepts any region in a SigV4 scope; us-east-1 sends no LocationConstraint
DEFAULT_BUCKET = "toolbox-test"
USER_ID = "toolbox-test"

START_TIMEOUT = 90.0            # whole stack; a healthy start takes ~0.7 s
STOP_TIMEOUT = 5.0              # per daemon: SIGTERM, then SIGKILL
PORT_ATTEMPTS = 4               # free-port races: another process took the port between our probe and the bind


class CephRGWError(RuntimeError):
    """The stack could not start (the message ends with the tail of the relevant log)."""


def available():
    """(True, what was found) when the Ceph binaries are installed, else (False, how to install them)."""
    missing = [name for name in BINARIES if shutil.which(name) is None]
    if missing:
        return False, (f"Ceph RGW is not installed (missing {', '.join(missing)}); as root run: {APT_COMMAND}")
    return True, "ceph binaries found: " + ", ".join(BINARIES)


def _free_port():
    """A port free on 127.0.0.1 now (bind, then release), below the kernel's ephemeral range when possible.

    The daemons bind it a little later: a port from the ephemeral range can meanwhile become the local port
    of any outgoing connection (seen once in ~20 starts); a port below it can only be taken by a deliberate
    bind. Collisions remain possible: the callers retry."""
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as handle:
            low = int(handle.read().split()[0])
    except (OSError, ValueError, IndexError):
        low = 0
    candidates = [random.randrange(10000, low) for _ in range(20)] if low > 12000 else []
    for port in candidates + [0]:
        if 6800 <= port <= 7300:                # the OSD's own range (ms bind port min/max)
            continue
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            return sock.getsockname()[1]
    raise CephRGWError("no free port on 127.0.0.1")


def _listens(pid, port):
    """Does process `pid` hold the listening socket of 127.0.0.1:`port`? (True when /proc cannot tell.)"""
    try:
        with open("/proc/net/tcp") as handle:
            rows = [line.split() for line in handle.readlines()[1:]]
        inodes = {f"socket:[{row[9]}]" for row in rows if row[1] == f"0100007F:{port:04X}" and row[3] == "0A"}
        fds = os.listdir(f"/proc/{pid}/fd")
    except (OSError, IndexError):
        return True
    for fd in fds:
        try:
            if os.readlink(f"/proc/{pid}/fd/{fd}") in inodes:
                return True
        except OSError:
            pass
    return False


def _size(path):
    try:
        return os.path.getsize(path)
    except OSError:
        return 0


def _tail(path, lines=40, offset=0):
    """The last `lines` lines of a file, from `offset` on."""
    try:
        with open(path, "rb") as handle:
            handle.seek(0, os.SEEK_END)
            handle.seek(max(offset, handle.tell() - 64 * 1024))
            text = handle.read().decode("utf-8", "replace")
    except OSError:
        return ""
    return "\n".join(text.splitlines()[-lines:])


def _python_of(script):
    """The interpreter of a Python script (its shebang): where the `rados` module of `ceph` is importable."""
    try:
        with open(script, "rb") as handle:
            first = handle.readline().decode("utf-8", "replace")
    except OSError:
        first = ""
    if first.startswith("#!"):
        words = first[2:].split()
        if words and os.path.basename(words[0]) == "env" and len(words) > 1:
            return shutil.which(words[1]) or "/usr/bin/python3"
        if words:
            return words[0]
    return "/usr/bin/python3"


# Mon commands, in one process with one connection (14 `ceph` CLI runs cost ~2 s of CPU on 2 cores).
# Runs under the `ceph` CLI's own interpreter, which has the `rados` binding (python3-rados).
_MON_COMMANDS = r"""
import json, sys, threading, time
import rados

conf, osd_uuid, pools, pg_num = sys.argv[1], sys.argv[2], sys.argv[3].split(","), int(sys.argv[4])
cluster = rados.Rados(conffile=conf, name="client.admin")
cluster.connect(timeout=60)

def command(**kwargs):
    ret, out, err = cluster.mon_command(json.dumps(kwargs), b"", timeout=60)
    if ret != 0:
        raise RuntimeError(f"{kwargs['prefix']} {kwargs.get('pool', '')}: error {ret}: {err}")

command(prefix="osd new", uuid=osd_uuid, id=0)
print("osd", flush=True)
errors = []

def pool(name):
    try:
        command(prefix="osd pool create", pool=name, pg_num=pg_num, pgp_num=pg_num, autoscale_mode="off")
        command(prefix="osd pool application enable", pool=name, app="rgw", yes_i_really_mean_it=True)
    except Exception as error:
        errors.append(str(error))

threads = [threading.Thread(target=pool, args=(name,)) for name in pools]
for thread in threads:
    thread.start()
for thread in threads:
    thread.join()
if errors:
    sys.exit("\n".join(errors))
print("pools", flush=True)

# Wait for the OSD to be up: a client that starts before (radosgw-admin) finds no OSD for its ops and
# asks again for an osdmap only at its next objecter tick, 5 s later.
deadline = time.monotonic() + 60
while time.monotonic() < deadline:
    ret, out, err = cluster.mon_command(json.dumps({"prefix": "osd dump", "format": "json"}), b"", timeout=60)
    if ret == 0 and any(osd.get("up") for osd in json.loads(out).get("osds", [])):
        break
    time.sleep(0.02)
else:
    sys.exit("osd.0 is not up after 60 s")
cluster.shutdown()
print("up", flush=True)
"""


class _Daemon:
    """A process we started: its Popen and the files to quote when it fails."""

    def __init__(self, name, popen, logs, offsets):
        self.name, self.popen, self.logs, self.offsets = name, popen, logs, offsets

    @property
    def pid(self):
        return self.popen.pid

    def alive(self):
        return self.popen.poll() is None

    def output(self):
        """What this process wrote to stdout/stderr (the files may hold earlier runs too)."""
        return _tail(self.logs[1], offset=self.offsets[1])

    def describe(self):
        parts = []
        for path, offset in zip(self.logs, self.offsets):
            tail = _tail(path, offset=offset)
            if tail:
                parts.append(f"--- {path} (tail) ---\n{tail}")
        return "\n".join(parts) or "(no log output)"


class CephRGW:
    """A single-node Ceph cluster with radosgw on 127.0.0.1. See the module docstring."""

    def __init__(self, access_key=ACCESS_KEY, secret_key=SECRET_KEY, region=REGION, pg_num=8,
                 memstore_bytes=4 << 30, keep_dir=None):
        """`memstore_bytes`: the OSD's advertised capacity (RAM is used as data arrives; writes stop at 95%).
        `keep_dir`: keep the temp folder (logs) after stop(); default: the CEPH_RGW_KEEP environment variable."""
        self._access_key, self._secret_key, self._region = access_key, secret_key, region
        self.pg_num = pg_num
        self.memstore_bytes = memstore_bytes
        self.keep_dir = bool(os.environ.get("CEPH_RGW_KEEP")) if keep_dir is None else keep_dir
        self.dir = None
        self.mon_port = None
        self.port = None
        self.timings = {}           # phase -> seconds, for the last start()
        self._daemons = {}          # "mon" | "osd" | "rgw" -> _Daemon
        self._helpers = []          # short-lived processes of start() still to reap (mkfs, mon commands)
        self._lock = threading.RLock()
        self._client = None
        self._resume_timer = None
        self._atexit = False

    # ----------------------------------------------------------------------------------------- properties
    @property
    def endpoint_url(self):
        return f"http://127.0.0.1:{self.port}" if self.port else None

    @property
    def access_key(self):
        return self._access_key

    @property
    def secret_key(self):
        return self._secret_key

    @property
    def region(self):
        return self._region

    @property
    def pids(self):
        """{"mon": pid, "osd": pid, "rgw": pid} of the daemons still running."""
        return {name: daemon.pid for name, daemon in self._daemons.items() if daemon.alive()}

    @property
    def running(self):
        daemon = self._daemons.get("rgw")
        return bool(daemon and daemon.alive())

    def env(self, bucket=None):
        """The variables a client needs (s5cmd, boto3, the toolbox)."""
        values = {"S3_ENDPOINT_URL": self.endpoint_url, "AWS_ACCESS_KEY_ID": self.access_key,
                  "AWS_SECRET_ACCESS_KEY": self.secret_key, "AWS_REGION": self.region,
                  "AWS_DEFAULT_REGION": self.region}
        if bucket:
            values["S3_BUCKET_NAME"] = bucket
        return values

    def log_path(self, name):
        """Log file of "mon", "osd", "rgw" (the daemon's own log; `.out` beside it holds stdout/stderr)."""
        return os.path.join(self.dir, "log", {"mon": "mon.a", "osd": "osd.0", "rgw": "client.rgw"}[name] + ".log")

    # ----------------------------------------------------------------------------------------- start
    def start(self, workdir=None):
        """Start mon, OSD, pools, user and radosgw; return self once an S3 request answers.

        The temp folder is created inside `workdir` (default: the system temp folder)."""
        with self._lock:
            if self._daemons:
                raise CephRGWError("already started")
            ok, reason = available()
            if not ok:
                raise CephRGWError(reason)
            if not self._atexit:
                atexit.register(self.stop)
                self._atexit = True
            began = time.monotonic()
            for attempt in range(PORT_ATTEMPTS):
                try:
                    self._start_once(workdir)
                    break
                except _PortTaken:
                    self.stop()
                    if attempt == PORT_ATTEMPTS - 1:
                        raise CephRGWError("could not bind a free port for ceph-mon after several attempts") \
                            from None
                except BaseException:
                    self.stop()
                    raise
            self.timings["total"] = time.monotonic() - began
            return self

    def _start_once(self, workdir):
        t0 = time.monotonic()
        self.timings = {}
        self.dir = tempfile.mkdtemp(prefix="ceph-rgw-", dir=workdir)
        for sub in ("mon", "osd/ceph-0", "run", "log", "rgw"):
            os.makedirs(os.path.join(self.dir, sub))
        self.mon_port = _free_port()
        self.fsid = str(uuid.uuid4())
        self.conf = os.path.join(self.dir, "ceph.conf")
        with open(self.conf, "w") as handle:
            handle.write(self._config())

        monmap = os.path.join(self.dir, "monmap")
        self._run(["monmaptool", "--create", "--fsid", self.fsid, "--addv", "a",
                   f"[v2:127.0.0.1:{self.mon_port}]", monmap], "monmaptool")
        self._run(["ceph-mon", "-c", self.conf, "-i", "a", "--mkfs", "--monmap", monmap], "ceph-mon --mkfs")
        self._spawn("mon", ["ceph-mon", "-c", self.conf, "-i", "a", "-f"], "mon.a")
        # The OSD's mkfs is local (memstore): it runs while the monitor starts.
        osd_uuid = str(uuid.uuid4())
        mkfs = self._popen(["ceph-osd", "-c", self.conf, "-i", "0", "--mkfs", "--osd-uuid", osd_uuid],
                           "osd-mkfs")
        helper = self._popen([_python_of(shutil.which("ceph")), "-c", _MON_COMMANDS, self.conf, osd_uuid,
                              ",".join(POOLS), str(self.pg_num)], "mon-commands", stdout=subprocess.PIPE)
        self.timings["mkfs"] = time.monotonic() - t0

        deadline = time.monotonic() + START_TIMEOUT
        self._read_line(helper, deadline, "mon-commands", "osd")
        self.timings["mon+osd new"] = time.monotonic() - t0
        if self._wait(mkfs, deadline) != 0:
            raise CephRGWError("ceph-osd --mkfs failed:\n" + self._describe_file("osd-mkfs"))
        self._spawn("osd", ["ceph-osd", "-c", self.conf, "-i", "0", "-f"], "osd.0")
        self._read_line(helper, deadline, "mon-commands", "pools")
        self.timings["pools"] = time.monotonic() - t0
        self._read_line(helper, deadline, "mon-commands", "up", daemon="osd")
        if self._wait(helper, deadline) != 0:
            raise CephRGWError("mon commands failed:\n" + self._describe_file("mon-commands"))
        self.timings["osd up"] = time.monotonic() - t0

        # The user first (it waits for the pools' placement groups to be active), then the gateway.
        self._run(["radosgw-admin", "-c", self.conf, "--rados-osd-op-timeout", "60", "--client-mount-timeout",
                   "60", "user", "create", "--uid", USER_ID, "--display-name", "toolbox tests",
                   "--access-key", self.access_key, "--secret-key", self.secret_key], "radosgw-admin",
                  timeout=START_TIMEOUT)
        self.timings["user"] = time.monotonic() - t0
        self._start_gateway(fixed_port=None, deadline=deadline)
        self.timings["radosgw"] = time.monotonic() - t0
        for popen in self._helpers:
            popen.wait()
        self._helpers.clear()

    def _config(self):
        d = self.dir
        asok = os.path.join(d, "run", "$cluster-$name.asok")
        # A unix socket path is limited to 107 bytes: without an admin socket the daemons still work.
        asok = asok if len(asok.replace("$cluster-$name", "ceph-client.rgw.4294967295")) < 100 else ""
        return f"""\
[global]
fsid = {self.fsid}
mon host = v2:127.0.0.1:{self.mon_port}
mon initial members = a
public addr = 127.0.0.1
cluster addr = 127.0.0.1
public network = 127.0.0.0/8
cluster network = 127.0.0.0/8
ms bind ipv4 = true
ms bind ipv6 = false
ms bind msgr1 = false
ms bind msgr2 = true
ms bind retry count = 1
ms bind retry delay = 1
auth cluster required = none
auth service required = none
auth client required = none
ms mon client mode = crc
ms mon service mode = crc
ms mon cluster mode = crc
ms client mode = crc
ms service mode = crc
ms cluster mode = crc
run dir = {d}/run
admin socket = {asok}
pid file = {d}/run/$cluster-$name.pid
log file = {d}/log/$name.log
mon cluster log file = {d}/log/$cluster.$channel.log
keyring = {d}/keyring
crash dir = {d}/crash
log to stderr = false
err to stderr = true
osd pool default size = 1
osd pool default min size = 1
mon allow pool size one = true
mon allow pool delete = true
osd crush chooseleaf type = 0
osd pool default pg num = {self.pg_num}
osd pool default pgp num = {self.pg_num}
osd pool default pg autoscale mode = off
mon max pg per osd = 1000
mon warn on pool no redundancy = false
mon data avail crit = 0
mon data avail warn = 0
paxos propose interval = 0.05
paxos min wait = 0.01

[mon]
mon data = {d}/mon/$cluster-$id

[osd]
osd data = {d}/osd/$cluster-$id
osd objectstore = memstore
memstore device bytes = {self.memstore_bytes}
osd max scrubs = 0
osd fast shutdown = true

[client.rgw]
rgw data = {d}/rgw
# the real port is given on the command line (--rgw-frontends), so that a restart can change nothing else
rgw frontends = beast endpoint=127.0.0.1:0 tcp_nodelay=1
rgw init timeout = 60
rgw crypt require ssl = false
rgw gc obj min wait = 60
rgw gc processor period = 60
rgw enable usage log = false
rgw enable ops log = false
# no lifecycle threads: one sleeps 5 s when it misses its lock, and radosgw's SIGTERM waits for it
rgw enable lc threads = false
"""

    def _start_gateway(self, fixed_port, deadline):
        """Start radosgw (on `fixed_port`, or a free one) and wait until an S3 request answers."""
        attempts = 1 if fixed_port is None else 0
        same_port_until = time.monotonic() + 10
        while True:
            port = fixed_port or _free_port()
            daemon = self._spawn("rgw", ["radosgw", "-c", self.conf, "-n", "client.rgw", "-f",
                                         "--rgw-frontends", f"beast endpoint=127.0.0.1:{port} tcp_nodelay=1"],
                                 "client.rgw")
            self.port = port
            failure = self._wait_http(daemon, deadline)
            if failure is None:
                return
            in_use = not daemon.alive() and (daemon.popen.returncode == 98     # EADDRINUSE
                                             or "Address already in use" in daemon.describe())
            if in_use and fixed_port is not None and time.monotonic() < min(deadline, same_port_until):
                time.sleep(0.2)                 # the port must be ours again: wait a little for it
                continue
            if in_use and attempts < PORT_ATTEMPTS:
                attempts += 1
                continue
            self._terminate(daemon)
            raise CephRGWError(f"radosgw did not answer on 127.0.0.1:{port}: {failure}\n{daemon.describe()}")

    def _wait_http(self, daemon, deadline):
        """None once radosgw answers any HTTP request; else why not."""
        url = f"http://127.0.0.1:{self.port}/"
        while True:
            if not daemon.alive():
                return f"radosgw exited with code {daemon.popen.returncode}"
            if "failed to bind address" in daemon.output():
                daemon.popen.kill()             # it would take a while to exit by itself
                daemon.popen.wait()
                return "failed to bind its port (Address already in use)"
            # Ask only once our radosgw listens: another server may hold the port (then ours fails to bind).
            if _listens(daemon.pid, self.port):
                try:
                    with urllib.request.urlopen(url, timeout=2) as response:
                        response.read()
                    return None
                except urllib.error.HTTPError:
                    return None                 # an S3 error document: the gateway answers
                except OSError:
                    pass
            if time.monotonic() > deadline:
                return "timed out"
            time.sleep(0.05)

    # ----------------------------------------------------------------------------------------- processes
    def _out(self, name):
        return os.path.join(self.dir, "log", name + ".out")

    def _describe_file(self, name):
        return f"--- {self._out(name)} (tail) ---\n{_tail(self._out(name))}"

    def _popen(self, argv, name, stdout=None, daemon=False):
        popen = self._open(argv, name, stdout, daemon)
        if not daemon:
            self._helpers.append(popen)
        return popen

    def _open(self, argv, name, stdout, daemon):
        # A new session: a Ctrl-C in the developer's terminal reaches us only, and we stop the daemons in
        # order. setpriv --pdeathsig: the daemons die with us if we are killed hard (only when we start them
        # from the main thread: the signal fires when the forking *thread* exits).
        if daemon and shutil.which("setpriv") and threading.current_thread() is threading.main_thread():
            argv = ["setpriv", "--pdeathsig", "KILL", "--"] + argv
        with open(self._out(name), "ab") as out:
            try:
                return subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=stdout or out, stderr=out,
                                        cwd=self.dir, start_new_session=True, close_fds=True,
                                        text=stdout is not None)
            except OSError as error:
                raise CephRGWError(f"cannot run {argv[0]}: {error}") from error

    def _spawn(self, key, argv, logname):
        logs = [os.path.join(self.dir, "log", logname + ".log"), self._out(logname)]
        offsets = [_size(path) for path in logs]
        popen = self._popen(argv, logname, daemon=True)
        daemon = _Daemon(key, popen, logs, offsets)
        self._daemons[key] = daemon
        return daemon

    def _run(self, argv, name, timeout=60):
        popen = self._popen(argv, name.replace(" ", ""))
        try:
            code = popen.wait(timeout)
        except subprocess.TimeoutExpired:
            popen.kill()
            popen.wait()
            code = "timeout"
        if code != 0:
            self._check_mon()
            raise CephRGWError(f"{name} failed ({code}):\n{self._describe_file(name.replace(' ', ''))}")

    def _read_line(self, popen, deadline, name, expected, daemon=None):
        """Wait for the line `expected` from `popen` (a thread reads it: we give up at the deadline, or
        when the monitor or `daemon` dies)."""
        result = []
        reader = threading.Thread(target=lambda: result.append(popen.stdout.readline().strip()), daemon=True)
        reader.start()
        while reader.is_alive() and time.monotonic() < deadline:
            reader.join(0.02)
            self._check_mon()
            watched = self._daemons.get(daemon)
            if watched and not watched.alive():
                popen.kill()
                raise CephRGWError(f"ceph-{daemon} exited with code {watched.popen.returncode}:\n"
                                   f"{watched.describe()}")
        if not result:
            popen.kill()
            raise CephRGWError(f"{name}: timed out waiting for '{expected}'\n{self._describe_file(name)}")
        if result[0] != expected:
            popen.wait()
            raise CephRGWError(f"{name} failed:\n{self._describe_file(name)}")

    def _check_mon(self):
        mon = self._daemons.get("mon")
        if mon and not mon.alive():
            text = mon.describe()
            if "Address already in use" in text:
                raise _PortTaken()
            raise CephRGWError(f"ceph-mon exited with code {mon.popen.returncode}:\n{text}")

    def _wait(self, popen, deadline):
        try:
            return popen.wait(max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            popen.kill()
            return popen.wait()

    @staticmethod
    def _terminate(daemon, timeout=STOP_TIMEOUT):
        popen = daemon.popen
        if popen.poll() is None:
            try:
                popen.send_signal(signal.SIGCONT)       # a paused process would not act on SIGTERM
                popen.terminate()
                popen.wait(timeout)
            except subprocess.TimeoutExpired:
                popen.kill()
            except ProcessLookupError:
                pass
        try:
            popen.wait(timeout)
        except subprocess.TimeoutExpired:
            pass

    # ----------------------------------------------------------------------------------------- stop
    def stop(self):
        """Stop radosgw, then the OSD, then the monitor (SIGTERM, SIGKILL after a few s); remove the folder.

        Safe to call twice; registered with atexit by start()."""
        with self._lock:
            began = time.monotonic()
            if self._resume_timer:
                self._resume_timer.cancel()
                self._resume_timer = None
            for popen in self._helpers:
                if popen.poll() is None:
                    popen.kill()
                popen.wait()
            self._helpers.clear()
            for key in ("rgw", "osd", "mon"):           # radosgw first: its SIGTERM hangs without an OSD
                daemon = self._daemons.pop(key, None)
                if daemon:
                    t = time.monotonic()
                    self._terminate(daemon)
                    self.timings[f"stop {key}"] = time.monotonic() - t
            self._daemons.clear()
            self._client = None
            if self.dir and not self.keep_dir:
                shutil.rmtree(self.dir, ignore_errors=True)
            elif self.dir:
                print(f"ceph-rgw: kept {self.dir}", file=sys.stderr)
            self.dir = None
            self.port = None
            self.timings["stop"] = time.monotonic() - began

    def __enter__(self):
        return self.start() if not self._daemons else self

    def __exit__(self, *exc):
        self.stop()

    # ----------------------------------------------------------------------------------------- faults
    def pause(self, seconds, wait=False):
        """SIGSTOP radosgw, SIGCONT it after `seconds` (in the background unless `wait`)."""
        daemon = self._gateway()
        with self._lock:
            if self._resume_timer:
                self._resume_timer.cancel()
            os.kill(daemon.pid, signal.SIGSTOP)
            self._resume_timer = threading.Timer(seconds, self.resume)
            self._resume_timer.daemon = True
            self._resume_timer.start()
        if wait:
            self._resume_timer.join()

    def resume(self):
        """SIGCONT radosgw now (ends a pause early)."""
        with self._lock:
            if self._resume_timer:
                self._resume_timer.cancel()
                self._resume_timer = None
            daemon = self._daemons.get("rgw")
            if daemon and daemon.alive():
                os.kill(daemon.pid, signal.SIGCONT)

    def kill_gateway(self):
        """SIGKILL radosgw (the cluster stays up); restart_gateway() brings it back on the same port."""
        with self._lock:
            if self._resume_timer:
                self._resume_timer.cancel()
                self._resume_timer = None
            daemon = self._daemons.pop("rgw", None)
            if daemon and daemon.alive():
                daemon.popen.kill()
                daemon.popen.wait()
                self._drop_watches()

    def _drop_watches(self):
        """Blocklist the dead gateway's RADOS client, so that the OSD drops its watches at once.

        Without it, the next metadata write of a new gateway (bucket create/delete, ...) waits ~30 s
        (osd_client_watch_timeout) for the dead watcher to acknowledge the cache notification."""
        for address in self.watchers():
            done = subprocess.run(["ceph", "-c", self.conf, "osd", "blocklist", "add", address],
                                  stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=60, check=False)
            if done.returncode != 0:
                raise CephRGWError(f"ceph osd blocklist add {address} failed: {done.stderr.strip()}")

    def watchers(self):
        """Addresses of the RADOS clients watching radosgw's control object (each gateway holds one)."""
        listed = subprocess.run(["rados", "-c", self.conf, "-p", "default.rgw.control", "listwatchers", "notify.0"],
                                stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=60, check=False)
        return sorted({word.split("=", 1)[1] for word in listed.stdout.split() if word.startswith("watcher=")})

    def restart_gateway(self):
        """Start radosgw again on the same port (killing it first if it runs); return once it answers."""
        with self._lock:
            if not self._daemons.get("mon"):
                raise CephRGWError("not started")
            port = self.port
            self.kill_gateway()
            began = time.monotonic()
            self._start_gateway(fixed_port=port, deadline=time.monotonic() + START_TIMEOUT)
            self.timings["restart_gateway"] = time.monotonic() - began

    def _gateway(self):
        daemon = self._daemons.get("rgw")
        if not daemon or not daemon.alive():
            raise CephRGWError("radosgw is not running")
        return daemon

    # ----------------------------------------------------------------------------------------- S3 helpers
    def client(self, **config):
        """A boto3 S3 client for this gateway (path-style addressing); cached when called without arguments."""
        if self._client is not None and not config:
            return self._client
        import boto3
        from botocore.config import Config

        options = {"s3": {"addressing_style": "path"}, "retries": {"max_attempts": 2, "mode": "standard"},
                   "max_pool_connections": 32}
        options.update(config)
        client = boto3.client("s3", endpoint_url=self.endpoint_url, aws_access_key_id=self.access_key,
                              aws_secret_access_key=self.secret_key, region_name=self.region,
                              config=Config(**options))
        if not config:
            self._client = client
        return client

    def request(self, method, path, body=b"", headers=None, timeout=30):
        """One SigV4-signed S3 request with the standard library: (status, headers, body).

        `path` is the URL path and query, e.g. "/bucket/key?uploads" (the key quoted as in the URL)."""
        status, head, data = _signed_request(self.endpoint_url, self.region, self.access_key, self.secret_key,
                                             method, path, body, headers or {}, timeout)
        return status, head, data

    def create_bucket(self, name=DEFAULT_BUCKET):
        """Create a bucket (no error when it exists and is ours); return its name. Needs no boto3."""
        status, _, data = self.request("PUT", "/" + urllib.parse.quote(name, safe=""))
        if status != 200 and b"BucketAlreadyOwnedByYou" not in data:
            raise CephRGWError(f"create bucket {name}: HTTP {status}: {data.decode('utf-8', 'replace')}")
        return name

    def add_key(self, access_key, secret_key):
        """Give the test user another key pair (same buckets): e.g. one per "region" of a test. Idempotent."""
        with self._lock:
            if not self._daemons.get("mon"):
                raise CephRGWError("not started")
            self._run(["radosgw-admin", "-c", self.conf, "key", "create", "--uid", USER_ID, "--key-type", "s3",
                       "--access-key", access_key, "--secret-key", secret_key], "radosgw-admin key create")

    def collect_garbage(self):
        """Free the data of deleted objects now. radosgw deletes the parts of a multipart (or > 4 MiB) object
        later, in its garbage collection: a benchmark that uploads and deletes 200 MiB files in a loop would
        otherwise fill the OSD's memory (the OSD then blocks every write)."""
        with self._lock:
            self._run(["radosgw-admin", "-c", self.conf, "gc", "process", "--include-all"], "radosgw-admin gc")

    def perf_counters(self):
        """radosgw's request counters from its admin socket: {"req": n, "get": n, "put": n, ...}.

        `get` counts object GETs and HEADs, `put` object PUTs and parts; listings are in `req` only."""
        import json
        import struct

        path = os.path.join(self.dir, "run", "ceph-client.rgw.asok")
        if not os.path.exists(path):
            raise CephRGWError(f"no admin socket at {path} (the temp folder's path is too long for one)")
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(10)
            sock.connect(path)
            sock.sendall(json.dumps({"prefix": "perf dump", "logger": "rgw"}).encode() + b"\0")
            size = struct.unpack(">I", _receive(sock, 4))[0]
            counters = json.loads(_receive(sock, size))["rgw"]
        return {name: value for name, value in counters.items() if isinstance(value, int)}

    def reset(self, delete_buckets=False):
        """Empty every bucket: objects, versions, delete markers, unfinished multipart uploads (needs boto3).

        With delete_buckets=True the buckets are removed too. Emptying is faster than deleting and creating
        the buckets again (measured, 2 buckets: 10 objects each 19 ms vs 48 ms, 100 each 71 ms vs 130 ms,
        1000 each 0.63 s vs 0.98 s; an empty bucket costs ~5 ms)."""
        client = self.client()
        buckets = [bucket["Name"] for bucket in client.list_buckets().get("Buckets", [])]
        with concurrent.futures.ThreadPoolExecutor(8) as pool:
            # Deletes in chunks of 100, several at a time: RGW deletes the keys of one request one by one.
            futures = [pool.submit(self._empty, client, bucket, pool) for bucket in buckets]
            for future in futures:
                for chunk in future.result():
                    chunk.result()
        for bucket in buckets if delete_buckets else ():
            client.delete_bucket(Bucket=bucket)

    @staticmethod
    def _empty(client, bucket, pool):
        """Submit the deletions of everything in `bucket`; return their futures."""
        def delete(objects):
            result = client.delete_objects(Bucket=bucket, Delete={"Objects": objects, "Quiet": True})
            if result.get("Errors"):
                raise CephRGWError(f"reset: cannot delete from {bucket}: {result['Errors'][:3]}")

        futures = []
        versioning = client.get_bucket_versioning(Bucket=bucket).get("Status")
        if versioning in ("Enabled", "Suspended"):
            for page in client.get_paginator("list_object_versions").paginate(Bucket=bucket):
                objects = [{"Key": item["Key"], "VersionId": item["VersionId"]}
                           for item in page.get("Versions", []) + page.get("DeleteMarkers", [])]
                futures += [pool.submit(delete, objects[i:i + 100]) for i in range(0, len(objects), 100)]
        else:
            for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket):
                objects = [{"Key": item["Key"]} for item in page.get("Contents", []) if _xml_safe(item["Key"])]
                futures += [pool.submit(delete, objects[i:i + 100]) for i in range(0, len(objects), 100)]
                # DeleteObjects cannot carry a key XML 1.0 cannot (a bare 400 for the whole batch)
                futures += [pool.submit(client.delete_object, Bucket=bucket, Key=item["Key"])
                            for item in page.get("Contents", []) if not _xml_safe(item["Key"])]
        for page in client.get_paginator("list_multipart_uploads").paginate(Bucket=bucket):
            futures += [pool.submit(client.abort_multipart_upload, Bucket=bucket, Key=upload["Key"],
                                    UploadId=upload["UploadId"]) for upload in page.get("Uploads", [])]
        return futures


def _xml_safe(text):
    """Can XML 1.0 carry this text? (no control character but tab, LF and CR)"""
    return not any(ord(c) < 32 and c not in "\t\n\r" or c in "\ufffe\uffff" for c in text)


def _receive(sock, size):
    data = b""
    while len(data) < size:
        chunk = sock.recv(size - len(data))
        if not chunk:
            raise CephRGWError("admin socket closed early")
        data += chunk
    return data


def _signed_request(endpoint, region, access_key, secret_key, method, path, body, headers, timeout):
    """AWS Signature Version 4 over urllib (header auth, signed payload)."""
    parsed = urllib.parse.urlsplit(endpoint + path)
    now = datetime.datetime.now(datetime.timezone.utc)
    stamp, day = now.strftime("%Y%m%dT%H%M%SZ"), now.strftime("%Y%m%d")
    payload = hashlib.sha256(body).hexdigest()
    head = {k.lower(): str(v).strip() for k, v in headers.items()}
    head.update({"host": parsed.netloc, "x-amz-date": stamp, "x-amz-content-sha256": payload})
    names = sorted(head)
    pairs = urllib.parse.parse_qsl(parsed.query, keep_blank_values=True)
    query = "&".join(f"{urllib.parse.quote(k, safe='-_.~')}={urllib.parse.quote(v, safe='-_.~')}"
                     for k, v in sorted(pairs))
    canonical = "\n".join([method, parsed.path or "/", query, "".join(f"{n}:{head[n]}\n" for n in names),
                           ";".join(names), payload])
    scope = f"{day}/{region}/s3/aws4_request"
    to_sign = "\n".join(["AWS4-HMAC-SHA256", stamp, scope, hashlib.sha256(canonical.encode()).hexdigest()])
    key = ("AWS4" + secret_key).encode()
    for part in (day, region, "s3", "aws4_request"):
        key = hmac.new(key, part.encode(), hashlib.sha256).digest()
    signature = hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest()
    head["authorization"] = (f"AWS4-HMAC-SHA256 Credential={access_key}/{scope}, "
                             f"SignedHeaders={';'.join(names)}, Signature={signature}")
    del head["host"]
    request = urllib.request.Request(endpoint + path, data=body if body or method in ("PUT", "POST") else None,
                                     method=method, headers=head)
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers), error.read()


class _PortTaken(Exception):
    """ceph-mon could not bind the port we picked: start again with another one."""


def _main(argv):
    import argparse

    parser = argparse.ArgumentParser(prog="ceph_rgw.py", description="A Ceph RGW (S3) on 127.0.0.1 for tests.")
    sub = parser.add_subparsers(dest="command", required=True)
    start = sub.add_parser("start", help="start it in the foreground; Ctrl-C stops it")
    start.add_argument("--bucket", default=DEFAULT_BUCKET, help="bucket to create (empty: none)")
    start.add_argument("--workdir", default=None, help="parent of the temp folder")
    start.add_argument("--keep", action="store_true", help="keep the temp folder (logs) after stopping")
    sub.add_parser("check", help="are the packages installed?")
    args = parser.parse_args(argv)

    ok, reason = available()
    if args.command == "check":
        print(reason)
        return 0 if ok else 1
    if not ok:
        print(reason, file=sys.stderr)
        return 1

    stopping = threading.Event()

    def on_signal(signum, frame):
        stopping.set()

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGHUP, on_signal)
    rgw = CephRGW(keep_dir=args.keep or None)
    try:
        rgw.start(args.workdir)
        if args.bucket:
            rgw.create_bucket(args.bucket)
    except CephRGWError as error:
        print(f"error: {error}", file=sys.stderr)
        rgw.stop()
        return 1
    exports = " ".join(f"{name}={shlex.quote(value)}" for name, value in rgw.env(args.bucket or None).items()
                       if name != "AWS_DEFAULT_REGION")
    print(f"Ceph RGW (S3) at {rgw.endpoint_url}  (started in {rgw.timings['total']:.1f} s; "
          f"pids {rgw.pids}; folder {rgw.dir})")
    print(f"export {exports}")
    print("Ctrl-C to stop.", flush=True)
    try:
        while not stopping.wait(1.0):
            if not rgw.running:
                print("radosgw exited:\n" + rgw._daemons["rgw"].describe() if "rgw" in rgw._daemons
                      else "radosgw is gone", file=sys.stderr)
                break
    finally:
        rgw.stop()
        print(f"stopped in {rgw.timings['stop']:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))
