"""The sweep as data and its views, without a cluster: cell states and reasons from Job/Pod objects
(kube/sweep.py), the live frame and plain lines (report/terminal.py), the grid layout and the HTML page
(report/layout.py, report/html.py), and the records of the plan and of local runs (report/sources.py)."""
import html.parser
import json
import re

import pytest
from toolbox.core.grid import Cell
from toolbox.errors import ToolboxError
from toolbox.kube.sweep import Sweep, cell_record, cell_state, scheduler_reasons
from toolbox.local.state import STATES
from toolbox.report import html as page
from toolbox.report.layout import blocks
from toolbox.report.sources import local_records, plan_records, read_local_state
from toolbox.report.summary import progress, reason_groups, state_counts
from toolbox.report.terminal import bar, frame, plain_line

GPU_MESSAGE = ("0/5 nodes are available: 5 Insufficient nvidia.com/gpu. preemption: 0/5 nodes are available: "
               "5 No preemption victims found for incoming pod.")
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


def cell(name, model="m", dataset="d", **hparams):
    return Cell(0, name, model, dataset, tuple((k, str(v)) for k, v in hparams.items()), "run", "run", {})


def job(name, active=0, succeeded=0, failed_reason=None, start="2024-05-01T10:00:00Z", end=None):
    status = {"startTime": start}
    if active:
        status["active"] = active
    if succeeded:
        status.update(succeeded=1, completionTime=end,
                      conditions=[{"type": "Complete", "status": "True"}])
    if failed_reason:
        status.update(failed=1, conditions=[{"type": "Failed", "status": "True", "reason": failed_reason,
                                             "message": "Job was active longer than specified deadline"}])
    return {"metadata": {"name": name, "creationTimestamp": start}, "spec": {"backoffLimit": 0}, "status": status}


def pod(job_name, phase="Pending", node=None, unschedulable=None, waiting=None, terminated=None, running_since=None,
        suffix="x1"):
    container = {"name": "main", "state": {}}
    if waiting:
        container["state"] = {"waiting": {"reason": waiting, "message": f"{waiting} of image"}}
    if terminated:
        container["state"] = {"terminated": terminated}
    if running_since:
        container["state"] = {"running": {"startedAt": running_since}}
    status = {"phase": phase, "containerStatuses": [container]}
    if unschedulable:
        status["conditions"] = [{"type": "PodScheduled", "status": "False", "reason": "Unschedulable",
                                 "message": unschedulable}]
    spec = {"containers": [{"name": "main", "resources": {"requests": {"nvidia.com/gpu": "1"}}}]}
    if node:
        spec["nodeName"] = node
    return {"metadata": {"name": f"{job_name}-{suffix}", "labels": {"job-name": job_name},
                         "creationTimestamp": "2024-05-01T10:00:01Z"}, "spec": spec, "status": status}


# -- states and reasons ---------------------------------------------------------------------------------------
def test_cell_state_counts_an_active_job_with_a_pending_pod_as_pending():
    assert cell_state(None, None) == "not submitted"
    assert cell_state(job("a", active=1), pod("a")) == "pending"
    assert cell_state(job("a", active=1), None) == "pending"
    assert cell_state(job("a", active=1), pod("a", "Running", node="n1")) == "running"
    assert cell_state(job("a", succeeded=1, end="2024-05-01T10:05:00Z"), pod("a", "Succeeded")) == "succeeded"
    assert cell_state(job("a", failed_reason="DeadlineExceeded"), pod("a", "Failed")) == "failed"


def test_scheduler_messages_lose_their_node_counts_so_cells_group():
    assert scheduler_reasons(GPU_MESSAGE) == "Insufficient nvidia.com/gpu"
    two = ("0/197 nodes are available: 12 Insufficient nvidia.com/gpu, 185 node(s) didn't match Pod's node "
           "affinity/selector. preemption: 0/197 nodes are available: 197 Preemption is not helpful.")
    assert scheduler_reasons(two) == "Insufficient nvidia.com/gpu, node(s) didn't match Pod's node affinity/selector"
    assert scheduler_reasons("persistentvolumeclaim \"data\" not found") is None


