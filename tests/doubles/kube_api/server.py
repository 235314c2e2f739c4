"""`KubeDouble`: the server object tests hold. Starts the HTTP server in a thread and offers the test hooks.

Hooks take `namespace="ns"` (the kubeconfig fixture's namespace) and act like the cluster's controllers
would: every change bumps the resourceVersion and reaches open watches. Two kinds:

- Scripted state (the kubelet or a controller says so; nothing reacts): set_pod_phase, set_container_state,
  set_pod_unschedulable, set_pod_node, set_pod_log / append_pod_log, add_event, mark_job_running /
  mark_job_succeeded / mark_job_failed (these write the job's status directly).
- Kubelet events the job controller reacts to, as on a cluster: start_pod, finish_pod (exit code),
  preempt_pod (DisruptionTarget, then Failed and deleted), finish_index (an Indexed Job's index). After them
  the controller has counted the pod, applied the pod failure policy and backoff limits, created the next
  pods (up to `parallelism`) and written the job's conditions. sync_job reconciles on demand (e.g. after
  scripted changes); wait_for_job blocks until a job is Complete or Failed.

Executor mode (`KubeDouble(executor=True)` or `double.executor = True`; off by default): pods run their main
container's command as local processes (see executor.py), with Service DNS names resolving to 127.0.0.1
when `executor_dns_problem` is None.
"""
import copy as _copy
import os
import sys
import threading
import time
import uuid
from http.server import ThreadingHTTPServer

import yaml

from . import kubelet, resources
from .api import JOBS, PODS, Api, FailureRule, Options
from .controller import JobController, is_active, is_finished
from .defaults import now, prepare_create, random_suffix
from .executor import Executor, dns_problem
from .handler import Handler
from .logs import LogBook
from .pod_failure import completion_index
from .store import Store, clone

DEFAULT_NAMESPACES = ("default", "kube-system", "kube-public", "kube-node-lease", "ns")


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128

    def handle_error(self, request, client_address):
        # A client that goes away (a watch it stops reading, a process that exits) resets its connection:
        # a real API server does not log that as an error either.
        if not isinstance(sys.exc_info()[1], (ConnectionResetError, BrokenPipeError)):
            super().handle_error(request, client_address)


