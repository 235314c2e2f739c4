"""Loading and validating config/kube.yaml and config/launch.yaml, and the one precedence rule.

Every problem is collected with its file, line, column and key path, then raised at once as a
ConfigError: a bad config runs nothing. The structure of the result is plain data (Config, Entry,
Hparam, RunBlock) that grid.py expands.
"""
import os

from toolbox.core import fields
from toolbox.core.yamlfile import dotted, load_yaml
from toolbox.errors import ConfigError, Problem, choices_line, did_you_mean
from toolbox.core.fields import FIELD_BY_NAME, PROJECT_FIELDS, CELL_FIELDS

LAUNCH_FILE = os.path.join("config", "launch.yaml")
KUBE_FILE = os.path.join("config", "kube.yaml")

# -- plain data produced by loading -----------------------------------------------------------------
class Hparam:
    """One hparam axis: its choices are tuples of (key, text) pairs (a named group sets several keys)."""

    __slots__ = ("key", "name", "hidden", "choices", "grouped", "path")

    def __init__(self, key, choices, grouped, path):
        self.key = key
        self.name = key.lstrip("_") or key
        self.hidden = key.startswith("_")
        self.choices = choices
        self.grouped = grouped
        self.path = path


class Entry:
    """A model or dataset entry: the cluster fields it sets, its hparams, and (models) its commands."""

    __slots__ = ("name", "kind", "settings", "hparams", "command", "local_command", "path")

    def __init__(self, name, kind, settings, hparams, command=None, local_command=None, path=()):
        self.name, self.kind, self.settings, self.hparams = name, kind, settings, hparams
        self.command, self.local_command, self.path = command, local_command, path


class RunBlock:
    __slots__ = ("index", "models", "datasets", "filters", "path")

    def __init__(self, index, models, datasets, filters, path):
        self.index, self.models, self.datasets, self.filters, self.path = index, models, datasets, filters, path


class Config:
    """The validated configuration of a project."""

    def __init__(self, root):
        self.root = root
        self.sources = {}
        self.project = {}        # project-wide fields
        self.kube_layer = {}     # cell fields set in kube.yaml
        self.root_layer = {}     # cell fields set at launch.yaml's root
        self.launch_project = {}  # project fields repeated at launch.yaml's root (must agree with kube.yaml)
        self.models = {}         # name -> Entry
        self.datasets = {}       # name -> Entry ("" when launch.yaml has no dataset section)
        self.run_blocks = []

    def problem(self, file, path, what, details=(), key=False):
        """A Problem located at `path` of `file`."""
        src = self.sources.get(file)
        line, col = src.locate(path, key=key) if src else (None, None)
        return Problem(file, line, col, dotted(path), what, [d for d in details if d])

    def field_source(self, field, dataset=None, model=None):
        """(file, key path) of the layer a cell's value of `field` comes from (None: the default)."""
        launch = next((f for f in self.sources if f.endswith("launch.yaml")), LAUNCH_FILE)
        kube = next((f for f in self.sources if f.endswith("kube.yaml")), KUBE_FILE)
        entries = [self.models.get(model), self.datasets.get(dataset)]
        for entry in entries:
            if entry is not None and field in entry.settings:
                return launch, entry.path + (field,)
        if field in self.root_layer or field in self.launch_project:
            return launch, (field,)
        if field in self.kube_layer or field in self.project:
            return kube, (field,)
        return None

    def locate(self, problem, dataset=None, model=None):
        """A problem about a field (Problem.path) of a cell/pod, pointed at the line that set the field;
        where it was reported (a cell name) becomes a detail."""
        source = self.field_source(problem.path, dataset, model) if problem.path else None
        if source is None:
            return problem
        located = self.problem(source[0], source[1], problem.what, problem.details)
        if problem.file and problem.file != source[0]:
            located.details.append(f"(in {problem.file})")
        return located

    def base_settings(self, dataset, model):
        """Resolved cluster settings of a (dataset, model) pair before hparam overrides."""
        layers = [self.kube_layer, self.root_layer, self.datasets[dataset].settings, self.models[model].settings]
        return finalize(merge_layers(layers), self.project)


