"""The resources the double serves, and the DNS-1123 name rules the real API enforces on them."""
import re
from dataclasses import dataclass

from .status import cause

ALL_VERBS = ["create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"]


@dataclass(frozen=True)
class Resource:
    plural: str
    kind: str
    group: str = ""
    version: str = "v1"
    namespaced: bool = True
    short_names: tuple = ()
    singular: str = ""
    name_rule: str = "subdomain"  # "subdomain" (<= 253, dots allowed), "label" (<= 63, no dots) or "dns1035"
    subresources: tuple = ()  # e.g. ("status", "log")
    categories: tuple = ()
    field_selectors: tuple = ()  # beyond metadata.name / metadata.namespace
    has_generation: bool = False
    verbs: tuple = tuple(ALL_VERBS)

    @property
    def api_version(self):
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def qualified(self):
        """`jobs.batch` / `pods`: how NotFound and AlreadyExists messages name the resource."""
        return f"{self.plural}.{self.group}" if self.group else self.plural

    @property
    def kind_qualified(self):
        """`Job.batch` / `Pod`: how Invalid messages name the kind."""
        return f"{self.kind}.{self.group}" if self.group else self.kind

    @property
    def list_kind(self):
        return self.kind + "List"


POD_FIELDS = ("status.phase", "spec.nodeName", "spec.restartPolicy", "spec.schedulerName",
              "spec.serviceAccountName", "spec.hostNetwork", "status.podIP", "status.nominatedNodeName")
EVENT_FIELDS = ("involvedObject.kind", "involvedObject.namespace", "involvedObject.name", "involvedObject.uid",
                "involvedObject.apiVersion", "involvedObject.resourceVersion", "involvedObject.fieldPath",
                "reason", "reportingComponent", "source", "type")

RESOURCES = [
    Resource("namespaces", "Namespace", namespaced=False, short_names=("ns",), singular="namespace",
             name_rule="label", subresources=("status",), field_selectors=("status.phase",),
             verbs=("create", "delete", "get", "list", "patch", "update", "watch")),
    Resource("pods", "Pod", short_names=("po",), singular="pod", subresources=("status", "log", "exec"),
             categories=("all",), field_selectors=POD_FIELDS, has_generation=True),
    Resource("secrets", "Secret", singular="secret", field_selectors=("type",)),
    Resource("configmaps", "ConfigMap", short_names=("cm",), singular="configmap"),
    Resource("events", "Event", short_names=("ev",), singular="event", field_selectors=EVENT_FIELDS),
    # Older servers refused deletecollection on services; current ones (and the client's
    # delete_collection_namespaced_service) have it.
    Resource("services", "Service", short_names=("svc",), singular="service", name_rule="dns1035",
             subresources=("status",), categories=("all",), field_selectors=("spec.clusterIP", "spec.type")),
    Resource("jobs", "Job", group="batch", singular="job", subresources=("status",), categories=("all",),
             field_selectors=("status.successful",), has_generation=True),
]

BY_PLURAL = {(r.group, r.version, r.plural): r for r in RESOURCES}


def lookup(kind_or_plural):
    """Find a resource by plural, singular, short name or Kind (any case): for the test hooks."""
    wanted = kind_or_plural.lower()
    for res in RESOURCES:
        if wanted in (res.plural, res.singular, res.kind.lower(), *res.short_names):
            return res
    raise KeyError(f"unknown resource {kind_or_plural!r}")


def for_object(obj):
    """The resource of a manifest dict, from its apiVersion and kind."""
    for res in RESOURCES:
        if res.api_version == obj.get("apiVersion") and res.kind == obj.get("kind"):
            return res
    raise KeyError(f"unknown kind {obj.get('apiVersion')}/{obj.get('kind')}")


# --- DNS-1123 names (wording copied from k8s.io/apimachinery validation so error texts match) ---

LABEL_FMT = "[a-z0-9]([-a-z0-9]*[a-z0-9])?"
SUBDOMAIN_FMT = LABEL_FMT + r"(\." + LABEL_FMT + ")*"
LABEL_RE = re.compile(f"^{LABEL_FMT}$")
SUBDOMAIN_RE = re.compile(f"^{SUBDOMAIN_FMT}$")
LABEL_MSG = ("a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must "
             "start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for "
             f"validation is '{LABEL_FMT}')")
DNS1035_FMT = "[a-z]([-a-z0-9]*[a-z0-9])?"
DNS1035_RE = re.compile(f"^{DNS1035_FMT}$")
DNS1035_MSG = ("a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with an "
               "alphabetic character, and end with an alphanumeric character (e.g. 'my-name',  or 'abc-123', regex "
               f"used for validation is '{DNS1035_FMT}')")
SUBDOMAIN_MSG = ("a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', "
                 "and must start and end with an alphanumeric character (e.g. 'example.com', regex used for "
                 f"validation is '{SUBDOMAIN_FMT}')")

LABEL_VALUE_RE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")
LABEL_VALUE_MSG = ("a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', "
                   "and must start and end with an alphanumeric character (e.g. 'MyValue',  or 'my_value',  or "
                   "'12345', regex used for validation is '(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')")


def name_causes(res, name, field="metadata.name"):
    """Causes (possibly empty) that make `name` invalid for `res`."""
    if not name:
        return [cause(field, "Required value: name or generateName is required", "FieldValueRequired")]
    limit, regex, msg = {"label": (63, LABEL_RE, LABEL_MSG), "dns1035": (63, DNS1035_RE, DNS1035_MSG)}.get(
        res.name_rule, (253, SUBDOMAIN_RE, SUBDOMAIN_MSG))
    causes = []
    if len(name) > limit:
        causes.append(cause(field, f'Invalid value: "{name}": must be no more than {limit} characters'))
    if not regex.match(name):
        causes.append(cause(field, f'Invalid value: "{name}": {msg}'))
    return causes


def label_causes(labels, field):
    """Causes for label values that the real server would reject (too long or bad characters)."""
    causes = []
    for key, value in sorted((labels or {}).items()):
        value = "" if value is None else str(value)
        if len(value) > 63:
            causes.append(cause(f"{field}", f'Invalid value: "{value}": must be no more than 63 characters'))
        elif not LABEL_VALUE_RE.match(value):
            causes.append(cause(f"{field}", f'Invalid value: "{value}": {LABEL_VALUE_MSG}'))
    return causes
