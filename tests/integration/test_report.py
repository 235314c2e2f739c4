"""`make report` end to end: states from the API double (two list calls), from build/local-state.json, or
from the plan alone; the page opened in a real headless Chromium (rendered colours, search, no injection)."""
import html.parser
import json
import os
import time

import pytest
from browser import Chromium, chromium_path

# 2 lr x 3 seed x 2 wd = 12 cells; `note` carries markup that must stay text everywhere.
PAYLOAD = "<img src=x onerror=window.pwned=1>"
LAUNCH = f"""\
    model:
      train:
        command: python src/train.py --lr <lr> --seed <seed>
        hparam:
          lr: [0.1, 0.01]
          seed: [1, 2, 3]
          wd: [0, 0.5]
          note: ['{PAYLOAD}']
"""
needs_chromium = pytest.mark.skipif(not chromium_path(), reason="chromium is not installed (apt-get install chromium)")


@pytest.fixture
def sweep(project, kubeconfig, kube_api):
    project.launch_yaml(LAUNCH)
    return kube_api


def names(make):
    done = make("local-dryrun")
    assert done.returncode == 0, done.stderr
    return [line.split(":", 1)[0] for line in done.stdout.splitlines()]


class Cells(html.parser.HTMLParser):
    """name -> (state, title) of every cell of a report, read as a browser's parser reads it."""

    def __init__(self, text):
        super().__init__()
        self.cells = {}
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "div" and "data-name" in attrs:
            self.cells[attrs["data-name"]] = (attrs["data-state"], attrs.get("title", ""))


def report_cells(project):
    return Cells(project.read("build/report.html")).cells


def shape_the_cluster(kube_api, cells):
    """One cell per state, with a GPU node, a scheduler message and a failure reason full of markup."""
    pods = {name: kube_api.job_pod(name)["metadata"]["name"] for name in cells[:5]}
    kube_api.set_pod_unschedulable(pods[cells[0]])
    kube_api.set_pod_unschedulable(pods[cells[1]])
    kube_api.mark_job_running(cells[2])
    kube_api.set_pod_node(pods[cells[2]], "gpu-node-7")
    kube_api.mark_job_failed(cells[3], exit_code=137, pod_reason="OOMKilled")
    kube_api.mark_job_failed(cells[4], exit_code=1, pod_reason=f"Error{PAYLOAD}")
    for name in cells[5:11]:
        kube_api.mark_job_succeeded(name)


def test_report_from_the_cluster_reads_two_lists_and_shows_every_state(sweep, make, project):
    cells = names(make)
    assert make("job").returncode == 0
    kube_api = sweep
    kube_api.delete("Job", cells[11])
    shape_the_cluster(kube_api, cells)
    kube_api.clear_requests()
    done = make("report")
    assert done.returncode == 0, done.stderr
    assert "Cluster: namespace ns, user alice" in done.stdout and "build/report.html" in done.stdout
    assert "(states from the cluster; from=local, from=plan chooses another source)" in done.stdout
    assert kube_api.count("list", "Job") == 1 and kube_api.count("list", "Pod") == 1
    assert kube_api.count("get") == 0
    found = report_cells(project)
    assert [found[name][0] for name in cells] == (["pending"] * 2 + ["running", "failed", "failed"]
                                                   + ["succeeded"] * 6 + ["not submitted"])
    assert "Insufficient nvidia.com/gpu" in found[cells[0]][1]
    assert "OOMKilled (exit code 137)" in found[cells[3]][1]
    assert f"Error{PAYLOAD} (exit code 1)" in found[cells[4]][1]  # text, as the parser returns it unescaped
    text = project.read("build/report.html")
    assert PAYLOAD not in text and "<img" not in text


@needs_chromium
def test_report_in_a_real_browser_colours_cells_and_searches(sweep, make, project, tmp_path):
    cells = names(make)
    assert make("job").returncode == 0
    shape_the_cluster(sweep, cells)
    assert make("report").returncode == 0
    with Chromium(tmp_path) as browser:
        browser.open(project.path / "build" / "report.html")
        assert browser.evaluate("window.pwned === undefined && document.querySelectorAll('img').length === 0")
        colour = "getComputedStyle(document.querySelector('[data-name=\"%s\"]')).backgroundColor"
        assert browser.evaluate(colour % cells[5]) == "rgb(211, 249, 216)"   # succeeded: green
        assert browser.evaluate(colour % cells[3]) == "rgb(255, 227, 227)"   # failed: red
        assert browser.evaluate(colour % cells[0]) == "rgb(255, 243, 191)"   # pending: amber
        assert browser.evaluate(colour % cells[2]) == "rgb(208, 235, 255)"   # running: blue
        assert browser.evaluate("document.querySelectorAll('figure.t').length") == 2  # wd=0, wd=0.5
        assert browser.evaluate("document.getElementById('hits').textContent") == "12 cells"
        browser.type_into("#q", cells[3][-10:])
        assert browser.evaluate("document.getElementById('hits').textContent") == "1 of 12 cells match"
        assert browser.evaluate("[...document.querySelectorAll('.c.hit')].map(c => c.dataset.name)") == [cells[3]]
        assert browser.evaluate("document.querySelectorAll('.c.miss').length") == 11
        assert browser.evaluate("document.querySelectorAll('figure.t.none').length") == 1  # no match in it
        browser.type_into("#q", "oomkilled")
        assert browser.evaluate("document.getElementById('hits').textContent") == "1 of 12 cells match"
        browser.evaluate("document.getElementById('q').value = ''")
        browser.evaluate("document.querySelector('.legend button[data-state=\"failed\"]').click()")
        assert browser.evaluate("document.getElementById('hits').textContent") == "2 of 12 cells match"
        shot = browser.screenshot(tmp_path / "report.png")
    data = shot.read_bytes()
    assert data.startswith(b"\x89PNG\r\n\x1a\n") and len(data) > 10_000


