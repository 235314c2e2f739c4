"""The field reference of docs/grid.md, generated from the field table (core/fields.py FIELDS).

`make docs` (in the toolbox checkout) rewrites the block between BEGIN and END in docs/grid.md and the
JSON Schemas in schemas/; the tests fail when either is older than the table. Everything else in
docs/grid.md is hand-written. The one example per field lives here, next to the generator, and the tests
render a Job with each one (validated, then checked against the strict Kubernetes schema), so an example
can never show a value the toolbox refuses.
"""
import os

from toolbox import TOOLBOX_DIR
from toolbox.core import fields

DOC_FILE = os.path.join(TOOLBOX_DIR, "docs", "grid.md")
BEGIN = "<!-- BEGIN field reference: generated from core/fields.py by `make docs`; edit the table there -->"
END = "<!-- END field reference -->"

# One example per field, as it would appear in config/kube.yaml (or in a launch.yaml entry): one line in the
# table, or a YAML block below it for nested Kubernetes structures.
EXAMPLES = {
    "project_name": "project_name: example",
    "user": "user: alice",
    "namespace": "namespace: my-lab",
    "context": "context: nautilus",
    "api_timeout": "api_timeout: 120",
    "prefix": "prefix: ''",
    "s3_endpoint_map": "s3_endpoint_map: {'https://s3.example.org': 'http://rgw.storage.svc'}",
    "registry_host": "registry_host: ghcr.io",
    "gitlab_user": "gitlab_user: my-lab",
    "image": "image: ghcr.io/my-lab/example:v2",
    "image_pull_secrets": "image_pull_secrets: ''",
    "conda_home": "conda_home: /opt/miniforge",
    "conda_env_name": "conda_env_name: base",
    "git_pull": "git_pull: false",
    "deploy_key_secret": "deploy_key_secret: example-deploy-key",
    "ssh_host": "ssh_host: github.com",
    "ssh_port": "ssh_port: 22",
    "startup_script": "startup_script: 'source /opt/venv/bin/activate'",
    "extra_startup_script": "extra_startup_script: 'pip install -e .'",
    "server_command": "server_command: 'jupyter lab --port 8888'",
    "env": "env: {WANDB_PROJECT: example, OMP_NUM_THREADS: 4}",
    "file": "file: [configs/, src/patch.py]",
    "gpu_count": "gpu_count: 2",
    "cpu_count": "cpu_count: 8",
    "memory": "memory: 64",
    "ephemeral_storage": "ephemeral_storage: 0",
    "limit_ratio": "limit_ratio: 1.0",
    "shm_size": "shm_size: 16",
    "special_gpu": "special_gpu: a100",
    "gpu_whitelist": "gpu_whitelist: [NVIDIA-A10, NVIDIA-GeForce-RTX-3090]",
    "gpu_blacklist": "gpu_blacklist: [NVIDIA-GeForce-GTX-1080-Ti]",
    "hostname_whitelist": "hostname_whitelist: [node-1.example.org]",
    "hostname_blacklist": "hostname_blacklist: [node-7.example.org]",
    "priority_class_name": "priority_class_name: opportunistic",
    "node_selector": "node_selector: {topology.kubernetes.io/region: us-west}",
    "affinity": """\
affinity:
  nodeAffinity:
    preferredDuringSchedulingIgnoredDuringExecution:
      - weight: 50
        preference:
          matchExpressions: [{key: nvidia.com/gpu.memory, operator: Gt, values: ['40000']}]
  podAntiAffinity:
    preferredDuringSchedulingIgnoredDuringExecution:
      - weight: 100
        podAffinityTerm:
          topologyKey: kubernetes.io/hostname
          labelSelector: {matchLabels: {project: example}}""",
    "tolerations": "tolerations: ['nautilus.io/reservation=mylab:NoSchedule']",
    "volumes": "volumes: {my-data-pvc: /data}",
    "labels": "labels: {team: vision}",
    "server": "server: {tb: {command: 'tensorboard --logdir runs --port 6006', port: 6006}}",
    "pod_config": """\
pod_config:
  securityContext: {fsGroup: 1000}
  containers:
    - name: main
      stdin: true""",
    "shared": "shared: 0.5",
    "backoff_limit": "backoff_limit: 2",
    "ttl_seconds_after_finished": "ttl_seconds_after_finished: 86400",
    "active_deadline_seconds": "active_deadline_seconds: 172800",
    "nodes": "nodes: 2",
    "master_port": "master_port: 29400",
    "array": "array: true",
    "parallelism": "parallelism: 100",
    "retries": "retries: 3",
    "fatal_exit_codes": "fatal_exit_codes: [2, 3]",
    "queue": "queue: team-a",
    "pod_max_gpu": "pod_max_gpu: 1",
    "pod_max_memory": "pod_max_memory: 16",
    "pod_max_cpu": "pod_max_cpu: 8",
}

