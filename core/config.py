"""Loading and validating config/kube.yaml and config/launch.yaml, and the one precedence rule.

Every problem is collected with its file, line, column and key path, then raised at once as a
ConfigError: a bad config runs nothing. The structure of the result is plain data (Config, Entry,
Hparam, RunBlock) that grid.py expands.
"""
import os
import re

from toolbox.core import fields
from toolbox.core.fields import CELL_FIELDS, FIELD_BY_NAME, PROJECT_FIELDS
from toolbox.core.files import not_a_file
from toolbox.core.hparams import load_filters, load_hparams
from toolbox.core.yamlfile import dotted, load_yaml
from toolbox.errors import ConfigError, Problem, choices_line, did_you_mean

LAUNCH_FILE = os.path.join("config", "launch.yaml")
KUBE_FILE = os.path.join("config", "kube.yaml")

# -- plain data produced by loading -----------------------------------------------------------------
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
        self.project = {}        # project-wide fields: kube.yaml's, then launch.yaml's root over them
        self.kube_layer = {}     # cell fields set in kube.yaml
        self.root_layer = {}     # cell fields set at launch.yaml's root
        self.kube_project = {}   # project fields set in kube.yaml
        self.launch_project = {}  # project fields set at launch.yaml's root (they win)
        self.models = {}         # name -> Entry
        self.datasets = {}       # name -> Entry ("" when launch.yaml has no dataset section)
        self.run_blocks = []
        self.warnings = []       # cluster-only problems of kube.yaml, for commands that do not need the cluster

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
        if field in self.root_layer or self.launch_project.get(field) is not None:
            return launch, (field,)
        if field in self.kube_layer or self.kube_project.get(field) is not None:
            return kube, (field,)
        return None

    def where(self, file, path):
        """'file:line' of a key path (for messages that point at a setting)."""
        return self.problem(file, path, "", key=True).where

    def project_origins(self):
        """For each project-wide field set in a file: (field, value, 'file:line' that set it,
        (kube.yaml's value, 'file:line') when launch.yaml's root overrides a different one, else None)."""
        origins = []
        for key in fields.PROJECT_FIELDS:
            source = self.field_source(key)
            if source is None or self.project.get(key) is None:
                continue
            shadowed = None
            kube_value = self.kube_project.get(key)
            if source[0].endswith("launch.yaml") and kube_value is not None and kube_value != self.project[key]:
                kube = next(f for f in self.sources if f.endswith("kube.yaml"))
                shadowed = (kube_value, self.where(kube, (key,)))
            origins.append((key, self.project[key], self.where(*source), shadowed))
        return origins

    def locate(self, problem, dataset=None, model=None):
        """A problem about a field (Problem.path) of a cell/pod, pointed at the line that set the field;
        where it was reported (a cell name) becomes a detail. `file[2]` points at one item of a list field."""
        field, _, index = (problem.path or "").partition("[")
        source = self.field_source(field, dataset, model) if field else None
        if source is None:
            return problem
        item = (int(index[:-1]),) if index[:-1].isdigit() else ()
        located = self.problem(source[0], source[1] + item, problem.what, problem.details)
        located.details[:0] = self._partner_lines(field, problem.what, dataset, model)
        if problem.file and problem.file != source[0]:
            located.details.append(f"(in {problem.file})")
        return located

    def _partner_lines(self, field, what, dataset, model):
        """A problem about a whitelist that names its blacklist (nothing left) points at both lines."""
        for pair in fields.NODE_LISTS:
            other = self.field_source(pair.black, dataset, model) if field == pair.white else None
            if other and pair.black in what:
                return [f"{pair.black}: {self.where(*other)}"]
        return []


# -- the one precedence rule --------------------------------------------------------------------------
def merge_layers(layers):
    """Merge layers of cell fields, lowest precedence first.

    Later layers win; map fields (env, volumes, labels, server, node_selector) merge key by key, affinity
    and pod_config as `kubectl patch` merges (fields.merge_value); `null` resets a field to its built-in
    default. A whitelist and a blacklist are two fields: each replaces only its own kind below it, and
    both apply.
    """
    result = fields.defaults()
    for layer in layers:
        for key, value in layer.items():
            field = FIELD_BY_NAME[key]
            if value is None:
                result[key] = fields.defaults()[key]
            elif field.merged:
                result[key] = fields.merge_value(field, result.get(key), value)
            else:
                result[key] = value
    return result


