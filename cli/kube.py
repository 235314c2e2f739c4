"""`make job`, `dryrun`, `retry`, `delete`, `delete_job`, `delete_pod` and `clean_jobs`.

Each handler follows describe -> validate -> execute: the grid is expanded and every manifest rendered and
checked (ConfigError, exit 2) before the first API call; then one list call tells what exists, and a
thread pool does the rest (toolbox.kube.submit).
"""
import concurrent.futures
import os
import sys

from toolbox.cli.common import load_grid
from toolbox.cli.local import plan_table
from toolbox.core.config import load_config
from toolbox.cli.output import Output, confirm
from toolbox.core.console import format_table
from toolbox.errors import EXIT_FAILED, KubeError
from toolbox.kube import render
from toolbox.kube.build import BUILD_DIR, DRYRUN_LIST, HEADER, object_yaml, write_build
from toolbox.kube.client import connect
from toolbox.kube.scope import project_settings, selector
from toolbox.kube.status import age, job_state
from toolbox.kube.submit import (delete_targets, failure_reason, pack_lines, prepare, submit, upsert_support,
                                 warn_missing)


def cmd_dryrun(args):
    prepared = prepare(load_grid(args))
    for text in prepared.renderer.samples:  # one manifest per distinct settings: the templates made YAML
        render.parse_manifest(text, "dryrun")
    files = []
    for unit in prepared.units:
        path = os.path.join(BUILD_DIR, f"{unit.name}.yaml")
        files.append((path, HEADER.format(what="make dryrun", path=path) + unit.text))
    for configmap in prepared.renderer.configmaps():
        path = os.path.join(BUILD_DIR, f"{configmap['metadata']['name']}.yaml")
        files.append((path, object_yaml(configmap, "make dryrun: the files of file:", path)))
    write_build(files, DRYRUN_LIST)
    print(plan_table(prepared.cells) + pack_lines(prepared))
    jobs = len(prepared.units)
    print(f"\nWrote {jobs} Job manifest{'s' if jobs != 1 else ''}"
          + (f" and {len(files) - jobs} ConfigMap(s)" if len(files) > jobs else "")
          + f" to {BUILD_DIR}/ (namespace {prepared.settings['namespace']}); nothing was submitted.")
    if prepared.renderer.secret:
        print(f"The .env values are never written there: `make job` puts them in the Secret "
              f"'{prepared.renderer.secret['metadata']['name']}' that the jobs use.")
    return 0


# -- make job / retry ---------------------------------------------------------------------------------------


def report(outcomes, errors, namespace, total):
    for err in sorted(errors, key=lambda e: e.where):
        print(err.format(), file=sys.stderr)
    counts = ", ".join(f"{len(outcomes[k])} {k}" for k in ("created", "replaced", "skipped", "failed"))
    print(f"\nJobs in namespace '{namespace}': {counts} (of {total}).")
    if outcomes["failed"]:
        print("Run the same command again to submit what failed.", file=sys.stderr)
        return EXIT_FAILED
    return 0


def cmd_job(args):
    prepared = prepare(load_grid(args))
    bodies = prepared.bodies()
    settings = prepared.settings
    out = Output()
    with connect(settings, args.context) as cluster:
        jobs = cluster.list("Job", selector(settings))
        existing = {j["metadata"]["name"]: j for j in jobs}
        if prepared.keep_existing_packs(jobs):
            bodies = prepared.bodies()
        warn_missing(cluster, prepared.renderer)
        upsert_support(cluster, prepared.support_objects(), out)
        outcomes, errors = submit(cluster, bodies, existing, bool(args.overwrite), out)
    return report(outcomes, errors, settings["namespace"], len(bodies))


def cmd_retry(args):
    """Recreate the failed cells of the sweep (missing cells are left to `make job`)."""
    prepared = prepare(load_grid(args))
    settings = prepared.settings
    out = Output()
    with connect(settings, args.context) as cluster:
        jobs = cluster.list("Job", selector(settings))
        existing = {j["metadata"]["name"]: j for j in jobs}
        prepared.keep_existing_packs(jobs)
        states = {unit.name: job_state(existing.get(unit.name)) for unit in prepared.units}
        failed = [(name, body) for name, body in prepared.bodies() if states[name] == "failed"]
        missing = sum(1 for s in states.values() if s == "missing")
        note = f" ({missing} job{'s' if missing != 1 else ''} never submitted: `make job` submits them)" \
            if missing else ""
        if not failed:
            print(f"No failed cells to retry{note}.")
            return 0
        print(format_table(["FAILED JOB", "REASON"], [[n, failure_reason(existing[n])] for n, _ in failed]))
        if not confirm(f"Delete and recreate these {len(failed)} job(s)?", bool(args.yes)):
            print("Nothing done.")
            return EXIT_FAILED
        upsert_support(cluster, prepared.support_objects(), out)
        outcomes, errors = submit(cluster, failed, {n: existing[n] for n, _ in failed}, False, out)
    if note:
        print(note.strip(" ()") + ".")
    return report(outcomes, errors, settings["namespace"], len(failed))


def _delete(args, what, nothing):
    settings = project_settings(load_config(".", need_launch=False))
    with connect(settings, args.context) as cluster:
        rows = delete_targets(cluster, settings, what)
        if not rows:
            print(nothing.format(user=settings["user"], project=settings["project_name"], ns=cluster.namespace))
            return 0
        print(format_table(["KIND", "NAME", "STATE", "AGE"],
                           [[k, o["metadata"]["name"], s, age(o)] for k, o, s in rows]))
        if not confirm(f"\nDelete these {len(rows)} object(s) of user '{settings['user']}' in namespace "
                       f"'{cluster.namespace}'?", bool(args.yes)):
            print("Nothing deleted.")
            return EXIT_FAILED
        errors = []

        def one(row):
            try:
                cluster.delete(row[0], row[1]["metadata"]["name"])
            except KubeError as err:
                errors.append(err)

        with concurrent.futures.ThreadPoolExecutor(max_workers=cluster.threads) as pool:
            list(pool.map(one, rows))
    for err in errors:
        print(err.format(), file=sys.stderr)
    print(f"Deleted {len(rows) - len(errors)} of {len(rows)}.")
    return EXIT_FAILED if errors else 0


def cmd_delete(args):
    return _delete(args, "all", "Nothing to delete: user '{user}' has no jobs or pods of project '{project}' "
                                "in namespace '{ns}'.")


def cmd_delete_job(args):
    return _delete(args, "jobs", "No jobs of user '{user}' in project '{project}' (namespace '{ns}').")


def cmd_delete_pod(args):
    return _delete(args, "pods", "No interactive pods of user '{user}' in project '{project}' (namespace '{ns}').")


def cmd_clean_jobs(args):
    return _delete(args, "failed", "No failed jobs to delete (user '{user}', project '{project}', "
                                   "namespace '{ns}').")
