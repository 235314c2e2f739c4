"""Discovery documents kubectl reads before anything else: /version, /api, /apis, the resource lists and
the /openapi/v3 stubs.

Legacy (unaggregated) discovery only: kubectl asks for aggregated discovery in its Accept header and falls
back when the answer is plain `application/json`. The OpenAPI v3 stubs exist for one reason: a PATCH
operation that lists the `fieldValidation` query parameter makes kubectl send `?fieldValidation=Strict` and
skip its client-side validation (which would otherwise fetch /openapi/v2 as protobuf and fail).
"""
import hashlib
import json

from .resources import RESOURCES

VERSION = {
    "major": "1", "minor": "33", "gitVersion": "v1.33.1", "gitCommit": "8adc0f041b8e7ad1d30e29cc59c6ae7a15e19828",
    "gitTreeState": "clean", "buildDate": "2025-05-15T08:19:08Z", "goVersion": "go1.24.2", "compiler": "gc",
    "platform": "linux/amd64", "emulationMajor": "1", "emulationMinor": "33",
    "minCompatibilityMajor": "1", "minCompatibilityMinor": "32",
}

GROUP_VERSIONS = {"": "v1", "batch": "v1"}

SUBRESOURCE_VERBS = {"status": ["get", "patch", "update"], "log": ["get"], "exec": ["create", "get"]}
SUBRESOURCE_KINDS = {"log": "Pod", "exec": "PodExecOptions"}


def api_versions(server_address):
    return {"kind": "APIVersions", "versions": ["v1"],
            "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": server_address}]}


def _group(name):
    version = {"groupVersion": f"{name}/{GROUP_VERSIONS[name]}", "version": GROUP_VERSIONS[name]}
    return {"name": name, "versions": [version], "preferredVersion": version}


def api_group_list():
    return {"kind": "APIGroupList", "apiVersion": "v1", "groups": [_group(g) for g in GROUP_VERSIONS if g]}


def api_group(name):
    return dict(_group(name), kind="APIGroup", apiVersion="v1") if name in GROUP_VERSIONS and name else None


def resource_list(group, version):
    if GROUP_VERSIONS.get(group) != version:
        return None
    entries = []
    for res in RESOURCES:
        if res.group != group:
            continue
        entry = {"name": res.plural, "singularName": res.singular, "namespaced": res.namespaced, "kind": res.kind,
                 "verbs": list(res.verbs),
                 "storageVersionHash": hashlib.sha1(res.plural.encode()).hexdigest()[:11]}
        if res.short_names:
            entry["shortNames"] = list(res.short_names)
        if res.categories:
            entry["categories"] = list(res.categories)
        entries.append(entry)
        for sub in res.subresources:
            entries.append({"name": f"{res.plural}/{sub}", "singularName": "", "namespaced": res.namespaced,
                            "kind": SUBRESOURCE_KINDS.get(sub, res.kind), "verbs": SUBRESOURCE_VERBS[sub]})
    return {"kind": "APIResourceList", "apiVersion": "v1",
            "groupVersion": f"{group}/{version}" if group else version, "resources": entries}


# --- OpenAPI v3 ---

def _doc_key(res):
    return f"apis/{res.group}/{res.version}" if res.group else f"api/{res.version}"


def _param(name, description):
    return {"name": name, "in": "query", "description": description,
            "schema": {"type": "string", "uniqueItems": True}}


def _patch_operation(res):
    gvk = {"group": res.group, "version": res.version, "kind": res.kind}
    ref = {"type": "object"}
    return {
        "tags": [res.group or "core_v1"],
        "description": f"partially update the specified {res.kind}",
        "operationId": f"patch{res.kind}",
        "parameters": [
            _param("dryRun", "When present, indicates that modifications should not be persisted."),
            _param("fieldManager", "fieldManager is a name associated with the actor or entity that is "
                                   "making these changes."),
            _param("fieldValidation", "fieldValidation instructs the server on how to handle objects in the "
                                      "request containing unknown or duplicate fields: Ignore, Warn or Strict."),
            {"name": "force", "in": "query", "description": "Force is going to force Apply requests.",
             "schema": {"type": "boolean", "uniqueItems": True}},
        ],
        "requestBody": {"content": {t: {"schema": {"type": "object"}} for t in (
            "application/apply-patch+yaml", "application/json-patch+json", "application/merge-patch+json",
            "application/strategic-merge-patch+json")}, "required": True},
        "responses": {"200": {"description": "OK", "content": {"application/json": {"schema": ref}}}},
        "x-kubernetes-action": "patch",
        "x-kubernetes-group-version-kind": gvk,
    }


def openapi_document(key):
    """The stub document for `api/v1` or `apis/batch/v1`: one PATCH operation per kind."""
    # No component schemas on purpose: without them `kubectl apply` computes its strategic merge patches
    # from its compiled-in types (merge keys included) instead of from a schema this stub would get wrong.
    paths = {}
    for res in RESOURCES:
        if _doc_key(res) != key:
            continue
        prefix = "/" + key + ("/namespaces/{namespace}" if res.namespaced else "")
        paths[f"{prefix}/{res.plural}/{{name}}"] = {"patch": _patch_operation(res)}
    if not paths:
        return None
    return {"openapi": "3.0.0", "info": {"title": "Kubernetes", "version": VERSION["gitVersion"]},
            "paths": paths, "components": {}}


def openapi_index():
    keys = sorted({_doc_key(r) for r in RESOURCES})
    paths = {}
    for key in keys:
        digest = hashlib.sha512(json.dumps(openapi_document(key), sort_keys=True).encode()).hexdigest()[:128]
        paths[key] = {"serverRelativeURL": f"/openapi/v3/{key}?hash={digest.upper()}"}
    return {"paths": paths}
