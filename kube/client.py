"""The Kubernetes API through the official client: one ApiClient per command, shared by a thread pool.

Objects go in and come out as plain dicts (responses are parsed as JSON, never deserialized into the
client's model classes: that alone costs milliseconds per object). Every failure becomes ONE exception
at this boundary: `KubeError` carries the server's Status (reason, message, code); `Unreachable` says
the API server could not be reached at all, or did not answer within `api_timeout`.

Time is bounded: each request waits at most `api_timeout` seconds (kube.yaml) for an answer; a refused
connection is retried twice at once, a dropped one once for reads (never for creates). Work runs on
daemon threads (`Cluster.run_all`), so Ctrl-C ends a command at once even when requests are stuck on a
stalled server (a thread pool would be joined at exit, waiting for every stuck request).
"""
import importlib
import importlib.util
import json
import os
import sys
import threading
import types

from toolbox.errors import KubeError, ToolboxError, Unreachable
from toolbox.kube.objects import HASH_ANNOTATION
from toolbox.kube.scope import check_owner

THREADS = 16
DEFAULT_API_TIMEOUT = 60     # seconds an API request may wait for its answer (kube.yaml api_timeout)
TIMEOUT = (10, DEFAULT_API_TIMEOUT)          # connect, read (seconds)
INSTALL_HINT = "install the toolbox's requirements into the Python make uses: pip install './src/toolbox'"
IN_CLUSTER_HOST = "KUBERNETES_SERVICE_HOST"
# kind -> (api, method suffix, short name used in messages)
KINDS = {
    "Job": ("batch", "namespaced_job", "job"),
    "Pod": ("core", "namespaced_pod", "pod"),
    "Secret": ("core", "namespaced_secret", "secret"),
    "ConfigMap": ("core", "namespaced_config_map", "configmap"),
    "Service": ("core", "namespaced_service", "service"),
    "Event": ("core", "namespaced_event", "event"),
}


# -- importing the official client cheaply ---------------------------------------------------------------
class _LazyPackage(types.ModuleType):
    """A package whose own __init__ (the eager import of every generated API and model class) runs only
    when something asks it for a name it does not have yet."""

    _lock = threading.RLock()

    def __getattr__(self, name):
        if not name.startswith("__") and importlib.util.find_spec(f"{self.__name__}.{name}") is not None:
            # `from package import submodule`: just the submodule
            return importlib.import_module(f"{self.__name__}.{name}")
        with _LazyPackage._lock:
            init = self.__dict__.pop("_toolbox_init", None)
            if init is not None:
                with open(init, encoding="utf-8") as handle:
                    exec(compile(handle.read(), init, "exec"), self.__dict__)  # noqa: S102 - the package's own code
            try:
                return self.__dict__[name]
            except KeyError:
                raise AttributeError(f"module {self.__name__!r} has no attribute {name!r}") from None


def _lazy_package(name):
    if name in sys.modules:
        return sys.modules[name]
    try:
        spec = importlib.util.find_spec(name)
    except ImportError:
        spec = None
    if spec is None or spec.origin is None:
        raise ToolboxError(name, f"the Python package '{name.split('.')[0]}' is not installed (or incomplete) "
                                 f"in {sys.executable}", hint=INSTALL_HINT)
    module = _LazyPackage(name)
    module.__spec__, module.__file__, module.__package__ = spec, spec.origin, name
    module.__path__ = list(spec.submodule_search_locations)
    module.__loader__ = spec.loader
    module._toolbox_init = spec.origin
    sys.modules[name] = module
    parent, _, child = name.rpartition(".")
    if parent:
        setattr(sys.modules[parent], child, module)
    return module


_CLIENT = None


def client_modules():
    """The parts of the official `kubernetes` client the toolbox uses, imported in ~0.1 s instead of the
    0.6 s of `import kubernetes` (which loads ~800 generated modules: most of a small `make job`). Nothing
    is patched: the packages' __init__ files run as soon as any other code asks them for another name."""
    global _CLIENT
    if _CLIENT is None:
        with _LazyPackage._lock:
            for name in ("kubernetes", "kubernetes.client", "kubernetes.client.api", "kubernetes.client.models"):
                _lazy_package(name)
            client = sys.modules["kubernetes.client"]
            api_client = importlib.import_module("kubernetes.client.api_client")
            configuration = importlib.import_module("kubernetes.client.configuration")
            for attr, value in (("ApiClient", api_client.ApiClient), ("Configuration", configuration.Configuration)):
                if isinstance(client, _LazyPackage) and attr not in client.__dict__:
                    setattr(client, attr, value)
            _CLIENT = types.SimpleNamespace(
                ApiClient=api_client.ApiClient, Configuration=configuration.Configuration,
                CoreV1Api=importlib.import_module("kubernetes.client.api.core_v1_api").CoreV1Api,
                BatchV1Api=importlib.import_module("kubernetes.client.api.batch_v1_api").BatchV1Api,
                ApiException=importlib.import_module("kubernetes.client.exceptions").ApiException,
                config=importlib.import_module("kubernetes.config"))
    return _CLIENT


