"""Services as the real registry stores them: defaults, allocated cluster IPs and node ports, validation.

A headless Service (`clusterIP: None`) gets no address; with a selector it is what gives the pods of an
Indexed Job stable DNS names (`<hostname>.<subdomain>`): see executor.HostsFile for how those names resolve
in executor mode. Nothing here routes traffic: there is no kube-proxy, no Endpoints or EndpointSlices.
"""
import ipaddress
import re
import threading

from .resources import LABEL_MSG, LABEL_RE, label_causes
from .status import cause, invalid

TYPES = ("ClusterIP", "ExternalName", "LoadBalancer", "NodePort")
PROTOCOLS = ("SCTP", "TCP", "UDP")
PORT_NAME_RE = re.compile(r"^[a-z0-9]([a-z0-9-]*[a-z0-9])?$")
_NODE_PORTS = range(30000, 32768)


class Allocator:
    """Cluster IPs from 10.96.0.0/12 (10.96.0.1 is the `kubernetes` Service's) and node ports, never reused
    while the double runs: enough to keep every address unique."""

    def __init__(self):
        self._lock = threading.Lock()
        self._next_ip = 10
        self._next_port = 0

    def cluster_ip(self):
        with self._lock:
            self._next_ip += 1
            return str(ipaddress.IPv4Address("10.96.0.0") + self._next_ip)

    def node_port(self):
        with self._lock:
            self._next_port += 1
            return _NODE_PORTS[self._next_port % len(_NODE_PORTS)]


ALLOCATOR = Allocator()


def is_headless(service):
    return (service.get("spec") or {}).get("clusterIP") == "None"


def apply_defaults(obj):
    """SetDefaults_Service: type, session affinity, traffic policies, port protocol and targetPort."""
    spec = obj.setdefault("spec", {})
    spec.setdefault("type", "ClusterIP")
    spec.setdefault("sessionAffinity", "None")
    kind = spec["type"]
    if kind != "ExternalName":
        spec.setdefault("internalTrafficPolicy", "Cluster")
    if kind in ("NodePort", "LoadBalancer"):
        spec.setdefault("externalTrafficPolicy", "Cluster")
    if kind == "LoadBalancer":
        spec.setdefault("allocateLoadBalancerNodePorts", True)
    for port in spec.get("ports") or []:
        if isinstance(port, dict):
            port.setdefault("protocol", "TCP")
            if port.get("targetPort") in (None, 0, ""):
                port["targetPort"] = port.get("port")


def allocate(obj, old=None):
    """What the registry allocates: cluster IP(s) and IP families, node ports. On update the allocated values
    of `old` are kept when the new body leaves them out (as `kubectl replace` of a hand-written file does)."""
    spec = obj["spec"]
    old_spec = (old or {}).get("spec") or {}
    if spec["type"] == "ExternalName":
        for key in ("clusterIP", "clusterIPs", "ipFamilies", "ipFamilyPolicy"):
            spec.pop(key, None)
    else:
        for key in ("clusterIP", "clusterIPs", "ipFamilies", "ipFamilyPolicy"):
            if not spec.get(key) and old_spec.get(key):
                spec[key] = old_spec[key]
        if not spec.get("clusterIP"):
            spec["clusterIP"] = spec["clusterIPs"][0] if spec.get("clusterIPs") else ALLOCATOR.cluster_ip()
        spec.setdefault("clusterIPs", [spec["clusterIP"]])
        # Headless without a selector: the real server asks for both families (its records are set by hand).
        dual = is_headless(obj) and not spec.get("selector")
        spec.setdefault("ipFamilyPolicy", "RequireDualStack" if dual else "SingleStack")
        spec.setdefault("ipFamilies", ["IPv4", "IPv6"] if dual else ["IPv4"])
    if spec["type"] in ("NodePort", "LoadBalancer"):
        old_ports = {(p.get("port"), p.get("protocol")): p.get("nodePort") for p in old_spec.get("ports") or []
                     if isinstance(p, dict)}
        for port in spec.get("ports") or []:
            if isinstance(port, dict) and not port.get("nodePort"):
                port["nodePort"] = old_ports.get((port.get("port"), port.get("protocol"))) or ALLOCATOR.node_port()
    obj.setdefault("status", {}).setdefault("loadBalancer", {})