def test_records_carry_reason_node_gpu_and_duration():
    c = cell("a", lr="0.1")
    stuck = cell_record(c, job("a", active=1), pod("a", unschedulable=GPU_MESSAGE))
    assert (stuck["state"], stuck["reason"]) == ("pending", "Insufficient nvidia.com/gpu")
    assert "0/5 nodes are available" in stuck["detail"]
    pulling = cell_record(c, job("a", active=1), pod("a", node="n1", waiting="ImagePullBackOff"))
    assert pulling["reason"] == "ImagePullBackOff"
    oom = {"exitCode": 137, "reason": "OOMKilled", "startedAt": "2024-05-01T10:01:00Z",
           "finishedAt": "2024-05-01T10:04:30Z"}
    failed = cell_record(c, job("a", failed_reason="BackoffLimitExceeded"), pod("a", "Failed", "n7", terminated=oom),
                         {"n7": "NVIDIA-A100"})
    assert (failed["state"], failed["reason"]) == ("failed", "OOMKilled (exit code 137)")
    assert (failed["node"], failed["gpu"], failed["seconds"]) == ("n7", "NVIDIA-A100", 210.0)
    deadline = cell_record(c, job("a", failed_reason="DeadlineExceeded"), None)
    assert deadline["reason"] == "DeadlineExceeded"
    assert cell_record(c, None, None)["state"] == "not submitted"


def test_sweep_follows_events_and_records_changes_but_not_the_first_list():
    clock = iter(range(100, 200))
    cells = [cell("a", lr=1), cell("b", lr=2), cell("c", lr=3)]
    sweep = Sweep(cells, jobs=[job("a", active=1), job("b", active=1), job("other-sweep", active=1)],
                  pods=[pod("a"), pod("b"), pod("other-sweep")], clock=lambda: next(clock))
    assert [r["state"] for r in sweep.ordered()] == ["pending", "pending", "not submitted"]
    assert not sweep.changes
    assert sweep.apply("Pod", "MODIFIED", pod("b", unschedulable=GPU_MESSAGE)) == ["b"]  # a new reason
    assert not sweep.changes
    assert sweep.apply("Pod", "MODIFIED", pod("a", "Running", node="n1")) == ["a"]
    assert sweep.apply("Pod", "MODIFIED", pod("other-sweep", "Running", node="n1")) == []
    assert sweep.apply("Job", "ADDED", job("c", active=1)) == ["c"]
    assert sweep.apply("Job", "DELETED", job("b", active=1)) == ["b"]
    assert [(name, old, new) for _, name, old, new in sweep.changes] == [
        ("a", "pending", "running"), ("c", "not submitted", "pending"), ("b", "pending", "not submitted")]
    # a failed Job seen before its pod's exit status: the reason follows
    assert sweep.apply("Job", "MODIFIED", job("c", failed_reason="BackoffLimitExceeded")) == ["c"]
    oom = {"exitCode": 137, "reason": "OOMKilled"}
    assert sweep.apply("Pod", "ADDED", pod("c", "Failed", node="n1", terminated=oom)) == ["c"]
    assert sweep.records["c"]["reason"] == "OOMKilled (exit code 137)"
    assert not sweep.finished()
    # a relist replaces what the watch had: objects missing from it are gone
    sweep.reset("Job", [job("a", succeeded=1, end="2024-05-01T11:00:00Z"), job("c", failed_reason="X")])
    sweep.reset("Pod", [])
    assert [r["state"] for r in sweep.ordered()] == ["succeeded", "not submitted", "failed"]


