"""Grid expansion: a validated Config -> the ordered list of cells. A pure function of the config.

Order (documented in docs/grid.md): run blocks in order; in each block datasets (outer loop) then
models; then the Cartesian product of the hparams in key order (dataset keys first, then keys only
the model has), the last key varying fastest. A cell's hparams are the dataset's updated by the
model's (the model wins on the same name, `_x` and `x` being the same name).
"""
import itertools
import os
import types

from toolbox.core import fields
from toolbox.core import naming
from toolbox.core import syntax
from toolbox.core.config import load_config, merge_layers, finalize
from toolbox.errors import ConfigError, UsageError, choices_line, did_you_mean


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


class Grid:
    """The expanded cells plus non-fatal warnings (unknown placeholders, missing separators...)."""

    def __init__(self, config, cells, warnings):
        self.config, self.cells, self.warnings = config, cells, warnings


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


class _Choice:
    """One value of one axis, with its name fragments precomputed."""

    __slots__ = ("pairs", "full", "short", "identity", "values", "nested")

    def __init__(self, pairs):
        self.pairs = pairs
        self.identity = naming.identity_string("", "", pairs)[2:]  # this axis' part of the cell identity
        self.values = syntax.fill_values(pairs)
        self.nested = any("<" in v for _, v in pairs)
        visible = [(k, v) for k, v in pairs if not k.startswith("_")]
        self.full = naming.join_words(*(naming.join_words(naming.slug(k), naming.slug(v)) for k, v in visible))
        self.short = naming.join_words(*(naming.join_words(naming.abbreviate(naming.slug(k)),
                                                           naming.abbreviate(naming.slug(v))) for k, v in visible))


def _plain(key):
    """An hparam's name without its leading underscore (`_lr` and `lr` are the same hparam)."""
    return key.lstrip("_") or key


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


def _filter_axis(hp, filters):
    """Choices of one axis allowed by run.hparam filters (on the axis name or a group's inner key)."""
    choices = hp.choices
    for name, allowed in filters.items():
        if name == hp.name:
            choices = [c for c in choices if _matches(c[0][1], allowed)]
        elif hp.grouped:
            choices = [c for c in choices if all(_matches(v, allowed) for k, v in c[1:] if _plain(k) == name)]
    return choices