def _port_causes(spec):
    causes, names, keys = [], set(), set()
    ports = spec.get("ports") or []
    for index, port in enumerate(ports):
        field = f"spec.ports[{index}]"
        name = port.get("name") or ""
        if len(ports) > 1 and not name:
            causes.append(cause(f"{field}.name", "Required value", "FieldValueRequired"))
        elif name and (len(name) > 15 or not PORT_NAME_RE.match(name) or "--" in name
                       or not re.search("[a-z]", name)):
            causes.append(cause(f"{field}.name", f'Invalid value: "{name}": must be no more than 15 characters, '
                                                 "contain only lowercase alphanumerics or '-', with at least one "
                                                 "letter, and no '-' at either end or next to another '-'"))
        elif name in names:
            causes.append(cause(f"{field}.name", f'Duplicate value: "{name}"', "FieldValueDuplicate"))
        names.add(name)
        number = port.get("port")
        if not isinstance(number, int) or not 1 <= number <= 65535:
            causes.append(cause(f"{field}.port", f"Invalid value: {number}: must be between 1 and 65535, "
                                                 "inclusive"))
        protocol = port.get("protocol")
        if protocol not in PROTOCOLS:
            causes.append(cause(f"{field}.protocol", f'Unsupported value: "{protocol}": supported values: '
                                                     '"SCTP", "TCP", "UDP"', "FieldValueNotSupported"))
        if (number, protocol) in keys:
            causes.append(cause(field, f'Duplicate value: {{"Port":{number},"Protocol":"{protocol}"}}',
                                "FieldValueDuplicate"))
        keys.add((number, protocol))
    return causes


def _ip_causes(spec):
    value = spec.get("clusterIP")
    if value in (None, "", "None"):
        return []
    try:
        ipaddress.ip_address(value)
        return []
    except ValueError:
        return [cause("spec.clusterIPs[0]", f'Invalid value: "{value}": must be a valid IP address, (e.g. '
                                            "10.9.8.7 or 2001:db8::ffff)")]


def semantic_causes(obj):
    """ValidateService's rules that the JSON schema cannot express."""
    spec = obj.get("spec") or {}
    kind = spec.get("type")
    if kind not in TYPES:
        return [cause("spec.type", f'Unsupported value: "{kind}": supported values: "ClusterIP", '
                                   '"ExternalName", "LoadBalancer", "NodePort"', "FieldValueNotSupported")]
    causes = label_causes(spec.get("selector"), "spec.selector")
    if kind == "ExternalName":
        if not spec.get("externalName"):
            causes.append(cause("spec.externalName", "Required value", "FieldValueRequired"))
        return causes
    if not spec.get("ports") and not is_headless(obj):
        causes.append(cause("spec.ports", "Required value", "FieldValueRequired"))
    if is_headless(obj) and kind in ("NodePort", "LoadBalancer"):
        causes.append(cause("spec.clusterIPs[0]", f'Invalid value: "None": may not be set to \'None\' for '
                                                  f"{kind} services"))
    return causes + _port_causes(spec) + _ip_causes(spec)


def check_update(res, old, new):
    """The cluster IP may not change once set (an empty one was filled from `old` by allocate())."""
    before, after = (old.get("spec") or {}).get("clusterIP"), (new.get("spec") or {}).get("clusterIP")
    if before and after and before != after:
        raise invalid(res, old["metadata"]["name"], [cause("spec.clusterIPs[0]", f'Invalid value: ["{after}"]: '
                                                                                 "may not change once set")])


def hostname_causes(spec, base):
    """A pod's hostname and subdomain are DNS labels (they become DNS names under a headless Service)."""
    causes = []
    for key in ("hostname", "subdomain"):
        value = spec.get(key)
        if value and (len(value) > 63 or not LABEL_RE.match(value)):
            causes.append(cause(f"{base}.{key}", f'Invalid value: "{value}": {LABEL_MSG}'))
    return causes