def test_cells_packed_in_one_job_share_its_state():
    cells = [cell("a"), cell("b")]
    sweep = Sweep(cells, {"a": "pack", "b": "pack"}, jobs=[job("pack", active=1)])
    sweep.apply("Pod", "ADDED", pod("pack", "Running", node="n1"))
    assert [(r["state"], r["job"]) for r in sweep.ordered()] == [("running", "pack"), ("running", "pack")]


# -- the terminal view -----------------------------------------------------------------------------------------
def records(*states, reason=""):
    return [{"name": f"cell-{i}", "model": "m", "dataset": "d", "hparams": {"i": str(i)}, "state": s,
             "reason": reason if s in ("pending", "failed") else ""} for i, s in enumerate(states)]


def test_frame_counts_progress_and_grouped_pending_reasons():
    recs = records("succeeded", "failed", "running", "not submitted")
    recs += records(*["pending"] * 12, reason="Insufficient nvidia.com/gpu")
    recs[-1]["reason"] = "ImagePullBackOff"
    changes = [(1000.0, "cell-0", "running", "succeeded")]
    lines = frame(recs, "Sweep demo", changes, width=80, height=30, colour=False, now=1005.0)
    text = "\n".join(lines)
    assert "2/16 done, 1 failed" in text
    assert "1 succeeded  1 failed  1 running  12 pending  1 not submitted" in text
    assert "11 cells: Insufficient nvidia.com/gpu" in text and "1 cell: ImagePullBackOff" in text
    assert "running → succeeded  cell-0" in text and "(5.0s ago)" in text
    assert all(len(line) <= 80 for line in lines) and not ANSI.search(text)


def test_frame_fits_a_small_terminal_and_colours_only_when_asked():
    recs = records(*["pending"] * 40, reason="r")
    for i, record in enumerate(recs):
        record["reason"] = f"reason number {i % 9} " + "x" * 80
    changes = [(1.0, f"cell-{i}", "pending", "running") for i in range(30)]
    lines = frame(recs, "Sweep", changes, width=40, height=12, colour=True, now=2.0)
    assert len(lines) <= 12
    assert all(len(ANSI.sub("", line)) <= 40 for line in lines)
    assert "\x1b[33m" in "".join(lines)  # pending in yellow
    assert lines[-1].startswith("Ctrl-C stops watching")


def test_progress_bar_shows_one_failure_among_many_in_its_own_glyph():
    recs = records(*["succeeded"] * 998, "failed", "running")
    text = bar(recs, 40, colour=False).render(100, False)
    assert text.count("x") == 1 and text.startswith("[###")
    coloured = bar(recs, 40, colour=True).render(100, True)
    assert "\x1b[31m█\x1b[0m" in coloured  # the failed segment in red
    assert progress(recs) == (999, 1, 1000)


def test_plain_line_for_logs():
    recs = records("succeeded", "failed", "running") + records("pending", "pending", reason="Insufficient cpu")
    line = plain_line(recs, now=0)
    assert line.endswith("2/5 done (1 succeeded, 1 failed); 1 running; 2 pending (2 Insufficient cpu)")


# -- layout and the HTML page ----------------------------------------------------------------------------------
def grid_records():
    found = []
    for model in ("resnet", "vit"):
        for lr in ("0.1", "0.01", "0.001"):
            for seed in ("1", "2"):
                for wd in ("0", "0.1"):
                    found.append({"name": f"{model}-{lr}-{seed}-{wd}", "model": model, "dataset": "cifar",
                                  "hparams": {"seed": seed, "lr": lr, "wd": wd, "opt": "adam", "_hidden": seed},
                                  "state": "succeeded"})
    return found


def test_layout_rows_and_columns_are_the_hparams_with_most_values_and_the_rest_split():
    found = blocks(grid_records())
    assert [(b.model, b.dataset) for b in found] == [("resnet", "cifar"), ("vit", "cifar")]
    block = found[0]
    assert (block.row_key, block.column_key, block.split_keys) == ("lr", "seed", ["wd"])
    assert block.fixed == {"opt": "adam"}
    assert [t.caption for t in block.tables] == ["wd=0", "wd=0.1"]
    table = block.tables[1]
    assert (table.rows, table.columns) == (["0.1", "0.01", "0.001"], ["1", "2"])
    assert [r["name"] for r in table.cells[("0.01", "2")]] == ["resnet-0.01-2-0.1"]


