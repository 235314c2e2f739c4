"""Shared-GPU packing: cells whose `shared` is below 1.0 run side by side in one Job.

Cells pack together when everything but their command and CPU/memory/storage is the same (image, GPUs,
env, labels, volumes, scheduling, start-up...), so the packed container is right for every member. Packs
are filled greedily in grid order until the next member would push the sum of `shared` above 1.0. A pack
requests the SUM of its members' CPU, memory and storage (every member runs at once) and the common GPU
count; its name is `<prefix>-<project>-shared-<hash of the members>` (always a valid name).
Packs already in the cluster are kept (their members are listed in the `toolbox/members` annotation): when
the grid grows, a cell that already runs in a pack stays there, and only the new cells are packed.
Members run as background `bash -c` processes (no GNU parallel), each with its own TOOLBOX_CELL_NAME and
a `[cell]` prefix on its output; the Job fails if any member fails.
"""
import json

from toolbox.core import naming
from toolbox.kube import jobspec

MEMBERS_ANNOTATION = "toolbox/members"

SUMMED = ("cpu_count", "memory", "ephemeral_storage")
_NOT_IN_KEY = frozenset(SUMMED + ("shared",))
EPSILON = 1e-9


def is_shared(cell):
    shared = cell.settings.get("shared")
    return shared is not None and 0 < shared < 1


def _pool_key(settings):
    return json.dumps({k: v for k, v in settings.items() if k not in _NOT_IN_KEY}, sort_keys=True, default=str)


def pack_name(settings, members):
    digest = naming.cell_hash("\x1f".join(c.name for c in members))
    name = naming.object_name(naming.owner(settings), settings["project_name"], "shared", digest=digest)
    return jobspec.job_name(name, settings)   # with retries, an Indexed Job: room for `-0`


def existing_packs(jobs):
    """{pack Job name: [member cell names]} of the Jobs already in the cluster."""
    packs = {}
    for job in jobs:
        members = ((job.get("metadata") or {}).get("annotations") or {}).get(MEMBERS_ANNOTATION)
        if members:
            try:
                packs[job["metadata"]["name"]] = list(json.loads(members))
            except (TypeError, ValueError):
                continue
    return packs


def pack(cells, existing=None):
    """(single cells, [(pack name, members)]) in grid order. `existing` (existing_packs): cells that are
    members of a pack Job in the cluster stay in it; the others are packed anew."""
    bound = {}
    for job, names in (existing or {}).items():
        for name in names:
            bound.setdefault(name, job)
    singles, kept, pools, order = [], {}, {}, []
    for cell in cells:
        if not is_shared(cell):
            singles.append(cell)
            continue
        if cell.name in bound:
            kept.setdefault(bound[cell.name], []).append(cell)
            continue
        key = _pool_key(cell.settings)
        if key not in pools:
            pools[key] = [[]]
            order.append(key)
        current = pools[key][-1]
        if current and sum(c.settings["shared"] for c in current) + cell.settings["shared"] > 1 + EPSILON:
            current = []
            pools[key].append(current)
        current.append(cell)
    packs = list(kept.items())
    for key in order:
        for members in pools[key]:
            packs.append((pack_name(members[0].settings, members), members))
    return singles, packs


def merged_settings(members):
    settings = dict(members[0].settings)
    for key in SUMMED:
        settings[key] = sum(c.settings[key] for c in members)
    settings["shared"] = 1.0
    return settings
