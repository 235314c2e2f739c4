"""Submitting the sweep: the Jobs of a grid (one per cell, one per shared-GPU pack), rendered and checked
before the first API call; the resubmission table; concurrent submission; what deletes target.
"""
import threading
import time

from toolbox.core.console import Progress
from toolbox.core.envfile import read_env
from toolbox.errors import CommandError, KubeError, Unreachable, warn
from toolbox.kube import arrays, companions, objects, packing, render, units
from toolbox.kube.scope import check_cluster_fields, check_owner, selector
from toolbox.kube.status import job_failure_detail, job_state

REPLACE_WAIT = 60.0


# -- rendering the sweep ----------------------------------------------------------------------------------
class Prepared:
    """The Jobs of a command with their manifests, all checked (units.py: a Job per cell, shared-GPU pack,
    multi-node cell or array pack)."""

    def __init__(self, grid, renderer, units):
        self.grid, self.renderer, self.units = grid, renderer, units
        self.cells = grid.cells
        self.existing_packs = None
        self.array_plan = None

    @property
    def settings(self):
        return self.cells[0].settings

    def render_units(self, existing_packs=None, array_cells=None):
        """The Jobs of the sweep (shared-GPU packs already in the cluster keep their members; `array_cells`:
        the array cells that need a new pack, default all); every problem is raised before anything is sent."""
        renderer = self.renderer
        self.units = units.render(renderer, self.cells, existing_packs, array_cells)
        cells = {cell.name: cell for cell in self.cells}
        renderer.check(lambda p: self.grid.config.locate(p, *_model_dataset(cells.get(p.file))))

    def keep_existing_packs(self, jobs):
        """Re-pack when shared-GPU packs already run in the cluster, so that a cell never runs twice when
        the grid has grown. True if the units changed."""
        packs = packing.existing_packs(jobs)
        if not packs or not any(unit.kind == units.SHARED for unit in self.units):
            return False
        self.existing_packs = packs
        self.render_units(packs, self.array_plan.cells if self.array_plan else None)
        return True

    def plan_arrays(self, cluster, jobs, mode="job"):
        """Array cells: only those that need a new pack get one, by what the packs in the cluster did with
        them (units.ArrayPlan); None when the sweep has no array cells."""
        if not any(unit.kind == units.ARRAY for unit in self.units) and not any(map(arrays.is_pack, jobs)):
            return None
        members = arrays.cluster_members(cluster, self.settings, jobs)
        plan = self.array_plan = units.ArrayPlan(self.cells, jobs, members, mode)
        self.render_units(self.existing_packs, plan.cells)
        names = {unit.name for unit in self.units}
        plan.stale = [job for job in plan.stale if job["metadata"]["name"] not in names]  # replaced in place
        return plan

    def bodies(self):
        return [(unit.name, render.parse_manifest(unit.text, f"job/{unit.name}") if unit.packed
                 else self.renderer.cell_object(unit.cells[0])) for unit in self.units]

    def extras(self):
        """{Job name: the objects created just before it and owned by it} (Services, array ConfigMaps)."""
        return {unit.name: unit.extras for unit in self.units if unit.extras}

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


def pack_lines(packs):
    """The shared-GPU packs ([(name, member cells)]) as text for the plan ('' without packs)."""
    if not packs:
        return ""
    lines = [f"\n{sum(len(members) for _, members in packs)} cells share GPUs in {len(packs)} job(s) (shared < 1):"]
    lines += [f"  {name}: {', '.join(c.name for c in members)}" for name, members in packs]
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
        kind, name = obj["kind"], obj["metadata"]["name"]
        result = cluster.upsert(obj, hint=f"if it is yours, `kubectl delete {kind.lower()} {name}` and run the "
                                          "command again; otherwise ask its owner")
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
    "meanwhile": "Job '{name}' was created meanwhile with the same spec (another make job?). Doing nothing.",
}


class Submission:
    """What a submission did: names per outcome, the errors (identical ones grouped), and whether it was
    cut short (Ctrl-C; the API server found unreachable)."""

    def __init__(self, total):
        self.total = total
        self.outcomes = {"created": [], "replaced": [], "skipped": [], "failed": []}
        self.errors = []
        self.started = 0
        self.interrupted = False
        self.unreachable = None      # the first Unreachable error: nothing more is sent after it

    @property
    def finished(self):
        return sum(len(names) for names in self.outcomes.values())

    @property
    def in_flight(self):
        return self.started - self.finished if self.interrupted else 0

    def not_sent(self, names):
        """Cells never attempted because the API server stopped answering: failed, one error for all."""
        done = {n for group in self.outcomes.values() for n in group}
        missing = [n for n in names if n not in done]
        self.outcomes["failed"].extend(missing)
        return len(missing)


def create_job(cluster, body, wait_gone, stop):
    """Create; after a delete the old Job may linger a moment (AlreadyExists): retry for a while."""
    deadline = time.monotonic() + REPLACE_WAIT
    delay = 0.05
    while True:
        try:
            cluster.create(body)
            return
        except KubeError as err:
            if err.code != 409 or not wait_gone or time.monotonic() > deadline or stop.is_set():
                raise
            time.sleep(delay)
            delay = min(delay * 2, 1.0)