# -- the one precedence rule --------------------------------------------------------------------------
_PARTNER = {}
for _white, _black in fields.EXCLUSIVE_PAIRS:
    _PARTNER[_white], _PARTNER[_black] = _black, _white


def merge_layers(layers):
    """Merge layers of cell fields, lowest precedence first.

    Later layers win; map fields (env, volumes, labels, server) merge key by key; `null` resets a field
    to its built-in default; setting a whitelist replaces the lower layers' blacklist of the same kind.
    """
    result = fields.defaults()
    for layer in layers:
        for key, value in layer.items():
            field = FIELD_BY_NAME[key]
            if value is None:
                result[key] = fields.defaults()[key]
            elif field.merged:
                result[key] = {**(result.get(key) or {}), **value}
            else:
                result[key] = value
            if key in _PARTNER and value is not None:
                result[_PARTNER[key]] = None
    return result


def finalize(settings, project):
    """Add the project-wide fields (one value for every cell) and fill template defaults (image, ...)."""
    merged = dict(settings)
    merged.update(project)
    return fields.resolve_defaults(merged)


# -- loading and validation ---------------------------------------------------------------------------
def load_config(root=".", need_launch=True):
    """Load and validate both files under `root`; raises ConfigError listing every problem."""
    config = Config(root)
    problems = []
    kube_path = os.path.normpath(os.path.join(root, KUBE_FILE))
    launch_path = os.path.normpath(os.path.join(root, LAUNCH_FILE))
    kube = launch = None
    if os.path.isfile(kube_path):
        kube = load_yaml(kube_path, problems)
    if os.path.isfile(launch_path):
        launch = load_yaml(launch_path, problems)
    elif need_launch:
        problems.append(Problem(launch_path, None, None, "", "file not found",
                                ["the grid of experiments is declared here (see docs/quickstart.md)"]))
    for src in (kube, launch):
        if src:
            config.sources[src.file] = src
    kube_file = kube.file if kube else kube_path
    launch_file = launch.file if launch else launch_path
    if kube:
        _check_kube(config, kube, problems)
    if launch:
        _check_launch_root(config, launch, problems)
    _check_project(config, kube_file, launch_file, problems)
    if launch:
        _load_entries(config, launch, problems)
        _load_run(config, launch, problems)
    if problems:
        raise ConfigError(sorted(problems, key=lambda p: (p.file != kube_path, p.line or 0, p.col or 0)))
    return config


def _unknown_key(config, file, path, key, valid, context):
    hint = did_you_mean(key, valid)
    return config.problem(file, path, f"unknown key '{key}' in {context}", [hint or choices_line(valid)], key=True)


def _check_field(config, file, path, key, value, problems):
    """Type-check one field value; returns the normalized value."""
    field = FIELD_BY_NAME[key]
    if value is None:
        return None
    message = fields.type_problem(field.type, value)
    if message:
        problems.append(config.problem(file, path, message))
        return None
    if field.type == "server":
        _check_servers(config, file, path, value, problems)
    return fields.normalize_value(field, value)


def _check_servers(config, file, path, servers, problems):
    for name, spec in servers.items():
        spath = path + (name,)
        if not isinstance(spec, dict):
            problems.append(config.problem(file, spath, f"expected a map with {', '.join(fields.SERVER_REQUIRED)}"))
            continue
        for key, value in spec.items():
            if key not in fields.SERVER_KEYS:
                problems.append(_unknown_key(config, file, spath + (key,), key, fields.SERVER_KEYS, "a server"))
            elif value is not None and fields.type_problem(fields.SERVER_KEYS[key], value):
                problems.append(config.problem(file, spath + (key,),
                                               fields.type_problem(fields.SERVER_KEYS[key], value)))
        for key in fields.SERVER_REQUIRED:
            if spec.get(key) is None:
                problems.append(config.problem(file, spath, f"missing required key '{key}'"))


