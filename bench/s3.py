#!/usr/bin/env python3
"""S3 transfer benchmark: a table, not a test.  `.venv/bin/python bench/s3.py [--repeat 3]`

Against one moto S3 server on loopback (tests/fixtures_s3.py, the same server the tests use), side by
side in one run: 1,000 files of 16 KiB and one 200 MiB file, up and down, through
  - raw `s5cmd cp` (wildcards, one process)            - the toolbox's s5cmd backend
  - a serial boto3 loop (upload_file/download_file)     - the toolbox's boto3 backend
then a no-op re-sync of the 1,000 unchanged files (requests counted on the server). moto is the
bottleneck (a few hundred requests/s on 2 cores): compare ratios, not absolute speeds.
Each figure is the median of --repeat runs (the four tools take turns within each run).
"""
import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tests"))

SMALL_COUNT, SMALL_SIZE = 1000, 16 * 1024
TOOLS = ["raw s5cmd cp", "toolbox s5cmd", "toolbox boto3", "serial boto3"]
BIG_SIZE = 200 * 1024 * 1024


def register_toolbox():
    import importlib.util

    spec = importlib.util.spec_from_file_location("_bench_launch", os.path.join(ROOT, "launch.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    module._register_toolbox_package()


class Server:
    """moto (tests/fixtures_s3.py) in its own process, so the clients measured do not share its GIL."""

    def __init__(self):
        self.proc = subprocess.Popen([sys.executable, os.path.join(ROOT, "tests", "fixtures_s3.py")],
                                     stdout=subprocess.PIPE, text=True)
        self.url = self.proc.stdout.readline().strip()

    def stop(self):
        self.proc.kill()
        self.proc.wait()

    def _call(self, path, method):
        import urllib.request

        with urllib.request.urlopen(urllib.request.Request(self.url + path, method=method), timeout=30) as r:
            return r.read()

    def reset(self):
        self._call("/moto-api/reset", "POST")

    def requests(self, clear=False):
        import json
        from fixtures_s3 import LOG_PATH, Request

        return [Request(*row) for row in json.loads(self._call(LOG_PATH, "DELETE" if clear else "GET"))]


class Bench:
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
    def make_data(self):
        os.chdir(self.workdir)
        os.makedirs("small", exist_ok=True)
        for i in range(SMALL_COUNT):
            with open(f"small/f{i:04d}.bin", "wb") as f:
                f.write(os.urandom(SMALL_SIZE))
        os.makedirs("big", exist_ok=True)
        with open("big/blob.bin", "wb") as f:
            for _ in range(BIG_SIZE // (8 << 20)):
                f.write(os.urandom(8 << 20))

    def empty_bucket(self):
        self.server.reset()
        self.client.create_bucket(Bucket=self.bucket)
        self.server.requests(clear=True)

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
        assert len(result) == (SMALL_COUNT if folder == "small" else 1), result.summary(direction)

    def serial_up(self, folder):
        for name in sorted(os.listdir(folder)):
            self.client.upload_file(f"{folder}/{name}", self.bucket, f"{folder}/{name}")

    def serial_down(self, folder):
        os.makedirs(f"dl/{folder}", exist_ok=True)
        for key in self.keys(f"{folder}/"):
            self.client.download_file(self.bucket, key, f"dl/{key}")

    # ------------------------------------------------------------ measuring
    def medians(self, prepare, runs):
        """{name: median seconds}; the tools take turns within each repetition, so drift in the server's
        state (memory, garbage collection) does not land on one tool."""
        times = {name: [] for name in runs}
        for _ in range(self.repeat):
            for name, run in runs.items():
                prepare()
                started = time.perf_counter()
                run()
                times[name].append(time.perf_counter() - started)
        return {name: statistics.median(t) for name, t in times.items()}

    def runner(self, tool, direction, folder):
        """A no-argument callable doing one transfer of `folder` with `tool`."""
        up = direction == "up"
        if tool == "raw s5cmd cp":
            return lambda: (self.raw_s5cmd_up if up else self.raw_s5cmd_down)(folder)
        if tool == "serial boto3":
            return lambda: (self.serial_up if up else self.serial_down)(folder)
        backend = tool.split()[1]
        return lambda: self.toolbox(backend, direction, folder)

    def transfer_rows(self):
        rows = []
        for folder, label in (("small", "1,000 x 16 KiB"), ("big", "1 x 200 MiB")):
            for direction in ("up", "down"):
                if direction == "up":
                    prepare = self.empty_bucket
                else:
                    self.fill_bucket(folder)
                    prepare = self.empty_local
                figures = self.medians(prepare, {tool: self.runner(tool, direction, folder) for tool in TOOLS})
                rows.append((f"{label} {direction}", figures))
                print(f"  measured {label} {direction}", file=sys.stderr)
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
                self.server.requests(clear=True)
                started = time.perf_counter()
                result = s3utils.sync_s3_path("small/", direction, local_path=local, progress=False)
                seconds = time.perf_counter() - started
                assert len(result) == 0 and len(result.skipped) == SMALL_COUNT
                started = time.perf_counter()
                subprocess.run([sys.executable, os.path.join(ROOT, "launch.py"), "sync", "--file", "small/",
                                "--direction", direction, "--local_path", local], check=True,
                               stdout=subprocess.DEVNULL, env=dict(os.environ))
                cli_seconds = time.perf_counter() - started
                seen = self.server.requests()
                moved = sum(1 for r in seen if r.kind in ("PUT", "GET", "HEAD"))
                rows.append((backend, direction, seconds, cli_seconds, moved, sorted({r.kind for r in seen})))
        return rows


def report(rows, noop):
    tools = TOOLS
    lines = ["| transfer | " + " | ".join(tools)
             + " | toolbox s5cmd / raw s5cmd | serial boto3 / toolbox boto3 |",
             "|---|" + "---:|" * (len(tools) + 2)]
    for label, f in rows:
        cells = [f"{f[t]:.2f} s" for t in tools]
        s5cmd_ratio = f["toolbox s5cmd"] / f["raw s5cmd cp"]
        boto3_speedup = f["serial boto3"] / f["toolbox boto3"]
        lines.append(f"| {label} | " + " | ".join(cells) + f" | {s5cmd_ratio:.2f}x | {boto3_speedup:.1f}x |")
    lines += ["", "| no-op re-sync of 1,000 unchanged files | API call (warm) | `launch.py sync` (cold process) "
                  "| PUT/GET/HEAD requests (both runs) | request kinds |", "|---|---:|---:|---:|---|"]
    for backend, direction, seconds, cli_seconds, moved, kinds in noop:
        lines.append(f"| {backend}, direction={direction} | {seconds:.2f} s | {cli_seconds:.2f} s | {moved} | "
                     f"{', '.join(kinds)} |")
    return "\n".join(lines)


def main():
    # Measure commands as users run them, with Python's bytecode cache (this machine's sessions set
    # PYTHONDONTWRITEBYTECODE=1, which recompiles every module of every command).
    os.environ.pop("PYTHONDONTWRITEBYTECODE", None)
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeat", type=int, default=3, help="runs per figure (median)")
    args = parser.parse_args()
    register_toolbox()
    workdir = tempfile.mkdtemp(prefix="toolbox-bench-")
    server = Server()
    try:
        bench = Bench(server, workdir, args.repeat)
        print(f"preparing data in {workdir} ...", file=sys.stderr)
        bench.make_data()
        rows = bench.transfer_rows()
        noop = bench.noop_rows()
        print(f"moto S3 on loopback, {os.cpu_count()} CPUs, median of {args.repeat} runs\n")
        print(report(rows, noop))
    finally:
        server.stop()
        os.chdir("/")
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
