"""What pods need besides their manifests: the .env Secret and the ConfigMaps of shipped files.

Both are plain data (dicts) built before any API call:
- `.env` becomes ONE Secret per user+project (`<user>-<project>-env`), used by every workload through
  `envFrom.secretRef`; manifests only reference it. Its `toolbox/content-hash` annotation is a SHA-256 of
  the whole content, so a re-submission re-applies it only when .env changed.
- the `file:` list of a cell becomes a ConfigMap named after a hash of its content
  (`<user>-<project>-files-<hash>`), shared by every cell that ships the same files, mounted read-only at
  /etc/toolbox/files and copied into place by the start-up script.
"""
import base64
import hashlib
import json
import os
import re
import stat

from toolbox.core import naming
from toolbox.errors import Problem

MANAGED_BY = {"app.kubernetes.io/managed-by": "kube-toolbox"}
HASH_ANNOTATION = "toolbox/content-hash"
FILES_MOUNT = "/etc/toolbox/files"
INDEX_KEY = "toolbox-index.tsv"  # one line per file: key, mode (octal), path; read by the start-up script
# A ConfigMap (like any object) is stored in etcd with a 1 MiB limit; keep room for metadata.
CONFIGMAP_LIMIT = 1024 * 1024 - 16 * 1024
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_SECRET_KEY = re.compile(r"^[-._a-zA-Z0-9]+$")
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
    return naming.object_name(settings["user"], settings["project_name"], "env")


def env_problems(values):
    """Keys a Secret cannot hold or envFrom cannot export (never the values)."""
    problems = []
    for key in values:
        if not _SECRET_KEY.match(key) or not _ENV_NAME.match(key):
            problems.append(Problem(".env", None, None, key, "not a valid environment variable name",
                                    ["use letters, digits and _ (not starting with a digit)"]))
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


def _walk(root, rel, problems, where):
    """Relative paths of the files under a listed path (directories recursively, sorted)."""
    full = os.path.join(root, rel)
    if os.path.isdir(full):
        out = []
        for dirpath, dirnames, filenames in os.walk(full):
            dirnames[:] = sorted(d for d in dirnames if d not in (".git", "__pycache__"))
            for filename in sorted(filenames):
                out.append(os.path.relpath(os.path.join(dirpath, filename), root))
        return out
    if os.path.isfile(full):
        return [os.path.normpath(rel)]
    problems.append(Problem(where, None, None, "file", f"'{rel}' does not exist",
                            [f"paths are relative to the project root ({os.path.abspath(root)})"]))
    return []


def _check_path(rel, problems, where):
    norm = os.path.normpath(rel) if rel else ""
    if not rel or os.path.isabs(rel) or norm == ".." or norm.startswith(".." + os.sep):
        problems.append(Problem(where, None, None, "file", f"'{rel}' must be a path inside the project",
                                ["e.g. file: [config/extra.yaml, data/small]"]))
        return None
    return norm


def collect_files(paths, settings, root=".", where="file"):
    """The FileSet of a `file:` list (None for an empty list), or problems. Nothing is read twice:
    callers cache by the tuple of paths."""
    problems = []
    files, seen = [], set()
    for rel in paths:
        norm = _check_path(rel, problems, where)
        if norm is None:
            continue
        for path in _walk(root, norm, problems, where):
            path = path.replace(os.sep, "/")
            if "\n" in path or "\t" in path:
                problems.append(Problem(where, None, None, "file", f"{path!r}: a path with a tab or a newline "
                                        "cannot be shipped"))
                continue
            if os.path.basename(path) == ".env":
                problems.append(Problem(where, None, None, "file", f"'{path}': .env is never shipped as a file",
                                        ["its values reach pods through the Secret <user>-<project>-env "
                                         "(envFrom); remove it from file:"]))
                continue
            if path in seen:
                continue
            seen.add(path)
            full = os.path.join(root, path)
            with open(full, "rb") as handle:
                content = handle.read()
            mode = 0o755 if os.stat(full).st_mode & stat.S_IXUSR else 0o644
            try:
                content.decode("utf-8")
                text = True
            except UnicodeDecodeError:
                text = False
            files.append(ShippedFile(path, _key(len(files), path), mode, content, text))
    if problems:
        return None, problems
    if not files:
        return None, []
    configmap = _configmap(files, settings)
    size = len(json.dumps(configmap))
    if size > CONFIGMAP_LIMIT:
        biggest = sorted(files, key=lambda f: len(f.content), reverse=True)[:3]
        details = [f"largest: {', '.join(f'{f.path} ({_kib(len(f.content))})' for f in biggest)}"]
        return None, [Problem(where, None, None, "file",
                              f"the files to ship take {_kib(size)} but a ConfigMap holds at most "
                              f"{_kib(CONFIGMAP_LIMIT)}", details)]
    return FileSet(files, configmap), []


def _kib(n):
    return f"{n / 1024:.0f} KiB" if n < 1024 * 1024 else f"{n / 1024 / 1024:.1f} MiB"


def _key(index, path):
    base = _KEY_CHARS.sub("_", os.path.basename(path)).strip(".") or "file"
    return f"f{index}-{base}"[:200]


def _configmap(files, settings):
    data = {f.key: f.content.decode("utf-8") for f in files if f.text}
    data[INDEX_KEY] = "".join(f"{f.key}\t{f.mode:o}\t{f.path}\n" for f in files)
    binary = {f.key: base64.b64encode(f.content).decode("ascii") for f in files if not f.text}
    identity = content_hash({"paths": [[f.path, f.key, f.mode] for f in files], "data": data, "binary": binary})
    name = naming.object_name(settings["user"], settings["project_name"], "files", digest=identity[:10])
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
