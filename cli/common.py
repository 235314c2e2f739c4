"""What every command handler shares: loading the grid of the project (printing its warnings)."""

from toolbox.errors import warn
from toolbox.core import grid as gridmod
from toolbox.core.config import load_config


def load_grid(args):
    """Config -> grid for a command, printing the grid's warnings."""
    grid = gridmod.expand(load_config("."), getattr(args, "model", None), getattr(args, "dataset", None))
    for warning in grid.warnings:
        warn(warning)
    return grid
