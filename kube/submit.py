"""Submitting the sweep: the Jobs of a grid (one per cell, one per shared-GPU pack), rendered and checked
before the first API call; the resubmission table; concurrent submission; what deletes target.
"""
import concurrent.futures
import threading
import time

from toolbox.core.console import Progress
from toolbox.core.envfile import read_env
from toolbox.errors import KubeError, Unreachable, warn
from toolbox.kube import packing, render
from toolbox.kube.scope import check_cluster_fields, selector
from toolbox.kube.status import job_state

REPLACE_WAIT = 60.0


# -- rendering the sweep ----------------------------------------------------------------------------------
class Unit:
    """One Job to submit: a cell, or a shared-GPU pack of cells (packing.py)."""

    __slots__ = ("name", "text", "cells")

    def __init__(self, name, text, cells):
        self.name, self.text, self.cells = name, text, cells

    @property
    def packed(self):
        return len(self.cells) > 1 or self.cells[0].name != self.name


class Prepared:
    """The Jobs of a command with their manifests, all checked."""

    def __init__(self, grid, renderer, units):
        self.grid, self.renderer, self.units = grid, renderer, units
        self.cells = grid.cells

    @property
    def settings(self):
        return self.cells[0].settings

    def render_units(self, existing_packs=None):
        """The Jobs of the sweep: one per cell, one per shared-GPU pack (packs already in the cluster
        keep their members); every problem is raised before anything is sent."""
        singles, packs = packing.pack(self.cells, existing_packs)
        renderer = self.renderer
        self.units = [Unit(cell.name, renderer.cell_manifest(cell), [cell]) for cell in singles]
        self.units += [Unit(name, renderer.pack_manifest(name, members), members) for name, members in packs]
        cells = {cell.name: cell for cell in self.cells}
        renderer.check(lambda p: self.grid.config.locate(p, *_model_dataset(cells.get(p.file))))

    def keep_existing_packs(self, jobs):
        """Re-pack when shared-GPU packs already run in the cluster, so that a cell never runs twice when
        the grid has grown. True if the units changed."""
        packs = packing.existing_packs(jobs)
        if not packs or not any(unit.packed for unit in self.units):
            return False
        self.render_units(packs)
        return True

    def bodies(self):
        return [(unit.name, render.parse_manifest(unit.text, f"job/{unit.name}") if unit.packed
                 else self.renderer.cell_object(unit.cells[0], unit.text)) for unit in self.units]

    def support_objects(self):
        """The Secret (.env) and ConfigMaps (file:) the workloads need, created before them."""
        return ([self.renderer.secret] if self.renderer.secret else []) + self.renderer.configmaps()


def prepare(grid):
    """Every Job of the grid rendered and checked (ConfigError before anything is sent)."""
    check_cluster_fields(grid.config)
    renderer = render.Renderer(".", read_env(), render.sweep_id(grid.cells))
    prepared = Prepared(grid, renderer, [])
    prepared.render_units()
    return prepared


def _model_dataset(cell):
    return (cell.dataset, cell.model) if cell else (None, None)


def pack_lines(prepared):
    packs = [u for u in prepared.units if u.packed]
    if not packs:
        return ""
    lines = [f"\n{sum(len(u.cells) for u in packs)} cells share GPUs in {len(packs)} job(s) (shared < 1):"]
    lines += [f"  {u.name}: {', '.join(c.name for c in u.cells)}" for u in packs]
    return "\n".join(lines)


def warn_missing(cluster, renderer):
    """Warn (only) about Secrets the pods reference that are not in the namespace."""
    for name, consequence in sorted(renderer.referenced_secrets().items()):
        try:
            if cluster.get("Secret", name) is None:
                warn(f"Secret '{name}' not found in namespace '{cluster.namespace}': {consequence}")
        except KubeError:
            return  # e.g. not allowed to read secrets: nothing to say


