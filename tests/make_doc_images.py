#!/usr/bin/env python3
"""Regenerate the pictures of docs/status-and-report.md from a real run (not part of the tests):

    .venv/bin/python tests/make_doc_images.py

A 48-cell sweep is submitted with `make job` to the Kubernetes API double (tests/doubles/kube_api), whose
hooks then move the cells through their states. `make report` writes the page that headless Chromium
photographs (report.png); `make status watch=1` runs in a tmux window whose screen, colours included,
is drawn as HTML and photographed the same way (status-watch.png). Needs chromium and tmux.
"""
import datetime
import html
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
HERE = ROOT / "docs" / "images"
sys.path.insert(0, str(ROOT / "tests"))

from browser import Chromium
from doubles.kube_api import KubeDouble
from doubles.kube_api.api import JOBS, PODS

KUBE = "project_name: vision\nuser: alice\nnamespace: ns\ngpu_count: 1\nspecial_gpu: a100\n"
LAUNCH = """\
dataset:
  cifar10: {}
model:
  resnet50:
    command: python src/train.py --model resnet50 --lr <lr> --batch <batch> --seed <seed>
    hparam: {lr: [0.1, 0.03, 0.01, 0.003], batch: [64, 128, 256], seed: [1, 2]}
  vit-small:
    command: python src/train.py --model vit-small --lr <lr> --batch <batch> --seed <seed>
    hparam: {lr: [0.001, 0.0003, 0.0001, 0.00003], batch: [64, 128, 256], seed: [1, 2]}
"""
NODES = ["gpu-a100-01", "gpu-a100-02", "gpu-a100-03", "gpu-a100-04"]
SGR = {"31": "#ff6b6b", "32": "#51cf66", "33": "#fcc419", "35": "#cc5de8", "36": "#4dabf7", "2": "#868e96"}


def project(base):
    path = Path(base) / "vision"
    (path / "src").mkdir(parents=True)
    (path / "config").mkdir()
    os.symlink(ROOT, path / "src" / "toolbox")
    os.symlink("src/toolbox/Makefile", path / "Makefile")
    os.symlink("src/toolbox/launch.py", path / "launch.py")
    (path / "config" / "kube.yaml").write_text(KUBE)
    (path / "config" / "launch.yaml").write_text(LAUNCH)
    return path


def stamp(seconds_ago):
    moment = datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(seconds=seconds_ago)
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def ran(kube, job, pod, minutes):
    """Give a finished or running cell believable start and end times."""
    def on_pod(obj):
        for container in obj["status"].get("containerStatuses") or []:
            state = container["state"].get("terminated") or container["state"].get("running") or {}
            state["startedAt"] = stamp(minutes * 60 + 30)
            if "finishedAt" in state:
                state["finishedAt"] = stamp(30)
    kube.api.update_object(PODS, "ns", pod, on_pod)
    kube.api.update_object(JOBS, "ns", job, lambda obj: obj["status"].update(startTime=stamp(minutes * 60 + 60)))


def move(kube, names, index):
    """The sweep an hour in: most cells done, a few running or failed, the rest waiting for GPUs."""
    name = names[index]
    pod = kube.job_pod(name)["metadata"]["name"]
    kind = index % 8 if index < 40 else 8
    if kind in (0, 2, 3, 5, 6):
        kube.set_pod_node(pod, NODES[index % 4])
        kube.mark_job_succeeded(name)
        ran(kube, name, pod, 20 + index % 17)
    elif kind in (1, 4) and index < 24:
        kube.set_pod_node(pod, NODES[index % 4])
        kube.mark_job_running(name)
        ran(kube, name, pod, 5 + index % 11)
    elif kind == 7 and index % 3 == 0:
        kube.set_pod_node(pod, NODES[index % 4])
        kube.mark_job_failed(name, exit_code=137, pod_reason="OOMKilled")
        ran(kube, name, pod, 3)
    elif kind == 7:
        kube.set_pod_node(pod, NODES[index % 4])
        kube.mark_job_failed(name, exit_code=1)
        ran(kube, name, pod, 1)
    elif index % 11 == 0:
        kube.set_pod_node(pod, NODES[index % 4])
        kube.set_container_state(pod, "waiting", reason="ImagePullBackOff", message="Back-off pulling image",
                                 phase="Pending")
    else:
        kube.set_pod_unschedulable(pod, message="0/212 nodes are available: 38 Insufficient nvidia.com/a100, "
                                   "174 node(s) didn't match Pod's node affinity/selector. preemption: ...")


def terminal_page(screen):
    """A tmux screen with its colour codes (capture-pane -e) as an HTML page that looks like a terminal."""
    out, colour = [], None
    for part in re.split(r"(\x1b\[[0-9;]*m)", screen):
        code = re.fullmatch(r"\x1b\[([0-9;]*)m", part)
        if code:
            codes = [c for c in code.group(1).split(";") if c]
            colour = next((SGR[c] for c in codes if c in SGR), None) if codes and codes != ["0"] else None
            continue
        text = html.escape(part)
        out.append(f'<span style="color:{colour}">{text}</span>' if colour else text)
    return ("<!DOCTYPE html><html><body style=\"margin:0;background:#1e1e1e\"><pre style=\"margin:0;padding:14px;"
            "color:#e9ecef;font:14px/1.35 'DejaVu Sans Mono',monospace\">" + "".join(out) + "</pre></body></html>")


def main():
    with tempfile.TemporaryDirectory(prefix="toolbox-images-") as tmp, KubeDouble() as kube:
        path = project(tmp)
        env = dict(os.environ, KUBECONFIG=kube.write_kubeconfig(Path(tmp) / "kubeconfig"), PYTHON=sys.executable,
                   TERM="xterm-256color")
        subprocess.run(["make", "job"], cwd=path, env=env, check=True, capture_output=True)
        names = subprocess.run(["make", "local-dryrun"], cwd=path, env=env, check=True, capture_output=True,
                               text=True).stdout.splitlines()
        names = [line.split(":", 1)[0] for line in names]
        for name in names[44:]:
            kube.delete("Job", name)
        socket = str(Path(tmp) / "tmux.sock")
        subprocess.run(["tmux", "-S", socket, "-f", "/dev/null", "new-session", "-d", "-s", "w", "-x", "104",
                        "-y", "26", f"cd {path} && make status watch=1; sleep 60"], env=env, check=True)
        time.sleep(2)
        for index in range(44):
            move(kube, names, index)
            time.sleep(0.05)
        time.sleep(1.5)
        screen = subprocess.run(["tmux", "-S", socket, "capture-pane", "-p", "-e", "-t", "w"], capture_output=True,
                                text=True, check=True).stdout
        subprocess.run(["tmux", "-S", socket, "kill-server"], check=False)
        subprocess.run(["make", "report"], cwd=path, env=env, check=True, capture_output=True)
        (Path(tmp) / "watch.html").write_text(terminal_page(screen.rstrip("\n")))
        with Chromium(tmp, width=1180, height=600) as browser:
            browser.open(path / "build" / "report.html")
            browser.screenshot(HERE / "report.png")
        with Chromium(Path(tmp) / "second", width=900, height=420) as browser:
            browser.open(Path(tmp) / "watch.html")
            browser.screenshot(HERE / "status-watch.png")
        print(re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", screen))
    print(f"wrote {HERE / 'report.png'} and {HERE / 'status-watch.png'}")


if __name__ == "__main__":
    sys.exit(main())
