"""Grid expansion: a validated Config -> the cells, in order. A pure function of the config.

Order (documented in docs/grid.md): run blocks in order; in each block datasets (outer loop) then
models; then the Cartesian product of the hparams in key order (dataset keys first, then keys only
the model has), the last key varying fastest. A cell's hparams are the dataset's updated by the
model's (the model wins on the same name, `_x` and `x` being the same name).

Cells are made on demand: a Grid is planned first (every check that does not need the cells, the exact
count, the cap), then iterated as often as needed with memory that does not grow with the grid.
"""
import array
import itertools
import math
import os
import types

from toolbox.core import fields, multinode, naming, syntax
from toolbox.core.config import finalize, load_config, merge_layers
from toolbox.core.syntax import hparam_name
from toolbox.errors import ConfigError, UsageError, choices_line, did_you_mean

# Beyond this many cells a grid is refused unless max_cells= says otherwise: an extra axis multiplies a
# grid by its length, and 100,000 cells already take ~2 s to plan and ~15 s to write as manifests.
DEFAULT_MAX_CELLS = 100_000
_NAME_BUCKETS = 256


class Cell:
    """One run of the grid: what to run, how it is named, and the cluster settings it needs."""

    __slots__ = ("index", "name", "model", "dataset", "hparams", "command", "local_command", "settings")

    def __init__(self, index, name, model, dataset, hparams, command, local_command, settings):
        self.index = index
        self.name = name
        self.model = model
        self.dataset = dataset
        self.hparams = hparams              # tuple of (key, text), hidden `_keys` included, grid order
        self.command = command              # the cluster variant (remote part of [local](remote))
        self.local_command = local_command  # what `make local` runs
        self.settings = settings            # read-only mapping of every field, resolved

    @property
    def visible_hparams(self):
        return [(k, v) for k, v in self.hparams if not k.startswith("_")]

    def command_for(self, in_cluster):
        return self.command if in_cluster else self.local_command

    def __repr__(self):
        return f"Cell({self.name!r})"


def in_cluster():
    """Inside a cluster pod (NODE_NAME comes from the downward API), local runs take the remote part."""
    return bool(os.environ.get("NODE_NAME"))


def load_cells(project_dir=".", models=None, datasets=None):
    """Load, validate and expand the project's grid (for tools such as `make debug`)."""
    return expand(load_config(project_dir), models, datasets).cells


class _ModelText:
    """A model's command text, compiled once: comments stripped, local/remote split, templates."""

    def __init__(self, entry):
        text = syntax.strip_comments(entry.command or "")
        local, remote = syntax.split_local_remote(text)
        if entry.local_command is not None:
            local = syntax.strip_comments(entry.local_command)
        self.remote = syntax.Template(remote.strip())
        self.local = syntax.Template(local.strip())
        self.same = self.local.text == self.remote.text
        # model-level settings holding <name> placeholders are filled per cell
        self.templated = {k: v for k, v in entry.settings.items() if syntax.contains_placeholder(v)}
        # <nodes>, <node_rank>...: filled per cell from its settings (multinode.py)
        self.multinode = multinode.uses_placeholders(self.remote.names + self.local.names)


class _Choice:
    """One value of one axis (its position in the axis' choices), with its name fragments precomputed."""

    __slots__ = ("index", "pairs", "full", "short", "identity", "values", "nested", "overrides")

    def __init__(self, index, pairs):
        self.index = index
        self.pairs = pairs
        self.overrides = ()   # (field, value) pairs of cluster fields this choice sets
        self.identity = naming.identity_string("", "", pairs)[2:]  # this axis' part of the cell identity
        self.values = syntax.fill_values(pairs)
        self.nested = any("<" in v for _, v in pairs)
        visible = [(k, v) for k, v in pairs if not k.startswith("_")]
        self.full = naming.join_words(*(naming.join_words(naming.slug(k), naming.slug(v)) for k, v in visible))
        self.short = naming.join_words(*(naming.join_words(naming.abbreviate(naming.slug(k)),
                                                           naming.abbreviate(naming.slug(v))) for k, v in visible))


def _value_path(hp, key, text):
    """Where one value of an hparam is written (for error messages)."""
    for i, pairs in enumerate(hp.choices):
        for k, v in pairs:
            if k == key and v == text:
                if hp.grouped:
                    return hp.path + (pairs[0][1], key) if k != hp.key else hp.path + (text,)
                return hp.path + ((i,) if len(hp.choices) > 1 else ())
    return hp.path


def _matches(text, allowed):
    if text in allowed:
        return True
    try:
        number = float(text)
    except ValueError:
        return False
    return any(_as_float(a) == number for a in allowed)


def _as_float(text):
    try:
        return float(text)
    except ValueError:
        return None


