"""The hparam section of a model or dataset entry and the run blocks' hparam filters, validated.

Three forms (docs/grid.md): a value, a list of values (an axis), or named groups that set several keys at
once. Every value keeps its YAML text as written (0.10 stays '0.10'), since it ends up in commands.
"""
from toolbox.core import fields
from toolbox.core.syntax import hparam_name


class Hparam:
    """One hparam axis: its choices are tuples of (key, text) pairs (a named group sets several keys)."""

    __slots__ = ("key", "name", "hidden", "choices", "grouped", "path")

    def __init__(self, key, choices, grouped, path):
        self.key = key
        self.name = hparam_name(key)
        self.hidden = key.startswith("_")
        self.choices = choices
        self.grouped = grouped
        self.path = path


def scalar_problem(value):
    if isinstance(value, (list, dict)):
        return f"expected a value, got {fields.describe(value)}"
    return None


def load_hparams(config, src, path, data, problems):
    if data is None:
        return []
    if not isinstance(data, dict):
        problems.append(config.problem(src.file, path, "expected a map of hparam name -> value, list or groups"))
        return []
    hparams, names = [], {}
    for key, value in data.items():
        hpath = path + (key,)
        name = hparam_name(key)
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
        bad = scalar_problem(value)
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
            bad = scalar_problem(ivalue)
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



def load_filters(config, src, path, data, problems):
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
            bad = scalar_problem(item)
            if bad:
                problems.append(config.problem(src.file, ipath, bad))
            else:
                texts.append(src.text(ipath, item))
        filters[hparam_name(key)] = texts
    return filters
