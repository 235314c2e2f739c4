"""`make status` (one table of the sweep) and `make logs` (follow one cell, or every running one)."""
import threading
import time

from toolbox.cli.common import load_grid
from toolbox.cli.output import Printer
from toolbox.errors import EXIT_FAILED, UsageError, choices_line, did_you_mean
from toolbox.kube.client import connect
from toolbox.kube.logs import LogFollower
from toolbox.kube.scope import check_cluster_fields, selector
from toolbox.kube.status import gpu_types, jobs_of, newest, pods_by_job, status_text


def cmd_status(args):
    grid = load_grid(args)
    check_cluster_fields(grid.config)
    settings = grid.cells[0].settings
    with connect(settings, args.context) as cluster:
        jobs = cluster.list("Job", selector(settings))
        pods = cluster.list("Pod", selector(settings))
        products = gpu_types(cluster, pods)
    print(status_text(grid.cells, jobs, pods, products, jobs_of(grid.cells, jobs)))
    return 0


def cmd_logs(args):
    grid = load_grid(args)
    check_cluster_fields(grid.config)
    settings = grid.cells[0].settings
    printer = Printer()

    def say(text):
        printer.line(text, "toolbox: ")

    with connect(settings, args.context) as cluster:
        job_of = jobs_of(grid.cells, cluster.list("Job", selector(settings)))
        if args.name:
            if job_of.get(args.name, args.name) != args.name:
                say(f"{args.name} shares a GPU in job {job_of[args.name]}: following that job")
            pod = _pod_of(cluster, job_of.get(args.name, args.name), grid.cells, say)
            phase = LogFollower(cluster, pod, printer.line, say).follow()
            say(f"pod {pod} {phase.lower() if phase else 'ended'}")
            return 0 if phase in ("Succeeded", "Running") else EXIT_FAILED
        names = set(job_of.values())
        pods = pods_by_job(cluster.list("Pod", selector(settings)))
        running = sorted(name for name, pod in pods.items()
                         if name in names and (pod.get("status") or {}).get("phase") == "Running")
        if not running:
            print("No running cells (`make status` shows the sweep; `make logs name=CELL` waits for one).")
            return 0
        say(f"following {len(running)} running job{'s' if len(running) != 1 else ''}")
        threads = []
        for job in running:
            def write(text, prefix=f"[{job}] "):
                printer.line(text, prefix)
            follower = LogFollower(cluster, pods[job]["metadata"]["name"], write, say)
            thread = threading.Thread(target=follower.follow, daemon=True)
            thread.start()
            threads.append(thread)
        for thread in threads:
            while thread.is_alive():
                thread.join(0.5)
    return 0


def _pod_of(cluster, name, cells, say):
    """The pod to follow for `name=`: the newest pod of job `name` (waiting for it), or a pod so named."""
    said = False
    while True:
        pods = cluster.list("Pod", f"job-name={name}")
        if pods:
            return newest(pods)["metadata"]["name"]
        if cluster.get("Job", name) is None:
            if cluster.get("Pod", name) is not None:
                return name
            known = [c.name for c in cells]
            hint = did_you_mean(name, known)
            raise UsageError(f"name={name}", "no job or pod with this name in namespace "
                             f"'{cluster.namespace}'", [hint] if hint else [choices_line(known)])
        if not said:
            say(f"job {name} has no pod yet; waiting")
            said = True
        time.sleep(1.0)