class Elements(html.parser.HTMLParser):
    """Tags and attributes of a page, as a browser's parser would see them."""

    def __init__(self, text):
        super().__init__()
        self.tags = []
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))


def test_page_escapes_every_user_text():
    evil = '<script>alert(1)</script>"\'><img src=x onerror=alert(2)>'
    recs = [{"name": f"cell{evil}", "model": f"m{evil}", "dataset": "d", "hparams": {f"k{evil}": f"v{evil}"},
             "state": "failed", "reason": f"why{evil}", "detail": f"detail{evil}", "node": f"n{evil}",
             "gpu": f"g{evil}", "seconds": 5.0}]
    text = page.render(recs, f"Sweep {evil}", f"source {evil}")
    tags = Elements(text).tags
    assert [tag for tag, _ in tags].count("script") == 1 and "img" not in [tag for tag, _ in tags]
    assert not any(name.startswith("on") for _, attrs in tags for name in attrs)
    cells = [attrs for tag, attrs in tags if "c" in (attrs.get("class") or "").split()]
    assert cells[0]["data-name"] == f"cell{evil}" and f"why{evil}" in cells[0]["title"]
    assert "<script>alert" not in text and "<img" not in text


def test_page_is_self_contained_with_a_cell_per_record():
    text = page.render(grid_records(), "Sweep demo", "The plan only")
    tags = Elements(text).tags
    assert not [a for _, a in tags if a.get("src") or a.get("href")]  # nothing loaded from anywhere
    assert sum(1 for tag, a in tags if "c" in (a.get("class") or "").split()) == 24
    assert 'id="q"' in text and "24 of 24 cells done (100%)" in text


# -- records without a cluster ----------------------------------------------------------------------------------
def test_plan_and_local_records(tmp_path):
    cells = [cell("a", lr=1), cell("b", lr=2), cell("c", lr=3)]
    assert {r["state"] for r in plan_records(cells)} == {"not submitted"}
    state = tmp_path / "local-state.json"
    state.write_text(json.dumps({"version": 1, "updated": 1700000000, "grid": {}, "cells": {
        "a": {"model": "m", "dataset": "d", "hparams": {"lr": 1}, "state": "succeeded", "exit_code": 0,
              "started": 1699999000, "seconds": 12.5, "log": "logs/a.log", "gpus": [0]},
        "b": {"state": "failed", "exit_code": 3, "seconds": 1.0, "log": "logs/b.log", "gpus": None},
        "c": {"state": "running", "started": 1700000010, "seconds": None, "gpus": ["2", "3"]},
        "gone": {"state": "succeeded"}}}))
    found = local_records(cells, read_local_state(str(state)), STATES, now=1700000030)
    assert [(r["state"], r["seconds"], r["gpu"]) for r in found] == [
        ("succeeded", 12.5, "GPU 0"), ("failed", 1.0, ""), ("running", 20.0, "GPU 2,3")]
    assert found[1]["reason"] == "exit code 3" and "logs/b.log" in found[1]["detail"]
    assert local_records(cells[:1], {"cells": {}}, STATES)[0]["state"] == "not run"
    assert read_local_state(str(tmp_path / "missing.json")) is None
    state.write_text("{not json")
    with pytest.raises(ToolboxError, match="cannot read the state of local runs"):
        read_local_state(str(state))


def test_state_counts_and_reason_groups_keep_a_fixed_order():
    recs = records("pending", "succeeded", "not run", "failed", reason="b") + records("pending", reason="a")
    assert list(state_counts(recs)) == ["succeeded", "failed", "pending", "not run"]
    assert reason_groups(recs, "pending") == [(1, "a"), (1, "b")]