def _axes(dataset, model):
    """Hparam axes of a cell: dataset's, updated by the model's (same name without `_` = same axis)."""
    axes = {}
    for hp in dataset.hparams + model.hparams:
        axes[hp.name] = hp  # dict keeps first-insertion order; the model replaces the value in place
    return list(axes.values())


def _allowed(hp, filters):
    """Positions of the choices of one axis that run.hparam filters allow (on the axis name or a group's
    inner key)."""
    allowed = range(len(hp.choices))
    for name, texts in filters.items():
        if name == hp.name:
            allowed = [i for i in allowed if _matches(hp.choices[i][0][1], texts)]
        elif hp.grouped:
            allowed = [i for i in allowed
                       if all(_matches(v, texts) for k, v in hp.choices[i][1:] if hparam_name(k) == name)]
    return frozenset(allowed)


def _new_cells(box, earlier):
    """How many cells of `box` (per axis, the allowed choice positions) no box of `earlier` holds
    (inclusion-exclusion; boxes that do not meet are skipped, so real configs stay cheap)."""
    if not earlier:
        return math.prod(len(axis) for axis in box)
    *rest, last = earlier
    common = tuple(a & b for a, b in zip(box, last))
    count = _new_cells(box, rest)
    if all(common):
        count -= _new_cells(common, rest)
    return count


class _Pair:
    """A (dataset, model) pair of one run block: its axes, the choices the block allows, and the boxes of
    earlier blocks that select some of the same cells (those cells are made once, by the first block)."""

    __slots__ = ("dataset", "model", "axes", "box", "earlier", "choices")

    def __init__(self, dataset, model, axes, box, earlier):
        self.dataset, self.model, self.axes, self.box, self.earlier = dataset, model, axes, box, earlier
        self.choices = None   # the _Choice lists, made when the pair is first iterated

    def choice_lists(self):
        if self.choices is None:
            self.choices = [[_Choice(i, hp.choices[i]) for i in sorted(allowed)]
                            for hp, allowed in zip(self.axes, self.box)]
        return self.choices

    def seen_before(self, combo):
        return any(all(ch.index in axis for ch, axis in zip(combo, box)) for box in self.earlier)


