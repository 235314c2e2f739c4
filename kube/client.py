"""The Kubernetes API through the official client: one ApiClient per command, shared by a thread pool.

Objects go in and come out as plain dicts (responses are parsed as JSON, never deserialized into the
client's model classes: that alone costs milliseconds per object). Every failure becomes ONE exception
at this boundary: `KubeError` carries the server's Status (reason, message, code); `Unreachable` says
the API server could not be reached at all.
"""
import importlib
import importlib.util
import json
import os
import sys
import threading
import types

from toolbox.kube.objects import HASH_ANNOTATION
from toolbox.errors import KubeError, ToolboxError, Unreachable

THREADS = 16
TIMEOUT = (10, 120)          # connect, read (seconds)
IN_CLUSTER_HOST = "KUBERNETES_SERVICE_HOST"
# kind -> (api, method suffix, short name used in messages)
KINDS = {
    "Job": ("batch", "namespaced_job", "job"),
    "Pod": ("core", "namespaced_pod", "pod"),
    "Secret": ("core", "namespaced_secret", "secret"),
    "ConfigMap": ("core", "namespaced_config_map", "configmap"),
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
    spec = importlib.util.find_spec(name)
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


def translate(err, where, host=""):
    """Any exception from the client -> a ToolboxError (KubeError or Unreachable); others re-raised."""
    import urllib3

    if isinstance(err, client_modules().ApiException):
        status = {}
        body = err.body
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
        return KubeError(where, err.status, reason, message, status, hint)
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

    def __init__(self, namespace, context=None, threads=THREADS, configuration=None):
        k8s = client_modules()
        configuration = configuration or load_configuration(context)
        configuration.connection_pool_maxsize = max(threads, 4)
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
        kwargs.setdefault("_request_timeout", TIMEOUT)
        try:
            response = method(*args, _preload_content=False, **kwargs)
            data = response.data
            response.release_conn()
        except Exception as err:  # noqa: BLE001 - translated (or re-raised) right here
            error = translate(err, where, self.host)
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
                return items

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

    def delete(self, kind, name, missing_ok=True):
        """Delete one object; a Job takes its pods with it (background propagation)."""
        options = {"apiVersion": "v1", "kind": "DeleteOptions", "propagationPolicy": "Background"}
        return self.call(self.where(kind, name), self._method(kind, "delete"), name, self.namespace,
                         body=options, missing_ok=missing_ok, parse=False)

    def upsert(self, body):
        """Create, or replace when the content hash annotation differs: 'created', 'updated', 'unchanged'."""
        existing = self.get(body["kind"], body["metadata"]["name"])
        if existing is None:
            try:
                self.create(body)
                return "created"
            except KubeError as err:
                if err.code != 409:
                    raise
                existing = self.get(body["kind"], body["metadata"]["name"]) or {}
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

    def list_nodes(self, selector=None):
        """Nodes, when the account may list them (None otherwise: namespace-only rights)."""
        try:
            data = self.call("nodes", self.core.list_node, label_selector=selector or "",
                             _request_timeout=(5, 20))
        except KubeError:
            return None
        return data.get("items") or []

    # -- streams --------------------------------------------------------------------------------------------
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
    return Cluster(settings["namespace"], context or settings.get("context"))
