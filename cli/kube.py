"""`make job`, `dryrun`, `retry`, `delete`, `delete_job`, `delete_pod` and `clean_jobs`.

Each handler follows describe -> validate -> execute: the grid is expanded and every manifest rendered and
checked (ConfigError, exit 2) before the first API call; then one list call tells what exists, and a
thread pool does the rest (toolbox.kube.submit).
"""
import contextlib
import sys

from toolbox.cli.common import load_grid
from toolbox.cli.local import plan_lines
from toolbox.cli.output import Output, confirm
from toolbox.core.config import load_config
from toolbox.core.console import format_table, plural
from toolbox.errors import EXIT_FAILED, EXIT_INTERRUPTED, CommandError, Unreachable
from toolbox.kube.build import BUILD_DIR
from toolbox.kube.client import connect
from toolbox.kube.dryrun import DryRun
from toolbox.kube.placement import ARRAY
from toolbox.kube.scope import check_owner, project_settings, selector
from toolbox.kube.status import age, job_state
from toolbox.kube.submit import (delete_targets, failure_reason, grouped_errors, pack_lines, prepare, submit,
                                 upsert_support, warn_missing)


def cmd_dryrun(args):
    """Every Job checked, then written one by one beside the plan table (the grid streams)."""
    grid = load_grid(args, lazy=True)
    dry = DryRun(grid)
    dry.check()
    sys.stdout.writelines(plan_lines(dry.write()))
    if dry.packs:
        print(pack_lines(dry.packs))
    if dry.arrays:
        print(f"\n{sum(len(members) for _, members in dry.arrays)} cells run as {len(dry.arrays)} array job(s) "
              "(array: true), each with its ConfigMap:")
        print("\n".join(f"  {name}: {len(members)} cells" for name, members in dry.arrays))
    print(f"\nWrote {plural(dry.jobs, 'Job manifest')}"
          + (f" and {dry.configmaps} ConfigMap(s)" if dry.configmaps else "")
          + f" to {BUILD_DIR}/ (namespace {grid.first().settings['namespace']}); nothing was submitted.")
    if dry.renderer.secret:
        print(f"The .env values are never written there: `make job` puts them in the Secret "
              f"'{dry.renderer.secret['metadata']['name']}' that the jobs use.")
    return 0


# -- make job / retry ---------------------------------------------------------------------------------------


def print_errors(errors, noun, unreachable_count=None, what_failed="not submitted"):
    """Each distinct error once (the same reason for many objects: once, with a count)."""
    groups = grouped_errors(errors)
    others = sum(count for err, count in groups if not isinstance(err, Unreachable))
    for err, count in groups:
        if isinstance(err, Unreachable) and unreachable_count is not None:
            err.details.append(f"({plural(unreachable_count - others, noun)} {what_failed})")
        elif count > 1:
            err.details.append(f"(the same for {plural(count - 1, 'more ' + noun)})")
        print(err.format(), file=sys.stderr)


def report(result, namespace):
    """The errors (identical ones once, with a count), then the summary line; the exit code."""
    print_errors(result.errors, "job", len(result.outcomes["failed"]))
    outcomes = result.outcomes
    counts = ", ".join(f"{len(outcomes[k])} {k}" for k in ("created", "replaced", "skipped", "failed"))
    tail = f"; interrupted with {result.in_flight} in flight (they may have been submitted)" \
        if result.interrupted else ""
    print(f"\nJobs in namespace '{namespace}': {counts} (of {result.total}){tail}.")
    if result.interrupted:
        print("interrupted: run the same command again to submit what is missing", file=sys.stderr)
        return EXIT_INTERRUPTED
    if outcomes["failed"]:
        print("Run the same command again to submit what failed.", file=sys.stderr)
        return EXIT_FAILED
    return 0


@contextlib.contextmanager
def _sweep_in_cluster(args, mode):
    """The rendered sweep, connected: (prepared, cluster, existing jobs by name, array plan), after the one
    list call that tells what exists (packs and arrays already in the cluster keep their members)."""
    prepared = prepare(load_grid(args))
    with connect(prepared.settings, args.context) as cluster:
        jobs = cluster.list("Job", selector(prepared.settings))
        prepared.keep_existing_packs(jobs)
        plan = prepared.plan_arrays(cluster, jobs, mode)
        yield prepared, cluster, {j["metadata"]["name"]: j for j in jobs}, plan


def cmd_job(args):
    out = Output()
    with _sweep_in_cluster(args, "overwrite" if args.overwrite else "job") as (prepared, cluster, existing, plan):
        settings = prepared.settings
        bodies = prepared.bodies()
        warn_missing(cluster, prepared.renderer)
        upsert_support(cluster, prepared.support_objects(), out)
        kept = settle_arrays(cluster, plan, settings, out)
        result = submit(cluster, bodies, existing, bool(args.overwrite), out, prepared.extras())
    result.total += len(kept)
    result.outcomes["skipped"] += kept
    return report(result, settings["namespace"])


def cmd_retry(args):
    """Recreate the failed cells of the sweep (missing cells are left to `make job`)."""
    out = Output()
    with _sweep_in_cluster(args, "retry") as (prepared, cluster, existing, _):
        settings = prepared.settings
        arrayed = {unit.name: len(unit.cells) for unit in prepared.units if unit.kind == ARRAY}
        states = {unit.name: job_state(existing.get(unit.name)) for unit in prepared.units}
        failed = [(name, body) for name, body in prepared.bodies() if states[name] == "failed" or name in arrayed]
        missing = sum(1 for n, s in states.items() if s == "missing" and n not in arrayed)
        note = f" ({plural(missing, 'job')} never submitted: `make job` submits them)" \
            if missing else ""
        if not failed:
            print(f"No failed cells to retry{note}.")
            return 0
        print(format_table(["FAILED JOB", "REASON"], [
            [n, f"{arrayed[n]} failed cell(s) of array jobs, run again as a new array job" if n in arrayed
             else failure_reason(existing[n])] for n, _ in failed]))
        if not confirm(f"Delete and recreate these {len(failed)} job(s)?", bool(args.yes)):
            print("Nothing done.")
            return EXIT_FAILED
        upsert_support(cluster, prepared.support_objects(), out)
        result = submit(cluster, failed, {n: existing[n] for n, _ in failed if n in existing}, False, out,
                        prepared.extras())
    if note:
        print(note.strip(" ()") + ".")
    return report(result, settings["namespace"])


def settle_arrays(cluster, plan, settings, out):
    """Before submitting array packs: say which packs keep their cells, delete those overwrite=true replaces.
    Returns the names of the packs left alone."""
    if plan is None:
        return []
    for name, (_, cells) in plan.kept.items():
        out.say(f"Array job '{name}': {plural(len(cells), 'cell')} running, pending or done there. "
                "Doing nothing for them (overwrite=true replaces it).")
    for job in plan.stale:
        name = job["metadata"]["name"]
        out.say(f"Array job '{name}' is replaced (overwrite=true). Deleting it.")
        check_owner(job, settings["user"], settings["project_name"], f"job/{name}")
        cluster.delete("Job", name, uid=job["metadata"].get("uid"))
    return list(plan.kept)


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
            meta = row[1]["metadata"]
            try:  # only the object the labelled list returned (its uid), never one that took its name since
                check_owner(row[1], settings["user"], settings["project_name"], f"{row[0].lower()}/{meta['name']}")
                cluster.delete(row[0], meta["name"], uid=meta.get("uid"))
            except CommandError as err:
                errors.append(err)

        cluster.run_all(one, rows)
    print_errors(errors, "object", len(errors), "not deleted")
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
