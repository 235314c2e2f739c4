"""The verbs, as the real registry runs them: decode, check, default, validate, store, cascade.

Independent of HTTP: the handler parses the request and calls these; the test hooks use them too.
"""
import json
import threading
from dataclasses import dataclass

import yaml

from . import patch as patches
from . import protobuf, resources, schema
from .defaults import check_resource_version, prepare_create, prepare_update
from .status import (
    ApiError,
    already_exists,
    bad_request,
    cause,
    conflict,
    invalid,
    not_found,
    success,
    unsupported_media_type,
)
from .store import clone

NAMESPACES = resources.lookup("namespaces")
PODS = resources.lookup("pods")
JOBS = resources.lookup("jobs")


@dataclass
class Options:
    validate: bool = True  # schema-check bodies with kubernetes-validate (benchmarks turn it off)
    job_controller: bool = True  # create a pod for each new job
    # fieldValidation a request gets when it names none. The real default is "Warn" (unknown fields are
    # dropped with a warning); "Strict" catches misspelled fields in manifests the toolbox renders.
    default_field_validation: str = "Strict"


@dataclass
class FailureRule:
    code: int
    reason: str
    message: str
    verb: str = "create"
    plural: str = None
    skip: int = 0
    times: int = 1


def decode_body(raw, content_type):
    """Parse a JSON (or YAML) request body; a 400 like the real server's when it is not valid."""
    media = (content_type or "application/json").split(";")[0].strip().lower()
    if media == "application/vnd.kubernetes.protobuf":
        try:
            obj = protobuf.decode(raw or b"")
        except (ValueError, IndexError, UnicodeDecodeError) as exc:
            raise bad_request(f"the object provided is unrecognized or could not be decoded: {exc}")
        if obj is None:
            raise unsupported_media_type(media)
        return obj
    if "protobuf" in media:
        raise unsupported_media_type(media)
    text = raw.decode("utf-8", errors="replace") if raw else ""
    try:
        if media.endswith("yaml"):
            return yaml.safe_load(text)
        return json.loads(text) if text.strip() else None
    except (ValueError, yaml.YAMLError) as exc:
        raise bad_request(f"the object provided is unrecognized or could not be decoded: {exc}")


