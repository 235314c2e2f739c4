"""Benchmark of the grid engine and local runs (issue: foundation). Prints one table; asserts nothing.

    .venv/bin/python bench/plan.py [--quick]   (--quick: without the memory rows, which take minutes)

Measures, in a temporary project laid out like a user's:
- `make local-dryrun` end to end on a 10,000-cell grid (1 model x 10 datasets x 10 x 10 x 10 hparams)
- expansion + naming alone (cells per second, best of 5)
- `make help`
- `make local jobs=4` on 8 cells of `sleep 1`
- peak memory (RSS) and time of `make plan` and `make local-dryrun` on 10^4, 10^5 and 10^6 cells: the cells
  are streamed, so memory should stay flat as the grid grows
"""
import importlib.util
import os
import statistics
import subprocess
import sys
import tempfile
import time

from common import TOOLBOX, make_project, peak_rss

LAUNCH_10K = """\
model:
  transformer:
    command: python src/train.py --data <path> --lr <lr> --wd <weight_decay> --seed <seed>
    hparam:
      lr: [0.1, 0.05, 0.01, 0.005, 0.001, 0.0005, 0.0001, 5e-5, 1e-5, 5e-6]
      weight_decay: [0.0, 0.01, 0.02, 0.03, 0.04, 0.05, 0.06, 0.07, 0.08, 0.09]
      seed: [0, 1, 2, 3, 4, 5, 6, 7, 8, 9]
dataset:
""" + "".join(f"  ds{i}:\n    hparam: {{_path: data/ds{i}}}\n" for i in range(10))

def launch_of(extra_axes):
    """The 10,000-cell grid times 10 per extra axis."""
    axes = "".join(f"      extra{i}: [{', '.join(str(v) for v in range(10))}]\n" for i in range(extra_axes))
    return LAUNCH_10K.replace("      seed: [0, 1, 2, 3, 4, 5, 6, 7, 8, 9]\n",
                              "      seed: [0, 1, 2, 3, 4, 5, 6, 7, 8, 9]\n" + axes)


def memory_rows(tmp, py):
    rows = []
    for extra, label in ((0, "10^4"), (1, "10^5"), (2, "10^6")):
        root = os.path.join(tmp, f"grid{extra}")
        make_project(root, launch_of(extra))
        for target in ("plan", "local-dryrun"):
            seconds, rss = peak_rss(["make", target, py, "max_cells=1000000"], root)
            rows.append((f"make {target}, {label} cells: peak RSS", "flat", f"{rss:.0f} MiB", f"{seconds:.1f} s"))
    return rows


LAUNCH_SLEEP = "model:\n  nap:\n    command: sleep 1\n    hparam: {i: [1, 2, 3, 4, 5, 6, 7, 8]}\n"


def timed(cmd, cwd, repeat=5):
    """Median wall time of a command (output discarded)."""
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        subprocess.run(cmd, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def expansion_rate(root):
    """Cells per second of load_config + expand, in this process (best of 5)."""
    spec = importlib.util.spec_from_file_location("_bootstrap", os.path.join(TOOLBOX, "launch.py"))
    bootstrap = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bootstrap)
    bootstrap._register_toolbox_package()
    from toolbox.core.config import load_config
    from toolbox.core.grid import expand

    config = load_config(root)
    best = float("inf")
    for _ in range(5):
        start = time.perf_counter()
        cells = expand(config).cells
        best = min(best, time.perf_counter() - start)
    return len(cells) / best


def main():
    # Measure commands as users run them, with Python's bytecode cache (this machine's sessions set
    # PYTHONDONTWRITEBYTECODE=1, which recompiles every module of every command).
    os.environ.pop("PYTHONDONTWRITEBYTECODE", None)
    py = f"PYTHON={sys.executable}"
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        big = os.path.join(tmp, "big")
        make_project(big, LAUNCH_10K)
        lines = subprocess.run(["make", "local-dryrun", py], cwd=big, capture_output=True, text=True).stdout
        assert lines.count("\n") == 10000, "the grid should have 10,000 cells"
        dryrun = timed(["make", "local-dryrun", py], big)
        rows.append(("make local-dryrun, 10,000 cells", "<= 0.5 s", f"{dryrun:.3f} s", f"{1.2 / dryrun:.1f}x faster than the original (1.2 s)"))
        rate = expansion_rate(big)
        rows.append(("expansion + naming", ">= 50,000 cells/s", f"{rate:,.0f} cells/s", f"{rate / 50000:.2f}x target"))
        helptime = timed(["make", "help"], big, repeat=20)
        rows.append(("make help", "< 0.1 s", f"{helptime * 1000:.1f} ms", f"{0.1 / helptime:.0f}x under target"))
        naps = os.path.join(tmp, "naps")
        make_project(naps, LAUNCH_SLEEP)
        parallel = timed(["make", "local", "jobs=4", py], naps, repeat=3)
        rows.append(("make local jobs=4, 8 x sleep 1", "<= 2.3 s", f"{parallel:.2f} s", f"{8 / parallel:.1f}x vs serial (8 s)"))
        if "--quick" not in sys.argv:
            rows.extend(memory_rows(tmp, py))
    widths = [max(len(r[i]) for r in rows + [("MEASURE", "TARGET", "MEASURED", "RATIO")]) for i in range(4)]
    for row in [("MEASURE", "TARGET", "MEASURED", "RATIO"), tuple("-" * w for w in widths)] + rows:
        print("  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip())


if __name__ == "__main__":
    main()