def _short_reason(err):
    text = str(getattr(err, "reason", None) or err)
    for marker in ("] ", "): "):
        if marker in text:
            text = text.rsplit(marker, 1)[-1]
    return text.strip(" ')\"") or type(err).__name__


def _timed_out(err, urllib3):
    timeout = urllib3.exceptions.ReadTimeoutError
    return isinstance(err, timeout) or isinstance(getattr(err, "reason", None), timeout)


def translate(err, where, host="", timeout=None):
    """Any exception from the client -> a ToolboxError (KubeError or Unreachable); others re-raised."""
    import urllib3

    if isinstance(err, client_modules().ApiException):
        status = {}
        body = err.body
        if body is None and "-+-+-" in str(err.reason or ""):  # a refused websocket (exec): Status in the reason
            body = str(err.reason).rsplit("-+-+-", 1)[1].strip()
        if isinstance(body, bytes):
            body = body.decode("utf-8", "replace")
        try:
            status = json.loads(body) if body else {}
        except ValueError:
            status = {}
        if not isinstance(status, dict) or status.get("kind") != "Status":
            message = (body or "").strip().splitlines()[0][:300] if body and body.strip() else ""
            status = {}
        else:
            message = status.get("message", "")
        reason = status.get("reason") or err.reason or f"HTTP {err.status}"
        hint = None
        if err.status == 401:
            hint = "the cluster does not accept your credentials: refresh your kubeconfig (expired token?)"
        elif err.status == 403:
            hint = "your account may not do this in this namespace (check namespace in config/kube.yaml)"
        return KubeError(where, err.status or status.get("code") or 0, reason, message, status, hint)
    if timeout and _timed_out(err, urllib3):
        return Unreachable(host or "cluster", f"the Kubernetes API server did not answer within {timeout:g} s "
                                              "(api_timeout)",
                           hint="the cluster may be overloaded; if it is only slow, raise api_timeout in "
                                "config/kube.yaml")
    if isinstance(err, (urllib3.exceptions.HTTPError, OSError)):
        return Unreachable(host or "cluster", f"cannot reach the Kubernetes API server: {_short_reason(err)}",
                           hint="check your kubeconfig (context=, kube.yaml context) and your network/VPN")
    raise err


# -- configuration --------------------------------------------------------------------------------------
def load_configuration(context=None):
    """kubeconfig (KUBECONFIG or ~/.kube/config, optional context), else the in-cluster service account."""
    k8s = client_modules()
    config = k8s.config
    configuration = k8s.Configuration()
    kubeconfig = os.environ.get("KUBECONFIG") or os.path.expanduser(config.kube_config.KUBE_CONFIG_DEFAULT_LOCATION)
    has_file = any(os.path.isfile(p) for p in kubeconfig.split(os.pathsep) if p)
    if has_file:
        import yaml

        try:
            config.load_kube_config(config_file=kubeconfig, context=context, client_configuration=configuration)
        except (config.ConfigException, ValueError, KeyError, TypeError, yaml.YAMLError, OSError) as err:
            raise ToolboxError("kubeconfig", f"cannot use {kubeconfig}"
                               + (f" with context '{context}'" if context else "") + f": {err}",
                               hint="`kubectl config get-contexts` lists the contexts; set context= or kube.yaml "
                                    "context") from None
    elif os.environ.get(IN_CLUSTER_HOST):
        try:
            config.load_incluster_config(client_configuration=configuration)
        except config.ConfigException as err:
            raise ToolboxError("in-cluster config", str(err)) from None
    else:
        raise ToolboxError("kubeconfig", f"no kubeconfig at {kubeconfig} and not running in a cluster",
                           hint="get the cluster's kubeconfig (NRP: https://portal.nrp-nautilus.io) into "
                                "~/.kube/config, or set KUBECONFIG")
    return configuration


