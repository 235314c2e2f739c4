#!/usr/bin/env python3
"""Benchmark of the Kubernetes commands against the API server double on loopback (a table, not a test).

    .venv/bin/python bench/submit.py [--sizes 100,1000] [--dryrun 10000] [--memory 10000,100000]
                                     [--interrupt 10000] [--original 100] [--array 10000] [--validate]

Each row runs the real `make <target>` in a temporary project laid out like a user's (src/toolbox -> this
checkout, symlinked Makefile and launch.py) and times it end to end (process start to exit). The double
runs in its own process (`tests/doubles/kube_api --no-validate` unless --validate: schema-checking every body
costs the double, not the toolbox). "original" replays what the original toolbox did per cell: one
`kubectl get job` and one `kubectl create -f` process each, one cell after the other. "peak memory" rows
give the largest RSS of the command's processes (the dry run streams: it should not grow with the grid).
"Ctrl-C" stops the double's process (SIGSTOP: a stalled API server) while `make job` submits, then sends
SIGINT to make's process group as a terminal would, and times how long the command takes to end.
"array" rows submit the same grid as an array sweep (`array: true`: a few Indexed Jobs) and, side by side in
the same run, as one Job per cell; `make status` of each after the double's job controller made every pod
(all pending: 10,000 pods to list either way); peak memory of `make job` at a tenth and all of the cells.
"""
import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import common
from common import peak_rss

ROOT = Path(__file__).resolve().parent.parent
PYTHON = sys.executable
TARGETS = {"job-100": 0.5, "job-1000": 5.0, "status-1000": 1.0, "dryrun-10000": 3.0, "array-job": 1.5,
           "array-status": 1.5}


def grid_yaml(cells):
    """A launch.yaml with exactly `cells` cells (lr x seed)."""
    seeds = 10 if cells >= 10 else cells
    lrs = cells // seeds
    return ("model:\n  train:\n    command: python src/train.py --lr <lr> --seed <seed>\n    hparam:\n"
            f"      lr: [{', '.join(str(round(0.001 * (i + 1), 6)) for i in range(lrs))}]\n"
            f"      seed: [{', '.join(str(i) for i in range(seeds))}]\n")


def make_project(base, name, cells, user):
    """A project of `cells` cells, with a .env (make job creates its Secret)."""
    return common.make_project(Path(base) / name, grid_yaml(cells), user, "WANDB_API_KEY=bench-secret-value\n")


def timed(command, cwd, env):
    started = time.perf_counter()
    done = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        sys.exit(f"{' '.join(command)} failed ({done.returncode}):\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}")
    return seconds, done.stdout


