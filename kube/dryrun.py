"""`make dryrun` over a streamed grid: memory does not grow with the grid (10^5 cells take what 10^3 take).

Two passes over the cells (a grid makes them on demand, core/grid.py): the first renders every Job and
collects every problem, writing nothing (a bad config leaves build/ as it was); the second renders each
Job again (a substitution into the shape's manifest) and writes it at once. Only the cells that share GPUs
(packing.py, usually few) are held, because a pack needs all its members.
"""
import os

from toolbox.core.envfile import read_env
from toolbox.kube import arrays, distributed, jobspec, packing, render, units
from toolbox.kube.build import BUILD_DIR, DRYRUN_LIST, HEADER, BuildWriter, object_yaml
from toolbox.kube.scope import check_cluster_fields


class DryRun:
    """The Jobs of a grid written to build/: `check()` first, then iterate `write()` (it yields each cell
    once its manifest is written, so the plan table can stream beside it)."""

    def __init__(self, grid):
        check_cluster_fields(grid.config)
        self.grid = grid
        self.renderer = render.Renderer(".", read_env(), render.sweep_id(grid))
        self.packs = []
        self.arrays = []
        self.jobs = self.configmaps = 0
        self._where = None

    def check(self):
        """Render every Job once and raise every problem (ConfigError) before anything is written."""
        shared, arrayed = [], []
        for cell in self.grid:
            kind = units.kind_of(cell)
            if kind == units.SHARED:
                shared.append(cell)
            elif kind == units.ARRAY:
                arrayed.append(cell)
            elif kind == units.NODES:
                distributed.job_manifest(self.renderer, cell)
            else:
                self.renderer.cell_manifest(cell)
        _, self.packs = packing.pack(shared)
        for name, members in self.packs:
            self.renderer.pack_manifest(name, members)
        self.arrays = arrays.pack(arrayed)
        for name, members in self.arrays:
            arrays.job_manifest(self.renderer, name, members)
        self.renderer.check(self._locate)
        for text in self.renderer.samples:  # one manifest per distinct settings: the templates made YAML
            render.parse_manifest(text, "dryrun")

    def _locate(self, problem):
        """A problem at the config line of its field, for the (dataset, model) of the cell it names."""
        if self._where is None:  # only when there are problems: one more pass over the names
            self._where = {cell.name: (cell.dataset, cell.model) for cell in self.grid}
        dataset, model = self._where.get(problem.file, (None, None))
        return self.grid.config.locate(problem, dataset, model)

    def write(self):
        """Write every Job (then the packs and the ConfigMaps of shipped files), yielding each cell."""
        writer = BuildWriter(DRYRUN_LIST)
        for cell in self.grid:
            kind = units.kind_of(cell)
            if kind == units.CELL:
                self._job(writer, jobspec.job_name(cell.name, cell.settings), self.renderer.cell_manifest(cell))
            elif kind == units.NODES:
                job = distributed.job_name(cell)
                self._job(writer, job, distributed.job_manifest(self.renderer, cell))
                self._companion(writer, distributed.service(cell.settings, job, cell.name), "the pods' DNS names")
            yield cell
        for name, members in self.packs:
            self._job(writer, name, self.renderer.pack_manifest(name, members))
        for name, members in self.arrays:
            self._job(writer, name, arrays.job_manifest(self.renderer, name, members))
            self._companion(writer, arrays.configmap(self.renderer, name, members),
                            "the cells of the array and their start-up script")
        for configmap in self.renderer.configmaps():
            path = os.path.join(BUILD_DIR, f"{configmap['metadata']['name']}.yaml")
            writer.write(path, object_yaml(configmap, "make dryrun: the files of file:", path))
            self.configmaps += 1
        writer.finish()

    def _companion(self, writer, obj, what):
        """A Service or array ConfigMap, written beside its Job (`kubectl apply -f build/` creates both)."""
        path = os.path.join(BUILD_DIR, f"{obj['kind'].lower()}-{obj['metadata']['name']}.yaml")
        writer.write(path, object_yaml(obj, f"make dryrun: {what}", path))

    def _job(self, writer, name, text):
        path = os.path.join(BUILD_DIR, f"{name}.yaml")
        writer.write(path, HEADER.format(what="make dryrun", path=path) + text)
        self.jobs += 1
