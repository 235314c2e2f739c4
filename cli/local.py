"""`make local`, `local-first`, `local-dryrun`, `plan` and `schema`: the grid on this machine."""
import os
import sys

from toolbox.cli.common import load_grid
from toolbox.core import grid as gridmod
from toolbox.core.console import format_table
from toolbox.core.fields import SCHEMA_DIR
from toolbox.local.runner import run_cells


def cmd_local(args):
    grid = load_grid(args)
    return run_cells(grid.cells, args.jobs, args.gpus, args.gpus_per_run, bool(args.fail_fast),
                     gridmod.in_cluster())


def cmd_local_first(args):
    grid = load_grid(args)
    return run_cells(grid.cells[:1], 1, args.gpus, None, False, gridmod.in_cluster())


def dryrun_lines(cells, in_cluster):
    """`<name>: <command>` per cell; continuation lines of multi-line commands are indented."""
    return "".join(f"{c.name}: {c.command_for(in_cluster).replace(chr(10), chr(10) + '    ')}\n" for c in cells)


def cmd_local_dryrun(args):
    grid = load_grid(args)
    sys.stdout.write(dryrun_lines(grid.cells, gridmod.in_cluster()))
    sys.stdout.flush()
    return 0


def resources(settings):
    """What a cell requests, for the plan: '1 a100, 5 CPU, 32 GB'."""
    gpu = settings.get("gpu_count") or 0
    gpu_text = f"{gpu} {settings.get('special_gpu')}" if gpu and settings.get("special_gpu") else f"{gpu} GPU"
    return f"{gpu_text}, {_num(settings.get('cpu_count'))} CPU, {_num(settings.get('memory'))} GB"


def _num(value):
    return f"{value:g}" if isinstance(value, float) else str(value)


def plan_table(cells):
    rows = [[c.name, c.model, c.dataset or "-", " ".join(f"{k}={v}" for k, v in c.visible_hparams) or "-",
             resources(c.settings)] for c in cells]
    return format_table(["NAME", "MODEL", "DATASET", "HPARAMS", "RESOURCES"], rows)


def cmd_plan(args):
    grid = load_grid(args)
    print(plan_table(grid.cells))
    print(f"\n{len(grid.cells)} cell{'s' if len(grid.cells) != 1 else ''}")
    return 0


def cmd_schema(args):
    """`make schema`: print the modelines that enable completion and checking in editors."""
    toolbox_rel = os.path.relpath(SCHEMA_DIR, os.path.abspath("config"))
    print("Add the first line to each file (YAML language server, e.g. the VS Code YAML extension):")
    for config, schema in (("config/launch.yaml", "launch.schema.json"), ("config/kube.yaml", "kube.schema.json")):
        print(f"  {config}:  # yaml-language-server: $schema={toolbox_rel}/{schema}")
    return 0


