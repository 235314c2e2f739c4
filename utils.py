"""Small helpers for project code: `from toolbox.utils import load_class, exclusive_lock, ...`."""
import importlib
import resource

from toolbox.core.locks import exclusive_lock  # noqa: F401 (part of this module's API)
from toolbox.errors import ToolboxError


def load_class(spec, init=True):
    """`{"class_path": "pkg.mod.Class", "init_args": {...}}` -> an instance (or the class with init=False).

    The usual way to pick a model or dataset class from a config file.
    """
    path = spec.get("class_path") if isinstance(spec, dict) else None
    if not path or "." not in path:
        raise ToolboxError("load_class", f"expected {{'class_path': 'package.module.Class'}}, got {spec!r}")
    module_name, _, class_name = path.rpartition(".")
    try:
        cls = getattr(importlib.import_module(module_name), class_name)
    except ImportError as err:
        raise ToolboxError(path, f"cannot import module '{module_name}': {err}") from None
    except AttributeError:
        raise ToolboxError(path, f"module '{module_name}' has no attribute '{class_name}'") from None
    return cls(**(spec.get("init_args") or {})) if init else cls


def increase_ulimit(target=65536):
    """Raise the soft limit of open files towards `target`, never above the hard limit. Returns the new
    soft limit (data loaders with many workers run out of file descriptors at the usual 1024)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = target if hard == resource.RLIM_INFINITY else min(target, hard)
    if wanted > soft:
        resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
        soft = wanted
    return soft


def is_nested_subset(whole, part):
    """True if every key of `part` is in `whole` with an equal value, recursing into dicts.
    E.g. to find runs whose config contains some hparams."""
    for key, value in part.items():
        if key not in whole:
            return False
        if isinstance(value, dict) and isinstance(whole[key], dict):
            if not is_nested_subset(whole[key], value):
                return False
        elif whole[key] != value:
            return False
    return True

