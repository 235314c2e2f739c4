"""`make pod`, `pod-dryrun`, `copy` (push the file: list into a running pod) and `deploy_key`."""
import os

from toolbox.cli.output import Output
from toolbox.core import naming
from toolbox.core.config import load_config
from toolbox.core.console import human_bytes, plural
from toolbox.core.envfile import read_env
from toolbox.errors import CommandError, ConfigError, KubeError, UsageError, warn
from toolbox.kube import objects, render
from toolbox.kube.build import BUILD_DIR, HEADER, POD_DRYRUN_LIST, object_yaml, write_build
from toolbox.kube.client import connect
from toolbox.kube.pod import CREATE_ATTEMPTS, check_copyable, exec_stdin, known_hosts, running_interactive, tar_archive
from toolbox.kube.scope import check_owner, project_settings, selector
from toolbox.kube.submit import upsert_support, warn_missing


def _prepare(args):
    config = load_config(".", need_launch=False)
    settings = project_settings(config)
    base = args.pod or naming.pod_name(naming.owner(settings), settings["project_name"])
    if not naming.is_dns_label(base):
        raise UsageError(f"pod={base}", "not a valid pod name",
                         ["lower-case letters, digits and '-', at most 63 characters"])
    renderer = render.Renderer(".", read_env())
    text = renderer.pod_manifest(settings, base)
    renderer.check(config.locate)
    for warning in renderer.warnings:
        warn(warning)
    return settings, base, renderer, text


def cmd_pod_dryrun(args):
    settings, name, renderer, text = _prepare(args)
    render.parse_manifest(text, f"pod/{name}")
    path = os.path.join(BUILD_DIR, f"{name}.yaml")
    files = [(path, HEADER.format(what="make pod-dryrun", path=path) + text)]
    for configmap in renderer.configmaps():
        cm_path = os.path.join(BUILD_DIR, f"{configmap['metadata']['name']}.yaml")
        files.append((cm_path, object_yaml(configmap, "make pod-dryrun: the files of file:", cm_path)))
    write_build(files, POD_DRYRUN_LIST)
    print(f"Wrote {path} (interactive pod '{name}', namespace {settings['namespace']}); nothing was created.")
    print("`make pod` picks the next free name (-1, -2, ...) if this one is taken.")
    return 0


def cmd_pod(args):
    settings, base, renderer, _ = _prepare(args)
    out = Output()
    with connect(settings, args.context) as cluster:
        taken = {p["metadata"]["name"] for p in cluster.list("Pod", selector(settings))}
        warn_missing(cluster, renderer)
        upsert_support(cluster, ([renderer.secret] if renderer.secret else []) + renderer.configmaps(), out)
        name = naming.next_free_name(base, taken)
        for _ in range(CREATE_ATTEMPTS):
            body = render.parse_manifest(renderer.pod_manifest(settings, name), f"pod/{name}")
            try:
                cluster.create(body)
                break
            except KubeError as err:
                if err.code != 409:  # taken by a pod without our labels: try the next name
                    raise
                taken.add(name)
                name = naming.next_free_name(base, taken)
        else:
            raise CommandError(f"pod/{base}", f"{CREATE_ATTEMPTS} names in a row are taken; choose one with pod=NAME")
    namespace = settings["namespace"]
    if name != base:
        print(f"Pod '{base}' exists: using the next free name.")
    print(f"Pod '{name}' created in namespace '{namespace}'. It runs: {settings['server_command']}")
    print(f"  shell:   kubectl exec -it -n {namespace} {name} -- bash")
    print(f"  logs:    make logs name={name}")
    print(f"  files:   make copy pod={name}")
    print("  delete:  make delete_pod")
    return 0


# -- make copy ------------------------------------------------------------------------------------------


def cmd_copy(args):
    config = load_config(".", need_launch=False)
    settings = project_settings(config)
    paths = settings.get("file") or []
    if not paths:
        raise UsageError("file:", "nothing to copy: the file: list (kube.yaml or launch.yaml's top level) is empty")
    fileset, problems = objects.collect_files(paths, settings, ".")
    if problems:
        raise ConfigError([config.locate(p) for p in problems])
    if fileset is None:
        raise UsageError("file:", "nothing to copy: the file: list selects no file")
    with connect(settings, args.context) as cluster:
        pod = args.pod or running_interactive(cluster, settings)
        found = cluster.get("Pod", pod)
        if found is None:
            raise UsageError(f"pod={pod}", f"no such pod in namespace '{cluster.namespace}'")
        check_owner(found, settings["user"], settings["project_name"], f"pod={pod}", "nothing was copied",
                    hint="name one of your pods (make pod starts one)", error=UsageError)
        check_copyable(found, pod)
        archive = tar_archive(fileset)
        code, stderr = exec_stdin(cluster, pod, ["tar", "-xmf", "-"], archive)
    if code:
        raise CommandError(f"pod/{pod}", f"copying failed (tar exit code {code})",
                           stderr.strip().splitlines()[-5:])
    total = sum(len(f.content) for f in fileset.files)
    print(f"Copied {plural(len(fileset.files), 'file')} ({human_bytes(total)}) "
          f"into pod '{pod}' (its working directory, the project checkout).")
    return 0


# -- make deploy_key --------------------------------------------------------------------------------------


def cmd_deploy_key(args):
    settings = project_settings(load_config(".", need_launch=False))
    if not getattr(args, "key", None):
        raise UsageError("key=", "give the private key file of the read-only deploy key",
                         hint="make deploy_key key=~/.ssh/<project>_deploy_key [known_hosts=FILE]")
    try:
        with open(os.path.expanduser(args.key), "rb") as handle:
            private_key = handle.read()
    except OSError as err:
        raise UsageError(f"key={args.key}", f"cannot read: {err.strerror}") from None
    if b"PRIVATE KEY" not in private_key:
        raise UsageError(f"key={args.key}", "this is not an SSH private key (no 'PRIVATE KEY' block)",
                         hint="give the private half (not the .pub file)")
    if not settings.get("deploy_key_secret"):
        raise UsageError("deploy_key_secret", "empty: set a Secret name in config/kube.yaml")
    secret = objects.deploy_key_secret(settings, private_key, known_hosts(args, settings))
    hint = ("set deploy_key_secret: <a name of your own> in config/kube.yaml for a key of your own (until "
            "then your pods use the one of that name)")
    with connect(settings, args.context) as cluster:
        result = cluster.upsert(secret, hint=hint)
    print(f"Secret '{secret['metadata']['name']}' (deploy key and known_hosts for `git pull` in pods): {result}.")
    return 0
