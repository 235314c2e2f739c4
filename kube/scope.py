"""Whose objects: the project-wide identity (user, project, namespace) every cluster command needs, the
label selector that limits every list and delete to this user's objects of this project, and the check
that comes before every update, replace, delete or copy of an object found by name."""
from toolbox.core.config import KUBE_FILE, finalize, merge_layers
from toolbox.core.fields import REQUIRED_FOR_CLUSTER
from toolbox.errors import CommandError, ConfigError, Problem
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
    timeout = project.get("api_timeout")
    if timeout is not None and not timeout > 0:
        problems.append(("api_timeout", f"must be a number of seconds above 0, got {timeout}"))
    if problems:
        raise ConfigError([config.locate(Problem(where, None, None, key, message)) for key, message in problems])


def project_settings(config):
    """Settings of the project outside any cell (kube.yaml + launch.yaml root): pods, deletes."""
    check_cluster_fields(config)
    return finalize(merge_layers([config.kube_layer, config.root_layer]), config.project)


def selector(settings, *extra):
    """This user's objects of this project, as ONE selector (kubectl keeps only the last of several -l)."""
    return ",".join([f"user={settings['user']}", f"project={settings['project_name']}", *extra])


# -- ownership ------------------------------------------------------------------------------------------
def owner_of(obj):
    """(user, project) labels of an object (None where missing)."""
    labels = ((obj or {}).get("metadata") or {}).get("labels") or {}
    return labels.get("user"), labels.get("project")


def check_owner(obj, user, project, where, consequence="nothing was changed", hint=None, error=CommandError):
    """Raise `error` unless the object carries the labels user=<user>, project=<project>. Names are not
    proof of ownership: another user's object may have the name ours would have."""
    found_user, found_project = owner_of(obj)
    if (found_user, found_project) == (user, project):
        return
    if found_user is None and found_project is None:
        what = "has no user/project labels (the toolbox did not create it for you)"
    else:
        what = (f"belongs to user '{found_user}' (project '{found_project}'), not to user '{user}' "
                f"(project '{project}')")
    raise error(where, f"{what}; {consequence}", hint=hint)
