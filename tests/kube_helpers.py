"""Helpers of the Kubernetes tests: strict schema validation (cached per kind), rendering a project's cells
in-process, and finding secret values in text."""
import base64
import functools

import yaml

K8S_VERSION = "1.33"


@functools.lru_cache(maxsize=None)
def _validator(kind, api_version):
    """The strict 1.33 validator of one kind, built once (kubernetes_validate.validate re-reads the schema
    files on every call: 25-45 ms each). Same construction as kubernetes_validate.utils.validate."""
    import re

    import jsonschema
    from kubernetes_validate import utils
    from referencing import Registry, Resource

    version = [v for v in utils.all_versions() if utils.major_minor(v) <= K8S_VERSION][-1]
    schema_dir = f"v{version}-local-strict"
    api = re.sub(r"^([^./]*)(?:\.[^/]*)?/", r"\1-", api_version)
    schema = utils.schema_contents(f"kubernetes-json-schema/{schema_dir}/{kind.lower()}-{api}.json", K8S_VERSION)
    definitions = utils.schema_contents(f"kubernetes-json-schema/{schema_dir}/_definitions.json", K8S_VERSION)
    registry = Resource.from_contents(definitions) @ (Resource.from_contents(schema) @ Registry())
    return jsonschema.validators.Draft202012Validator(schema, registry=registry)


def validate(manifest):
    """Assert a manifest passes kubernetes-validate's strict schema for Kubernetes 1.33."""
    errors = sorted(_validator(manifest["kind"], manifest["apiVersion"]).iter_errors(manifest), key=str)
    assert not errors, f"{manifest['kind']}/{manifest['metadata'].get('name')}: " + "; ".join(
        f"{'.'.join(map(str, e.absolute_path))}: {e.message}" for e in errors[:5])
    return manifest


def load(text):
    return yaml.load(text, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))


def render_cells(root=".", env_values=None, models=None, datasets=None):
    """(cells, renderer, texts) of the project at root, as `make dryrun` renders them."""
    from toolbox import config, grid, kubeutils

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