class _Expander:
    def __init__(self, config, models, datasets):
        self.config = config
        self.problems = []
        self.warnings = []
        self.texts = {name: _ModelText(entry) for name, entry in config.models.items() if entry.command is not None}
        self.cast_cache = {}
        self.settings_cache = {}
        self.model_filter = models
        self.dataset_filter = datasets
        self.selected = 0        # cells the current run block selects (before overlapping ones are dropped)
        self.known_names = {}    # model -> hparam names its cells have (for unknown-placeholder warnings)
        project = config.project
        self.head_prefix = naming.object_name(naming.owner(project), project.get("project_name", ""))

    # -- cluster-field overrides ----------------------------------------------------------------------
    def _override(self, hp_name, key, text, hp):
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

    def _launch_file(self):
        return next((f for f in self.config.sources if f.endswith("launch.yaml")), "config/launch.yaml")

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

    # -- expansion ------------------------------------------------------------------------------------
    def run(self):
        cells, seen = [], set()
        self.names = set()
        for block in self.config.run_blocks:
            self.selected = 0
            self._check_filters(block)
            for dataset in self._datasets(block):
                for model in self._models(block):
                    self._expand_pair(block, dataset, model, cells, seen)
            filtered = self.model_filter or self.dataset_filter     # restricted on purpose on the make line
            if not self.selected and not filtered and not self.problems:
                where = self.config.problem(self._launch_file(), block.path, "").where
                self.warnings.append(f"{where}: this run block selects no cells")
        if not cells and not self.problems:
            raise UsageError(self._launch_file(), "the grid is empty: no cell matches the run section"
                             + (" and the model=/dataset= filters" if self.model_filter or self.dataset_filter else ""))
        if self.problems:
            raise ConfigError(self.problems)
        self._warn_placeholders()
        return cells

    def _datasets(self, block):
        names = block.datasets if block.datasets is not None else list(self.config.datasets)
        if block.datasets is not None and not names:
            return []
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
                    known.update(_plain(k) for k, _ in hp.choices[0][1:])
        for name in block.filters:
            if name not in known:
                hint = did_you_mean(name, known)
                self.problems.append(c.problem(self._launch_file(), block.path + ("hparam", name),
                                               f"no hparam named '{name}' in the selected models and datasets",
                                               [hint or choices_line(known)], key=True))

    def _expand_pair(self, block, dataset_name, model_name, cells, seen):
        c = self.config
        dataset, model = c.datasets[dataset_name], c.models[model_name]
        axes = _axes(dataset, model)
        choice_lists = []
        for hp in axes:
            allowed = _filter_axis(hp, block.filters)
            if not allowed:
                return
            choice_lists.append([_Choice(pairs) for pairs in allowed])
        known = self.known_names.setdefault(model_name, set())
        for hp in axes:      # every choice of an axis has the same keys
            known.update(n for key, _ in hp.choices[0] for n in (key, _plain(key)))
        overriding = [hp for hp in axes if hp.name in fields.SCALAR_CELL_FIELDS or
                      (hp.grouped and any(_plain(k) in fields.SCALAR_CELL_FIELDS for k, _ in hp.choices[0][1:]))]
        text = self.texts[model_name]
        heads = naming.heads(self.head_prefix, naming.slug(model_name), naming.slug(dataset_name))
        ident_head = naming.identity_string(model_name, dataset_name, ())
        nested = any(ch.nested for choices in choice_lists for ch in choices)
        for combo in itertools.product(*choice_lists):
            self.selected += 1
            pairs = tuple(itertools.chain.from_iterable(ch.pairs for ch in combo))
            identity = "\x1f".join([ident_head] + [ch.identity for ch in combo])
            if identity in seen:
                continue  # overlapping run blocks: the same cell once
            name = naming.cell_name(heads, [ch.full for ch in combo], [ch.short for ch in combo],
                                    naming.cell_hash(identity))
            if nested:
                values = syntax.fill_values(pairs)
            else:
                values = {}
                for ch in combo:
                    values.update(ch.values)
            overrides = self._overrides(overriding, combo, axes) if overriding else ()
            settings = self._settings(dataset_name, model_name, overrides, values)
            remote = text.remote.fill(values)
            local = remote if text.same else text.local.fill(values)
            cell = Cell(len(cells), name, model_name, dataset_name, pairs, remote, local, settings)
            if name in self.names:
                self.problems.append(c.problem(self._launch_file(), model.path,
                                               f"two different cells are named '{name}'"))
            self.names.add(name)
            seen.add(identity)
            cells.append(cell)

    def _overrides(self, overriding, combo, axes):
        """(field, value) pairs the hparams of a cell set: an axis named like a scalar cell field, and the
        inner keys of named groups named like one (`big: {_memory: 64, _gpu_count: 2}`)."""
        result = []
        for hp, choice in zip(axes, combo):
            if hp not in overriding:
                continue
            for key, text in choice.pairs:
                name = _plain(key)
                if name in fields.SCALAR_CELL_FIELDS and (key != hp.key or not hp.grouped):
                    value = self._override(name, key, text, hp)
                    if value is not None:
                        result.append((name, value))
        return tuple(result)

    def _warn_placeholders(self):
        for model_name, names in self.known_names.items():
            text = self.texts[model_name]
            entry = self.config.models[model_name]
            for template, field in ((text.remote, "command"), (text.local, "command")):
                for unknown in template.unknown(names):
                    hint = did_you_mean(unknown, names)
                    message = f"model.{model_name}.{field}: <{unknown}> is not an hparam; it is left as written"
                    message += f" ({hint})" if hint else ""
                    if message not in self.warnings:
                        self.warnings.append(message)
            line = syntax.missing_separator(entry.command or "")
            if line:
                self.warnings.append(f"model.{model_name}.command: two commands on one line without ; or && "
                                     f"between them: {line!r}")


def expand(config, models=None, datasets=None):
    """Expand the grid. `models`/`datasets` (make model=a,b dataset=x) restrict it further."""
    models = _check_names(models, config.models, "model")
    datasets = _check_names(datasets, [d for d in config.datasets if d], "dataset")
    expander = _Expander(config, models, datasets)
    cells = expander.run()
    return Grid(config, cells, expander.warnings)


def _check_names(text, known, kind):
    """A make-line filter (`model=a,b`) -> set of names; unknown names are a usage error."""
    if not text:
        return None
    names = [n.strip() for n in text.split(",") if n.strip()] if isinstance(text, str) else list(text)
    for name in names:
        if name not in known:
            hint = did_you_mean(name, known)
            shown = text if isinstance(text, str) else ",".join(names)
            raise UsageError(f"{kind}={shown}", f"unknown {kind} '{name}'", [hint or choices_line(known)])
    return set(names)
