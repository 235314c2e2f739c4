"""Where each cell of a sweep runs, and the cell's view of it: a cell is a Job of its own, a member of a
shared-GPU pack, the N pods of a multi-node Job, or one index of an array pack.

`Placement` maps cell name -> Job name (a dict, so code that only needs the Job reads it as one) and knows
more: the cell's index in an array pack, the number of nodes of a multi-node cell. `view()` gives what the
status table, `make status watch=1` and `make report` read for one cell: its Job as the cell sees it (for
an array cell, the pack's Job narrowed to the cell's index: succeeded when the index completed, failed when
it failed, else running or pending by its pod) and the pod that speaks for it.
"""
from toolbox.core import multinode
from toolbox.kube import arrays, distributed, jobspec, packing

CELL, SHARED, NODES, ARRAY = "cell", "shared", "nodes", "array"


def newest(pods):
    return max(pods, key=lambda p: (p["metadata"].get("creationTimestamp") or "", p["metadata"]["name"]))


def completion_index(pod):
    value = (((pod or {}).get("metadata") or {}).get("annotations") or {}).get(jobspec.INDEX_KEY)
    return int(value) if value is not None and str(value).isdigit() else None


def _annotation_int(pod, key):
    value = ((pod.get("metadata") or {}).get("annotations") or {}).get(key)
    return int(value) if value is not None and str(value).isdigit() else 0


def replacements(pod):
    """How many pods of its index came before this one: failures that counted and those ignored
    (disruptions), as the job controller writes them on every replacement (backoffLimitPerIndex)."""
    return _annotation_int(pod, jobspec.FAILURE_COUNT_KEY) + _annotation_int(pod, jobspec.IGNORED_COUNT_KEY)


def _later(pod, other):
    return (replacements(pod), pod["metadata"].get("creationTimestamp") or "", pod["metadata"]["name"]) > \
        (replacements(other), other["metadata"].get("creationTimestamp") or "", other["metadata"]["name"])


def disruption(pod):
    """'Reason: message' of the pod's DisruptionTarget condition (preemption, eviction), or ''."""
    for condition in ((pod or {}).get("status") or {}).get("conditions") or []:
        if condition.get("type") == "DisruptionTarget" and condition.get("status") == "True":
            return f"{condition.get('reason') or 'Disrupted'}: {condition.get('message') or ''}".strip(": ")
    return ""


def _problem(pod):
    status = pod.get("status") or {}
    return status.get("phase") == "Failed" or any(
        c.get("status") == "False" and c.get("type") == "PodScheduled" for c in status.get("conditions") or [])


def _conditioned(job, type_, reason):
    status = job.get("status") or {}
    view = {"type": type_, "status": "True", "reason": reason}
    for condition in status.get("conditions") or []:
        if condition.get("type") == type_ and condition.get("status") == "True":
            view = condition
    return {"metadata": job.get("metadata"), "spec": job.get("spec"),
            "status": {"startTime": status.get("startTime"), "completionTime": status.get("completionTime"),
                       "conditions": [view]}}


