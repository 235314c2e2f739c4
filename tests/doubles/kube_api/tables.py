"""Server-side printing: `kubectl get` asks for `as=Table` and prints the columns the server chooses.

The columns and their values follow the real server's printers for the kinds served here, so `kubectl get
pods` shows READY / STATUS / RESTARTS as on a cluster.
"""
import datetime


def human_duration(seconds):
    """Go's duration.HumanDuration, as kubectl shows ages."""
    seconds = int(seconds)
    if seconds < 0:
        return "0s"
    minutes, hours, days = seconds // 60, seconds // 3600, seconds // 86400
    if seconds < 120:
        return f"{seconds}s"
    if minutes < 10:
        return f"{minutes}m{seconds % 60}s" if seconds % 60 else f"{minutes}m"
    if minutes < 180:
        return f"{minutes}m"
    if hours < 8:
        return f"{hours}h{minutes % 60}m" if minutes % 60 else f"{hours}h"
    if hours < 48:
        return f"{hours}h"
    if hours < 192:
        return f"{days}d{hours % 24}h" if hours % 24 else f"{days}d"
    return f"{days}d" if days < 730 else f"{days // 365}y"


def _parse(stamp):
    return datetime.datetime.strptime(stamp, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=datetime.timezone.utc)


def _since(stamp, until=None):
    if not stamp:
        return "<unknown>"
    end = _parse(until) if until else datetime.datetime.now(datetime.timezone.utc)
    return human_duration((end - _parse(stamp)).total_seconds())


def _age(obj):
    return _since(obj["metadata"].get("creationTimestamp"))


def _col(name, type_="string", priority=0, fmt="", description=""):
    return {"name": name, "type": type_, "format": fmt, "description": description or name, "priority": priority}


NAME = _col("Name", fmt="name", description="Name must be unique within a namespace.")
AGE = _col("Age", description="CreationTimestamp is a timestamp representing the server time when this "
                              "object was created.")


def _pod_status(pod):
    status = pod.get("status", {})
    reason = status.get("reason") or status.get("phase") or "Unknown"
    for container in reversed(status.get("containerStatuses") or []):
        state = container.get("state", {})
        if state.get("waiting", {}).get("reason"):
            reason = state["waiting"]["reason"]
        elif state.get("terminated", {}).get("reason"):
            reason = state["terminated"]["reason"]
        elif "terminated" in state:
            reason = f"ExitCode:{state['terminated'].get('exitCode', 0)}"
    if pod["metadata"].get("deletionTimestamp"):
        reason = "Terminating"
    return reason


def _pod_row(pod):
    statuses = pod.get("status", {}).get("containerStatuses") or []
    total = len(pod.get("spec", {}).get("containers", []))
    ready = sum(1 for s in statuses if s.get("ready"))
    restarts = sum(s.get("restartCount", 0) for s in statuses)
    return [pod["metadata"]["name"], f"{ready}/{total}", _pod_status(pod), restarts, _age(pod),
            pod.get("status", {}).get("podIP") or "<none>", pod.get("spec", {}).get("nodeName") or "<none>",
            "<none>", "<none>"]


def _job_status(job):
    conditions = {c["type"] for c in job.get("status", {}).get("conditions", []) if c.get("status") == "True"}
    for state in ("Failed", "Complete", "FailureTarget", "SuccessCriteriaMet", "Suspended"):
        if state in conditions:
            return state
    return "Terminating" if job["metadata"].get("deletionTimestamp") else "Running"


def _completions(spec, status):
    succeeded = status.get("succeeded", 0)
    if spec.get("completions") is not None:
        return f"{succeeded}/{spec['completions']}"
    parallelism = spec.get("parallelism") or 0  # a work queue: done at the first success
    return f"{succeeded}/1 of {parallelism}" if parallelism > 1 else f"{succeeded}/1"