def interrupt_latency(project, env, double):
    """Seconds from Ctrl-C to the end of `make job` while the API server is stalled (SIGSTOPped)."""
    proc = subprocess.Popen(["make", "job"], cwd=project, env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        time.sleep(1.0)                      # submitting by now
        if proc.poll() is not None:          # a fast machine: nothing left to interrupt
            raise SystemExit("make job ended within 1 s: give --interrupt more cells")
        os.kill(double.pid, signal.SIGSTOP)
        time.sleep(1.0)                      # requests are stuck
        started = time.perf_counter()
        os.killpg(proc.pid, signal.SIGINT)
        try:
            proc.wait(150)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        return time.perf_counter() - started
    finally:
        os.kill(double.pid, signal.SIGCONT)


def start_double(tmp, validate):
    kubeconfig = Path(tmp) / "kubeconfig"
    command = [PYTHON, str(ROOT / "tests" / "doubles" / "kube_api"), "--port", "0", "--kubeconfig", str(kubeconfig)]
    if not validate:
        command.append("--no-validate")
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
    url = proc.stdout.readline().strip()
    if not url:
        sys.exit("the double did not start")
    return proc, kubeconfig


def api_objects(kubeconfig, user):
    """(Jobs, ConfigMaps, pods) of a user in the double, counted through the official client."""
    from kubernetes import client, config

    configuration = client.Configuration()
    config.load_kube_config(config_file=str(kubeconfig), client_configuration=configuration)
    with client.ApiClient(configuration) as api:
        core, batch = client.CoreV1Api(api), client.BatchV1Api(api)
        selector = f"user={user}"
        jobs = batch.list_namespaced_job("ns", label_selector=selector, _preload_content=False)
        maps = core.list_namespaced_config_map("ns", label_selector=selector + ",toolbox/role=array",
                                               _preload_content=False)
        return tuple(len(json.loads(r.data)["items"]) for r in (jobs, maps))


def wait_for_pods(kubeconfig, count, limit=300):
    """Until the double's job controller has made `count` pods (it makes 500 per sync, the rest behind)."""
    from kubernetes import client, config

    configuration = client.Configuration()
    config.load_kube_config(config_file=str(kubeconfig), client_configuration=configuration)
    deadline = time.monotonic() + limit
    with client.ApiClient(configuration) as api:
        core = client.CoreV1Api(api)
        while time.monotonic() < deadline:
            listed = core.list_namespaced_pod("ns", _preload_content=False)
            if len(json.loads(listed.data)["items"]) >= count:
                return
            time.sleep(2.0)


def array_rows(tmp, env, kubeconfig, cells, per_cell):
    """The array-sweep rows: submit and status of `cells` cells as packs, and (per_cell) as one Job each."""
    rows = []
    for array in (True, False) if per_cell else (True,):
        what = "array: true" if array else "one Job per cell"
        user = "arr" if array else "per"
        project = make_project(tmp, f"{user}{cells}", cells, user)
        if array:
            (project / "config" / "launch.yaml").write_text("array: true\n" + grid_yaml(cells))
        seconds, out = timed(["make", "job"], project, env)
        assert "0 failed" in out, out[-500:]
        jobs, maps = api_objects(kubeconfig, user)
        rows.append((f"make job, {cells} cells, {what}", TARGETS["array-job"] if array else None, seconds,
                     f"{jobs} Jobs + {maps} ConfigMaps"))
        wait_for_pods(kubeconfig, cells * (2 if not array and per_cell else 1))
        seconds, out = timed(["make", "job"], project, env)
        rows.append((f"make job again, {cells} cells, {what}", None, seconds, "nothing to do"))
        seconds, out = timed(["make", "status"], project, env)
        assert f"{cells} cells:" in out, out[-500:]
        rows.append((f"make status, {cells} cells, {what}", TARGETS["array-status"] if array else None, seconds,
                     f"{cells} pods listed"))
    for count in (cells // 10, cells):
        project = make_project(tmp, f"mem{count}", count, f"mem{count}")
        (project / "config" / "launch.yaml").write_text("array: true\n" + grid_yaml(count))
        seconds, mib = peak_rss(["make", "job"], project, env)
        rows.append((f"make job, {count} cells, array: true: peak memory", None, seconds, f"{mib:.0f} MiB"))
    return rows


def floor(env, cwd):
    """The fixed cost of any command: interpreter start and imports of the job command's modules."""
    code = ("import importlib.util as u; s = u.spec_from_file_location('b', 'launch.py'); m = u.module_from_spec(s);"
            " s.loader.exec_module(m); m._register_toolbox_package(); import toolbox.cli.kube, toolbox.kube.submit, toolbox.local.runner, "
            "toolbox.kube.render, jinja2, dotenv; from toolbox.kube.client import client_modules; client_modules()")
    best = min(timed([PYTHON, "-c", code], cwd, env)[0] for _ in range(3))
    return best


def create_files_floor(count, size, base):
    """How long this disk takes to create `count` files of `size` bytes (pure Python, no toolbox)."""
    folder = Path(base) / "files-floor"
    folder.mkdir()
    data = b"x" * size
    started = time.perf_counter()
    for i in range(count):
        fd = os.open(folder / f"{i}.yaml", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        os.write(fd, data)
        os.close(fd)
    seconds = time.perf_counter() - started
    shutil.rmtree(folder)
    return seconds


def original(project, env, cells, kubectl):
    """The original's per-cell submission: `kubectl get job` then `kubectl create -f`, sequentially."""
    timed(["make", "dryrun"], project, env)
    manifests = sorted((project / "build").glob("bench-*.yaml")) or sorted((project / "build").glob("*.yaml"))
    started = time.perf_counter()
    for path in manifests[:cells]:
        name = path.stem
        subprocess.run([kubectl, "--namespace=ns", "get", "job", name, "-o", "json"], env=env, capture_output=True)
        done = subprocess.run([kubectl, "--namespace=ns", "create", "-f", str(path)], env=env, capture_output=True,
                              text=True)
        if done.returncode != 0:
            sys.exit(f"kubectl create failed: {done.stderr}")
    return time.perf_counter() - started


def main(argv=None):
    # Measure commands as users run them, with Python's bytecode cache (this machine's sessions set
    # PYTHONDONTWRITEBYTECODE=1, which recompiles every module of every command).
    os.environ.pop("PYTHONDONTWRITEBYTECODE", None)
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="100,1000", help="cells for `make job` (comma-separated)")
    parser.add_argument("--status", type=int, default=1000, help="cells for `make status`")
    parser.add_argument("--dryrun", type=int, default=10000, help="cells for `make dryrun`")
    parser.add_argument("--memory", default="10000,100000", help="cells for the dry run's peak memory ('' to skip)")
    parser.add_argument("--interrupt", type=int, default=10000, help="cells for Ctrl-C against a stalled server")
    parser.add_argument("--original", type=int, default=100, help="cells for the original's kubectl loop (0: skip)")
    parser.add_argument("--array", type=int, default=10000, help="cells for the array-sweep rows (0: skip)")
    parser.add_argument("--no-per-cell", dest="per_cell", action="store_false",
                        help="array rows: skip the one-Job-per-cell side of the comparison")
    parser.add_argument("--validate", action="store_true", help="the double schema-validates every body")
    args = parser.parse_args(argv)
    rows = []
    with tempfile.TemporaryDirectory(prefix="toolbox-bench-") as tmp:
        double, kubeconfig = start_double(tmp, args.validate)
        env = dict(os.environ, KUBECONFIG=str(kubeconfig), PYTHON=PYTHON, KUBECACHEDIR=str(Path(tmp) / "kcache"))
        for var in ("model", "dataset", "overwrite", "yes", "name", "pod", "context"):
            env.pop(var, None)
        try:
            base = make_project(tmp, "floor", 1, "floor")
            rows.append(("fixed cost: python start + imports (best of 3)", None, floor(env, base), ""))
            for index, cells in enumerate(int(s) for s in args.sizes.split(",") if s):
                project = make_project(tmp, f"job{cells}", cells, f"u{index}")
                seconds, out = timed(["make", "job"], project, env)
                assert f"{cells} created" in out, out[-500:]
                rows.append((f"make job, {cells} cells (all new)", TARGETS.get(f"job-{cells}"), seconds, ""))
                seconds, out = timed(["make", "job"], project, env)
                assert f"{cells} skipped" in out, out[-500:]
                rows.append((f"make job again, {cells} cells (all exist)", None, seconds, "one list call"))
            if args.status:
                project = make_project(tmp, "status", args.status, "st")
                timed(["make", "job"], project, env)
                seconds, out = timed(["make", "status"], project, env)
                assert f"{args.status} cells:" in out
                rows.append((f"make status, {args.status} cells", TARGETS.get(f"status-{args.status}"), seconds,
                             "two list calls"))
            if args.dryrun:
                project = make_project(tmp, "dryrun", args.dryrun, "dr")
                seconds, _ = timed(["make", "dryrun"], project, env)
                size = (project / "build" / next(os.scandir(project / "build")).name).stat().st_size
                disk = create_files_floor(args.dryrun, size, tmp)
                rows.append((f"make dryrun, {args.dryrun} cells (new build/)", TARGETS.get(f"dryrun-{args.dryrun}"),
                             seconds, f"this disk alone creates {args.dryrun} such files in {disk:.2f} s"))
                seconds, _ = timed(["make", "dryrun"], project, env)
                rows.append((f"make dryrun again, {args.dryrun} cells (unchanged)", None, seconds,
                             "unchanged files are not rewritten"))
            for cells in (int(s) for s in args.memory.split(",") if s):
                project = make_project(tmp, f"memory{cells}", cells, f"m{cells}")
                seconds, mib = peak_rss(["make", "dryrun"], project, env)
                rows.append((f"make dryrun, {cells} cells: peak memory", None, seconds,
                             f"{mib:.0f} MiB (the whole time, disk included)"))
                shutil.rmtree(project / "build")
            if args.interrupt:
                project = make_project(tmp, "interrupt", args.interrupt, "ctrlc")
                seconds = interrupt_latency(project, env, double)
                rows.append((f"Ctrl-C during make job, {args.interrupt} cells, stalled API server", 2.0, seconds,
                             "from SIGINT to the end of make"))
            if args.array:
                rows += array_rows(tmp, env, kubeconfig, args.array, args.per_cell)
            if args.original:
                kubectl = shutil.which("kubectl") or str(Path(PYTHON).parent / "kubectl")
                project = make_project(tmp, "original", args.original, "orig")
                seconds = original(project, env, args.original, kubectl)
                rows.append((f"original: 2 kubectl per cell, {args.original} cells", None, seconds,
                             "what the original toolbox did"))
        finally:
            double.terminate()
            double.wait(10)
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"Kubernetes API double on loopback ({'validating' if args.validate else 'no schema validation'}); "
          f"{os.cpu_count()} CPUs, load average {load:.1f} at the end.\n")
    print_rows(rows)
    return 0


def print_rows(rows):
    """(scenario, target seconds or None, measured seconds, note) rows as a Markdown table."""
    print("| scenario | target | measured | |")
    print("|---|---|---|---|")
    for label, target, seconds, note in rows:
        verdict = "" if target is None else ("ok" if seconds <= target else "OVER")
        target_text = f"<= {target:g} s" if target else ""
        print(f"| {label} | {target_text} | {seconds:.2f} s | {verdict} {note}".rstrip() + " |")


if __name__ == "__main__":
    sys.exit(main())