def _check_pairs(config, file, path, layer, problems):
    for white, black in fields.EXCLUSIVE_PAIRS:
        if layer.get(white) is not None and layer.get(black) is not None:
            problems.append(config.problem(file, path + (black,),
                                           f"both {white} and {black} are set; choose one",
                                           ["a whitelist allows only the listed values; a blacklist allows all others"]))


def _fields_layer(config, src, path, mapping, allowed_extra, context, problems, allow_project):
    """Validate the field keys of one mapping; returns {cell field: value} and {project field: value}."""
    cell, project = {}, {}
    valid = list(CELL_FIELDS) + list(allowed_extra) + (PROJECT_FIELDS if allow_project else [])
    for key, value in mapping.items():
        kpath = path + (key,)
        if key in allowed_extra:
            continue
        if key in FIELD_BY_NAME and FIELD_BY_NAME[key].scope == "project":
            if allow_project:
                project[key] = _check_field(config, src.file, kpath, key, value, problems)
            else:
                problems.append(config.problem(src.file, kpath, f"'{key}' is project-wide and cannot be set in {context}",
                                               [f"set it in {KUBE_FILE}"], key=True))
        elif key in FIELD_BY_NAME:
            cell[key] = _check_field(config, src.file, kpath, key, value, problems)
        elif key in fields.LAUNCH_ROOT_KEYS or key in fields.MODEL_KEYS:
            problems.append(config.problem(src.file, kpath, f"'{key}' does not belong in {context}",
                                           [_where_key_belongs(key)], key=True))
        else:
            problems.append(_unknown_key(config, src.file, kpath, key, valid, context))
    _check_pairs(config, src.file, path, cell, problems)
    return cell, project


def _where_key_belongs(key):
    if key in fields.LAUNCH_ROOT_KEYS:
        return f"'{key}' is a section of {LAUNCH_FILE} (at its top level)"
    return f"'{key}' belongs in a model entry of {LAUNCH_FILE}"


def _check_kube(config, src, problems):
    cell, project = _fields_layer(config, src, (), src.data, (), KUBE_FILE, problems, allow_project=True)
    config.kube_layer = cell
    config.project.update({k: v for k, v in project.items() if v is not None})


def _check_launch_root(config, src, problems):
    cell, project = _fields_layer(config, src, (), src.data, fields.LAUNCH_ROOT_KEYS,
                                  f"the top level of {LAUNCH_FILE}", problems, allow_project=True)
    config.root_layer = cell
    config.launch_project = project


def _check_project(config, kube_file, launch_file, problems):
    """Project-wide fields come from kube.yaml; launch.yaml may repeat them only with the same value."""
    for key, value in config.launch_project.items():
        if value is None:
            continue
        if key in config.project and config.project[key] != value:
            problems.append(config.problem(launch_file, (key,),
                                           f"'{key}' is '{value}' here but '{config.project[key]}' in {KUBE_FILE}",
                                           ["project-wide fields must agree; remove it here or make them equal"]))
        config.project.setdefault(key, value)
    if not config.project.get("project_name"):
        problems.append(Problem(kube_file, None, None, "project_name", "missing required key 'project_name'",
                                [f"set it in {KUBE_FILE} (e.g. project_name: example)"]))