def _job_row(job):
    spec, status = job.get("spec", {}), job.get("status", {})
    completions = _completions(spec, status)
    duration = _since(status["startTime"], status.get("completionTime")) if status.get("startTime") else ""
    containers = spec.get("template", {}).get("spec", {}).get("containers", [])
    selector = ",".join(f"{k}={v}" for k, v in sorted(spec.get("selector", {}).get("matchLabels", {}).items()))
    return [job["metadata"]["name"], _job_status(job), completions, duration, _age(job),
            ",".join(c["name"] for c in containers), ",".join(c.get("image", "") for c in containers), selector]


def _service_external_ip(spec, status):
    kind = spec.get("type", "ClusterIP")
    if kind == "ExternalName":
        return spec.get("externalName", "")
    external = list(spec.get("externalIPs") or [])
    if kind == "LoadBalancer":
        ingress = [i.get("ip") or i.get("hostname") for i in (status.get("loadBalancer") or {}).get("ingress") or []]
        return ",".join(ingress + external) or "<pending>"
    return ",".join(external) or "<none>"


def _service_ports(spec):
    pieces = []
    for port in spec.get("ports") or []:
        node = f":{port['nodePort']}" if port.get("nodePort") else ""
        pieces.append(f"{port.get('port')}{node}/{port.get('protocol', 'TCP')}")
    return ",".join(pieces) or "<none>"


def _service_row(service):
    spec, status = service.get("spec", {}), service.get("status", {})
    selector = ",".join(f"{k}={v}" for k, v in sorted((spec.get("selector") or {}).items())) or "<none>"
    return [service["metadata"]["name"], spec.get("type", "ClusterIP"), spec.get("clusterIP") or "<none>",
            _service_external_ip(spec, status), _service_ports(spec), _age(service), selector]


def _event_row(event):
    involved = event.get("involvedObject", {})
    return [_since(event.get("lastTimestamp") or event["metadata"].get("creationTimestamp")),
            event.get("type", ""), event.get("reason", ""),
            f"{involved.get('kind', '').lower()}/{involved.get('name', '')}", event.get("message", "")]


COLUMNS = {
    "pods": ([NAME, _col("Ready"), _col("Status"), _col("Restarts", "integer"), AGE, _col("IP", priority=1),
              _col("Node", priority=1), _col("Nominated Node", priority=1), _col("Readiness Gates", priority=1)],
             _pod_row),
    "jobs": ([NAME, _col("Status"), _col("Completions"), _col("Duration"), AGE, _col("Containers", priority=1),
              _col("Images", priority=1), _col("Selector", priority=1)], _job_row),
    "services": ([NAME, _col("Type"), _col("Cluster-IP"), _col("External-IP"), _col("Port(s)"), AGE,
                  _col("Selector", priority=1)], _service_row),
    "namespaces": ([NAME, _col("Status"), AGE],
                   lambda o: [o["metadata"]["name"], o.get("status", {}).get("phase", ""), _age(o)]),
    "secrets": ([NAME, _col("Type"), _col("Data", "integer"), AGE],
                lambda o: [o["metadata"]["name"], o.get("type", ""), len(o.get("data") or {}), _age(o)]),
    "configmaps": ([NAME, _col("Data", "integer"), AGE],
                   lambda o: [o["metadata"]["name"], len(o.get("data") or {}) + len(o.get("binaryData") or {}),
                              _age(o)]),
    "events": ([_col("Last Seen"), _col("Type"), _col("Reason"), _col("Object"), _col("Message")],
               _event_row),
}


def wants_table(accept):
    return "as=Table" in (accept or "")


def to_table(res, items, resource_version, include_object="Metadata"):
    columns, row = COLUMNS[res.plural]
    rows = []
    for obj in items:
        entry = {"cells": row(obj)}
        if include_object == "Object":
            entry["object"] = obj
        elif include_object != "None":
            entry["object"] = {"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1",
                               "metadata": obj["metadata"]}
        rows.append(entry)
    return {"kind": "Table", "apiVersion": "meta.k8s.io/v1", "metadata": {"resourceVersion": resource_version},
            "columnDefinitions": columns, "rows": rows}
