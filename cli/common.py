"""What every command handler shares: loading the grid of the project (printing its warnings)."""

from toolbox.core import grid as gridmod
from toolbox.core.config import load_config
from toolbox.errors import warn


def load_grid(args, strict=True, lazy=False):
    """Config -> grid for a command, printing the config's and the grid's warnings.

    strict (every command that renders or talks to the cluster): a problem anywhere is an error.
    strict=False (local runs, dry runs, the plan): cluster-only problems of kube.yaml are warnings.
    lazy: cells are made while the grid is iterated (memory stays flat however big the grid).
    """
    config = load_config(".", strict=strict)
    for warning in config.warnings:
        warn(warning)
    expand = gridmod.stream if lazy else gridmod.expand
    grid = expand(config, getattr(args, "model", None), getattr(args, "dataset", None),
                  getattr(args, "max_cells", None))
    for warning in grid.warnings:
        warn(warning)
    return grid
