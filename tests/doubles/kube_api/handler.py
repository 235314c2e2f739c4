"""HTTP: routing of API paths to verbs, JSON responses, chunked watch and log streams.

HTTP/1.1 keep-alive with TCP_NODELAY (`disable_nagle_algorithm`): without it every response waits on the
client's delayed ACK and a request costs ~44 ms instead of ~1 ms. The body is always read in full, errors
included, or the next request on the connection would start in the middle of it.
"""
import base64
import json
import time
import traceback
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from urllib.parse import parse_qs, urlsplit

from . import discovery, kubelet, tables
from .api import PODS, decode_body
from .logs import LogQuery, check_started, pick_container
from .resources import BY_PLURAL
from .selection import Selector
from .status import ApiError, bad_request, method_not_allowed, path_not_found

DEFAULT_WATCH_SECONDS = 1800
POLL_SECONDS = 0.5  # how often idle streams look at the clock and the stop flag


@dataclass
class RecordedRequest:
    method: str
    path: str
    query: dict
    content_type: str
    body: bytes
    headers: dict = field(default_factory=dict, repr=False)
    verb: str = ""  # create, get, list, watch, update, patch, delete, deletecollection, logs, exec, discovery
    resource: str = ""  # plural, e.g. "jobs"
    namespace: str = None
    name: str = None
    subresource: str = None

    def json(self):
        return json.loads(self.body) if self.body else None


class StreamAborted(Exception):
    """The client went away, or a test hook dropped the stream on purpose."""


def _truthy(value):
    return (value or "").lower() in ("true", "1")