def _load_entries(config, src, problems):
    data = src.data
    models = data.get("model")
    if "model" not in data or models is None:
        problems.append(config.problem(src.file, ("model",) if "model" in data else (),
                                       "missing required section 'model' (a map of model name -> entry)"))
        models = {}
    elif not isinstance(models, dict) or not models:
        problems.append(config.problem(src.file, ("model",), "expected a map of model name -> entry"))
        models = {}
    for name, entry in models.items():
        config.models[name] = _load_entry(config, src, ("model", name), name, entry, "model", problems)
    datasets = data.get("dataset")
    if datasets is None:
        config.datasets[""] = Entry("", "dataset", {}, [])
    elif not isinstance(datasets, dict):
        problems.append(config.problem(src.file, ("dataset",), "expected a map of dataset name -> entry"))
    else:
        for name, entry in datasets.items():
            config.datasets[name] = _load_entry(config, src, ("dataset", name), name, entry, "dataset", problems)
        if not datasets:
            config.datasets[""] = Entry("", "dataset", {}, [])


def _load_entry(config, src, path, name, entry, kind, problems):
    if entry is None and kind == "dataset":
        entry = {}
    if not isinstance(entry, dict):
        need = "a map with at least 'command'" if kind == "model" else "a map (hparam and cluster fields)"
        problems.append(config.problem(src.file, path, f"expected {need}"))
        return Entry(name, kind, {}, [], path=path)
    extra = fields.MODEL_KEYS if kind == "model" else fields.DATASET_KEYS
    settings, _ = _fields_layer(config, src, path, entry, extra, f"a {kind} entry", problems, allow_project=False)
    hparams = _load_hparams(config, src, path + ("hparam",), entry.get("hparam"), problems)
    command = local = None
    if kind == "model":
        command = entry.get("command")
        if command is None:
            problems.append(config.problem(src.file, path, "missing required key 'command'",
                                           ["e.g. command: python src/train.py --lr <lr>"]))
        elif not isinstance(command, str):
            problems.append(config.problem(src.file, path + ("command",), fields.type_problem("str", command)))
            command = None
        local = entry.get("local_command")
        if local is not None and not isinstance(local, str):
            problems.append(config.problem(src.file, path + ("local_command",), fields.type_problem("str", local)))
            local = None
    return Entry(name, kind, settings, hparams, command, local, path)


def _scalar_problem(value):
    if isinstance(value, (list, dict)):
        return f"expected a value, got {fields.describe(value)}"
    return None


def _load_hparams(config, src, path, data, problems):
    if data is None:
        return []
    if not isinstance(data, dict):
        problems.append(config.problem(src.file, path, "expected a map of hparam name -> value, list or groups"))
        return []
    hparams, names = [], {}
    for key, value in data.items():
        hpath = path + (key,)
        name = key.lstrip("_") or key
        if name in names:
            problems.append(config.problem(src.file, hpath, f"'{key}' and '{names[name]}' are the same hparam "
                                           "(a leading _ only hides it from names)", ["keep one of them"],
                                           key=True))
            continue
        names[name] = key
        if isinstance(value, list):
            hparams.append(_list_hparam(config, src, hpath, key, value, problems))
        elif isinstance(value, dict):
            hparams.append(_group_hparam(config, src, hpath, key, value, problems))
        else:
            hparams.append(Hparam(key, [((key, src.text(hpath, value)),)], False, hpath))
    return [h for h in hparams if h is not None]


def _list_hparam(config, src, path, key, values, problems):
    if not values:
        problems.append(config.problem(src.file, path, "an empty list gives no cells", ["give at least one value"]))
        return None
    choices, seen = [], set()
    for i, value in enumerate(values):
        bad = _scalar_problem(value)
        if bad:
            problems.append(config.problem(src.file, path + (i,), bad,
                                           ["for bundles of settings use named groups (see docs/grid.md, hparam)"]))
            return None
        text = src.text(path + (i,), value)
        if text in seen:
            problems.append(config.problem(src.file, path + (i,), f"{text!r} is already in this list",
                                           ["each value gives one cell; remove the repeat"]))
            return None
        seen.add(text)
        choices.append(((key, text),))
    return Hparam(key, choices, False, path)