def finalize(settings, project):
    """Add the project-wide fields (one value for every cell) and fill template defaults (image, ...)."""
    merged = dict(settings)
    merged.update(project)
    return fields.resolve_defaults(merged)


# -- loading and validation ---------------------------------------------------------------------------
def load_config(root=".", need_launch=True, strict=True):
    """Load and validate both files under `root`; raises ConfigError listing every problem.

    strict=False is for the commands that never use the cluster (local runs, dry runs, the plan): problems
    of kube.yaml that only matter to the cluster (unknown keys, cluster settings) become config.warnings.
    Every other problem, and every problem of launch.yaml, stays an error for every command.
    """
    config = Config(root)
    problems = []
    kube_path = os.path.normpath(os.path.join(root, KUBE_FILE))
    launch_path = os.path.normpath(os.path.join(root, LAUNCH_FILE))
    kube = _read(kube_path, problems)
    launch = _read(launch_path, problems)
    if need_launch and not os.path.lexists(launch_path):
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
    if not strict:
        problems = _set_aside_cluster_problems(config, problems, kube_path)
    if problems:
        raise ConfigError(sorted(problems, key=lambda p: (p.file != kube_path, p.line or 0, p.col or 0)))
    return config


def _read(path, problems):
    """A config file's Source; None when it is missing, unreadable or not a file (a problem then)."""
    if not os.path.lexists(path):
        return None
    kind = not_a_file(path)
    if kind:
        problems.append(Problem(path, None, None, "", kind))
        return None
    return load_yaml(path, problems)


# project-wide fields that make the cell names, so local runs need them right too
NAMING_FIELDS = ("project_name", "user", "prefix")


def _cluster_only(problem, kube_file):
    """A problem of a kube.yaml key other than the naming fields (syntax errors have no key)."""
    if problem.file != kube_file or not problem.path:
        return False
    return re.split(r"[.\[]", problem.path, maxsplit=1)[0] not in NAMING_FIELDS


def _set_aside_cluster_problems(config, problems, kube_file):
    kept = []
    for problem in problems:
        if _cluster_only(problem, kube_file):
            text = problem.format()[len("error: "):].split("\n")
            text[0] += " (ignored here; commands that use the cluster stop on it)"
            config.warnings.append("\n".join(text))
        else:
            kept.append(problem)
    return kept


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
    for subpath, what, details, at_key in fields.value_problems(field, value):
        problems.append(config.problem(file, path + subpath, what, details, key=at_key))
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
    return cell, project


def _where_key_belongs(key):
    if key in fields.LAUNCH_ROOT_KEYS:
        return f"'{key}' is a section of {LAUNCH_FILE} (at its top level)"
    return f"'{key}' belongs in a model entry of {LAUNCH_FILE}"


def _check_kube(config, src, problems):
    cell, project = _fields_layer(config, src, (), src.data, (), KUBE_FILE, problems, allow_project=True)
    config.kube_layer = cell
    config.kube_project = project


def _check_launch_root(config, src, problems):
    cell, project = _fields_layer(config, src, (), src.data, fields.LAUNCH_ROOT_KEYS,
                                  f"the top level of {LAUNCH_FILE}", problems, allow_project=True)
    config.root_layer = cell
    config.launch_project = project


def _check_project(config, kube_file, launch_file, problems):
    """Project-wide fields: launch.yaml's root merges over kube.yaml, as for every other field (maps key by
    key); one value for the whole project, which every name, label and default is made from."""
    for layer in (config.kube_project, config.launch_project):
        for key, value in layer.items():
            if value is None:
                continue
            field = FIELD_BY_NAME[key]
            config.project[key] = fields.merge_value(field, config.project.get(key), value) if field.merged else value
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
    hparams = load_hparams(config, src, path + ("hparam",), entry.get("hparam"), problems)
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
        filters = load_filters(config, src, path + ("hparam",), block.get("hparam"), problems)
        config.run_blocks.append(RunBlock(index, models, datasets, filters, path))
