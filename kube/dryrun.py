"""`make dryrun` over a streamed grid: memory does not grow with the grid (10^5 cells take what 10^3 take).

Two passes over the cells (a grid makes them on demand, core/grid.py): the first renders every Job and
collects every problem, writing nothing (a bad config leaves build/ as it was); the second renders each
Job again (a substitution into the shape's manifest) and writes it at once. Only the cells that share GPUs
or run as an array (packs need all their members) are held; the packs are rendered again when written, so
that an array's ConfigMaps of commands are not all held at once either.
"""
import os

from toolbox.core.envfile import read_env
from toolbox.kube import render, units
from toolbox.kube.build import BUILD_DIR, DRYRUN_LIST, HEADER, BuildWriter, object_yaml
from toolbox.kube.scope import check_cluster_fields

# what the objects written beside a Job are for (`kubectl apply -f build/` creates them together)
COMPANION_ROLES = {"Service": "the pods' DNS names", "ConfigMap": "the cells of the array and their start-up script"}


class DryRun:
    """The Jobs of a grid written to build/: `check()` first, then iterate `write()` (it yields each cell
    once its manifest is written, so the plan table can stream beside it)."""

    def __init__(self, grid):
        check_cluster_fields(grid.config)
        self.grid = grid
        self.renderer = render.Renderer(".", read_env(), render.sweep_id(grid))
        self.waiting = []        # the cells of packs: shared GPUs, arrays
        self.packed = []         # (kind, pack name, members) of every pack
        self.jobs = self.configmaps = 0
        self._where = None

    @property
    def packs(self):
        return [(name, members) for kind, name, members in self.packed if kind == units.SHARED]

    @property
    def arrays(self):
        return [(name, members) for kind, name, members in self.packed if kind == units.ARRAY]

    def check(self):
        """Render every Job once and raise every problem (ConfigError) before anything is written."""
        self.waiting = [cell for cell in self.grid if units.cell_unit(self.renderer, cell) is None]
        self.packed = [(unit.kind, unit.name, unit.cells) for unit in units.pack_units(self.renderer, self.waiting)]
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
            unit = units.cell_unit(self.renderer, cell)
            if unit is not None:
                self._unit(writer, unit)
            yield cell
        for unit in units.pack_units(self.renderer, self.waiting):
            self._unit(writer, unit)
        for configmap in self.renderer.configmaps():
            path = os.path.join(BUILD_DIR, f"{configmap['metadata']['name']}.yaml")
            writer.write(path, object_yaml(configmap, "make dryrun: the files of file:", path))
            self.configmaps += 1
        writer.finish()

    def _unit(self, writer, unit):
        """A Job, with the Service or array ConfigMap it owns written beside it."""
        path = os.path.join(BUILD_DIR, f"{unit.name}.yaml")
        writer.write(path, HEADER.format(what="make dryrun", path=path) + unit.text)
        self.jobs += 1
        for obj in unit.extras:
            path = os.path.join(BUILD_DIR, f"{obj['kind'].lower()}-{obj['metadata']['name']}.yaml")
            writer.write(path, object_yaml(obj, f"make dryrun: {COMPANION_ROLES[obj['kind']]}", path))