class KubeDouble:
    """A Kubernetes API server double on 127.0.0.1. `with KubeDouble() as kube:` or start()/stop()."""

    def __init__(self, host="127.0.0.1", port=0, validate=True, job_controller=True,
                 namespaces=DEFAULT_NAMESPACES, default_field_validation="Strict", executor=False):
        self._defaults = Options(validate, job_controller, default_field_validation)
        self._executor_default = bool(executor)
        self._executor = None
        self.namespaces = tuple(namespaces)
        self.store = Store()
        self.api = Api(self.store, _copy.copy(self._defaults))
        self.api.controller = JobController(self.api)
        self.logs = LogBook(self.store)
        self.requests = []
        self._requests_lock = threading.Lock()
        self.exec_calls = []
        self._exec_results = []
        self.exec_default = {"stdout": b"", "stderr": b"", "exit_code": 0}
        self.exec_handler = None  # optional callable(ExecCall) -> (stdout, stderr, exit_code)
        # optional callable(RecordedRequest) run before a request is handled (method and path known): a test
        # can stall the server (block), race the client (create objects first) or kill it ("drop": the
        # connection closes unanswered)
        self.request_hook = None
        self.stopping = False
        self._httpd = _HTTPServer((host, port), Handler)
        self._httpd.double = self
        self._thread = None
        self._seed_namespaces()
        self.executor = executor

    # --- lifecycle ---

    @property
    def port(self):
        return self._httpd.server_address[1]

    @property
    def url(self):
        return f"http://{self._httpd.server_address[0]}:{self.port}"

    def start(self):
        self._thread = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.1},
                                        name="kube-double", daemon=True)
        self._thread.start()
        return self

    def serve_forever(self):
        self._httpd.serve_forever(poll_interval=0.1)

    def stop(self):
        self.executor = False
        self.stopping = True
        self.store.notify()
        self._httpd.shutdown()
        self._httpd.server_close()

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    def reset(self):
        """Forget everything: objects, logs, recorded requests and exec calls, failure rules; restore the
        options given at construction (executor mode included: running pods are killed); end open watches
        and log streams; re-create the namespaces."""
        if self._executor is not None:
            self._executor.kill_all()
        self.store.clear()
        self.logs.clear()
        self.api.options = _copy.copy(self._defaults)
        self.api.failures.clear()
        self.clear_requests()
        self.exec_calls.clear()
        self._exec_results.clear()
        self.exec_default = {"stdout": b"", "stderr": b"", "exit_code": 0}
        self.exec_handler = None
        self.request_hook = None
        self._seed_namespaces()
        self.executor = self._executor_default

    def _seed_namespaces(self):
        for name in self.namespaces:
            self.seed({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})

    # --- options ---

    @property
    def validate(self):
        return self.api.options.validate

    @validate.setter
    def validate(self, value):
        self.api.options.validate = bool(value)

    @property
    def job_controller(self):
        return self.api.options.job_controller

    @job_controller.setter
    def job_controller(self, value):
        self.api.options.job_controller = bool(value)

    @property
    def default_field_validation(self):
        return self.api.options.default_field_validation

    @default_field_validation.setter
    def default_field_validation(self, value):
        self.api.options.default_field_validation = value

    @property
    def executor(self):
        """Executor mode: pods run as local processes (see executor.py). Turning it off kills them."""
        return self._executor is not None

    @executor.setter
    def executor(self, value):
        if value and self._executor is None:
            self._executor = Executor(self).start()
        elif not value and self._executor is not None:
            running, self._executor = self._executor, None
            running.stop()

    @property
    def executor_dns_problem(self):
        """None if Service DNS names resolve inside executor processes here, else why not (one line)."""
        return dns_problem()

    # --- kubeconfig ---

    def kubeconfig(self, namespace="ns", context="double", token="double-token"):
        """A kubeconfig dict for this server: context `double`, a bearer-token user, `namespace`."""
        return {"apiVersion": "v1", "kind": "Config", "preferences": {}, "current-context": context,
                "clusters": [{"name": context, "cluster": {"server": self.url}}],
                "users": [{"name": f"{context}-user", "user": {"token": token}}],
                "contexts": [{"name": context, "context": {"cluster": context, "user": f"{context}-user",
                                                           "namespace": namespace}}]}

    def write_kubeconfig(self, path, namespace="ns", context="double"):
        path = os.fspath(path)
        with open(path, "w") as out:
            yaml.safe_dump(self.kubeconfig(namespace, context), out, sort_keys=False)
        return path

    # --- objects ---

    def seed(self, obj, namespace="ns"):
        """Store a manifest directly, as if created long ago by someone else: server metadata and defaults
        are filled in, but no validation, failure rule or job controller runs. Returns the stored object."""
        obj = clone(obj)
        res = resources.for_object(obj)
        given_status = obj.get("status")
        prepare_create(res, obj, (obj.get("metadata") or {}).get("namespace") or namespace)
        if given_status is not None:  # e.g. another user's finished job: keep the status as given
            obj["status"] = given_status
        elif obj.get("status") is None:
            obj.pop("status", None)
        return self.store.put(res, obj, "ADDED")

    def get(self, kind, name, namespace="ns"):
        """The stored object (a dict; do not mutate) or None."""
        res = resources.lookup(kind)
        return self.store.find(res, namespace, name)

    def list(self, kind, namespace="ns", label_selector=None):
        """Stored objects of a kind (namespace=None: all namespaces), optionally filtered by labels."""
        from .selection import Selector
        res = resources.lookup(kind)
        return self.store.list(res, namespace, Selector(res, label_selector))[0]

    def delete(self, kind, name, namespace="ns", propagation="Background"):
        res = resources.lookup(kind)
        return self.api.delete(res, namespace, name, propagation)

    def forget_history(self):
        """Compact the event history: watches from a resourceVersion before now get 410 Gone (ERROR event)."""
        self.store.forget_history()

    # --- pods ---

    def _pod(self, name, namespace, change):
        return self.api.update_object(PODS, namespace, name, change)

    def set_pod_phase(self, name, phase, namespace="ns", reason=None, message=None, exit_code=None):
        """Pending (containers waiting on `reason`, default ContainerCreating), Running, Succeeded (exit 0) or
        Failed (terminated `reason`, default Error, with `exit_code`, default 1)."""
        return self._pod(name, namespace, lambda p: kubelet.set_phase(p, phase, reason, message, exit_code))

    def set_container_state(self, name, state, namespace="ns", reason=None, message=None, exit_code=None,
                            restart_count=None, container=None, phase=None):
        """Set container `container` (default: all) to waiting/running/terminated, e.g. waiting
        ImagePullBackOff, terminated OOMKilled exit 137; optionally the pod phase too."""
        def change(pod):
            if phase:
                pod["status"]["phase"] = phase
            kubelet.set_container_state(pod, state, reason, message, exit_code, restart_count, container)
        return self._pod(name, namespace, change)

    def set_pod_unschedulable(self, name, namespace="ns", message="0/5 nodes are available: 5 Insufficient "
                              "nvidia.com/gpu. preemption: 0/5 nodes are available: 5 No preemption victims "
                              "found for incoming pod."):
        """PodScheduled=False, reason Unschedulable, with the scheduler's message; phase Pending."""
        return self._pod(name, namespace, lambda p: kubelet.unschedulable(p, message))

    def set_pod_node(self, name, node_name="node-1", namespace="ns"):
        """Schedule the pod: spec.nodeName and PodScheduled=True."""
        return self._pod(name, namespace, lambda p: kubelet.schedule(p, node_name))

    def set_pod_log(self, name, text, namespace="ns", container=None):
        """Replace the container's log (container defaults to the pod's first container)."""
        self.logs.write(namespace, name, container or self._first_container(name, namespace), text, True)

    def append_pod_log(self, name, text, namespace="ns", container=None):
        """Append lines; followers (`follow=true`) receive them at once."""
        self.logs.write(namespace, name, container or self._first_container(name, namespace), text)

    def drop_log_streams(self, name, namespace="ns"):
        """Break every open `follow` stream of this pod mid-body (the client sees a dropped connection)."""
        self.logs.drop(namespace, name)

    def _first_container(self, name, namespace):
        pod = self.store.get(PODS, namespace, name)
        return pod["spec"]["containers"][0]["name"]

    def add_event(self, involved, reason, message, type="Normal", namespace="ns"):
        """Store a core/v1 Event about `involved` (a stored object), e.g. FailedScheduling for a pod."""
        meta = involved["metadata"]
        stamp = now()
        return self.seed({"apiVersion": "v1", "kind": "Event",
                          "metadata": {"name": f"{meta['name']}.{random_suffix(16)}"},
                          "involvedObject": {"kind": involved.get("kind", "Pod"), "name": meta["name"],
                                             "namespace": meta.get("namespace", namespace), "uid": meta["uid"],
                                             "apiVersion": involved.get("apiVersion", "v1")},
                          "reason": reason, "message": message, "type": type, "count": 1,
                          "firstTimestamp": stamp, "lastTimestamp": stamp,
                          "source": {"component": "default-scheduler"}}, namespace)

    # --- jobs ---

    def job_pods(self, job_name, namespace="ns"):
        """The pods the job owns (by ownerReference), sorted by name."""
        return self.api.controller.pods(namespace, job_name)

    def job_pod(self, job_name, namespace="ns"):
        """The job's only pod (AssertionError if there is not exactly one)."""
        pods = self.job_pods(job_name, namespace)
        assert len(pods) == 1, f"job {job_name} has {len(pods)} pods"
        return pods[0]

    def mark_job_running(self, name, namespace="ns"):
        """Scripted: the active pods Running and ready; job status active = ready = their number, startTime."""
        return self.api.controller.mark_running(namespace, name)

    def mark_job_succeeded(self, name, namespace="ns"):
        """Scripted: the active pods Succeeded; job succeeded = completions (and completedIndexes for an
        Indexed Job), conditions SuccessCriteriaMet and Complete, completionTime."""
        return self.api.controller.mark_succeeded(namespace, name)

    def mark_job_failed(self, name, namespace="ns", reason="BackoffLimitExceeded",
                        message="Job has reached the specified backoff limit", exit_code=1, pod_reason="Error"):
        """Scripted: the active pods Failed (terminated `pod_reason` with `exit_code`); job failed += 1,
        conditions FailureTarget and Failed with `reason`/`message` (e.g. DeadlineExceeded)."""
        return self.api.controller.mark_failed(namespace, name, reason, message, exit_code, pod_reason)

    # --- kubelet events the job controller reacts to ---

    def _kubelet_event(self, name, namespace, change):
        pod = self._pod(name, namespace, change)
        if self.job_controller:
            self.api.controller.pod_changed(pod)
        return self.store.find(PODS, namespace, name) or pod

    def start_pod(self, name, namespace="ns"):
        """The pod is scheduled and its containers run and are ready; its job counts it active and ready."""
        return self._kubelet_event(name, namespace, lambda p: kubelet.set_phase(p, "Running"))

    def finish_pod(self, name, exit_code=0, namespace="ns", reason=None, message=None, log=None):
        """The main container exits with `exit_code`: Succeeded (0) or Failed (terminated `reason`, default
        Error; e.g. OOMKilled with 137); `log` is appended to its log first. The job controller then counts it
        (pod failure policy, backoff limits), replaces it or starts the next index, and may finish the job.
        Returns the pod as stored afterwards."""
        if log:
            self.append_pod_log(name, log, namespace)
        phase = "Succeeded" if exit_code == 0 else "Failed"
        return self._kubelet_event(name, namespace, lambda p: kubelet.set_phase(
            p, phase, reason or ("Completed" if exit_code == 0 else "Error"), message, exit_code=exit_code))

    def preempt_pod(self, name, namespace="ns", reason="PreemptionByScheduler", message=None, exit_code=143,
                    delete=True):
        """A disruption: condition DisruptionTarget=True with `reason` (PreemptionByScheduler,
        EvictionByEvictionAPI, DeletionByTaintManager, ...), the containers stopped with `exit_code` (143:
        SIGTERM), the pod Failed; a preemption also records a `Preempted` event. The job controller reacts (a
        podFailurePolicy rule on DisruptionTarget can Ignore it); then the pod is gone, as its deletion
        completes (`delete=False` keeps it). Returns the pod as it was last stored."""
        pod = self.store.get(PODS, namespace, name)
        message = message or ("default-scheduler: preempting to accommodate a higher priority pod"
                              if reason == "PreemptionByScheduler" else f"{reason}: the pod is being disrupted")

        def disrupt(p):
            kubelet.set_condition(p, "DisruptionTarget", "True", reason, message)
            if delete:
                p["metadata"]["deletionTimestamp"] = now()
                p["metadata"]["deletionGracePeriodSeconds"] = p["spec"].get("terminationGracePeriodSeconds", 30)
            kubelet.set_phase(p, "Failed", "Error", exit_code=exit_code)
        if reason == "PreemptionByScheduler":
            node = pod["spec"].get("nodeName") or kubelet.DEFAULT_NODE
            self.add_event(pod, "Preempted", f"Preempted by pod {uuid.uuid4()} on node {node}", namespace=namespace)
        pod = self._kubelet_event(name, namespace, disrupt)
        if delete and self.store.find(PODS, namespace, name) is not None:
            self.store.remove(PODS, namespace, name)
        return pod

    def index_pod(self, job_name, index, namespace="ns"):
        """The pod of an Indexed Job's `index`: the active one, else the newest (AssertionError if none)."""
        pods = [p for p in self.job_pods(job_name, namespace) if completion_index(p) == index]
        assert pods, f"job {job_name} has no pod for index {index}"
        active = [p for p in pods if is_active(p)]
        return max(active or pods, key=lambda p: int(p["metadata"]["resourceVersion"]))

    def finish_index(self, job_name, index, exit_code=0, namespace="ns", **kwargs):
        """finish_pod on the active pod of `index` (kwargs: reason, message, log)."""
        return self.finish_pod(self.index_pod(job_name, index, namespace)["metadata"]["name"], exit_code,
                               namespace, **kwargs)

    def sync_job(self, name, namespace="ns"):
        """Run the job controller on this job now (after scripted pod changes, say); returns the job."""
        return self.api.controller.sync(namespace, name)

    def wait_for_job(self, name, namespace="ns", timeout=30.0):
        """Block until the job has a Complete or Failed condition and return it (TimeoutError otherwise)."""
        deadline = time.monotonic() + timeout
        while True:
            with self.store.cond:
                seen = self.store.changes
                job = self.store.find(JOBS, namespace, name)
                if job is not None and is_finished(job):
                    return job
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"job {name} did not finish in {timeout} s; status: {(job or {}).get('status')}")
            self.store.wait_for_change(seen, min(remaining, 0.5))

    # --- failure injection ---

    def fail_next(self, code=500, reason="InternalError", message="Internal error occurred: injected failure",
                  times=1, kind=None, verb="create", after=0):
        """Make the next `times` requests of `verb` (create, update, patch, delete, deletecollection) on `kind`
        (any kind if None) fail with a Status (code, reason, message); `after=k` lets k of them pass first."""
        plural = resources.lookup(kind).plural if kind else None
        self.api.inject_failure(FailureRule(code, reason, message, verb, plural, after, times))

    # --- request recording ---

    def _record(self, request):
        with self._requests_lock:
            self.requests.append(request)
        hook = self.request_hook
        return hook(request) if hook is not None else None

    def clear_requests(self):
        with self._requests_lock:
            self.requests.clear()

    def recorded(self, verb=None, resource=None, method=None, namespace=None):
        """Recorded requests filtered by verb (create, get, list, watch, update, patch, delete,
        deletecollection, logs, exec, discovery), resource plural, HTTP method, namespace."""
        with self._requests_lock:
            found = list(self.requests)
        return [r for r in found if (verb is None or r.verb == verb) and (resource is None or r.resource == (
            resources.lookup(resource).plural)) and (method is None or r.method == method) and (
            namespace is None or r.namespace == namespace)]

    def count(self, verb=None, resource=None, method=None, namespace=None):
        return len(self.recorded(verb, resource, method, namespace))

    # --- exec ---

    def set_exec_result(self, stdout=b"", stderr=b"", exit_code=0, times=None):
        """What exec answers: the next call if times=1 (queued in order), every call if times is None."""
        result = {"stdout": _bytes(stdout), "stderr": _bytes(stderr), "exit_code": exit_code}
        if times is None:
            self.exec_default = result
        else:
            self._exec_results.extend([result] * times)

    def _next_exec_result(self):
        return self._exec_results.pop(0) if self._exec_results else self.exec_default


def _bytes(value):
    return value.encode() if isinstance(value, str) else bytes(value)
