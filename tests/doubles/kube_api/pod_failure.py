"""What the job controller reads from a failed pod: the pod failure policy rule it matches, and the compressed
index lists of Indexed Jobs (`status.completedIndexes` / `failedIndexes`, e.g. "0-2,4,6,7").

Both follow k8s.io/kubernetes/pkg/controller/job (pod_failure_policy.go, indexed_job_utils.go).
"""

INDEX_KEY = "batch.kubernetes.io/job-completion-index"
FAILURE_COUNT_KEY = "batch.kubernetes.io/job-index-failure-count"
IGNORED_COUNT_KEY = "batch.kubernetes.io/job-index-ignored-failure-count"


def _terminated_nonzero(statuses, container_name):
    for status in statuses or []:
        if container_name is not None and status.get("name") != container_name:
            continue
        terminated = (status.get("state") or {}).get("terminated")
        if terminated and terminated.get("exitCode", 0) != 0:
            yield status, terminated["exitCode"]


def _match_exit_codes(pod_status, requirement):
    """The first container (then init container) that exited non-zero with a code the requirement matches.
    Exit code 0 never matches, not even `NotIn`."""
    values = requirement.get("values") or []
    wanted_in = requirement.get("operator") == "In"
    for statuses in (pod_status.get("containerStatuses"), pod_status.get("initContainerStatuses")):
        for status, code in _terminated_nonzero(statuses, requirement.get("containerName")):
            if (code in values) == wanted_in:
                return status, code
    return None


def _match_conditions(pod_status, patterns):
    for condition in pod_status.get("conditions") or []:
        for pattern in patterns:
            if condition.get("type") == pattern.get("type") and condition.get("status") == pattern.get(
                    "status", "True"):
                return condition
    return None


def match_policy(policy, pod):
    """(fail_job_message, counts, action) for a failed pod: the first matching rule decides.

    counts is False only for Ignore; action is None when no rule matches (the failure counts)."""
    if not policy:
        return None, True, None
    meta, status = pod["metadata"], pod.get("status") or {}
    for number, rule in enumerate(policy.get("rules") or []):
        action = rule.get("action")
        if rule.get("onExitCodes") is not None:
            found = _match_exit_codes(status, rule["onExitCodes"])
            if found is None:
                continue
            container, code = found
            detail = f"Container {container['name']} for pod {meta.get('namespace')}/{meta['name']} failed " \
                     f"with exit code {code} matching {action} rule at index {number}"
        elif rule.get("onPodConditions"):
            condition = _match_conditions(status, rule["onPodConditions"])
            if condition is None:
                continue
            detail = f"Pod {meta.get('namespace')}/{meta['name']} has condition {condition['type']} matching " \
                     f"{action} rule at index {number}"
        else:
            continue
        if action == "Ignore":
            return None, False, action
        if action == "FailJob":
            return detail, True, action
        if action in ("FailIndex", "Count"):
            return None, True, action
    return None, True, None


def completion_index(pod):
    """The pod's completion index (from the annotation, as the controller reads it) or None."""
    value = (pod["metadata"].get("annotations") or {}).get(INDEX_KEY)
    try:
        index = int(value)
    except (TypeError, ValueError):
        return None
    return index if index >= 0 else None


def annotation_count(pod, key):
    try:
        value = int((pod["metadata"].get("annotations") or {}).get(key, 0))
    except (TypeError, ValueError):
        return 0
    return value if 0 <= value <= 2**31 - 1 else 0


def format_indexes(indexes):
    """Sorted indexes as the controller writes them: runs of 3+ as `a-b`, pairs as `a,b`."""
    parts, ordered = [], sorted(indexes)
    start = 0
    while start < len(ordered):
        end = start
        while end + 1 < len(ordered) and ordered[end + 1] == ordered[end] + 1:
            end += 1
        first, last = ordered[start], ordered[end]
        parts.append(str(first) if first == last else f"{first},{last}" if last == first + 1 else f"{first}-{last}")
        start = end + 1
    return ",".join(parts)


def parse_indexes(text, completions):
    """The set of indexes in a compressed list, ignoring corrupt parts and indexes >= completions."""
    result = set()
    for part in (text or "").split(","):
        bounds = part.split("-")
        try:
            first = int(bounds[0])
            last = int(bounds[1]) if len(bounds) > 1 else first
        except ValueError:
            continue
        result.update(range(first, min(last, completions - 1) + 1))
    return result