def contains(have, want):
    """Every field of `want` is in `have` with the same value (a server adds defaults, never removes)."""
    if isinstance(want, dict):
        return isinstance(have, dict) and all(k in have and contains(have[k], v) for k, v in want.items())
    if isinstance(want, list):
        return isinstance(have, list) and len(have) == len(want) and all(map(contains, have, want))
    return have == want


def pod_spec(job):
    return (((job or {}).get("spec") or {}).get("template") or {}).get("spec") or {}


def created_meanwhile(cluster, name, body):
    """After AlreadyExists on a create: the Job that took the name since the list call. The same user's
    and project's Job with the same pod spec (another `make job` of this grid) counts as submitted;
    anything else is an error and is left alone."""
    found = cluster.get("Job", name)
    if found is None:
        return False
    labels = body["metadata"].get("labels") or {}
    where = cluster.where("Job", name)
    check_owner(found, labels.get("user"), labels.get("project"), where,
                hint="another user's job has this name: set `prefix:` in config/kube.yaml to a name of your own")
    if not contains(pod_spec(found), pod_spec(body)):
        raise CommandError(where, "was created meanwhile with a different spec (another make job?); not changed",
                           hint="`make job overwrite=true` replaces it")
    return True


def submit(cluster, bodies, existing, overwrite, out, extras=None):
    """Submit jobs concurrently by the resubmission table (a Submission). Stops sending at the first sign
    of an unreachable API server; Ctrl-C returns what was done so far (`interrupted`). `extras`: {Job name:
    the objects created just before it and then owned by it} (companions.py)."""
    extras = extras or {}
    result = Submission(len(bodies))
    lock, stop = threading.Lock(), threading.Event()
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
            labels = body["metadata"].get("labels") or {}
            check_owner(existing[name], labels.get("user"), labels.get("project"), cluster.where("Job", name))
            cluster.delete("Job", name, uid=existing[name]["metadata"].get("uid"))
        else:
            out.say(MESSAGES[action].format(name=name))
        companions.prepare(cluster, extras.get(name, ()))
        try:
            create_job(cluster, body, action != "create", stop)
        except KubeError as err:
            if err.code != 409 or action != "create" or not created_meanwhile(cluster, name, body):
                raise
            out.say(MESSAGES["meanwhile"].format(name=name))
            return "skipped"
        companions.own(cluster, extras.get(name, ()), name)
        return "created" if action == "create" else "replaced"

    def run(item):
        name, body = item
        with lock:
            result.started += 1
        try:
            outcome = one(name, body)
        except (CommandError, Unreachable) as err:
            outcome = "failed"
            with lock:
                result.errors.append(err)
                if isinstance(err, Unreachable) and result.unreachable is None:
                    result.unreachable = err
                    stop.set()
        with lock:
            result.outcomes[outcome].append(name)
        progress.advance()

    try:
        cluster.run_all(run, bodies, stop)
    except KeyboardInterrupt:
        result.interrupted = True
    progress.close()
    if result.unreachable is not None and not result.interrupted:
        result.not_sent([name for name, _ in bodies])
    return result


def grouped_errors(errors):
    """Identical errors (the same reason, whichever job) as one: [(first error, count)], sorted by where."""
    groups = {}
    for err in sorted(errors, key=lambda e: e.where):
        kind, slash, name = err.where.partition("/")
        name = name if slash and kind.isalpha() else None     # job/NAME, not https://host
        what = err.what.replace(name, "<name>") if name else err.what
        key = (type(err).__name__, None if name else err.where, what, err.hint)
        if key in groups:
            groups[key][1] += 1
        else:
            groups[key] = [err, 1]
    return [tuple(group) for group in groups.values()]


def failure_reason(job):
    """Why a Job failed, for the retry table."""
    return job_failure_detail(job) or "failed"


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
    if what != "pods":   # the Services and array ConfigMaps of the Jobs that go (all of them: every Job goes)
        doomed = {job["metadata"]["name"] for kind, job, _ in rows if kind == "Job"}
        rows += [(kind, obj, "-") for kind, obj in companions.listed(cluster, settings)
                 if what != "failed" or companions.job_of(obj) in doomed]
    if what == "all":
        for configmap in cluster.list("ConfigMap", selector(settings, "toolbox/role=files")):
            rows.append(("ConfigMap", configmap, "-"))
        rows += [("Secret", secret, "old name") for secret in stale_env_secrets(cluster, settings)]
    return rows


def stale_env_secrets(cluster, settings):
    """This user's .env Secrets of this project under another name than today's (made before names
    carried the owner hash): nothing submitted from now on uses them."""
    try:
        secrets = cluster.list("Secret", selector(settings, "toolbox/role=env"))
    except KubeError:
        return []  # not allowed to list Secrets: leave them
    current = objects.env_secret_name(settings)
    return [s for s in secrets if s["metadata"]["name"] != current]


