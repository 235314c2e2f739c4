"""Pod status as the scheduler and the kubelet would write it, driven by test hooks.

Each function takes a stored pod (a copy the caller may change) and rewrites its status consistently:
phase, conditions, containerStatuses, nodeName and IPs, so that clients reading any of them agree.
"""
import hashlib

from .defaults import now

DEFAULT_NODE = "node-1"


def _condition(type_, status, reason=None, message=None):
    cond = {"type": type_, "status": status, "lastProbeTime": None, "lastTransitionTime": now()}
    if reason:
        cond["reason"] = reason
    if message:
        cond["message"] = message
    return cond


def _set_condition(pod, type_, status, reason=None, message=None):
    conditions = pod["status"].setdefault("conditions", [])
    for index, cond in enumerate(conditions):
        if cond["type"] == type_:
            if (cond["status"], cond.get("reason"), cond.get("message")) != (status, reason, message):
                conditions[index] = _condition(type_, status, reason, message)
            return
    conditions.append(_condition(type_, status, reason, message))


def set_condition(pod, type_, status, reason=None, message=None):
    """Set one pod condition (e.g. DisruptionTarget), keeping its transition time when nothing changes."""
    _set_condition(pod, type_, status, reason, message)


def _container_names(pod):
    return [c["name"] for c in pod.get("spec", {}).get("containers", [])]


def _container_status(pod, name):
    statuses = pod["status"].setdefault("containerStatuses", [])
    for status in statuses:
        if status["name"] == name:
            return status
    image = next((c.get("image", "") for c in pod["spec"].get("containers", []) if c["name"] == name), "")
    status = {"name": name, "image": image, "imageID": "", "ready": False, "restartCount": 0, "started": False,
              "state": {"waiting": {"reason": "ContainerCreating"}}, "lastState": {}}
    statuses.append(status)
    return status


def schedule(pod, node_name=DEFAULT_NODE):
    """Bind the pod to a node: nodeName, hostIP and PodScheduled=True."""
    pod["spec"]["nodeName"] = node_name
    status = pod["status"]
    status.setdefault("hostIP", "10.0.0.1")
    status.setdefault("hostIPs", [{"ip": status["hostIP"]}])
    _set_condition(pod, "PodScheduled", "True")


def unschedulable(pod, message):
    pod["spec"].pop("nodeName", None)
    pod["status"]["phase"] = "Pending"
    _set_condition(pod, "PodScheduled", "False", "Unschedulable", message)


def _pod_ip(pod):
    digest = hashlib.sha1(pod["metadata"]["uid"].encode()).digest()
    return f"10.244.{digest[0]}.{digest[1] or 1}"


def set_container_state(pod, state, reason=None, message=None, exit_code=None, restart_count=None,
                        container=None):
    """Put one container (or all) in state waiting / running / terminated, and derive the pod's readiness."""
    names = [container] if container else _container_names(pod)
    for name in names:
        status = _container_status(pod, name)
        if state == "waiting":
            detail = {"reason": reason or "ContainerCreating"}
            if message:
                detail["message"] = message
            status.update(ready=False, started=False)
        elif state == "running":
            detail = {"startedAt": now()}
            status.update(ready=True, started=True)
            status["containerID"] = "containerd://" + hashlib.sha1((pod["metadata"]["uid"] + name).encode()).hexdigest()
        elif state == "terminated":
            code = 0 if exit_code is None and reason == "Completed" else (1 if exit_code is None else exit_code)
            detail = {"exitCode": code, "reason": reason or ("Completed" if code == 0 else "Error"),
                      "startedAt": now(), "finishedAt": now()}
            if message:
                detail["message"] = message
            status.update(ready=False, started=False)
        else:
            raise ValueError(f"state must be waiting, running or terminated, not {state!r}")
        if state == "terminated" and "running" in status.get("state", {}):
            detail["startedAt"] = status["state"]["running"]["startedAt"]
        status["state"] = {state: detail}
        if restart_count is not None:
            status["restartCount"] = restart_count
    _derive_ready(pod)


def _derive_ready(pod):
    statuses = pod["status"].get("containerStatuses", [])
    ready = bool(statuses) and all(s.get("ready") for s in statuses)
    phase = pod["status"].get("phase")
    reason = "PodCompleted" if phase in ("Succeeded", "Failed") else (None if ready else "ContainersNotReady")
    message = None
    if not ready and reason == "ContainersNotReady":
        waiting = [s["name"] for s in statuses if not s.get("ready")]
        message = f"containers with unready status: [{' '.join(waiting)}]"
    _set_condition(pod, "Ready", "True" if ready else "False", reason, message)
    _set_condition(pod, "ContainersReady", "True" if ready else "False", reason, message)


def set_phase(pod, phase, reason=None, message=None, exit_code=None):
    """Move the pod to `phase` with matching container states (Pending: waiting on `reason` or
    ContainerCreating; Running: running; Succeeded: terminated Completed/0; Failed: terminated
    `reason` (Error) with `exit_code` (1))."""
    status = pod["status"]
    status["phase"] = phase
    if phase != "Pending" and not pod["spec"].get("nodeName"):
        schedule(pod)
    if phase in ("Running", "Succeeded", "Failed"):
        status.setdefault("startTime", now())
        status.setdefault("podIP", _pod_ip(pod))
        status.setdefault("podIPs", [{"ip": status["podIP"]}])
        _set_condition(pod, "Initialized", "True")
        _set_condition(pod, "PodReadyToStartContainers", "True")
    if phase == "Pending":
        set_container_state(pod, "waiting", reason or "ContainerCreating", message)
    elif phase == "Running":
        set_container_state(pod, "running")
    elif phase == "Succeeded":
        set_container_state(pod, "terminated", "Completed", exit_code=0 if exit_code is None else exit_code)
    elif phase == "Failed":
        set_container_state(pod, "terminated", reason or "Error", message, exit_code=exit_code)
        if reason in ("DeadlineExceeded", "Evicted"):
            status["reason"] = reason
            status["message"] = message or ""
    _derive_ready(pod)


def waiting_reason(pod, container):
    """Why `container` has not started, or None if it has (what the log endpoint checks)."""
    for status in pod.get("status", {}).get("containerStatuses", []):
        if status["name"] == container:
            waiting = status.get("state", {}).get("waiting")
            return None if waiting is None else waiting.get("reason", "ContainerCreating")
    return None if pod.get("status", {}).get("phase") in ("Running", "Succeeded", "Failed") else "ContainerCreating"


def is_finished(pod, container=None):
    """The pod (or the container) has stopped for good: followed logs end."""
    if pod.get("status", {}).get("phase") in ("Succeeded", "Failed"):
        return True
    for status in pod.get("status", {}).get("containerStatuses", []):
        if status["name"] == container and "terminated" in status.get("state", {}) and \
                pod["spec"].get("restartPolicy") == "Never":
            return True
    return False
