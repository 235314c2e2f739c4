"""Whose objects: the project-wide identity (user, project, namespace) every cluster command needs, and
the label selector that limits every list and delete to this user's objects of this project."""
from toolbox.core.config import KUBE_FILE, finalize, merge_layers
from toolbox.core.fields import REQUIRED_FOR_CLUSTER
from toolbox.errors import ConfigError, Problem
from toolbox.kube.podspec import check_identity


def check_cluster_fields(config, where=KUBE_FILE):
    """user and namespace (and project_name) are needed for anything that touches the cluster, and must be
    usable in label selectors and as a namespace."""
    project = config.project
    missing = [key for key in REQUIRED_FOR_CLUSTER if not project.get(key)]
    if missing:
        raise ConfigError([Problem(where, None, None, key, f"missing required key '{key}'",
                                   ["needed for cluster commands (make job, pod, status, ...)"]) for key in missing])
    problems = check_identity(project)
    if problems:
        raise ConfigError([config.locate(Problem(where, None, None, key, message)) for key, message in problems])


def project_settings(config):
    """Settings of the project outside any cell (kube.yaml + launch.yaml root): pods, deletes."""
    check_cluster_fields(config)
    return finalize(merge_layers([config.kube_layer, config.root_layer]), config.project)


def selector(settings, *extra):
    """This user's objects of this project (one selector: the original's two -l flags kept only the last)."""
    return ",".join([f"user={settings['user']}", f"project={settings['project_name']}", *extra])