class Grid:
    """The planned grid: `count` cells (known before any is made), `warnings`, and the cells themselves
    by iterating it (made on demand, in grid order) or as the list `cells`."""

    def __init__(self, config, models=None, datasets=None, max_cells=None):
        self.config = config
        self.problems = []
        self.warnings = []
        self.texts = {name: _ModelText(e) for name, e in config.models.items() if e.command is not None}
        self.cast_cache = {}
        self.settings_cache = {}
        self.model_filter = _check_names(models, config.models, "model")
        self.dataset_filter = _check_names(datasets, [d for d in config.datasets if d], "dataset")
        self.known_names = {}    # model -> hparam names its cells have (for unknown-placeholder warnings)
        project = config.project
        self.head_prefix = naming.object_name(naming.owner(project), project.get("project_name", ""))
        self.pairs = []
        self.count = 0
        self._plan()
        self._check_cap(DEFAULT_MAX_CELLS if max_cells is None else max_cells)
        self._warn_placeholders()
        self._cells = None

    # -- planning: everything that does not need the cells -----------------------------------------------
    def _plan(self):
        boxes = {}   # (dataset, model) -> boxes of earlier blocks
        for block in self.config.run_blocks:
            selected = 0
            self._check_filters(block)
            for dataset in self._datasets(block):
                for model in self._models(block):
                    selected += self._plan_pair(block, dataset, model, boxes.setdefault((dataset, model), []))
            filtered = self.model_filter or self.dataset_filter     # restricted on purpose on the make line
            if not selected and not filtered and not self.problems:
                where = self.config.problem(self._launch_file(), block.path, "").where
                self.warnings.append(f"{where}: this run block selects no cells")
        if not self.count and not self.problems:
            raise UsageError(self._launch_file(), "the grid is empty: no cell matches the run section"
                             + (" and the model=/dataset= filters" if self.model_filter or self.dataset_filter else ""))
        if self.problems:
            raise ConfigError(self.problems)

    def _plan_pair(self, block, dataset_name, model_name, earlier_boxes):
        """Plan one pair of a block; returns how many cells the block selects there (overlaps included)."""
        c = self.config
        axes = _axes(c.datasets[dataset_name], c.models[model_name])
        box = tuple(_allowed(hp, block.filters) for hp in axes)
        if not all(box):
            return 0
        known = self.known_names.setdefault(model_name, set())
        for hp in axes:      # every choice of an axis has the same keys
            known.update(n for key, _ in hp.choices[0] for n in (key, hparam_name(key)))
        earlier = [b for b in earlier_boxes if all(a & e for a, e in zip(box, b))]
        self.count += _new_cells(box, earlier)
        earlier_boxes.append(box)
        self.pairs.append(_Pair(dataset_name, model_name, axes, box, earlier))
        for hp, allowed in zip(axes, box):   # hparams overriding cluster fields: cast every value once now
            for i in sorted(allowed):
                self._overrides_of(hp, hp.choices[i])
        return math.prod(len(axis) for axis in box)

    def _launch_file(self):
        return next((f for f in self.config.sources if f.endswith("launch.yaml")), "config/launch.yaml")

    def _datasets(self, block):
        names = block.datasets if block.datasets is not None else list(self.config.datasets)
        return [d for d in names if self.dataset_filter is None or d in self.dataset_filter]

    def _models(self, block):
        names = block.models if block.models is not None else list(self.config.models)
        return [m for m in names if m in self.texts and (self.model_filter is None or m in self.model_filter)]

    def _check_filters(self, block):
        c = self.config
        models = block.models if block.models is not None else list(c.models)
        datasets = block.datasets if block.datasets is not None else list(c.datasets)
        known = set()
        for entry in [c.models[m] for m in models] + [c.datasets[d] for d in datasets]:
            for hp in entry.hparams:
                known.add(hp.name)
                if hp.grouped:
                    known.update(hparam_name(k) for k, _ in hp.choices[0][1:])
        for name in block.filters:
            if name not in known:
                hint = did_you_mean(name, known)
                self.problems.append(c.problem(self._launch_file(), block.path + ("hparam", name),
                                               f"no hparam named '{name}' in the selected models and datasets",
                                               [hint or choices_line(known)], key=True))

    def _check_cap(self, max_cells):
        if self.count <= max_cells:
            return
        sizes = {}
        for pair in self.pairs:
            sizes[pair.model] = sizes.get(pair.model, 0) + math.prod(len(axis) for axis in pair.box)
        biggest = sorted(sizes.items(), key=lambda item: -item[1])[:3]
        raise UsageError(self._launch_file(), f"the grid has {self.count:,} cells, more than max_cells={max_cells:,}",
                         [f"model '{name}': {size:,} cells" for name, size in biggest],
                         hint="narrow it (run: section, model=, dataset=), or raise the cap for this command: "
                              f"max_cells={self.count}")

    # -- cluster-field overrides ----------------------------------------------------------------------
    def _overrides_of(self, hp, pairs):
        """(field, value) pairs one choice sets: an axis named like a scalar cell field, and the inner keys
        of named groups named like one (`big: {_memory: 64, _gpu_count: 2}`)."""
        result = []
        for key, text in pairs:
            name = hparam_name(key)
            if name in fields.SCALAR_CELL_FIELDS and (key != hp.key or not hp.grouped):
                value = self._cast(name, key, text, hp)
                if value is not None:
                    result.append((name, value))
        return tuple(result)

    def _cast(self, hp_name, key, text, hp):
        cache_key = (hp_name, text)
        if cache_key not in self.cast_cache:
            field = fields.FIELD_BY_NAME[hp_name]
            try:
                self.cast_cache[cache_key] = fields.cast_text(field.type, text)
            except ValueError as err:
                self.cast_cache[cache_key] = None
                self.problems.append(self.config.problem(
                    self._launch_file(), _value_path(hp, key, text),
                    f"hparam '{key}' overrides the cluster field '{hp_name}': {err}, got {text!r}"))
        return self.cast_cache[cache_key]

    def _settings(self, dataset, model, overrides, values):
        key = (dataset, model, overrides)
        settings = self.settings_cache.get(key)
        if settings is None:
            c = self.config
            layers = [c.kube_layer, c.root_layer, c.datasets[dataset].settings, c.models[model].settings]
            settings = finalize(merge_layers(layers + [dict(overrides)]), c.project)
            settings = types.MappingProxyType(settings)
            self.settings_cache[key] = settings
        templated = self.texts[model].templated
        if templated:
            filled = dict(settings)
            filled.update({k: syntax.fill_any(v, values) for k, v in templated.items()})
            settings = types.MappingProxyType(filled)
        return settings

    # -- the cells ------------------------------------------------------------------------------------------
    def __len__(self):
        return self.count

    def __iter__(self):
        """The cells in grid order, made one by one. Two cells with one name (a 40-bit hash collision of
        two identities whose readable part was cut the same) raise ConfigError after the last cell."""
        buckets = [array.array("q") for _ in range(_NAME_BUCKETS)]
        for cell in self._generate():
            key = hash(cell.name)
            buckets[key % _NAME_BUCKETS].append(key)
            yield cell
        clashes = set()
        for bucket in buckets:
            if len(set(bucket)) != len(bucket):
                seen = set()
                clashes.update(key for key in bucket if key in seen or seen.add(key))
        if clashes:
            self._raise_name_clashes(clashes)

    @property
    def cells(self):
        """Every cell as a list (made once)."""
        if self._cells is None:
            self._cells = list(self)
        return self._cells

    def first(self):
        """The first cell, without making the others."""
        return next(self._generate())

    def _generate(self):
        index = 0
        for pair in self.pairs:
            for cell in self._pair_cells(pair, index):
                index += 1
                yield cell

    def _pair_cells(self, pair, first_index):
        model_name, dataset_name = pair.model, pair.dataset
        axes = pair.axes
        choice_lists = pair.choice_lists()
        overriding = []
        for i, (hp, choices) in enumerate(zip(axes, choice_lists)):
            for ch in choices:
                ch.overrides = self._overrides_of(hp, ch.pairs)
            if any(ch.overrides for ch in choices):
                overriding.append(i)
        text = self.texts[model_name]
        heads = naming.heads(self.head_prefix, naming.slug(model_name), naming.slug(dataset_name))
        ident_head = naming.identity_string(model_name, dataset_name, ())
        nested = any(ch.nested for choices in choice_lists for ch in choices)
        index = first_index
        for combo in itertools.product(*choice_lists):
            if pair.earlier and pair.seen_before(combo):
                continue  # overlapping run blocks: the same cell once
            pairs = tuple(itertools.chain.from_iterable(ch.pairs for ch in combo))
            identity = "\x1f".join([ident_head] + [ch.identity for ch in combo])
            name = naming.cell_name(heads, [ch.full for ch in combo], [ch.short for ch in combo],
                                    naming.cell_hash(identity))
            if nested:
                values = syntax.fill_values(pairs)
            else:
                values = {}
                for ch in combo:
                    values.update(ch.values)
            overrides = ()
            if overriding:
                overrides = tuple(itertools.chain.from_iterable(combo[i].overrides for i in overriding))
            settings = self._settings(dataset_name, model_name, overrides, values)
            if text.multinode:
                values = {**multinode.placeholder_values(settings), **values}
            remote = text.remote.fill(values)
            local = remote if text.same else text.local.fill(values)
            yield Cell(index, name, model_name, dataset_name, pairs, remote, local, settings)
            index += 1

    def _raise_name_clashes(self, keys):
        by_name = {}
        for cell in self._generate():
            if hash(cell.name) in keys:
                by_name.setdefault(cell.name, []).append(cell)
        problems = [self.config.problem(self._launch_file(), self.config.models[cells[0].model].path,
                                        f"two different cells are named '{name}'")
                    for name, cells in by_name.items() if len(cells) > 1]
        if problems:
            raise ConfigError(problems)

    def _warn_placeholders(self):
        for model_name, names in self.known_names.items():
            text = self.texts[model_name]
            entry = self.config.models[model_name]
            for template, field in ((text.remote, "command"), (text.local, "command")):
                for unknown in template.unknown(names.union(multinode.PLACEHOLDERS)):
                    hint = did_you_mean(unknown, names)
                    message = f"model.{model_name}.{field}: <{unknown}> is not an hparam; it is left as written"
                    message += f" ({hint})" if hint else ""
                    if message not in self.warnings:
                        self.warnings.append(message)
            line = syntax.missing_separator(entry.command or "")
            if line:
                self.warnings.append(f"model.{model_name}.command: two commands on one line without ; or && "
                                     f"between them: {line!r}")


def stream(config, models=None, datasets=None, max_cells=None):
    """The planned grid, cells made on demand (iterate it). `models`/`datasets` (make model=a,b dataset=x)
    restrict it; more than `max_cells` cells (default DEFAULT_MAX_CELLS) is a UsageError."""
    return Grid(config, models, datasets, max_cells)


def expand(config, models=None, datasets=None, max_cells=None):
    """The grid with every cell made (grid.cells): for commands that need them all at once."""
    grid = Grid(config, models, datasets, max_cells)
    grid.cells  # noqa: B018 - made now, so that every problem is raised here
    return grid


def _check_names(text, known, kind):
    """A make-line filter (`model=a,b`) -> set of names; unknown names are a usage error."""
    if not text:
        return None
    names = [n.strip() for n in text.split(",") if n.strip()] if isinstance(text, str) else list(text)
    shown = text if isinstance(text, str) else ",".join(names)
    if not names:
        raise UsageError(f"{kind}={shown}", f"no {kind} name given", [choices_line(known)])
    for name in names:
        if name not in known:
            hint = did_you_mean(name, known)
            raise UsageError(f"{kind}={shown}", f"unknown {kind} '{name}'", [hint or choices_line(known)])
    return set(names)