class Cluster:
    """One namespace of one cluster. Thread-safe: the thread pool shares it (and its connection pool)."""

    def __init__(self, namespace, context=None, threads=THREADS, configuration=None, api_timeout=None):
        import urllib3

        k8s = client_modules()
        configuration = configuration or load_configuration(context)
        configuration.connection_pool_maxsize = max(threads, 4)
        # a refused connection: two quick retries; a dropped one: one retry of reads (urllib3 never
        # retries a POST whose answer was lost); no retry on HTTP status (the Status is the answer)
        configuration.retries = urllib3.Retry(total=3, connect=2, read=1, status=0, other=0)
        self.api_timeout = float(api_timeout or DEFAULT_API_TIMEOUT)
        self.timeout = (min(TIMEOUT[0], self.api_timeout), self.api_timeout)
        self.namespace = namespace
        self.host = configuration.host
        self.threads = threads
        self.api_client = k8s.ApiClient(configuration)
        self.core = k8s.CoreV1Api(self.api_client)
        self.batch = k8s.BatchV1Api(self.api_client)

    def close(self):
        self.api_client.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    # -- the one call path ----------------------------------------------------------------------------------
    def call(self, where, method, *args, missing_ok=False, parse=True, **kwargs):
        """Invoke a client method; JSON response as a dict (None for 404 when missing_ok)."""
        kwargs.setdefault("_request_timeout", self.timeout)
        try:
            response = method(*args, _preload_content=False, **kwargs)
            data = response.data
            response.release_conn()
        except Exception as err:  # noqa: BLE001 - translated (or re-raised) right here
            error = translate(err, where, self.host, kwargs["_request_timeout"][1])
            if missing_ok and isinstance(error, KubeError) and error.code == 404:
                return None
            raise error from None
        return json.loads(data) if parse and data else None

    def _method(self, kind, verb):
        api, suffix, _ = KINDS[kind]
        return getattr(self.core if api == "core" else self.batch, f"{verb}_{suffix}")

    @staticmethod
    def where(kind, name):
        return f"{KINDS[kind][2]}/{name}"

    # -- verbs ----------------------------------------------------------------------------------------------
    def list(self, kind, selector=None, field_selector=None):
        """Every object of a kind matching a label selector: one call (continued only if the server
        paginates on its own)."""
        return self.list_versioned(kind, selector, field_selector)[0]

    def list_versioned(self, kind, selector=None, field_selector=None):
        """`list`, and the list's resourceVersion: where a watch of the same objects starts."""
        items, token = [], None
        while True:
            kwargs = {"label_selector": selector or ""}
            if field_selector:
                kwargs["field_selector"] = field_selector
            if token:
                kwargs["_continue"] = token
            data = self.call(f"{KINDS[kind][2]}s", self._method(kind, "list"), self.namespace, **kwargs)
            items.extend(data.get("items") or [])
            token = (data.get("metadata") or {}).get("continue")
            if not token:
                return items, (data.get("metadata") or {}).get("resourceVersion")

    def get(self, kind, name):
        return self.call(self.where(kind, name), self._method(kind, "read"), name, self.namespace,
                         missing_ok=True)

    def create(self, body):
        kind, name = body["kind"], body["metadata"]["name"]
        return self.call(self.where(kind, name), self._method(kind, "create"), self.namespace, body, parse=False)

    def replace(self, body):
        kind, name = body["kind"], body["metadata"]["name"]
        return self.call(self.where(kind, name), self._method(kind, "replace"), name, self.namespace, body,
                         parse=False)

    def patch(self, kind, name, patch):
        """A JSON merge patch of one object (callers check first that the object is theirs). The content type
        is given: the client would send a dict as a JSON patch."""
        return self.call(self.where(kind, name), self._method(kind, "patch"), name, self.namespace, patch,
                         parse=False, _content_type="application/merge-patch+json")

    def delete(self, kind, name, missing_ok=True, uid=None):
        """Delete one object; a Job takes its pods with it (background propagation). With `uid` (of the
        object a labelled list returned), the server deletes only that object, never one that took its
        name since."""
        options = {"apiVersion": "v1", "kind": "DeleteOptions", "propagationPolicy": "Background"}
        if uid:
            options["preconditions"] = {"uid": uid}
        return self.call(self.where(kind, name), self._method(kind, "delete"), name, self.namespace,
                         body=options, missing_ok=missing_ok, parse=False)

    def upsert(self, body, hint=None):
        """Create, or replace when the content hash annotation differs: 'created', 'updated', 'unchanged'.
        An existing object is replaced only when its user and project labels are the body's (else a
        CommandError, nothing changed); the replace carries the resourceVersion that was checked, so an
        object changed since is not overwritten."""
        existing = self.get(body["kind"], body["metadata"]["name"])
        if existing is None:
            try:
                self.create(body)
                return "created"
            except KubeError as err:
                if err.code != 409:
                    raise
                existing = self.get(body["kind"], body["metadata"]["name"])
                if existing is None:  # created and deleted again meanwhile: report the conflict as it was
                    raise
        labels = body["metadata"].get("labels") or {}
        check_owner(existing, labels.get("user"), labels.get("project"),
                    self.where(body["kind"], body["metadata"]["name"]), hint=hint)
        wanted = body["metadata"].get("annotations", {}).get(HASH_ANNOTATION)
        have = (existing.get("metadata") or {}).get("annotations", {}).get(HASH_ANNOTATION)
        if wanted and wanted == have:
            return "unchanged"
        body = json.loads(json.dumps(body))
        body["metadata"]["resourceVersion"] = existing["metadata"]["resourceVersion"]
        if existing.get("type") and body.get("type") and existing["type"] != body["type"]:
            body["type"] = existing["type"]  # a Secret's type cannot change
        self.replace(body)
        return "updated"

    def run_all(self, work, items, stop=None):
        """work(item) for every item, on `threads` daemon threads, items taken in order until `stop` (an
        Event) is set. Returns when every taken item is done. Ctrl-C raises KeyboardInterrupt here at once
        (the threads stop taking items; one stuck on a stalled server does not hold the process)."""
        stop = stop or threading.Event()
        lock, failures, end = threading.Lock(), [], object()

        def worker():
            while not stop.is_set():
                with lock:
                    item = next(items, end)
                if item is end:
                    return
                try:
                    work(item)
                except BaseException as err:  # noqa: BLE001 - re-raised in the calling thread
                    failures.append(err)
                    stop.set()
                    return

        count = min(self.threads, len(items)) if hasattr(items, "__len__") else self.threads
        threads = [threading.Thread(target=worker, name=f"kube-{i}", daemon=True) for i in range(max(count, 1))]
        items = iter(items)
        for thread in threads:
            thread.start()
        try:
            for thread in threads:
                while thread.is_alive():
                    thread.join(0.2)
        except KeyboardInterrupt:
            stop.set()
            raise
        if failures:
            raise failures[0]

    def list_nodes(self, selector=None):
        """Nodes, when the account may list them (None otherwise: namespace-only rights)."""
        try:
            data = self.call("nodes", self.core.list_node, label_selector=selector or "",
                             _request_timeout=(5, 20))
        except KubeError:
            return None
        return data.get("items") or []

    # -- streams --------------------------------------------------------------------------------------------
    def watch_stream(self, kind, selector, resource_version, timeout_seconds=240):
        """An open watch (urllib3 response, one JSON event per line) of the objects of a kind matching a
        selector, from `resource_version` on, with bookmarks; the server ends it after `timeout_seconds`."""
        try:
            return self._method(kind, "list")(
                self.namespace, label_selector=selector or "", watch=True, resource_version=resource_version,
                allow_watch_bookmarks=True, timeout_seconds=timeout_seconds, _preload_content=False,
                _request_timeout=(TIMEOUT[0], timeout_seconds + 30))
        except Exception as err:  # noqa: BLE001
            raise translate(err, f"{KINDS[kind][2]}s", self.host) from None

    def log_stream(self, pod, container=None, since_seconds=None, follow=True, read_timeout=300):
        """An open log stream of a pod (urllib3 response): iterate raw lines with timestamps."""
        kwargs = {"follow": follow, "timestamps": True, "_request_timeout": (10, read_timeout)}
        if container:
            kwargs["container"] = container
        if since_seconds:
            kwargs["since_seconds"] = int(since_seconds)
        try:
            return self.core.read_namespaced_pod_log(pod, self.namespace, _preload_content=False, **kwargs)
        except Exception as err:  # noqa: BLE001
            raise translate(err, f"pod/{pod}", self.host) from None


def connect(settings, context=None):
    """A Cluster for the project's namespace; `context` (make context=...) wins over kube.yaml's."""
    return Cluster(settings["namespace"], context or settings.get("context"), api_timeout=settings.get("api_timeout"))
