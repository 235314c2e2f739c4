#!/usr/bin/env python3
"""S3 transfer benchmark: a table, not a test.  `.venv/bin/python bench/s3.py [--repeat 3]`

Against Ceph's RADOS Gateway on loopback (tests/servers/ceph_rgw.py, the reference cluster's S3) when its
Debian packages are installed, else moto's S3 server (tests/fixtures_s3.py; `--server` chooses); the
table says which. Side by side in one run: 1,000 files of 16 KiB, 10,000 files of 16 KiB and one 200 MiB
file, up and down, through
  - raw `s5cmd cp` (wildcards, one process)            - the toolbox's s5cmd backend (an API call)
  - `make upload|download` (a cold process, s5cmd)      - the toolbox's boto3 backend (an API call)
  - a serial boto3 loop (upload_file/download_file)
(10,000 files: the s5cmd ways only), then a no-op re-sync of the 1,000 unchanged files (requests counted
on the server). moto is the bottleneck (a few hundred requests/s on 2 cores): on moto compare ratios only.
Each figure is the median of --repeat runs (the tools take turns within each run).
Then the failure rows (once each, `--faults` only them): how long `launch.py download|upload` takes to
report an endpoint killed mid-transfer, to stop on Ctrl-C while the endpoint is frozen, and how long
`launch.py monitor` takes to stop on SIGTERM with the endpoint gone (Kubernetes allows 30 s).
"""
import argparse
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tests"))

SMALL_COUNT, SMALL_SIZE = 1000, 16 * 1024
MANY_COUNT = 10_000
TOOLS = ["raw s5cmd cp", "make (s5cmd)", "toolbox s5cmd", "toolbox boto3", "serial boto3"]
S5CMD_TOOLS = TOOLS[:3]
BIG_SIZE = 200 * 1024 * 1024
# folder: (label, files, tools)
SETS = {"small": ("1,000 x 16 KiB", SMALL_COUNT, TOOLS), "many": ("10,000 x 16 KiB", MANY_COUNT, S5CMD_TOOLS),
        "big": ("1 x 200 MiB", 1, TOOLS)}


