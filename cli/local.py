"""`make local`, `local-first`, `local-dryrun`, `plan` and `schema`: the grid on this machine.

These commands never touch the cluster, so cluster-only problems of kube.yaml are warnings here
(load_grid(strict=False)); the dry run and the plan stream the cells, so their memory does not grow with
the grid.
"""
import itertools
import os
import sys

from toolbox.cli.common import load_grid
from toolbox.core import grid as gridmod
from toolbox.core.console import column_widths, number_text, plural, table_line
from toolbox.core.fields import SCHEMA_DIR, ignores_gpu_lists
from toolbox.local.runner import run_cells

PLAN_HEADERS = ["NAME", "MODEL", "DATASET", "HPARAMS", "RESOURCES"]
# The plan's columns are sized from this many rows; a longer grid streams (wider later rows shift right).
PLAN_SIZED_ROWS = 10_000
CHUNK = 2_000   # lines written at once by the streaming commands


def cmd_local(args):
    grid = load_grid(args, strict=False)
    return run_cells(grid.cells, args.jobs, args.gpus, args.gpus_per_run, bool(args.fail_fast),
                     gridmod.in_cluster(), args.grace)


def cmd_local_first(args):
    grid = load_grid(args, strict=False, lazy=True)
    return run_cells([grid.first()], 1, args.gpus, None, False, gridmod.in_cluster(), args.grace)


def dryrun_line(cell, in_cluster):
    """`<name>: <command>`; continuation lines of multi-line commands are indented."""
    return f"{cell.name}: {cell.command_for(in_cluster).replace(chr(10), chr(10) + '    ')}\n"


def _write_chunks(lines):
    for chunk in iter(lambda: "".join(itertools.islice(lines, CHUNK)), ""):
        sys.stdout.write(chunk)
    sys.stdout.flush()


def cmd_local_dryrun(args):
    grid = load_grid(args, strict=False, lazy=True)
    in_cluster = gridmod.in_cluster()
    _write_chunks(dryrun_line(cell, in_cluster) for cell in grid)
    return 0


def resources(settings):
    """What a cell requests, for the plan: '1 a100, 5 CPU, 32 GB' (and ' x 2 nodes' for a multi-node cell)."""
    gpu = settings.get("gpu_count") or 0
    gpu_text = f"{gpu} {settings.get('special_gpu')}" if gpu and settings.get("special_gpu") else f"{gpu} GPU"
    text = f"{gpu_text}, {number_text(settings.get('cpu_count'))} CPU, {number_text(settings.get('memory'))} GB"
    nodes = settings.get("nodes") or 1
    return f"{text} x {nodes} nodes" if nodes > 1 else text


def plan_row(cell):
    return [cell.name, cell.model, cell.dataset or "-",
            " ".join(f"{k}={v}" for k, v in cell.visible_hparams) or "-", resources(cell.settings)]


def plan_lines(cells):
    """The plan table line by line: columns sized from the first PLAN_SIZED_ROWS rows."""
    rows = (plan_row(c) for c in cells)
    first = list(itertools.islice(rows, PLAN_SIZED_ROWS))
    widths = column_widths(PLAN_HEADERS, first)
    yield table_line(PLAN_HEADERS, widths) + "\n"
    yield table_line(["-" * w for w in widths], widths) + "\n"
    for row in itertools.chain(first, rows):
        yield table_line(row, widths) + "\n"


def project_lines(config):
    """Where each project-wide value comes from (launch.yaml's root wins over kube.yaml)."""
    rows = []
    for key, value, where, shadowed in config.project_origins():
        note = f" (over {shadowed[0]!r} at {shadowed[1]})" if shadowed else ""
        rows.append([key, str(value), where + note])
    if not rows:
        return ""
    return "\nProject-wide settings:\n" + "\n".join("  " + table_line(r, column_widths(["", "", ""], rows))
                                                    for r in rows) + "\n"


def _counting_special_gpu(cells, counter):
    """The cells, counting those whose GPU product lists do not apply (special_gpu) as they stream by."""
    for cell in cells:
        counter[0] += ignores_gpu_lists(cell.settings)
        yield cell


def cmd_plan(args):
    grid = load_grid(args, strict=False, lazy=True)
    special = [0]
    _write_chunks(plan_lines(_counting_special_gpu(grid, special)))
    print(f"\n{plural(grid.count, 'cell')}")
    if special[0]:  # once, not per cell
        one = special[0] == 1
        print(f"note: {special[0]} cell{'' if one else 's'} use{'s' if one else ''} special_gpu: gpu_whitelist/"
              f"gpu_blacklist do not apply to {'it' if one else 'them'} (nvidia.com/<special_gpu> already picks "
              "the GPU)")
    sys.stdout.write(project_lines(grid.config))
    return 0


def cmd_schema(args):
    """`make schema`: print the modelines that enable completion and checking in editors."""
    toolbox_rel = os.path.relpath(SCHEMA_DIR, os.path.abspath("config"))
    print("Add the first line to each file (YAML language server, e.g. the VS Code YAML extension):")
    for config, schema in (("config/launch.yaml", "launch.schema.json"), ("config/kube.yaml", "kube.schema.json")):
        print(f"  {config}:  # yaml-language-server: $schema={toolbox_rel}/{schema}")
    return 0