def test_report_without_a_cluster_shows_the_plan(project, make, tmp_path):
    project.launch_yaml(LAUNCH)
    env = {"KUBECONFIG": str(tmp_path / "no-such-kubeconfig")}
    assert make("dryrun", env=env).returncode == 0
    done = make("report", env=env)
    assert done.returncode == 0, done.stderr
    assert "the cluster is not used: kubeconfig: no kubeconfig at" in done.stderr
    assert "The plan only: nothing submitted" in done.stdout
    assert {state for state, _ in report_cells(project).values()} == {"not submitted"}
    assert len(report_cells(project)) == 12


def test_report_from_plan_never_contacts_the_cluster(sweep, make, project):
    sweep.clear_requests()
    done = make("report", "from=plan")
    assert done.returncode == 0, done.stderr
    assert sweep.count() == 0 and "chooses another source" not in done.stdout


def local_state(cells, updated):
    return {"version": 1, "updated": updated, "grid": {}, "cells": {
        cells[0]: {"model": "train", "dataset": "", "hparams": {"lr": "0.1"}, "state": "succeeded", "exit_code": 0,
                   "started": updated - 60, "seconds": 42.0, "log": "logs/a.log", "gpus": [0]},
        cells[1]: {"model": "train", "dataset": "", "hparams": {}, "state": "failed", "exit_code": 3,
                   "started": updated - 30, "seconds": 3.0, "log": f"logs/{PAYLOAD}.log", "gpus": []},
        cells[2]: {"state": "running", "started": updated - 5, "seconds": None, "gpus": [1]},
        cells[3]: {"state": "interrupted", "exit_code": None, "seconds": 9.0}}}


def test_report_of_local_runs_and_the_newest_source_wins(sweep, make, project):
    cells = names(make)
    project.write("build/local-state.json", json.dumps(local_state(cells, time.time() - 3600)))
    done = make("report")  # nothing in the cluster yet: the local runs
    assert done.returncode == 0, done.stderr
    assert "Local runs: build/local-state.json, updated 1h00m ago" in done.stdout
    found = report_cells(project)
    assert [found[name][0] for name in cells[:5]] == ["succeeded", "failed", "running", "interrupted", "not run"]
    assert "exit code 3" in found[cells[1]][1]
    assert make("job").returncode == 0  # the jobs are newer than the local runs of an hour ago
    assert "Cluster: namespace ns" in make("report").stdout
    project.write("build/local-state.json", json.dumps(local_state(cells, time.time() + 1)))
    assert "Local runs" in make("report").stdout  # a local run after the jobs
    assert "Cluster: namespace ns" in make("report", "from=cluster").stdout


def test_report_of_a_real_local_run(project, make):
    project.launch_yaml("""\
        model:
          m:
            command: python3 -c "import sys; sys.exit(<code>)"
            hparam:
              code: [0, 3]
    """)
    make("local")
    if not (project.path / "build" / "local-state.json").exists():
        pytest.skip("make local does not write build/local-state.json yet")
    done = make("report", "from=local")
    assert done.returncode == 0, done.stderr
    assert sorted(state for state, _ in report_cells(project).values()) == ["failed", "succeeded"]


def test_report_refuses_an_unknown_source_and_a_missing_local_state(project, make):
    project.launch_yaml(LAUNCH)
    bad = make("report", "from=clutser")
    assert bad.returncode == 2 and "error: from=clutser: not a source of the report" in bad.stderr
    assert "valid: cluster, local, plan" in bad.stderr
    missing = make("report", "from=local")
    assert missing.returncode != 0 and "error: build/local-state.json: no state of local runs here" in missing.stderr
    assert not os.path.exists(project.path / "build" / "report.html")
    assert "Traceback" not in bad.stderr + missing.stderr
