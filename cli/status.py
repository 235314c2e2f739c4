"""`make status` (one table of the sweep; watch=1: live, cli/watch.py) and `make logs` (follow one cell, or
every running one)."""
import functools
import threading
import time

from toolbox.cli.common import load_grid
from toolbox.cli.output import Printer
from toolbox.cli.watch import watch_status
from toolbox.core.console import plural
from toolbox.errors import EXIT_FAILED, UsageError, choices_line, did_you_mean
from toolbox.kube import arrays
from toolbox.kube.client import connect
from toolbox.kube.distributed import SERVICE_ROLE
from toolbox.kube.jobspec import INDEX_KEY
from toolbox.kube.logs import LogFollower
from toolbox.kube.placement import ARRAY, NODES, SHARED, completion_index
from toolbox.kube.scope import check_cluster_fields, selector
from toolbox.kube.status import gpu_types, jobs_of, last_disruptions, newest, status_text
from toolbox.kube.sweep import job_name_of


def cmd_status(args):
    grid = load_grid(args)
    check_cluster_fields(grid.config)
    settings = grid.cells[0].settings
    with connect(settings, args.context) as cluster:
        if getattr(args, "watch", None):
            return watch_status(cluster, grid.cells, settings, getattr(args, "interval", None))
        jobs = cluster.list("Job", selector(settings))
        pods = cluster.list("Pod", selector(settings))
        products = gpu_types(cluster, pods)
        placement = jobs_of(grid.cells, jobs, arrays.cluster_members(cluster, settings, jobs))
        disruptions = last_disruptions(cluster, jobs, pods)
        services = None
        if NODES in placement.kind.values():   # the headless Services of multi-node cells: there or not
            listed = cluster.list("Service", selector(settings, f"toolbox/role={SERVICE_ROLE}"))
            services = {service["metadata"]["name"] for service in listed}
    print(status_text(grid.cells, jobs, pods, products, placement, disruptions, services))
    return 0


def cmd_logs(args):
    grid = load_grid(args)
    check_cluster_fields(grid.config)
    settings = grid.cells[0].settings
    printer = Printer()

    def say(text):
        printer.line(text, "toolbox: ")

    with connect(settings, args.context) as cluster:
        jobs = cluster.list("Job", selector(settings))
        placement = jobs_of(grid.cells, jobs, arrays.cluster_members(cluster, settings, jobs))
        if args.name:
            job, index = _job_and_index(placement, args.name, getattr(args, "node", None), say)
            pod = _pod_of(cluster, job, grid.cells, say, index)
            phase = LogFollower(cluster, pod, printer.line, say).follow()
            say(f"pod {pod} {phase.lower() if phase else 'ended'}")
            return 0 if phase in ("Succeeded", "Running") else EXIT_FAILED
        names = set(placement.values())
        running = {}
        for pod in cluster.list("Pod", selector(settings)):
            job = job_name_of(pod)
            if job in names and (pod.get("status") or {}).get("phase") == "Running":
                key = (job, completion_index(pod))
                running[key] = newest([running[key], pod]) if key in running else pod
        if not running:
            print("No running cells (`make status` shows the sweep; `make logs name=CELL` waits for one).")
            return 0
        say(f"following {plural(len(running), 'running pod')}")
        threads = []
        for (job, index), pod in sorted(running.items(), key=lambda item: (item[0][0], item[0][1] or 0)):
            write = functools.partial(_prefixed, printer, f"[{placement.label(job, index)}] ")
            follower = LogFollower(cluster, pod["metadata"]["name"], write, say)
            thread = threading.Thread(target=follower.follow, daemon=True)
            thread.start()
            threads.append(thread)
        for thread in threads:
            while thread.is_alive():
                thread.join(0.5)
    return 0


def _prefixed(printer, prefix, text):
    printer.line(text, prefix)


def _job_and_index(placement, name, node, say):
    """The Job and completion index whose pod `make logs name=CELL [node=K]` follows."""
    job, kind = placement.get(name, name), placement.kind.get(name)
    if node is not None and kind != NODES:
        raise UsageError(f"node={node}", f"'{name}' is not a multi-node cell (node= picks one of its nodes)")
    if kind == NODES:
        nodes = placement.nodes[name]
        node = 0 if node is None else node
        if not 0 <= node < nodes:
            raise UsageError(f"node={node}", f"'{name}' runs on {nodes} nodes: node=0 to node={nodes - 1}")
        say(f"{name} runs on {nodes} nodes: following node {node}" + ("" if node else " (node=K for another)"))
        return job, node
    if kind == ARRAY and placement.index.get(name) is not None:
        say(f"{name} is index {placement.index[name]} of array job {job}")
        return job, placement.index[name]
    if job != name and kind == SHARED:
        say(f"{name} shares a GPU in job {job}: following that job")
    return job, None


def _pod_of(cluster, name, cells, say, index=None):
    """The pod to follow for `name=`: the newest pod of job `name` (of its completion `index`, for an Indexed
    Job), waiting for it, or a pod so named."""
    said = False
    labels = f"job-name={name}" + (f",{INDEX_KEY}={index}" if index is not None else "")
    while True:
        pods = cluster.list("Pod", labels)
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
            say(f"job {name} has no pod" + (f" for index {index}" if index is not None else "") + " yet; waiting")
            said = True
        time.sleep(1.0)