class Api:
    def __init__(self, store, options=None):
        self.store = store
        self.options = options or Options()
        self.failures = []
        self._failures_lock = threading.Lock()
        self.controller = None  # set by the server: the job controller reacting to new jobs

    # --- failure injection ---

    def inject_failure(self, rule):
        with self._failures_lock:
            self.failures.append(rule)

    def _maybe_fail(self, verb, res, name=None):
        with self._failures_lock:
            for rule in self.failures:
                if rule.verb != verb or rule.plural not in (None, res.plural):
                    continue
                if rule.skip > 0:
                    rule.skip -= 1
                    return
                rule.times -= 1
                if rule.times <= 0:
                    self.failures.remove(rule)
                details = {"name": name or "", "kind": res.plural}
                if res.group:
                    details["group"] = res.group
                raise ApiError(rule.code, rule.reason, rule.message, details)

    # --- checks shared by create and update ---

    def _check_kind(self, res, obj):
        if not isinstance(obj, dict):
            raise bad_request(f"the object provided is unrecognized (must be a JSON object of kind {res.kind})")
        if not obj.get("kind"):
            raise bad_request(f"Object 'Kind' is missing in '{json.dumps(obj)[:200]}'")
        if obj.get("kind") != res.kind or obj.get("apiVersion") != res.api_version:
            raise bad_request(f"the API version in the data ({obj.get('apiVersion')}) does not match the expected "
                              f"API version ({res.api_version})" if obj.get("kind") == res.kind else
                              f"the kind in the data ({obj.get('kind')}) does not match the expected kind "
                              f"({res.kind})")

    def _validate(self, res, obj, field_validation):
        """Schema and semantic checks; returns warnings (unknown fields under fieldValidation=Warn)."""
        warnings = []
        mode = field_validation or self.options.default_field_validation
        if self.options.validate:
            warnings = schema.check_schema(res, obj, mode)
        return warnings

    def _require_namespace(self, res, namespace):
        if res.namespaced and self.store.find(NAMESPACES, None, namespace) is None:
            raise not_found(NAMESPACES, namespace)

    # --- verbs ---

    def create(self, res, namespace, body, field_validation=None, dry_run=False, warnings=None):
        self._check_kind(res, body)
        obj = clone(body)
        name = (obj.get("metadata") or {}).get("name")
        self._maybe_fail("create", res, name)
        if res.namespaced:
            body_ns = (obj.get("metadata") or {}).get("namespace")
            if body_ns and body_ns != namespace:
                raise bad_request("the namespace of the provided object does not match the namespace sent on "
                                  "the request")
        found = self._validate(res, obj, field_validation)
        self._require_namespace(res, namespace)
        prepare_create(res, obj, namespace)
        causes = resources.name_causes(res, obj["metadata"].get("name"))
        if res.plural == "jobs" and not causes and len(obj["metadata"]["name"]) > 63:
            # The job-name label the server adds to the pod template must be a valid label value.
            causes = [cause("spec.template.labels", f'Invalid value: "{obj["metadata"]["name"]}": must be no '
                                                    "more than 63 characters")]
        if causes:
            raise invalid(res, obj["metadata"].get("name") or "", causes)
        schema.check_semantics(res, obj)
        if warnings is not None:
            warnings.extend(found)
        if dry_run:
            return obj
        with self.store.cond:
            if self.store.find(res, namespace, obj["metadata"]["name"]) is not None:
                raise already_exists(res, obj["metadata"]["name"])
            self.store.put(res, obj, "ADDED")
        if res.plural == "jobs" and self._controller_on():
            self.controller.job_created(obj)
        return obj

    def replace(self, res, namespace, name, body, subresource=None, field_validation=None, dry_run=False,
                warnings=None):
        self._maybe_fail("update", res, name)
        return self._replace(res, namespace, name, body, subresource, field_validation, dry_run, warnings)

    def _replace(self, res, namespace, name, body, subresource, field_validation, dry_run, warnings):
        self._check_kind(res, body)
        new = clone(body)
        with self.store.cond:
            old = self.store.get(res, namespace, name)
            check_resource_version(res, old, new)
            found = self._validate(res, new, field_validation)
            new = prepare_update(res, old, new, subresource)
            schema.check_semantics(res, new)
            if warnings is not None:
                warnings.extend(found)
            if dry_run or new == old:
                return old if not dry_run else new
            stored = self.store.put(res, new, "MODIFIED")
            if res.plural == "jobs" and subresource is None and self._controller_on():
                self.controller.job_changed(stored)  # e.g. unsuspended, or parallelism changed
            return stored

    def _controller_on(self):
        return self.controller is not None and self.options.job_controller

    def patch(self, res, namespace, name, raw, content_type, subresource=None, field_validation=None,
              field_manager=None, dry_run=False, warnings=None):
        media = (content_type or "").split(";")[0].strip().lower()
        body = decode_body(raw, media)
        self._maybe_fail("patch", res, name)
        with self.store.cond:
            current = self.store.find(res, namespace, name)
            if media == "application/apply-patch+yaml":
                if not field_manager:
                    raise invalid_apply()
                if current is None:
                    # Server-side apply creates what does not exist yet.
                    return self.create(res, namespace, body, field_validation, dry_run, warnings)
                patched = patches.strategic_merge_patch(current, body)
            elif current is None:
                raise not_found(res, name)
            elif media == "application/json-patch+json":
                patched = patches.json_patch(current, body)
            elif media == "application/merge-patch+json":
                patched = patches.merge_patch(current, body)
            elif media == "application/strategic-merge-patch+json":
                patched = patches.strategic_merge_patch(current, body)
            else:
                raise unsupported_media_type(media)
            if not isinstance(patched, dict):
                raise bad_request("the patch did not produce an object")
            return self._replace(res, namespace, name, patched, subresource, field_validation, dry_run, warnings)

    def delete(self, res, namespace, name, propagation=None, preconditions=None, dry_run=False, cascade=False):
        """`cascade`: the garbage collector deleting a dependent (the job controller does not react)."""
        self._maybe_fail("delete", res, name)
        with self.store.cond:
            obj = self.store.get(res, namespace, name)
            _check_preconditions(res, obj, preconditions)
            if dry_run:
                return success(res, name, obj["metadata"]["uid"])
            if res.plural == "pods" and not cascade and self._controller_on():
                self.controller.pod_deleting(obj)
                obj = self.store.get(res, namespace, name)
            # batch/v1 jobs orphan their pods by default (a compatibility quirk of the real API): clients
            # must ask for Background or Foreground to delete the pods with the job.
            policy = propagation or ("Orphan" if res.plural == "jobs" else "Background")
            if policy == "Foreground":
                self._delete_dependents(obj, "Foreground")
            self.store.remove(res, namespace, name)
            if policy == "Orphan":
                self._orphan_dependents(obj)
            elif policy == "Background":
                self._delete_dependents(obj, "Background")
            if res.plural == "namespaces":
                self._empty_namespace(name)
            # Pods answer with the deleted object (ReturnDeletedObject in the real registry), others a Status.
            return obj if res.plural == "pods" else success(res, name, obj["metadata"]["uid"])

    def delete_collection(self, res, namespace, selector, propagation=None, dry_run=False):
        self._maybe_fail("deletecollection", res)
        with self.store.cond:
            items, _ = self.store.list(res, namespace, selector)
            for obj in items:
                meta = obj["metadata"]
                if not dry_run:
                    self.delete(res, meta.get("namespace"), meta["name"], propagation)
            return items

    # --- cascading ---

    def _dependents(self, owner):
        uid = owner["metadata"]["uid"]
        for res in resources.RESOURCES:
            for obj in self.store.owned(res, uid):
                yield res, obj

    def _delete_dependents(self, owner, policy):
        for res, obj in list(self._dependents(owner)):
            meta = obj["metadata"]
            if self.store.find(res, meta.get("namespace"), meta["name"]) is not None:
                self.delete(res, meta.get("namespace"), meta["name"], policy, cascade=True)

    def _orphan_dependents(self, owner):
        uid = owner["metadata"]["uid"]
        for res, obj in list(self._dependents(owner)):
            orphan = clone(obj)
            refs = [r for r in orphan["metadata"]["ownerReferences"] if r.get("uid") != uid]
            if refs:
                orphan["metadata"]["ownerReferences"] = refs
            else:
                del orphan["metadata"]["ownerReferences"]
            self.store.put(res, orphan, "MODIFIED")

    def _empty_namespace(self, namespace):
        for res in resources.RESOURCES:
            if res.namespaced:
                for obj in self.store.list(res, namespace)[0]:
                    self.store.remove(res, namespace, obj["metadata"]["name"])

    # --- helpers for hooks: change an object in place of a controller ---

    def update_object(self, res, namespace, name, mutate):
        """Apply `mutate(copy)` to a stored object and store the result (one MODIFIED event)."""
        with self.store.cond:
            obj = clone(self.store.get(res, namespace, name))
            mutate(obj)
            return self.store.put(res, obj, "MODIFIED")


def _check_preconditions(res, obj, preconditions):
    for key in ("uid", "resourceVersion"):
        wanted = (preconditions or {}).get(key)
        if wanted and wanted != obj["metadata"].get(key):
            raise conflict(res, obj["metadata"]["name"])


def invalid_apply():
    return ApiError(422, "Invalid", 'PatchOptions.meta.k8s.io "" is invalid: fieldManager: Required value: is '
                                    "required for apply patch",
                    {"group": "meta.k8s.io", "kind": "PatchOptions",
                     "causes": [cause("fieldManager", "Required value: is required for apply patch",
                                      "FieldValueRequired")]})
