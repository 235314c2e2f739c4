"""What pods need besides their manifests: the .env Secret and the ConfigMaps of shipped files.

Both are plain data (dicts) built before any API call:
- `.env` becomes ONE Secret per user+project (`<user>-<project>-env-<owner hash>`), used by every workload through
  `envFrom.secretRef`; manifests only reference it. Its `toolbox/content-hash` annotation is a SHA-256 of
  the whole content, so a re-submission re-applies it only when .env changed.
- the `file:` list of a cell becomes a ConfigMap named after a hash of its content and owner
  (`<user>-<project>-files-<hash>`), shared by every cell that ships the same files, mounted read-only at
  /etc/toolbox/files and copied into place by the start-up script. What the list selects is kube/files.py.
"""
import base64
import hashlib
import json
import os
import re

from toolbox.core import naming
from toolbox.errors import Problem, warn
from toolbox.kube import files

MANAGED_BY = {"app.kubernetes.io/managed-by": "kube-toolbox"}
HASH_ANNOTATION = "toolbox/content-hash"
FILES_MOUNT = "/etc/toolbox/files"
INDEX_KEY = "toolbox-index.tsv"  # one line per file: key, mode (octal), path; read by the start-up script
# A ConfigMap (like any object) is stored in etcd with a 1 MiB limit; keep room for metadata.
CONFIGMAP_LIMIT = 1024 * 1024 - 16 * 1024
# Kubernetes' rule for environment variable names, for `env:` entries and the .env keys pods get (envFrom).
ENV_NAME = re.compile(r"^[-._a-zA-Z][-._a-zA-Z0-9]*$")
_KEY_CHARS = re.compile(r"[^-._a-zA-Z0-9]+")


def owner_labels(settings, role):
    """Labels of every object the toolbox creates: whose (user, project) and what for (role)."""
    return {"user": settings["user"], "project": settings["project_name"], "toolbox/role": role, **MANAGED_BY}


def content_hash(data):
    """SHA-256 of the whole content (canonical JSON): changes when anything changes, reveals no value."""
    return hashlib.sha256(json.dumps(data, sort_keys=True, ensure_ascii=False).encode("utf-8")).hexdigest()


# -- .env -> Secret ---------------------------------------------------------------------------------------
def rewrite_env(values, endpoint_map):
    """The .env values as pods get them: CUDA_VISIBLE_DEVICES dropped (the node assigns GPUs), WANDB_MODE
    forced online, values equal to a public S3 endpoint mapped to its in-cluster endpoint
    (`s3_endpoint_map`). PYTHONPATH gets `<checkout>/src` prepended by the start-up script, as locally."""
    out = {}
    for key, value in values.items():
        if key == "CUDA_VISIBLE_DEVICES":
            continue
        if key == "WANDB_MODE":
            value = "online"
        out[key] = map_endpoint(value, endpoint_map)
    return out


def map_endpoint(value, endpoint_map):
    if not endpoint_map:
        return value
    mapped = endpoint_map.get(value)
    if mapped is None and value.endswith("/"):
        mapped = endpoint_map.get(value.rstrip("/"))
    return value if mapped is None else mapped


def env_secret_name(settings):
    """`<user>-<project>-env-<owner hash>`: the hash keeps users whose names join alike apart."""
    user, project = settings["user"], settings["project_name"]
    return naming.object_name(user, project, "env", digest=naming.owner_hash(user, project))


def env_problems(values):
    """Keys a Secret cannot hold or envFrom cannot export (never the values)."""
    problems = []
    for key in values:
        if not ENV_NAME.match(key):
            problems.append(Problem(".env", None, None, key, "not a valid environment variable name",
                                    ["use letters, digits, '_', '-' and '.' (not starting with a digit)"]))
    return problems


def env_secret(values, settings):
    """The Secret holding the rewritten .env values, or None when .env is empty or missing."""
    data = rewrite_env(values, settings.get("s3_endpoint_map") or {})
    if not data:
        return None
    encoded = {k: base64.b64encode(v.encode("utf-8")).decode("ascii") for k, v in sorted(data.items())}
    return {
        "apiVersion": "v1", "kind": "Secret", "type": "Opaque",
        "metadata": {"name": env_secret_name(settings), "namespace": settings["namespace"],
                     "labels": owner_labels(settings, "env"),
                     "annotations": {HASH_ANNOTATION: content_hash(encoded)}},
        "data": encoded,
    }


