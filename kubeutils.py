"""Rendering and applying Kubernetes manifests from the grid (the implementation is toolbox.kube):

    from toolbox.kubeutils import Renderer, parse_manifest
    renderer = Renderer(".", env_values)      # env_values: the .env pairs that become the Secret
    text = renderer.cell_manifest(cell)       # a Job's YAML; renderer.check() raises every problem at once

`make job` and `make dryrun` use exactly this (see docs/kubernetes.md).
"""
from toolbox.kube.render import (  # noqa: F401
    MAIN,
    TEMPLATE_DIR,
    Renderer,
    flow,
    parse_manifest,
    q,
    sweep_id,
)

__all__ = ["MAIN", "TEMPLATE_DIR", "Renderer", "flow", "parse_manifest", "q", "sweep_id"]
