"""The Jobs a sweep submits (units), from its cells: a Job per cell, a Job per shared-GPU pack (packing.py), a
Job and a headless Service per multi-node cell (distributed.py), a Job and a ConfigMap per array pack
(arrays.py). A unit's `extras` are the objects created just before its Job and then owned by it.

Which array cells need a new pack is decided from what the cluster holds (`array_plan`): a cell whose pack
still runs it, or ran it to success, stays there; a failed cell goes into a new pack of the failed cells
(the retry of exactly the failed indexes); a cell no pack holds is packed anew.
"""
from toolbox.core import multinode
from toolbox.kube import arrays, distributed, jobspec, packing
from toolbox.kube.placement import ARRAY, CELL, NODES, SHARED, Placement
from toolbox.kube.status import job_state


class Unit:
    """One Job to submit: its name, manifest text, cells, kind (placement's CELL, SHARED, NODES, ARRAY) and
    the objects created before it (`extras`)."""

    __slots__ = ("cells", "extras", "kind", "name", "text")

    def __init__(self, name, text, cells, kind=CELL, extras=()):
        self.name, self.text, self.cells, self.kind, self.extras = name, text, cells, kind, list(extras)

    @property
    def packed(self):
        """Its manifest is not the fast per-cell substitution (renderer.cell_object)."""
        return self.kind != CELL


def kind_of(cell):
    if arrays.is_array(cell):
        return ARRAY
    if multinode.is_multinode(cell.settings):
        return NODES
    return SHARED if packing.is_shared(cell) else CELL


def render(renderer, cells, existing_packs=None, array_cells=None):
    """Every unit of `cells`, rendered (problems collected in the renderer: call its check()). `array_cells`:
    the array cells that need a pack (default: all of them); the others are not submitted."""
    found, waiting = [], []
    for cell in cells:
        unit = cell_unit(renderer, cell)
        if unit is None:
            waiting.append(cell)
        else:
            found.append(unit)
    return found + list(pack_units(renderer, waiting, existing_packs, array_cells))


def cell_unit(renderer, cell):
    """The unit of a plain or multi-node cell, rendered; None for a cell that waits for its pack (shared
    GPUs, array): a grid that streams needs to hold only those."""
    kind = kind_of(cell)
    if kind == CELL:
        return Unit(jobspec.job_name(cell.name, cell.settings), renderer.cell_manifest(cell), [cell])
    if kind == NODES:
        job = distributed.job_name(cell)
        return Unit(job, distributed.job_manifest(renderer, cell), [cell], NODES,
                    [distributed.service(cell.settings, job, cell.name)])
    return None


def pack_units(renderer, waiting, existing_packs=None, array_cells=None):
    """The shared-GPU packs and the array packs of the cells cell_unit left waiting."""
    shared = [cell for cell in waiting if not arrays.is_array(cell)]
    arrayed = [cell for cell in waiting if arrays.is_array(cell)] if array_cells is None else array_cells
    for name, members in packing.pack(shared, existing_packs)[1]:
        yield Unit(name, renderer.pack_manifest(name, members), members, SHARED)
    for name, members in arrays.pack(arrayed):
        yield Unit(name, arrays.job_manifest(renderer, name, members), members, ARRAY,
                   [arrays.configmap(renderer, name, members)])


class ArrayPlan:
    """What `make job` / `make retry` do with the array cells of a sweep, given the packs in the cluster:
    `cells` go into new packs; `kept` {pack name: (its Job, cell names)} are left as they are; `stale` Jobs
    (overwrite=true) are deleted first."""

    def __init__(self, cells, jobs, members, mode="job"):
        """mode: 'job' (failed, deleting and unsubmitted cells get packs), 'retry' (only failed cells),
        'overwrite' (every cell, and every pack holding one of them is deleted)."""
        self.cells, self.kept, self.stale = [], {}, []
        array = [cell for cell in cells if arrays.is_array(cell)]
        placement = Placement(array, jobs, members)
        by_name = {job["metadata"]["name"]: job for job in jobs}
        if mode == "overwrite":
            self.cells = array
            held = {placement[cell.name] for cell in array if placement.index[cell.name] is not None}
            self.stale = [by_name[name] for name in sorted(held)]
            return
        repack = ("failed",) if mode == "retry" else ("failed", "deleting", "missing")
        for cell in array:
            job = by_name.get(placement[cell.name])
            view, _, _ = placement.view(cell.name, job, ())
            state = job_state(view)
            if state in repack:
                self.cells.append(cell)
            elif state != "missing":
                self.kept.setdefault(placement[cell.name], (job, []))[1].append(cell.name)