def upsert_support(cluster, prepared_objects, out):
    for obj in prepared_objects:
        result = cluster.upsert(obj)
        what = f"{len(obj.get('data') or {})} variables from .env" if obj["kind"] == "Secret" else \
            f"{len(obj.get('data') or {}) + len(obj.get('binaryData') or {})} files from file:"
        out.say(f"{obj['kind']} '{obj['metadata']['name']}' ({what}): {result}")


# -- the resubmission table and submission ---------------------------------------------------------------
def decide(state, overwrite):
    """The resubmission table: what to do with a cell whose job is in `state`."""
    if state == "missing":
        return "create"
    if state == "deleting":
        return "recreate"
    if overwrite or state == "failed":
        return "replace"
    return "skip"


MESSAGES = {
    "create": "Job '{name}' not found. Creating the job.",
    "recreate": "Job '{name}' is being deleted. Creating it again once it is gone.",
    "failed": "Job '{name}' failed. Deleting it and creating it again.",
    "replace": "Job '{name}' is {state}. Replacing it (overwrite=true).",
    "running": "Job '{name}' is running. Doing nothing (overwrite=true replaces it).",
    "pending": "Job '{name}' is pending. Doing nothing (overwrite=true replaces it).",
    "succeeded": "Job '{name}' already succeeded. Doing nothing (overwrite=true replaces it).",
}


def create_job(cluster, body, wait_gone):
    """Create; after a delete the old Job may linger a moment (AlreadyExists): retry for a while."""
    deadline = time.monotonic() + REPLACE_WAIT
    delay = 0.05
    while True:
        try:
            cluster.create(body)
            return
        except KubeError as err:
            if err.code != 409 or not wait_gone or time.monotonic() > deadline:
                raise
            time.sleep(delay)
            delay = min(delay * 2, 1.0)


def submit(cluster, bodies, existing, overwrite, out):
    """Submit jobs concurrently by the resubmission table; returns {outcome: [names]} and errors."""
    outcomes = {"created": [], "replaced": [], "skipped": [], "failed": []}
    errors = []
    lock = threading.Lock()
    progress = Progress("Submitting jobs", len(bodies))

    def one(name, body):
        state = job_state(existing.get(name))
        action = decide(state, overwrite)
        if action == "skip":
            out.say(MESSAGES[state].format(name=name))
            return "skipped"
        if action == "replace":
            out.say(MESSAGES["failed" if state == "failed" and not overwrite else "replace"].format(
                name=name, state=state))
            cluster.delete("Job", name)
        else:
            out.say(MESSAGES[action].format(name=name))
        create_job(cluster, body, wait_gone=action != "create")
        return "created" if action == "create" else "replaced"

    def run(name, body):
        try:
            result = one(name, body)
        except (KubeError, Unreachable) as err:
            result = "failed"
            with lock:
                errors.append(err)
        with lock:
            outcomes[result].append(name)
        progress.advance()

    with concurrent.futures.ThreadPoolExecutor(max_workers=min(cluster.threads, max(len(bodies), 1))) as pool:
        futures = [pool.submit(run, name, body) for name, body in bodies]
        try:
            for future in futures:
                future.result()
        except KeyboardInterrupt:
            for future in futures:
                future.cancel()
            raise
    progress.close()
    return outcomes, errors


def failure_reason(job):
    for condition in (job.get("status") or {}).get("conditions") or []:
        if condition.get("type") == "Failed" and condition.get("status") == "True":
            return f"{condition.get('reason', '')}: {condition.get('message', '')}".strip(": ") or "failed"
    return "failed"


# -- deletes ------------------------------------------------------------------------------------------------
def delete_targets(cluster, settings, what):
    rows = []
    if what in ("all", "jobs", "failed"):
        for job in cluster.list("Job", selector(settings)):
            state = job_state(job)
            if what != "failed" or state == "failed":
                rows.append(("Job", job, state))
    if what in ("all", "pods"):
        for pod in cluster.list("Pod", selector(settings, "!job-name")):
            rows.append(("Pod", pod, (pod.get("status") or {}).get("phase") or "-"))
    if what == "all":
        for configmap in cluster.list("ConfigMap", selector(settings, "toolbox/role=files")):
            rows.append(("ConfigMap", configmap, "-"))
    return rows


