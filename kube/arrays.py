"""Array sweeps (`array: true`): the cells of a sweep with identical pod specs run as ONE Indexed Job (a pack),
each pod the cell of its completion index, instead of one Job per cell: 10,000 cells are a handful of objects.

A pack is a Job and a ConfigMap of the same name, `<prefix>-<project>-array-<hash of its cells>`:
- the ConfigMap (immutable, `toolbox/role=array`, created first, then owned by the Job) holds `cells` (one
  name per line, in index order), `commands` (every command, one after the other), `offsets` (line K:
  byte offset and length of cell K's command) and the start-up script, which the pod's command runs. It is
  mounted at ARRAY_MOUNT; the start-up script picks its line by JOB_COMPLETION_INDEX (templates/startup.sh.j2).
  It is also the record of the pack's cells: `make status` reads it to name every index.
- the Job: completions = cells, `parallelism` (default: all) at once, `backoffLimitPerIndex` (each cell
  its own retries, and a failed cell does not stop the others; kube/jobspec.py).
Cells pack together when their settings are the same (then so are their pods but for the command); a pack
holds as many as its ConfigMap can (about 1 MiB of names and commands), further cells start another pack.

A cell may be in several packs: a retry runs the failed cells of a pack as a new, smaller pack. The newest
pack that holds a cell (by creation time) is the cell's; cells whose packs are all gone are packed anew.
"""
import json

from toolbox.core import multinode, naming
from toolbox.kube import jobspec, objects, packing
from toolbox.kube.scope import selector

ARRAY_ROLE = "array"
ARRAY_MOUNT = "/etc/toolbox/array"
ARRAY_ANNOTATION = "toolbox/array"          # on the Job: the number of cells of the pack
CONFIGMAP_BUDGET = objects.CONFIGMAP_LIMIT - 32 * 1024    # room for the start-up script
STARTUP_KEY = "startup.sh"


def is_array(cell):
    """Cells that run in array packs: `array: true`, single-node, not sharing GPUs."""
    settings = cell.settings
    return bool(settings.get("array")) and not multinode.is_multinode(settings) and not packing.is_shared(cell)


def _cost(cell):
    """What a cell adds to its pack's ConfigMap (JSON-escaped, as the API server stores it)."""
    return len(cell.name) + len(json.dumps(cell.command)) + 24


def pack_name(settings, members):
    digest = naming.cell_hash("\x1f".join(c.name for c in members))
    name = naming.object_name(naming.owner(settings), settings["project_name"], "array", digest=digest)
    return naming.indexed_job_name(name, len(members))


def pack(cells):
    """[(pack name, member cells)]: cells of identical settings together, in grid order, each pack within
    the ConfigMap budget."""
    pools, keys = {}, {}
    for cell in cells:
        key = keys.get(id(cell.settings))
        if key is None:
            key = keys[id(cell.settings)] = json.dumps(dict(cell.settings), sort_keys=True, default=str)
        current = pools.setdefault(key, [[[], 0]])[-1]
        cost = _cost(cell)
        if current[0] and current[1] + cost > CONFIGMAP_BUDGET:
            current = [[], 0]
            pools[key].append(current)
        current[0].append(cell)
        current[1] += cost
    return [(pack_name(members[0].settings, members), members)
            for packs in pools.values() for members, _ in packs]


def configmap(renderer, name, members):
    """The pack's ConfigMap: the cells of its indexes, their commands, and the start-up script (once here
    rather than in each pod: a pod of 10,000 is half as big, and so is a list of them)."""
    settings = members[0].settings
    offsets, commands, position = [], [], 0
    for cell in members:
        data = cell.command.encode("utf-8")
        offsets.append(f"{position} {len(data)}\n")
        commands.append(cell.command)
        position += len(data)
    labels = {**objects.owner_labels(settings, ARRAY_ROLE), "toolbox/cell": name}
    return {"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": name, "namespace": settings["namespace"], "labels": labels,
                         "annotations": {"toolbox/job": name}},
            "immutable": True,
            "data": {"cells": "".join(c.name + "\n" for c in members), "offsets": "".join(offsets),
                     "commands": "".join(commands), STARTUP_KEY: _startup_script(renderer, members) or ""}}


def _startup_script(renderer, members):
    """The start-up script of a pack's pods (kept in its ConfigMap); None when its settings have problems."""
    shape = renderer.shape(members[0].settings, "job", members[0].name)
    if shape.context is None:
        return None
    return renderer.startup_script(members[0].settings, shape.fileset, array_dir=ARRAY_MOUNT)


def job_manifest(renderer, name, members):
    """The Job text of a pack (None when its settings have problems: renderer.check() says)."""
    settings = members[0].settings
    for cell in members:
        renderer.check_command(cell)
    shape = renderer.shape(settings, "job", members[0].name)
    if shape.context is None:
        return None
    context = shape.context
    volume = {"name": "toolbox-array", "configMap": {"name": name}}
    mount = {"name": "toolbox-array", "mountPath": ARRAY_MOUNT, "readOnly": True}
    startup = f"exec /bin/bash {ARRAY_MOUNT}/{STARTUP_KEY}  # the start-up script, in the pack's ConfigMap"
    annotations = {ARRAY_ANNOTATION: str(len(members))}
    command = f"# array: {len(members)} cells, each pod the one of its index ({ARRAY_MOUNT})"
    text = renderer.render("job.yaml.j2", shape, name, command, renderer.workload_labels(shape, name), annotations,
                           main={"mounts": context["main"]["mounts"] + [mount]},
                           volumes=context["volumes"] + [volume], startup=startup,
                           job=jobspec.spec(settings, len(members), settings.get("parallelism"), whole=False))
    return jobspec.check_template(renderer, text, members[0].name)


# -- what the cluster holds ---------------------------------------------------------------------------------
def is_pack(job):
    return ARRAY_ANNOTATION in (((job or {}).get("metadata") or {}).get("annotations") or {})


def cluster_members(cluster, settings, jobs):
    """{pack name: [cell names]} of this user's packs in the cluster: one list call, made only when a pack's
    Job is among `jobs`."""
    if not any(map(is_pack, jobs)):
        return {}
    return members_of(cluster.list("ConfigMap", selector(settings, f"toolbox/role={ARRAY_ROLE}")))


def members_of(configmaps):
    """{pack name: [cell names in index order]} from the packs' ConfigMaps."""
    return {cm["metadata"]["name"]: ((cm.get("data") or {}).get("cells") or "").splitlines() for cm in configmaps}


def bindings(jobs, members):
    """{cell name: (pack Job, index)}: the newest pack that holds each cell (packs whose Job is gone left out)."""
    packs = sorted((job for job in jobs if is_pack(job) and job["metadata"]["name"] in members),
                   key=lambda j: (j["metadata"].get("creationTimestamp") or "", j["metadata"]["name"]))
    found = {}
    for job in packs:   # oldest first: a newer pack overwrites
        for index, cell in enumerate(members[job["metadata"]["name"]]):
            found[cell] = (job, index)
    return found


def parse_indexes(text):
    """'0-2,5' -> {0, 1, 2, 5}."""
    found = set()
    for part in (text or "").split(","):
        first, _, last = part.partition("-")
        if first.strip().isdigit():
            found.update(range(int(first), int(last if last.strip().isdigit() else first) + 1))
    return found
