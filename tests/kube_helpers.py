"""Helpers of the Kubernetes tests: strict schema validation (cached per kind), rendering a project's cells
in-process, and finding secret values in text."""
import base64

import yaml

from doubles.kube_api.schema import validator  # the double's cached strict 1.33 validators

# A 2-cell grid shared by the Kubernetes tests.
LAUNCH = """\
    model:
      train:
        command: python src/train.py --lr <lr>
        hparam:
          lr: [0.1, 0.01]
"""


def validate(manifest):
    """Assert a manifest passes kubernetes-validate's strict schema for Kubernetes 1.33."""
    errors = sorted(validator(manifest["kind"], manifest["apiVersion"]).iter_errors(manifest), key=str)
    assert not errors, f"{manifest['kind']}/{manifest['metadata'].get('name')}: " + "; ".join(
        f"{'.'.join(map(str, e.absolute_path))}: {e.message}" for e in errors[:5])
    return manifest


def load(text):
    return yaml.load(text, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))


def render_cells(root=".", env_values=None, models=None, datasets=None):
    """(cells, renderer, texts) of the project at root, as `make dryrun` renders them."""
    from toolbox.core import config
    from toolbox.core import grid
    from toolbox import kubeutils

    cells = grid.expand(config.load_config(root), models, datasets).cells
    renderer = kubeutils.Renderer(root, env_values or {}, kubeutils.sweep_id(cells))
    texts = [renderer.cell_manifest(cell) for cell in cells]
    renderer.check()
    return cells, renderer, texts


def manifests(root=".", env_values=None):
    """Every Job manifest of the project, parsed and validated."""
    _, _, texts = render_cells(root, env_values)
    return [validate(load(t)) for t in texts]


def pod_spec(manifest):
    return manifest["spec"]["template"]["spec"] if manifest["kind"] == "Job" else manifest["spec"]


def main_container(manifest):
    return pod_spec(manifest)["containers"][0]


def env_of(container):
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in container.get("env", [])}


def startup_of(manifest):
    return main_container(manifest)["command"][2]


def secret_forms(values):
    """Each secret value and its base64 (as it would travel in a Secret body)."""
    forms = set()
    for value in values:
        forms.add(value)
        forms.add(base64.b64encode(value.encode()).decode())
    return forms


def leaks(text, values):
    """The secret values (or their base64) found in text."""
    return sorted(v for v in secret_forms(values) if v in text)
