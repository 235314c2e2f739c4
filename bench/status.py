#!/usr/bin/env python3
"""Benchmark of the views of a sweep against the API server double on loopback (a table, not a test).

    .venv/bin/python bench/status.py [--cells 1000] [--repeat 3]

Each row runs the real `make <target>` in a temporary project (as bench/submit.py does, whose helpers it
uses) against the double in its own process, after `make job` submitted every cell:
- `make status` (the table) and `make report` (from the cluster, and from the plan alone), end to end;
- `make status watch=1` with its output in a pipe: the time to its first summary line (two list calls and
  two watches opened), then how long after the LAST of N job completions (sent through the API by this
  script, as fast as the double takes them) the watch prints that the whole sweep finished.
"""
import argparse
import datetime
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from submit import PYTHON, make_project, print_rows, start_double, timed

TARGETS = {"status": 1.0, "report": 1.0, "watch-first": 1.0}


def complete_every_job(kubeconfig, names):
    """Mark every Job succeeded through the status subresource, as the job controller would."""
    from kubernetes import client, config

    configuration = client.Configuration()
    config.load_kube_config(config_file=str(kubeconfig), client_configuration=configuration)
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    status = {"status": {"succeeded": 1, "active": 0, "startTime": stamp, "completionTime": stamp, "conditions": [
        {"type": "Complete", "status": "True", "lastProbeTime": stamp, "lastTransitionTime": stamp}]}}
    with client.ApiClient(configuration) as api:
        batch = client.BatchV1Api(api)
        for name in names:
            batch.patch_namespaced_job_status(name, "ns", status, _preload_content=False)


def watch_run(project, env, kubeconfig, cells):
    """(seconds to the first summary line, seconds from the last completion to the end, total events)."""
    started = time.perf_counter()
    proc = subprocess.Popen(["make", "status", "watch=1", "interval=0"], cwd=project, env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    first = threading.Event()
    lines, first_at = [], []

    def read():
        for line in proc.stdout:
            lines.append(line)
            if f"0/{cells} done" in line and not first.is_set():
                first_at.append(time.perf_counter())
                first.set()

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    if not first.wait(60):
        proc.kill()
        sys.exit("make status watch=1 printed no summary:\n" + "".join(lines[-20:]))
    plan = subprocess.run(["make", "local-dryrun"], cwd=project, env=env, capture_output=True, text=True, check=True)
    names = [line.split(":", 1)[0] for line in plan.stdout.splitlines()]
    complete_every_job(kubeconfig, names)
    sent = time.perf_counter()
    proc.wait(120)
    ended = time.perf_counter()
    reader.join(5)
    if f"All {cells} cells finished: {cells} succeeded" not in "".join(lines):
        sys.exit("the watch did not see the sweep finish:\n" + "".join(lines[-20:]))
    return first_at[0] - started, ended - sent, sent - first_at[0]


def measure(tmp, index, cells, env, kubeconfig):
    """One run of every scenario, in a project (and a user) of its own: [(label, target, seconds, note)]."""
    rows = []
    project = make_project(tmp, f"views{index}", cells, f"views{index}")
    timed(["make", "job"], project, env)
    seconds, out = timed(["make", "status"], project, env)
    assert f"{cells} cells:" in out
    rows.append((f"make status, {cells} cells (the table)", TARGETS["status"], seconds, "two list calls"))
    seconds, out = timed(["make", "report", "from=cluster"], project, env)
    size = (project / "build" / "report.html").stat().st_size
    rows.append((f"make report from=cluster, {cells} cells", TARGETS["report"], seconds,
                 f"two list calls; report.html {size / 1024:.0f} KiB"))
    seconds, _ = timed(["make", "report", "from=plan"], project, env)
    rows.append((f"make report from=plan, {cells} cells", None, seconds, "no cluster"))
    first, lag, sending = watch_run(project, env, kubeconfig, cells)
    rows.append((f"make status watch=1, {cells} cells: first summary", TARGETS["watch-first"], first,
                 "two list calls, two watches"))
    rows.append((f"... {cells} job completions sent through the API", None, sending, "this script, serially"))
    rows.append(("... last completion -> 'All cells finished' printed", None, lag, f"{cells} watch events applied"))
    return rows


def main(argv=None):
    os.environ.pop("PYTHONDONTWRITEBYTECODE", None)
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cells", type=int, default=1000)
    parser.add_argument("--repeat", type=int, default=1, help="runs of every scenario; the best one is shown")
    args = parser.parse_args(argv)
    runs = []
    with tempfile.TemporaryDirectory(prefix="toolbox-bench-") as tmp:
        double, kubeconfig = start_double(tmp, validate=False)
        env = dict(os.environ, KUBECONFIG=str(kubeconfig), PYTHON=PYTHON, KUBECACHEDIR=str(Path(tmp) / "kcache"))
        for var in ("model", "dataset", "overwrite", "yes", "name", "pod", "context", "watch", "from", "interval"):
            env.pop(var, None)
        try:
            runs = [measure(tmp, index, args.cells, env, kubeconfig) for index in range(max(args.repeat, 1))]
        finally:
            double.terminate()
            double.wait(10)
    rows = [min(same, key=lambda row: row[2]) for same in zip(*runs)]
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"Kubernetes API double on loopback (no schema validation); best of {max(args.repeat, 1)}; "
          f"{os.cpu_count()} CPUs, load average {load:.1f} at the end.\n")
    print_rows(rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