def deploy_key_secret(settings, private_key, known_hosts):
    """The Secret `git pull` in pods authenticates with (mounted at /etc/toolbox/deploy-key)."""
    data = {"ssh-privatekey": private_key, "known_hosts": known_hosts}
    encoded = {k: base64.b64encode(v).decode("ascii") for k, v in data.items()}
    return {
        "apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/ssh-auth",
        "metadata": {"name": settings["deploy_key_secret"], "namespace": settings["namespace"],
                     "labels": owner_labels(settings, "deploy-key"),
                     "annotations": {HASH_ANNOTATION: content_hash(encoded)}},
        "data": encoded,
    }


# -- file: -> ConfigMap ------------------------------------------------------------------------------------
class ShippedFile:
    """One file shipped into pods: where it goes (relative to the checkout), its ConfigMap key, mode."""

    __slots__ = ("path", "key", "mode", "content", "text")

    def __init__(self, path, key, mode, content, text):
        self.path, self.key, self.mode, self.content, self.text = path, key, mode, content, text


class FileSet:
    """The files of one `file:` list, with the ConfigMap that carries them."""

    def __init__(self, files, configmap):
        self.files, self.configmap = files, configmap

    @property
    def name(self):
        return self.configmap["metadata"]["name"]


def collect_files(paths, settings, root=".", where="file"):
    """The FileSet of a `file:` list (None for an empty list), or problems. Every path is resolved and
    stat()ed first (kube/files.py); nothing is read when the sizes already exceed the ConfigMap limit.
    Callers cache by the tuple of paths: nothing is read twice."""
    gathered = files.gather(paths, root, where)
    if gathered.private:
        warn(f"{where}: not shipped (credentials; name them in {where}: to ship them): "
             + ", ".join(sorted(gathered.private)))
    if gathered.problems:
        return None, gathered.problems
    if not gathered.files:
        return None, []
    raw = sum(found.size for found in gathered.files)
    if raw > CONFIGMAP_LIMIT:  # the ConfigMap is at least as big as the files: refuse before reading
        return None, [_too_big(where, raw, [(f.path, f.size) for f in gathered.files])]
    shipped = []
    for found in gathered.files:
        try:
            content = files.read_bounded(found, CONFIGMAP_LIMIT)
        except OSError as err:
            return None, [Problem(None, None, None, where, f"'{found.path}': cannot read it ({err.strerror})")]
        if content is None:
            return None, [Problem(None, None, None, where, f"'{found.path}' is not a regular file any more")]
        try:
            content.decode("utf-8")
            text = True
        except UnicodeDecodeError:
            text = False
        shipped.append(ShippedFile(found.path, _key(len(shipped), found.path), found.mode, content, text))
    configmap = _configmap(shipped, settings)
    size = len(json.dumps(configmap))
    if size > CONFIGMAP_LIMIT:
        return None, [_too_big(where, size, [(f.path, len(f.content)) for f in shipped])]
    return FileSet(shipped, configmap), []


def _too_big(where, size, sizes):
    biggest = sorted(sizes, key=lambda item: item[1], reverse=True)[:3]
    details = [f"largest: {', '.join(f'{path} ({_kib(n)})' for path, n in biggest)}",
               "put large files in S3 (make upload) and download them in the command"]
    return Problem(None, None, None, where, f"the files to ship take {_kib(size)} but a ConfigMap holds at most "
                                            f"{_kib(CONFIGMAP_LIMIT)}", details)


def _kib(n):
    return f"{n / 1024:.0f} KiB" if n < 1024 * 1024 else f"{n / 1024 / 1024:.1f} MiB"


def _key(index, path):
    base = _KEY_CHARS.sub("_", os.path.basename(path)).strip(".") or "file"
    return f"f{index}-{base}"[:200]


def _configmap(shipped, settings):
    data = {f.key: f.content.decode("utf-8") for f in shipped if f.text}
    data[INDEX_KEY] = "".join(f"{f.key}\t{f.mode:o}\t{f.path}\n" for f in shipped)
    binary = {f.key: base64.b64encode(f.content).decode("ascii") for f in shipped if not f.text}
    identity = content_hash({"paths": [[f.path, f.key, f.mode] for f in shipped], "data": data, "binary": binary})
    user, project = settings["user"], settings["project_name"]
    # named after the content AND the exact owner: two users shipping the same files never share one
    name = naming.object_name(user, project, "files", digest=naming.owner_hash(user, project, identity))
    configmap = {"apiVersion": "v1", "kind": "ConfigMap",
                 "metadata": {"name": name, "namespace": settings["namespace"],
                              "labels": owner_labels(settings, "files"),
                              "annotations": {HASH_ANNOTATION: identity}},
                 "immutable": True}  # the name is the content: it never changes
    if data:
        configmap["data"] = data
    if binary:
        configmap["binaryData"] = binary
    return configmap