class Placement(dict):
    """cell name -> Job name, with each cell's kind (CELL, SHARED, NODES, ARRAY), `index`: an array cell's index
    in its pack (None: in no pack yet), and `nodes`: a multi-node cell's."""

    def __init__(self, cells, jobs=(), members=None):
        super().__init__()
        self.kind, self.index, self.nodes, self._indexes, self._pod_indexes = {}, {}, {}, {}, {}
        self._cell_at = None
        singles = []
        bound = arrays.bindings(jobs, members or {})
        for cell in cells:
            if arrays.is_array(cell) or cell.name in bound:
                self.kind[cell.name] = ARRAY
                job, index = bound.get(cell.name, (None, None))
                self[cell.name] = job["metadata"]["name"] if job else cell.name
                self.index[cell.name] = index
            elif multinode.is_multinode(cell.settings):
                self.kind[cell.name] = NODES
                self[cell.name] = distributed.job_name(cell)
                self.nodes[cell.name] = multinode.node_count(cell.settings)
            else:
                singles.append(cell)
        _, packs = packing.pack(singles, packing.existing_packs(jobs))
        shared = {cell.name: name for name, members_ in packs for cell in members_}
        for cell in singles:
            self.kind[cell.name] = SHARED if cell.name in shared else CELL
            self[cell.name] = shared.get(cell.name) or jobspec.job_name(cell.name, cell.settings)

    def note(self, cell_name):
        """What the JOB column adds to a cell's state: ' (shared)', ' (array #K)', ' (N nodes)' or ''."""
        kind = self.kind.get(cell_name, CELL)
        if kind == SHARED:
            return " (shared)"
        if kind == ARRAY:
            index = self.index.get(cell_name)
            return f" (array #{index})" if index is not None else ""
        return f" ({self.nodes[cell_name]} nodes)" if kind == NODES else ""

    def label(self, job, index):
        """How a pod of `job` (its completion `index`) is named in output: its cell, `cell node K`, or the Job."""
        if self._cell_at is None:
            self._cell_at = {}
            for name, job_name in self.items():
                self._cell_at.setdefault((job_name, self.index.get(name) if self.kind[name] == ARRAY else None),
                                         name)
        if (job, index) in self._cell_at:
            return self._cell_at[(job, index)]
        cell = self._cell_at.get((job, None), job)
        return f"{cell} node {index}" if self.kind.get(cell) == NODES and index is not None else cell

    def packs(self):
        """{Job name: [cell names]} of the Jobs that run several cells (shared-GPU and array packs)."""
        found = {}
        for name, job in self.items():
            if self.kind[name] == SHARED or (self.kind[name] == ARRAY and self.index.get(name) is not None):
                found.setdefault(job, []).append(name)
        return found

    def view(self, cell_name, job, pods):
        """(the cell's Job as the cell sees it, the pod that speaks for it, replaced pods) from its Job and
        that Job's pods."""
        kind = self.kind.get(cell_name, CELL)
        if kind == ARRAY:
            index = self.index.get(cell_name)
            if job is None or index is None:
                return None, None, 0
            pod = self._by_index(pods).get(index)
            return self._index_view(job, index, pod), pod, replacements(pod) if pod else 0
        if not pods:
            return job, None, 0
        if kind == NODES:   # node 0 speaks for the cell, unless another node has a problem
            latest = self._by_index(pods)
            troubled = [p for i, p in sorted(latest.items(), key=lambda item: item[0] or 0) if _problem(p)]
            pod = troubled[0] if troubled else latest.get(0) or newest(pods)
            return job, pod, sum(replacements(p) for p in latest.values())
        pod = self._by_index(pods).get(0) if completion_index(pods[0]) is not None else newest(pods)
        return job, pod, replacements(pod)

    def _by_index(self, pods):
        """{index: newest pod} of one Job's pods, made once for every cell of the Job (the same list)."""
        found = self._pod_indexes.get(id(pods))
        if found is None or found[0] is not pods:
            if len(self._pod_indexes) > 16:
                self._pod_indexes.clear()
            latest = {}
            for pod in pods:   # a replacement pod carries more counted or ignored failures than the pod before
                index = completion_index(pod)
                if index not in latest or _later(pod, latest[index]):
                    latest[index] = pod
            found = self._pod_indexes[id(pods)] = (pods, latest)   # the list kept: its id stays its own
        return found[1]

    def _parsed(self, text):
        """An index list parsed once per text (every cell of a pack reads the same one)."""
        if text not in self._indexes:
            if len(self._indexes) > 64:
                self._indexes.clear()
            self._indexes[text] = arrays.parse_indexes(text)
        return self._indexes[text]

    def _index_view(self, job, index, pod):
        meta, status = job.get("metadata") or {}, job.get("status") or {}
        if meta.get("deletionTimestamp"):
            return job
        completed, failed = (self._parsed(status.get(key)) for key in ("completedIndexes", "failedIndexes"))
        if index in completed:
            return _conditioned(job, "Complete", "CompletionsReached")
        if index in failed:
            return _conditioned(job, "Failed", "FailedIndex")
        if any(c.get("type") == "Failed" and c.get("status") == "True" for c in status.get("conditions") or []):
            return _conditioned(job, "Failed", "Failed")
        phase = ((pod or {}).get("status") or {}).get("phase")
        active = 1 if phase in ("Pending", "Running") and not (pod.get("metadata") or {}).get("deletionTimestamp") \
            else 0
        return {"metadata": meta, "spec": job.get("spec"),
                "status": {"startTime": status.get("startTime"), "active": active}}