def _group_hparam(config, src, path, key, groups, problems):
    if not groups:
        problems.append(config.problem(src.file, path, "an empty map of groups gives no cells"))
        return None
    choices, first_keys, first_name = [], None, None
    for group, inner in groups.items():
        gpath = path + (group,)
        inner = {} if inner is None else inner
        if not isinstance(inner, dict):
            problems.append(config.problem(src.file, gpath, f"group '{group}' must be a map of hparam -> value"))
            return None
        for ikey, ivalue in inner.items():
            bad = _scalar_problem(ivalue)
            if bad:
                problems.append(config.problem(src.file, gpath + (ikey,), bad))
                return None
        keys = list(inner)
        if first_keys is None:
            first_keys, first_name = keys, group
        elif set(keys) != set(first_keys):
            missing = sorted(set(first_keys) - set(keys))
            extra = sorted(set(keys) - set(first_keys))
            details = ([f"missing: {', '.join(missing)}"] if missing else []) + \
                      ([f"not in '{first_name}': {', '.join(extra)}"] if extra else [])
            problems.append(config.problem(src.file, gpath, f"group '{group}' has different keys than '{first_name}'",
                                           details + ["every group of one hparam must set the same keys"]))
            return None
        pairs = [(key, str(group))] + [(ik, src.text(gpath + (ik,), inner[ik])) for ik in first_keys]
        choices.append(tuple(pairs))
    return Hparam(key, choices, True, path)


def _names_list(config, src, path, value, known, kind, problems):
    """A run block's model/dataset list (a single name is allowed); None means all."""
    if value is None:
        return None
    names = [value] if isinstance(value, str) else value
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        problems.append(config.problem(src.file, path, f"expected a list of {kind} names"))
        return None
    for i, name in enumerate(names):
        if name not in known:
            hint = did_you_mean(name, known)
            problems.append(config.problem(src.file, path + (i,) if not isinstance(value, str) else path,
                                           f"unknown {kind} '{name}'", [hint or choices_line(known)]))
    return [n for n in names if n in known]


def _load_run(config, src, problems):
    run = src.data.get("run")
    blocks = [run] if isinstance(run, dict) else (run if isinstance(run, list) else [{}] if run is None else None)
    if blocks is None:
        problems.append(config.problem(src.file, ("run",), "expected a map, or a list of maps, of model/dataset/hparam"))
        return
    for index, block in enumerate(blocks):
        path = ("run", index) if isinstance(run, list) else ("run",)
        if not isinstance(block, dict):
            problems.append(config.problem(src.file, path, "expected a map with model, dataset and/or hparam"))
            continue
        for key in block:
            if key not in fields.RUN_KEYS:
                problems.append(_unknown_key(config, src.file, path + (key,), key, fields.RUN_KEYS, "run"))
        models = _names_list(config, src, path + ("model",), block.get("model"), config.models, "model", problems)
        known_ds = [d for d in config.datasets if d != ""]
        datasets = _names_list(config, src, path + ("dataset",), block.get("dataset"), known_ds, "dataset", problems)
        filters = _load_filters(config, src, path + ("hparam",), block.get("hparam"), problems)
        config.run_blocks.append(RunBlock(index, models, datasets, filters, path))


def _load_filters(config, src, path, data, problems):
    """run.hparam: name (without leading _) -> allowed value texts."""
    if data is None:
        return {}
    if not isinstance(data, dict):
        problems.append(config.problem(src.file, path, "expected a map of hparam name -> value or list of values"))
        return {}
    filters = {}
    for key, value in data.items():
        values = value if isinstance(value, list) else [value]
        texts = []
        for i, item in enumerate(values):
            ipath = path + (key, i) if isinstance(value, list) else path + (key,)
            bad = _scalar_problem(item)
            if bad:
                problems.append(config.problem(src.file, ipath, bad))
            else:
                texts.append(src.text(ipath, item))
        filters[key.lstrip("_") or key] = texts
    return filters
