"""`make report`: build/report.html, the sweep as a grid in one self-contained page.

Where the states come from (`from=`): `cluster` (one list call for Jobs, one for Pods, as `make status`),
`local` (build/local-state.json, written by `make local`), `plan` (the grid alone: every cell "not
submitted", what `make dryrun` would submit). Without `from=`, the report shows whichever of the cluster
and the local runs saw activity last, and the plan when neither has anything of this sweep.
"""
import os
import time

from toolbox.cli.common import load_grid
from toolbox.core.console import human_duration, plural
from toolbox.core.files import write_atomically
from toolbox.errors import ConfigError, ToolboxError, UsageError, choices_line, warn
from toolbox.kube import arrays
from toolbox.kube.build import BUILD_DIR
from toolbox.kube.client import connect
from toolbox.kube.scope import check_cluster_fields, selector
from toolbox.kube.status import gpu_types, jobs_of
from toolbox.kube.sweep import Sweep
from toolbox.local.state import STATE_FILE, STATES
from toolbox.report.html import render
from toolbox.report.sources import local_records, plan_records, read_local_state
from toolbox.report.summary import state_counts

REPORT_FILE = os.path.join(BUILD_DIR, "report.html")
SOURCES = ("cluster", "local", "plan")


class Source:
    """Records of the sweep, a sentence saying where they come from, and when that source last changed."""

    def __init__(self, name, records, description, activity=None):
        self.name, self.records, self.description, self.activity = name, records, description, activity


def cluster_source(grid, context):
    settings = grid.cells[0].settings
    with connect(settings, context) as cluster:
        jobs = cluster.list("Job", selector(settings))
        pods = cluster.list("Pod", selector(settings))
        placement = jobs_of(grid.cells, jobs, arrays.cluster_members(cluster, settings, jobs))
        sweep = Sweep(grid.cells, placement, gpu_types(cluster, pods), jobs, pods)
    return Source("cluster", sweep.ordered(), f"Cluster: namespace {settings['namespace']}, "
                  f"user {settings['user']}", sweep.last_activity())


def local_source(grid):
    data = read_local_state(STATE_FILE)
    if data is None:
        return None
    updated = data.get("updated") if isinstance(data.get("updated"), (int, float)) else None
    when = f", updated {human_duration(max(time.time() - updated, 0))} ago" if updated else ""
    return Source("local", local_records(grid.cells, data, STATES), f"Local runs: {STATE_FILE}{when}", updated)


def plan_source(grid):
    return Source("plan", plan_records(grid.cells), "The plan only: nothing submitted (the cells of make dryrun)")


def choose_source(grid, context):
    """from= not given: the cluster or the local runs, whichever changed last; else the plan."""
    found = []
    try:
        check_cluster_fields(grid.config)
        found.append(cluster_source(grid, context))
    except ConfigError:
        pass  # no user/namespace in kube.yaml: a project that runs locally only
    except ToolboxError as err:
        warn(f"make report: the cluster is not used: {err.format().splitlines()[0][len('error: '):]}")
    try:
        found.append(local_source(grid))
    except ToolboxError as err:
        warn(err.format().splitlines()[0][len("error: "):])
    found = [source for source in found if source is not None and source.activity is not None]
    if not found:
        return plan_source(grid)
    return max(found, key=lambda source: source.activity)


def gather(grid, choice, context):
    if choice == "plan":
        return plan_source(grid)
    if choice == "local":
        source = local_source(grid)
        if source is None:
            raise ToolboxError(STATE_FILE, "no state of local runs here",
                               hint="`make local` writes it; from=plan shows the grid without states")
        return source
    if choice == "cluster":
        check_cluster_fields(grid.config)
        return cluster_source(grid, context)
    return choose_source(grid, context)


def write_report(text, path=REPORT_FILE):
    """Written whole or not at all: a browser reloading the page never reads half a file."""
    return write_atomically(path, text)


def cmd_report(args):
    choice = (getattr(args, "from", None) or "").strip().lower()
    if choice and choice not in SOURCES:
        raise UsageError(f"from={choice}", "not a source of the report", [choices_line(SOURCES)],
                         hint="leave from= out to use the cluster or the local runs, whichever ran last")
    grid = load_grid(args, strict=choice == "cluster")  # the plan and local runs need no cluster settings
    source = gather(grid, choice, args.context)
    project = grid.cells[0].settings.get("project_name") or os.path.basename(os.getcwd())
    path = write_report(render(source.records, f"Sweep {project}", source.description))
    counts = ", ".join(f"{n} {state}" for state, n in state_counts(source.records).items())
    print(f"{source.description}.\n{plural(len(source.records), 'cell')}: {counts}\n"
          f"Wrote {path}: open file://{os.path.abspath(path)} in a browser.")
    if not choice:
        others = ", ".join(f"from={name}" for name in SOURCES if name != source.name)
        print(f"(states from the {source.name}; {others} chooses another source)")
    return 0