TYPE_NAMES = {"str": "string", "int": "integer", "number": "number", "bool": "boolean",
              "list": "list of strings", "map": "map", "server": "map of sidecars",
              "affinity": "Kubernetes affinity", "podspec": "PodSpec fields"}


def _code(text):
    """Inline code that survives a table cell (a | would end the cell)."""
    return "`" + str(text).replace("|", "\\|") + "`"


def _cell(text):
    return str(text).replace("|", "\\|").replace("\n", " ")


def default_text(field):
    """How the built-in default reads in the reference."""
    default = field.default
    if default is None:
        if field.name == "project_name":
            return "required"
        return "required for the cluster" if field.name in fields.REQUIRED_FOR_CLUSTER else "none"
    if isinstance(default, bool):
        return _code("true" if default else "false")
    if isinstance(default, str) and "{" in default:
        return _code(default.replace("{", "<").replace("}", ">"))
    if isinstance(default, str):
        return _code(default) if default else "`''`"
    if isinstance(default, dict) and default:
        return f"[{len(default)} entries](#default-of-{field.name})"
    if isinstance(default, (dict, list)):
        return _code("{}" if isinstance(default, dict) else "[]")
    return _code(default)


def overridable(field):
    """Whether an hparam of the same name (`_gpu_count: [1, 2]`) sets the field per cell."""
    return field.name in fields.SCALAR_CELL_FIELDS


def example_cell(field):
    example = EXAMPLES.get(field.name)
    if not example:
        return ""
    return f"[below](#example-of-{field.name})" if "\n" in example else _code(example)


def field_rows():
    rows = ["| Field | Type | Default | Scope | hparam | Meaning | Example |",
            "|---|---|---|---|---|---|---|"]
    for field in fields.FIELDS:
        rows.append("| " + " | ".join([
            _code(field.name), TYPE_NAMES.get(field.type, field.type), default_text(field), field.scope,
            "yes" if overridable(field) else "", _cell(field.doc), example_cell(field)]) + " |")
    return rows


def block_examples():
    """The examples too deep for one line, as YAML blocks."""
    lines = []
    for field in fields.FIELDS:
        example = EXAMPLES.get(field.name, "")
        if "\n" in example:
            lines += ["", f"#### Example of `{field.name}`", "", "```yaml", example, "```"]
    return lines


def map_defaults():
    """The entries of map defaults too long for a table cell (the Nautilus S3 endpoints)."""
    lines = []
    for field in fields.FIELDS:
        if isinstance(field.default, dict) and field.default:
            lines += ["", f"#### Default of `{field.name}`", ""]
            lines += [f"- `{key}` → `{value}`" for key, value in field.default.items()]
    return lines


def render():
    """The generated block, markers included."""
    intro = ("Scope *project*: one value for the project. Scope *cell*: may differ per cell. *hparam* yes: an "
             "hparam of the same name (with or without `_`) sets the field per cell. Every example works in "
             "`config/kube.yaml`; cell fields also in `launch.yaml`, at the top or in a model or dataset entry.")
    return "\n".join([BEGIN, "", intro, "", *field_rows(), *block_examples(), *map_defaults(), "", END])


def replace_block(text, block, where=DOC_FILE):
    """text with the generated block (between the markers) replaced by block."""
    start, end = text.find(BEGIN), text.find(END)
    if start < 0 or end < start:
        raise ValueError(f"{where}: the markers of the field reference are missing ({BEGIN!r} ... {END!r})")
    return text[:start] + block + text[end + len(END):]


def current_block(text):
    start, end = text.find(BEGIN), text.find(END)
    return text[start:end + len(END)] if 0 <= start < end else None


def write(path=DOC_FILE):
    """Rewrite the generated block of path; True if it changed."""
    with open(path, encoding="utf-8") as fh:
        old = fh.read()
    new = replace_block(old, render(), path)
    if new == old:
        return False
    with open(path, "w", encoding="utf-8") as fh:
        fh.write(new)
    return True


def regenerate():
    """`make docs`: the JSON Schemas and the field reference, both from core/fields.py. Returns what was
    done, one line per file, for the Makefile to print."""
    done = [f"wrote {os.path.relpath(path, TOOLBOX_DIR)}" for path in fields.write_schemas()]
    done.append(("wrote " if write() else "unchanged: ") + os.path.relpath(DOC_FILE, TOOLBOX_DIR))
    return done