def register_toolbox():
    import importlib.util

    spec = importlib.util.spec_from_file_location("_bench_launch", os.path.join(ROOT, "launch.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    module._register_toolbox_package()


class Server:
    """moto (tests/fixtures_s3.py) in its own process, so the clients measured do not share its GIL."""

    name = "moto (tests/fixtures_s3.py)"
    fast = False

    def __init__(self):
        self.proc = subprocess.Popen([sys.executable, os.path.join(ROOT, "tests", "fixtures_s3.py")],
                                     stdout=subprocess.PIPE, text=True)
        self.url = self.proc.stdout.readline().strip()

    def stop(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def _call(self, path, method):
        import urllib.request

        with urllib.request.urlopen(urllib.request.Request(self.url + path, method=method), timeout=30) as r:
            return r.read()

    def reset(self):
        self._call("/moto-api/reset", "POST")
        self.requests(clear=True)

    def requests(self, clear=False):
        import json
        from fixtures_s3 import LOG_PATH, Request

        return [Request(*row) for row in json.loads(self._call(LOG_PATH, "DELETE" if clear else "GET"))]

    def counters(self):
        """(requests, of which PUT/GET/HEAD) since the last call."""
        seen = self.requests(clear=True)
        return len(seen), sum(1 for r in seen if r.kind in ("PUT", "GET", "HEAD"))


class RGWServer:
    """Ceph's RADOS Gateway (tests/servers/ceph_rgw.py); requests counted by radosgw itself."""

    name = "Ceph RGW 16.2 (memstore OSD)"
    fast = True

    def __init__(self):
        from servers.ceph_rgw import CephRGW

        self.rgw = CephRGW().start()
        self.url = self.rgw.endpoint_url
        self._last = self.rgw.perf_counters()

    def stop(self):
        self.rgw.stop()

    def reset(self):
        self.rgw.reset()
        self.rgw.collect_garbage()          # the OSD keeps objects in RAM: free deleted 200 MiB files now
        self.counters()

    def counters(self):
        """(requests, of which object PUT/GET/HEAD) since the last call."""
        now = self.rgw.perf_counters()
        last, self._last = self._last, now
        return now["req"] - last["req"], (now["get"] - last["get"]) + (now["put"] - last["put"])


def start_server(choice):
    """RGW when its packages are installed (or asked for), else moto."""
    from servers.ceph_rgw import available

    ok, reason = available()
    if choice == "rgw" and not ok:
        sys.exit(reason)
    if choice == "moto" or not ok:
        server = Server()
        server.name += "" if choice == "moto" else f"; no RGW: {reason}"
        return server
    return RGWServer()


class Bench:
    best = False                    # the fastest run instead of the median (--best)

    def __init__(self, server, workdir, repeat):
        from fixtures_s3 import BUCKET, s3_environment

        self.server, self.workdir, self.repeat = server, workdir, repeat
        self.bucket = BUCKET
        os.environ.update(s3_environment(server.url))
        import boto3
        from botocore.config import Config

        self.client = boto3.client("s3", endpoint_url=server.url, region_name="us-east-1",
                                   config=Config(s3={"addressing_style": "path"}))
        from toolbox.s3.settings import find_s5cmd
        self.s5cmd = find_s5cmd()

    def keys(self, prefix):
        pages = self.client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=prefix)
        return [o["Key"] for page in pages for o in page.get("Contents", ())]

    # ------------------------------------------------------------ data and state
    def sets(self):
        """The data sets of the transfer rows: 10,000 files only on RGW (on moto: minutes per run)."""
        return {folder: spec for folder, spec in SETS.items() if folder != "many" or self.server.fast}

    def make_data(self):
        os.chdir(self.workdir)
        for folder in [f for f in self.sets() if f != "big"]:
            os.makedirs(folder, exist_ok=True)
            for i in range(SETS[folder][1]):
                with open(f"{folder}/f{i:05d}.bin", "wb") as f:
                    f.write(os.urandom(SMALL_SIZE))
        # a project as the README lays it out, for `make`
        os.makedirs("src", exist_ok=True)
        os.symlink(ROOT, "src/toolbox")
        os.symlink("src/toolbox/Makefile", "Makefile")
        os.symlink("src/toolbox/launch.py", "launch.py")
        os.makedirs("big", exist_ok=True)
        with open("big/blob.bin", "wb") as f:
            for _ in range(BIG_SIZE // (8 << 20)):
                f.write(os.urandom(8 << 20))

    def empty_bucket(self):
        self.server.reset()
        self.client.create_bucket(Bucket=self.bucket)
        self.server.counters()

    def fill_bucket(self, folder):
        self.empty_bucket()
        self.raw_s5cmd_up(folder)

    @staticmethod
    def empty_local(folder="dl"):
        shutil.rmtree(folder, ignore_errors=True)
        os.makedirs(folder)

    # ------------------------------------------------------------ the four ways
    def raw_s5cmd_up(self, folder):
        self._s5cmd("cp", f"{folder}/*", f"s3://{self.bucket}/{folder}/")

    def raw_s5cmd_down(self, folder):
        self._s5cmd("cp", f"s3://{self.bucket}/{folder}/*", f"dl/{folder}/")

    def _s5cmd(self, *args):
        subprocess.run([self.s5cmd, "--endpoint-url", self.server.url, *args], check=True,
                       stdout=subprocess.DEVNULL)

    @staticmethod
    def toolbox(backend, direction, folder):
        from toolbox import s3utils

        os.environ["S3_BACKEND"] = backend
        if direction == "up":
            result = s3utils.upload_s3_path(f"{folder}/", progress=False)
        else:
            result = s3utils.download_s3_path(f"{folder}/", local_path="dl", progress=False)
        assert len(result) == SETS[folder][1], result.summary(direction)

    @staticmethod
    def make(direction, folder):
        """What a user types: `make upload|download file=<folder>/` (a new Python process)."""
        target = ["upload"] if direction == "up" else ["download", "local_path=dl"]
        env = dict(os.environ, S3_BACKEND="s5cmd", PYTHON=sys.executable)
        done = subprocess.run(["make", *target, f"file={folder}/"], env=env, check=True, capture_output=True,
                              text=True)
        assert f" {SETS[folder][1]} transferred" in done.stdout, done.stdout + done.stderr

    def serial_up(self, folder):
        for name in sorted(os.listdir(folder)):
            self.client.upload_file(f"{folder}/{name}", self.bucket, f"{folder}/{name}")

    def serial_down(self, folder):
        os.makedirs(f"dl/{folder}", exist_ok=True)
        for key in self.keys(f"{folder}/"):
            self.client.download_file(self.bucket, key, f"dl/{key}")

    # ------------------------------------------------------------ measuring
    def medians(self, prepare, runs):
        """{name: median seconds}; the tools take turns within each repetition, each repetition starting
        with the next tool, so drift in the server's state (memory, garbage collection, the work left by
        the last reset) does not land on one tool."""
        times = {name: [] for name in runs}
        names = list(runs)
        for repetition in range(self.repeat):
            shift = repetition % len(names)
            for name in names[shift:] + names[:shift]:
                run = runs[name]
                prepare()
                started = time.perf_counter()
                run()
                times[name].append(time.perf_counter() - started)
        return {name: (min(t) if self.best else statistics.median(t)) for name, t in times.items()}

    def runner(self, tool, direction, folder):
        """A no-argument callable doing one transfer of `folder` with `tool`."""
        up = direction == "up"
        if tool == "raw s5cmd cp":
            return lambda: (self.raw_s5cmd_up if up else self.raw_s5cmd_down)(folder)
        if tool == "make (s5cmd)":
            return lambda: self.make(direction, folder)
        if tool == "serial boto3":
            return lambda: (self.serial_up if up else self.serial_down)(folder)
        backend = tool.split()[1]
        return lambda: self.toolbox(backend, direction, folder)

    def transfer_rows(self):
        rows = []
        for folder, (label, _, tools) in self.sets().items():
            for direction in ("up", "down"):
                if direction == "up":
                    prepare = self.empty_bucket
                else:
                    self.fill_bucket(folder)
                    prepare = self.empty_local
                figures = self.medians(prepare, {tool: self.runner(tool, direction, folder) for tool in tools})
                rows.append((f"{label} {direction}", figures))
                print(f"  measured {label} {direction}", file=sys.stderr)
        self.empty_bucket()                 # the gateway keeps objects in RAM
        return rows

    def noop_rows(self):
        """Re-sync 1,000 unchanged files: in-process (warm client) and as a fresh `launch.py sync`."""
        from toolbox import s3utils

        rows = []
        self.empty_bucket()
        os.environ["S3_BACKEND"] = "s5cmd"
        s3utils.upload_s3_path("small/", progress=False)
        s3utils.download_s3_path("small/", local_path="dl", progress=False)
        for backend in ("s5cmd", "boto3"):
            os.environ["S3_BACKEND"] = backend
            for direction, local in (("up", "."), ("down", "dl")):
                self.server.counters()
                started = time.perf_counter()
                result = s3utils.sync_s3_path("small/", direction, local_path=local, progress=False)
                seconds = time.perf_counter() - started
                assert len(result) == 0 and len(result.skipped) == SMALL_COUNT
                started = time.perf_counter()
                subprocess.run([sys.executable, os.path.join(ROOT, "launch.py"), "sync", "--file", "small/",
                                "--direction", direction, "--local_path", local], check=True,
                               stdout=subprocess.DEVNULL, env=dict(os.environ))
                cli_seconds = time.perf_counter() - started
                requests, moved = self.server.counters()
                rows.append((backend, direction, seconds, cli_seconds, moved, requests))
        return rows


class Faults:
    """A fresh moto server per measurement, killed (or frozen) while `launch.py` works against it."""

    FILES, SIZE = 300, 200_000
    LIMIT = 600                     # seconds: a row that takes longer is reported as "> 600 s"

    def __init__(self, workdir):
        from fixtures_s3 import s3_environment

        self.workdir = os.path.join(workdir, "faults")
        self.environment = s3_environment

    def _server(self):
        import boto3

        from fixtures_s3 import ACCESS_KEY, BUCKET, SECRET_KEY

        server = Server()
        try:
            client = boto3.client("s3", endpoint_url=server.url, region_name="us-east-1",
                                  aws_access_key_id=ACCESS_KEY, aws_secret_access_key=SECRET_KEY)
            client.create_bucket(Bucket=BUCKET)
        except BaseException:
            server.stop()
            raise
        return server, client

    def _launch(self, server, command, backend, **variables):
        env = dict(os.environ, **self.environment(server.url), S3_BACKEND=backend, S3_WORKERS="4", **variables)
        return subprocess.Popen([sys.executable, os.path.join(ROOT, "launch.py"), command], cwd=self.workdir, env=env,
                                stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)

    def _prepare(self, client, direction):
        shutil.rmtree(self.workdir, ignore_errors=True)
        os.makedirs(os.path.join(self.workdir, "d"))
        for i in range(self.FILES):
            data = os.urandom(self.SIZE)
            if direction == "download":
                client.put_object(Bucket="toolbox-test", Key=f"d/{i:03d}.bin", Body=data)
            else:
                with open(os.path.join(self.workdir, "d", f"{i:03d}.bin"), "wb") as f:
                    f.write(data)

    @staticmethod
    def _when_busy(server, kind, count=30):
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and sum(r.kind == kind for r in server.requests()) < count:
            time.sleep(0.02)

    def dies(self, backend, direction):
        """Seconds from the endpoint's death to the end of the transfer."""
        server, client = self._server()
        try:
            self._prepare(client, direction)
            proc = self._launch(server, direction, backend, file="d/")
            self._when_busy(server, "GET" if direction == "download" else "PUT")
            server.stop()
            return self._until_exit(proc)
        finally:
            server.stop()

    def _until_exit(self, proc, sig=None):
        """Seconds until proc exits (after sending `sig`), None beyond LIMIT (then it is killed)."""
        started = time.perf_counter()
        if sig is not None:
            proc.send_signal(sig)
        try:
            proc.communicate(timeout=self.LIMIT)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.communicate()
            return None
        return time.perf_counter() - started

    def ctrl_c(self, backend, multipart=False):
        """Seconds from Ctrl-C (SIGINT) to the end of a download whose endpoint froze (300 small files, or
        one 60 MiB file in 5 MiB parts)."""
        server, client = self._server()
        try:
            if multipart:
                shutil.rmtree(self.workdir, ignore_errors=True)
                os.makedirs(self.workdir)
                client.put_object(Bucket="toolbox-test", Key="d/big.bin", Body=os.urandom(60 << 20))
            else:
                self._prepare(client, "download")
            proc = self._launch(server, "download", backend, file="d/", S3_PART_SIZE_MB="5")
            self._when_busy(server, "GET", 1 if multipart else 30)
            os.kill(server.proc.pid, signal.SIGSTOP)
            time.sleep(1)
            return self._until_exit(proc, signal.SIGINT)
        finally:
            os.kill(server.proc.pid, signal.SIGCONT)
            server.stop()

    def monitor_stop(self, backend):
        """Seconds from SIGTERM to the monitor's exit, a new checkpoint pending and the endpoint gone."""
        server, _ = self._server()
        try:
            shutil.rmtree(self.workdir, ignore_errors=True)
            os.makedirs(os.path.join(self.workdir, "ckpt"))
            proc = self._launch(server, "monitor", backend, folder="ckpt/", interval="3600")
            for line in proc.stdout:
                if line.startswith("monitoring "):
                    break
            server.stop()
            with open(os.path.join(self.workdir, "ckpt", "last.pt"), "wb") as f:
                f.write(os.urandom(self.SIZE))
            return self._until_exit(proc, signal.SIGTERM)
        finally:
            server.stop()

    def rows(self):
        rows = []
        for backend in ("s5cmd", "boto3"):
            for direction in ("download", "upload"):
                rows.append((f"endpoint killed mid-{direction}: reported after", backend, self.dies(backend, direction)))
            rows.append(("Ctrl-C, endpoint frozen mid-download: stopped after", backend, self.ctrl_c(backend)))
            rows.append(("Ctrl-C, endpoint frozen mid-download of a 60 MiB multipart file: stopped after", backend,
                         self.ctrl_c(backend, multipart=True)))
            rows.append(("`make monitor` stopped (SIGTERM), endpoint gone: exits after", backend,
                         self.monitor_stop(backend)))
            print(f"  measured the failure rows ({backend})", file=sys.stderr)
        return rows


def report_faults(rows):
    lines = ["| failure (S3_RETRY_SECONDS=30, S3_FLUSH_SECONDS=25: the defaults) | backend | seconds |",
             "|---|---|---:|"]
    lines += [f"| {what} | {backend} | " + (f"{seconds:.1f} s" if seconds is not None else f"> {Faults.LIMIT} s")
              + " |" for what, backend, seconds in rows]
    return "\n".join(lines)


def report(rows, noop):
    tools = TOOLS
    lines = ["| transfer | " + " | ".join(tools) + " | make / raw s5cmd (make - raw) | toolbox s5cmd / raw s5cmd "
             "| serial boto3 / toolbox boto3 |", "|---|" + "---:|" * (len(tools) + 3)]
    for label, f in rows:
        cells = [f"{f[t]:.2f} s" if t in f else "-" for t in tools]
        raw = f["raw s5cmd cp"]
        make = f"{f['make (s5cmd)'] / raw:.2f}x ({f['make (s5cmd)'] - raw:+.2f} s)"
        boto3_speedup = f"{f['serial boto3'] / f['toolbox boto3']:.1f}x" if "serial boto3" in f else "-"
        lines.append(f"| {label} | " + " | ".join(cells) + f" | {make} | {f['toolbox s5cmd'] / raw:.2f}x "
                     f"| {boto3_speedup} |")
    lines += ["", "| no-op re-sync of 1,000 unchanged files | API call (warm) | `launch.py sync` (cold process) "
                  "| requests (both runs) | of which PUT/GET/HEAD |", "|---|---:|---:|---:|---:|"]
    for backend, direction, seconds, cli_seconds, moved, requests in noop:
        lines.append(f"| {backend}, direction={direction} | {seconds:.2f} s | {cli_seconds:.2f} s | {requests} "
                     f"| {moved} |")
    return "\n".join(lines)


def main():
    # Measure commands as users run them, with Python's bytecode cache (this machine's sessions set
    # PYTHONDONTWRITEBYTECODE=1, which recompiles every module of every command).
    os.environ.pop("PYTHONDONTWRITEBYTECODE", None)
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeat", type=int, default=3, help="runs per figure (median)")
    parser.add_argument("--faults", action="store_true", help="only the failure rows")
    parser.add_argument("--best", action="store_true",
                        help="the fastest of the runs instead of the median (on a machine shared with other work)")
    parser.add_argument("--server", choices=("auto", "rgw", "moto"), default="auto",
                        help="S3 server of the transfer rows (auto: Ceph RGW when installed, else moto)")
    args = parser.parse_args()
    register_toolbox()
    workdir = tempfile.mkdtemp(prefix="toolbox-bench-")
    if args.faults:
        try:
            print(report_faults(Faults(workdir).rows()))
        finally:
            shutil.rmtree(workdir, ignore_errors=True)
        return
    server = start_server(args.server)
    try:
        bench = Bench(server, workdir, args.repeat)
        bench.best = args.best
        print(f"preparing data in {workdir} ...", file=sys.stderr)
        bench.make_data()
        rows = bench.transfer_rows()
        noop = bench.noop_rows()
        faults = Faults(workdir).rows()
        statistic = "fastest" if args.best else "median"
        print(f"S3 server: {server.name} on loopback; {os.cpu_count()} CPUs, {statistic} of {args.repeat} runs, "
              f"load average {os.getloadavg()[0]:.1f} at the end\n")
        print(report(rows, noop))
        print()
        print(report_faults(faults))
    finally:
        server.stop()
        os.chdir("/")
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
