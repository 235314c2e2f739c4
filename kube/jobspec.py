"""The Job spec beyond its pod: how failures count (`retries`, `fatal_exit_codes`, disruptions), Indexed
completion (multi-node cells, array packs, retried cells) and queueing (`queue`, Kueue).

Three shapes of Job, one rule for failures:
- a cell without retries: a plain Job, `backoffLimit: backoff_limit` (0: a failed pod fails the cell);
- a cell with `retries: K`, a multi-node cell, an array pack: an Indexed Job whose indexes each get
  `backoffLimitPerIndex` (= retries, else backoff_limit) replacements. The job controller then writes, on every
  replacement pod, how many failures of its index counted and how many it ignored: `make status` reads the
  cell's restarts from there. A multi-node cell fails as a whole when one node has used its retries
  (`maxFailedIndexes: 0`); an array pack's cells fail one by one while the others go on.
With retries, a `podFailurePolicy` ignores disruptions (a pod with the DisruptionTarget condition: preempted
for a higher-priority pod, evicted by a node drain or taint): they never use up a retry. Exit codes listed in
`fatal_exit_codes` fail the cell at once (FailJob for a cell or a multi-node cell, FailIndex for a cell of an
array). Without retries nothing changes: a preempted pod fails its cell, as before.
"""
from toolbox.core import multinode, naming
from toolbox.core.console import number_text

QUEUE_LABEL = "kueue.x-k8s.io/queue-name"
INDEX_KEY = "batch.kubernetes.io/job-completion-index"
FAILURE_COUNT_KEY = "batch.kubernetes.io/job-index-failure-count"
IGNORED_COUNT_KEY = "batch.kubernetes.io/job-index-ignored-failure-count"
DISRUPTION_RULE = {"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget", "status": "True"}]}
MAX_EXIT_CODES = 255  # the API's limit on the values of one onExitCodes rule
# The API server stores counts as int32 (int64 for deadlines): a bigger value is refused there, after part
# of a sweep may already be submitted, so it is refused when the settings are checked.
INT32_MAX = 2**31 - 1
INT64_MAX = 2**63 - 1


def retries(settings):
    return settings.get("retries") or 0


def retry_limit(settings):
    """Replacements of a failed pod: `retries`, else the older `backoff_limit`."""
    return retries(settings) or settings.get("backoff_limit") or 0


def fatal_codes(settings):
    """The fatal exit codes as sorted distinct integers (the API wants them so)."""
    return sorted({int(code) for code in settings.get("fatal_exit_codes") or ()})


def indexed(settings):
    """A single cell runs as an Indexed Job when it has retries: replacement pods then carry its counts."""
    return retries(settings) > 0 or multinode.is_multinode(settings)


def job_name(cell_name, settings, completions=1):
    """A cell's Job name: its own name, shortened when an Indexed Job needs room for `-<index>`."""
    if not indexed(settings):
        return cell_name
    return naming.indexed_job_name(cell_name, completions)


def failure_policy(settings, fatal_action):
    """The podFailurePolicy (None when the defaults do): disruptions ignored with retries, fatal exit codes."""
    rules = []
    if retries(settings):
        rules.append(DISRUPTION_RULE)
    codes = fatal_codes(settings)
    if codes and retry_limit(settings):   # without replacements every failure is already final
        rules.append({"action": fatal_action, "onExitCodes": {"operator": "In", "values": codes}})
    return {"rules": rules} if rules else None


def spec(settings, completions=None, parallelism=None, whole=True):
    """The Job spec's keys before its template, in manifest order. `completions`: the pods of an Indexed Job
    (None: one pod, Indexed only with retries); `whole`: the indexes are one cell (a multi-node cell), so
    one failed index fails the Job; else (an array pack) each index is a cell of its own."""
    limit = retry_limit(settings)
    if completions is None and not indexed(settings):
        result = {"backoffLimit": limit}
        policy = failure_policy(settings, "FailJob")
    else:
        completions = completions or multinode.node_count(settings)
        result = {"completionMode": "Indexed", "completions": completions,
                  "parallelism": min(parallelism or completions, completions), "backoffLimitPerIndex": limit}
        if whole:
            result["maxFailedIndexes"] = 0
        policy = failure_policy(settings, "FailJob" if whole else "FailIndex")
    if policy:
        result["podFailurePolicy"] = policy
    if settings.get("queue"):
        result["suspend"] = True     # Kueue admits (unsuspends) it
    return result


def check_template(renderer, text, where):
    """A Job template of the project's (config/templates/job.yaml.j2) copied before Indexed Jobs existed would
    write a plain Job where an Indexed one is needed: a problem, not a Job whose pods never find each other."""
    if text is not None and "completionMode" not in text:
        details = ["write the Job's spec keys as templates/job.yaml.j2 does: {% for key, value in job.items() %}",
                   "templates in config/templates/ override the toolbox's"]
        renderer.problem(where, "", "the Job template writes no Indexed completion (completionMode), which "
                                    "nodes, array and retries need", details)
    return text


def job_labels(settings, labels):
    """The Job's own labels: its pods' plus the Kueue queue (only the Job: Kueue admits Jobs, not pods)."""
    if not settings.get("queue"):
        return labels
    return {**labels, QUEUE_LABEL: settings["queue"]}


def problems(settings, label_value_ok):
    """(field, message) problems of the scaling-out fields beyond their types."""
    found = []
    for key, low in (("nodes", 1), ("retries", 0), ("parallelism", 1)):
        value = settings.get(key)
        if value is not None and value < low:
            found.append((key, f"must be at least {low}, got {number_text(value)}"))
        elif value is not None and value > INT32_MAX:
            found.append((key, f"must be at most {number_text(INT32_MAX)}, got {number_text(value)}"))
    port = settings.get("master_port")
    if port is not None and not 1 <= port <= 65535:
        found.append(("master_port", f"must be a port number (1-65535), got {port}"))
    codes = settings.get("fatal_exit_codes") or ()
    for code in codes:
        if not str(code).isdigit() or not 1 <= int(code) <= 255:
            found.append(("fatal_exit_codes", f"'{code}' is not an exit code (1-255; 0 is success)"))
    if len(set(codes)) > MAX_EXIT_CODES:
        found.append(("fatal_exit_codes", f"at most {MAX_EXIT_CODES} codes"))
    queue = settings.get("queue")
    if queue is not None and not label_value_ok(queue):
        message = f"'{queue}' is not a valid LocalQueue name (a label value: letters, digits, -_.; at most 63)"
        found.append(("queue", message))
    shared = settings.get("shared")
    if multinode.is_multinode(settings) and shared is not None and shared < 1:
        found.append(("nodes", "a multi-node cell cannot share GPUs (shared < 1): each node is a whole pod",
                      ["set shared: 1.0 for it, or nodes: 1"]))
    return found
