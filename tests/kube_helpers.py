"""Helpers of the Kubernetes tests: strict schema validation (cached per kind), rendering a project's cells
in-process, and finding secret values in text."""
import base64
import os
from pathlib import Path

import pytest
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
# The same with 3 cells (lr 0.1, 0.01, 0.001).
LAUNCH_3 = LAUNCH.replace("[0.1, 0.01]", "[0.1, 0.01, 0.001]")


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


def render_units(root=".", env_values=None, models=None, datasets=None):
    """(cells, renderer, units) of the project at root, as `make job` renders them (a Job per cell, per
    shared-GPU pack, per multi-node cell, per array pack; Services and array ConfigMaps as unit.extras)."""
    from toolbox.core import config
    from toolbox.core import grid
    from toolbox import kubeutils
    from toolbox.kube import units

    cells = grid.expand(config.load_config(root), models, datasets).cells
    renderer = kubeutils.Renderer(root, env_values or {}, kubeutils.sweep_id(cells))
    found = units.render(renderer, cells)
    renderer.check()
    return cells, renderer, found


def manifests(root=".", env_values=None):
    """Every Job manifest of the project (as `make job` submits them), parsed and validated, and the objects
    created with them validated too."""
    _, _, found = render_units(root, env_values)
    for unit in found:
        for extra in unit.extras:
            validate(extra)
    return [validate(load(unit.text)) for unit in found]


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


def deploy_key_files(folder):
    """(key, known_hosts): a fake SSH private key and a known_hosts file for `make deploy_key`."""
    key = folder / "id_deploy"
    key.write_text("-----BEGIN OPENSSH PRIVATE KEY-----\nabc\n-----END OPENSSH PRIVATE KEY-----\n")
    hosts = folder / "known_hosts"
    hosts.write_text("[gitlab-ssh.nrp-nautilus.io]:30622 ssh-ed25519 AAAAC3Nz\n")
    return key, hosts


GOLDEN = Path(__file__).resolve().parent / "unit" / "golden"
RECORD = os.environ.get("TOOLBOX_RECORD_GOLDEN", "") not in ("", "0")


def check_golden(name, text):
    assert "{{" not in text and "{%" not in text and "{#" not in text, "template syntax left in the output"
    path = GOLDEN / name
    if RECORD or not path.exists():
        path.parent.mkdir(exist_ok=True)
        path.write_text(text)
        if not RECORD:
            pytest.fail(f"recorded missing golden file {path}; check it and commit it")
    assert text == path.read_text(), f"{name} differs from its golden file (TOOLBOX_RECORD_GOLDEN=1 re-records)"