def _dumps(obj):
    return json.dumps(obj, separators=(",", ":")).encode()


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True
    server_version = "kube-double"
    sys_version = ""

    def log_message(self, format, *args):
        pass

    def do_GET(self):
        self._dispatch("GET")

    def do_POST(self):
        self._dispatch("POST")

    def do_PUT(self):
        self._dispatch("PUT")

    def do_PATCH(self):
        self._dispatch("PATCH")

    def do_DELETE(self):
        self._dispatch("DELETE")

    # --- plumbing ---

    @property
    def double(self):
        return self.server.double

    def _read_body(self):
        if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
            data = b""
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    self.rfile.readline()
                    return data
                data += self.rfile.read(size)
                self.rfile.readline()
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _dispatch(self, method):
        body = self._read_body()
        url = urlsplit(self.path)
        self.query_lists = parse_qs(url.query, keep_blank_values=True)  # exec repeats `command`
        query = {k: v[-1] for k, v in self.query_lists.items()}
        record = RecordedRequest(method, url.path, query, self.headers.get("Content-Type") or "", body,
                                 dict(self.headers))
        if self.double._record(record) == "drop":  # a test hook: the server dies before answering
            self.close_connection = True
            return
        self.warnings = []
        try:
            self._route(method, url.path.rstrip("/") or "/", query, body, record)
        except ApiError as exc:
            self._send_json(exc.code, exc.status())
        except StreamAborted:
            self.close_connection = True
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True
        except Exception as exc:  # noqa: BLE001 - a bug in the double: answer 500 like the real server
            traceback.print_exc()
            self._send_json(500, ApiError(500, "InternalError", f"kube double: {exc!r}").status())

    def _send(self, code, data, content_type="application/json"):
        self.send_response(code)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Audit-Id", "00000000-0000-0000-0000-000000000000")
        for warning in self.warnings:
            self.send_header("Warning", '299 - "' + warning.replace('"', '\\"') + '"')
        self.end_headers()
        self.wfile.write(data)

    def _send_json(self, code, obj):
        self._send(code, _dumps(obj))

    def _start_stream(self, content_type):
        self.send_response(200)
        self.send_header("Content-Type", content_type)
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()

    def _chunk(self, data):
        if data:
            self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
            self.wfile.flush()

    def _end_stream(self):
        self.wfile.write(b"0\r\n\r\n")
        self.wfile.flush()

    # --- routing ---

    def _route(self, method, path, query, body, record):
        static = self._static(path)
        if static is not None:
            record.verb = "discovery"
            if method != "GET":
                raise method_not_allowed()
            return self._send_json(200, static)
        if path in ("/healthz", "/livez", "/readyz"):
            record.verb = "discovery"
            return self._send(200, b"ok", "text/plain; charset=utf-8")
        parts = path.strip("/").split("/")
        if parts[0] == "api" and len(parts) >= 3:
            group, version, rest = "", parts[1], parts[2:]
        elif parts[0] == "apis" and len(parts) >= 4:
            group, version, rest = parts[1], parts[2], parts[3:]
        else:
            raise path_not_found()
        self._resource_request(method, group, version, rest, query, body, record)

    def _static(self, path):
        if path == "/version":
            return discovery.VERSION
        if path == "/api":
            return discovery.api_versions(f"{self.server.server_address[0]}:{self.server.server_address[1]}")
        if path == "/apis":
            return discovery.api_group_list()
        if path.startswith("/apis/") and path.count("/") == 2:
            return discovery.api_group(path.split("/")[2])
        if path == "/api/v1":
            return discovery.resource_list("", "v1")
        if path.startswith("/apis/") and path.count("/") == 3:
            return discovery.resource_list(path.split("/")[2], path.split("/")[3])
        if path == "/openapi/v3":
            return discovery.openapi_index()
        if path.startswith("/openapi/v3/"):
            return discovery.openapi_document(path[len("/openapi/v3/"):]) or None
        return None

    def _resource_request(self, method, group, version, rest, query, body, record):
        watch = rest[0] == "watch"
        if watch:
            rest = rest[1:]
        namespace = None
        if len(rest) >= 3 and rest[0] == "namespaces" and not (len(rest) == 3 and rest[2] in ("status",
                                                                                               "finalize")):
            namespace, rest = rest[1], rest[2:]
        if not rest or len(rest) > 3:
            raise path_not_found()
        res = BY_PLURAL.get((group, version, rest[0]))
        if res is None or (namespace is not None and not res.namespaced):
            raise path_not_found()
        name = rest[1] if len(rest) > 1 else None
        sub = rest[2] if len(rest) > 2 else None
        if sub is not None and sub not in res.subresources:
            raise path_not_found()
        record.resource, record.namespace, record.name, record.subresource = res.plural, namespace, name, sub
        if res.namespaced and namespace is None and name is not None:
            raise path_not_found()
        watch = watch or _truthy(query.get("watch"))
        handler = self._verb(method, name, sub, watch)
        record.verb = handler.__name__.lstrip("_")
        handler(res, namespace, name, sub, query, body)

    def _verb(self, method, name, sub, watch):
        if sub == "exec":
            return self._exec
        if sub == "log":
            if method != "GET":
                raise method_not_allowed()
            return self._logs
        if sub == "status" and method not in ("GET", "PUT", "PATCH"):
            raise method_not_allowed()
        table = {("GET", False): self._watch if watch else self._list, ("GET", True): self._get,
                 ("POST", False): self._create, ("PUT", True): self._update, ("PATCH", True): self._patch,
                 ("DELETE", True): self._delete, ("DELETE", False): self._deletecollection}
        handler = table.get((method, name is not None))
        if handler is None:
            raise method_not_allowed()
        if watch and name is not None:
            return self._watch
        return handler

    # --- verbs ---

    def _common(self, query):
        return {"field_validation": query.get("fieldValidation") or None,
                "dry_run": query.get("dryRun") == "All", "warnings": self.warnings}

    def _respond_object(self, code, res, obj, query):
        accept = self.headers.get("Accept") or ""
        if tables.wants_table(accept) and res.plural in tables.COLUMNS:
            obj = tables.to_table(res, [obj], obj["metadata"].get("resourceVersion", ""),
                                  query.get("includeObject", "Metadata"))
        elif "as=PartialObjectMetadata" in accept:
            obj = {"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1", "metadata": obj["metadata"]}
        self._send_json(code, obj)

    def _create(self, res, namespace, name, sub, query, body):
        obj = self.double.api.create(res, namespace, decode_body(body, self.headers.get("Content-Type")),
                                     **self._common(query))
        self._respond_object(201, res, obj, query)

    def _get(self, res, namespace, name, sub, query, body):
        self._respond_object(200, res, self.double.store.get(res, namespace, name), query)

    def _update(self, res, namespace, name, sub, query, body):
        obj = self.double.api.replace(res, namespace, name, decode_body(body, self.headers.get("Content-Type")),
                                      sub, **self._common(query))
        self._respond_object(200, res, obj, query)

    def _patch(self, res, namespace, name, sub, query, body):
        obj = self.double.api.patch(res, namespace, name, body, self.headers.get("Content-Type"), sub,
                                    field_manager=query.get("fieldManager"), **self._common(query))
        self._respond_object(200, res, obj, query)

    def _delete_options(self, query, body):
        options = decode_body(body, "application/json") if body else None
        options = options if isinstance(options, dict) else {}
        policy = query.get("propagationPolicy") or options.get("propagationPolicy")
        orphan = query.get("orphanDependents") or options.get("orphanDependents")
        if not policy and orphan is not None:
            policy = "Orphan" if _truthy(str(orphan)) else "Background"
        if policy not in (None, "Orphan", "Background", "Foreground"):
            raise bad_request(f'propagationPolicy: Unsupported value: "{policy}": supported values: '
                              '"Foreground", "Background", "Orphan"')
        dry_run = query.get("dryRun") == "All" or options.get("dryRun") == ["All"]
        return policy, options.get("preconditions"), dry_run

    def _delete(self, res, namespace, name, sub, query, body):
        policy, preconditions, dry_run = self._delete_options(query, body)
        self._send_json(200, self.double.api.delete(res, namespace, name, policy, preconditions, dry_run))

    def _deletecollection(self, res, namespace, name, sub, query, body):
        policy, _, dry_run = self._delete_options(query, body)
        selector = Selector(res, query.get("labelSelector"), query.get("fieldSelector"))
        items = self.double.api.delete_collection(res, namespace, selector, policy, dry_run)
        self._send_json(200, self._list_body(res, items, str(self.double.store.rv)))

    def _list_body(self, res, items, rv, cont=None, remaining=None):
        # Items of a list carry no kind/apiVersion, as from the real server.
        meta = {"resourceVersion": rv}
        if cont:
            meta.update({"continue": cont, "remainingItemCount": remaining})
        return {"kind": res.list_kind, "apiVersion": res.api_version, "metadata": meta,
                "items": [{k: v for k, v in o.items() if k not in ("kind", "apiVersion")} for o in items]}

    def _list(self, res, namespace, name, sub, query, body):
        selector = Selector(res, query.get("labelSelector"), query.get("fieldSelector"))
        items, rv = self.double.store.list(res, namespace, selector)
        start = _decode_continue(query.get("continue"))
        items = items[start:]
        limit = int(query.get("limit") or 0)
        cont = remaining = None
        if limit and len(items) > limit:
            cont = base64.urlsafe_b64encode(json.dumps({"offset": start + limit}).encode()).decode()
            remaining = len(items) - limit
            items = items[:limit]
        accept = self.headers.get("Accept") or ""
        if tables.wants_table(accept) and res.plural in tables.COLUMNS:
            return self._send_json(200, tables.to_table(res, items, rv, query.get("includeObject", "Metadata")))
        if "as=PartialObjectMetadataList" in accept:
            return self._send_json(200, {"kind": "PartialObjectMetadataList", "apiVersion": "meta.k8s.io/v1",
                                         "metadata": {"resourceVersion": rv}, "items": [
                                             {"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1",
                                              "metadata": o["metadata"]} for o in items]})
        self._send_json(200, self._list_body(res, items, rv, cont, remaining))

    def _watch(self, res, namespace, name, sub, query, body):
        if name is not None:  # the deprecated /watch/namespaces/ns/pods/NAME form
            query = dict(query, fieldSelector=f"metadata.name={name}")
        selector = Selector(res, query.get("labelSelector"), query.get("fieldSelector"))
        deadline = time.monotonic() + float(query.get("timeoutSeconds") or DEFAULT_WATCH_SECONDS)
        store, rv_param = self.double.store, query.get("resourceVersion")
        initial_end = _truthy(query.get("sendInitialEvents")) and _truthy(query.get("allowWatchBookmarks"))
        with store.cond:
            epoch, seen = store.epoch, store.changes
            initial = []
            if not rv_param or rv_param == "0" or _truthy(query.get("sendInitialEvents")):
                # No version (or "0"): the watch starts with the current state as ADDED events.
                initial, rv = store.list(res, namespace, selector)
                since = int(rv)
            else:
                since = int(rv_param)
        self._start_stream("application/json")
        send = self._event_sender(res, query)
        for obj in initial:
            send("ADDED", obj)
        if initial_end:
            self._chunk(_dumps({"type": "BOOKMARK", "object": _bookmark(res, since, initial_end=True)}) + b"\n")
        while True:
            try:
                with store.cond:
                    seen = store.changes
                    events = store.events_after(since)
            except ApiError as exc:  # history gone: an ERROR event with the 410 Status, like the real server
                self._chunk(_dumps({"type": "ERROR", "object": exc.status()}) + b"\n")
                break
            for event in events:
                since = event.rv
                type_ = _event_type(event, res, namespace, selector)
                if type_:
                    send(type_, event.obj)
            remaining = deadline - time.monotonic()
            if remaining <= 0 or store.epoch != epoch or self.double.stopping:
                break
            store.wait_for_change(seen, min(remaining, POLL_SECONDS))
        self._end_stream()

    def _event_sender(self, res, query):
        """Writes one watch event; `kubectl get -w` asks for Tables, whose column definitions come only with
        the first event (as from the real server)."""
        as_table = tables.wants_table(self.headers.get("Accept")) and res.plural in tables.COLUMNS
        first = [True]

        def send(type_, obj):
            if as_table:
                obj = tables.to_table(res, [obj], obj["metadata"].get("resourceVersion", ""),
                                      query.get("includeObject", "Metadata"))
                if not first[0]:
                    obj["columnDefinitions"] = []
                first[0] = False
            self._chunk(_dumps({"type": type_, "object": obj}) + b"\n")
        return send

    def _logs(self, res, namespace, name, sub, query, body):
        store, book = self.double.store, self.double.logs
        pod = store.get(PODS, namespace, name)
        container = pick_container(pod, query.get("container"))
        check_started(pod, container)
        options = LogQuery(query)
        if not options.follow:
            return self._send(200, options.render(book.lines(namespace, name, container)),
                              "text/plain")
        self._start_stream("text/plain")
        sent, drops, epoch = 0, book.drops(namespace, name), store.epoch
        while True:
            with store.cond:
                seen = store.changes
                pod = store.find(PODS, namespace, name)
                lines = book.lines(namespace, name, container)
            self._chunk(options.render(lines[sent:], first=sent == 0))
            sent = len(lines)
            if book.drops(namespace, name) != drops:
                raise StreamAborted()  # end without the last chunk: the client sees a broken stream
            if pod is None or kubelet.is_finished(pod, container) or store.epoch != epoch or self.double.stopping:
                break
            store.wait_for_change(seen, POLL_SECONDS)
        self._end_stream()

    def _exec(self, res, namespace, name, sub, query, body):
        from .ws_exec import serve_exec
        serve_exec(self, namespace, name)


def _decode_continue(token):
    if not token:
        return 0
    try:
        return int(json.loads(base64.urlsafe_b64decode(token.encode()))["offset"])
    except (ValueError, KeyError, TypeError):
        raise bad_request("continue key is not valid")


def _bookmark(res, rv, initial_end=False):
    meta = {"resourceVersion": str(rv)}
    if initial_end:
        meta["annotations"] = {"k8s.io/initial-events-end": "true"}
    return {"kind": res.kind, "apiVersion": res.api_version, "metadata": meta}


def _event_type(event, res, namespace, selector):
    """The event a watch with this selector sees: objects entering or leaving the selection are ADDED or
    DELETED, as the real watch cache reports them."""
    if event.res is not res or (namespace is not None and event.namespace() != namespace):
        return None
    now_in = event.type != "DELETED" and selector.matches(event.obj)
    was_in = event.old is not None and selector.matches(event.old)
    if event.type == "DELETED":
        return "DELETED" if was_in else None
    if now_in and was_in:
        return "MODIFIED"
    if now_in:
        return "ADDED"
    return "DELETED" if was_in else None
