"""batch/v1 Job specs as the real API server treats them: defaults (SetDefaults_Job), the validation rules the
JSON schema cannot express (indexed completion, per-index backoff, pod failure policy, pod replacement
policy) and which fields an update may change.

Messages follow k8s.io/kubernetes/pkg/apis/batch/validation so clients and tests see the real wording.
"""
from .status import cause, invalid
from .store import clone

MAX_INT32 = 2**31 - 1
MAX_PARALLELISM_INDEXED = 100_000
MAX_FAILED_INDEXES = 100_000
MAX_RULES = 20
MAX_EXIT_CODE_VALUES = 255
MAX_CONDITION_PATTERNS = 20
ACTIONS = ("Count", "FailIndex", "FailJob", "Ignore")
OPERATORS = ("In", "NotIn")
CONDITION_STATUSES = ("False", "True", "Unknown")
REPLACEMENT_POLICIES = ("Failed", "TerminatingOrFailed")
# Template fields an update may change while the job is suspended and has never started (what Kueue
# relies on to place a queued job).
SCHEDULING_DIRECTIVES = (("metadata", "labels"), ("metadata", "annotations"), ("spec", "nodeSelector"),
                         ("spec", "tolerations"), ("spec", "schedulingGates"), ("spec", "affinity"))


def is_indexed(job):
    return (job.get("spec") or {}).get("completionMode") == "Indexed"


def default_spec(spec):
    """Counts and policies the server fills in (the selector and template labels are defaults.py's)."""
    if spec.get("completions") is None and spec.get("parallelism") is None:
        spec["completions"] = spec["parallelism"] = 1
    spec.setdefault("parallelism", 1)
    # Per-index backoff makes the job-wide limit a formality unless the user sets one.
    spec.setdefault("backoffLimit", MAX_INT32 if spec.get("backoffLimitPerIndex") is not None else 6)
    spec.setdefault("completionMode", "NonIndexed")
    spec.setdefault("suspend", False)
    spec.setdefault("podReplacementPolicy", "Failed" if spec.get("podFailurePolicy") else "TerminatingOrFailed")
    for rule in (spec.get("podFailurePolicy") or {}).get("rules") or []:
        for pattern in (rule.get("onPodConditions") or []) if isinstance(rule, dict) else []:
            if isinstance(pattern, dict):
                pattern.setdefault("status", "True")


def _nonnegative(spec, key):
    value = spec.get(key)
    if isinstance(value, int) and value < 0:
        return [cause(f"spec.{key}", f"Invalid value: {value}: must be greater than or equal to 0")]
    return []


def _indexed_causes(spec):
    causes = []
    mode = spec.get("completionMode")
    if mode not in ("NonIndexed", "Indexed"):
        return [cause("spec.completionMode", f'Unsupported value: "{mode}": supported values: "NonIndexed", '
                                             '"Indexed"', "FieldValueNotSupported")]
    per_index, max_failed = spec.get("backoffLimitPerIndex"), spec.get("maxFailedIndexes")
    if max_failed is not None and per_index is None:
        causes.append(cause("spec.backoffLimitPerIndex", "Required value: when maxFailedIndexes is specified",
                            "FieldValueRequired"))
    if mode == "NonIndexed":
        for key, value in (("backoffLimitPerIndex", per_index), ("maxFailedIndexes", max_failed)):
            if value is not None:
                causes.append(cause(f"spec.{key}", f"Invalid value: {value}: requires indexed completion mode"))
        return causes
    completions, parallelism = spec.get("completions"), spec.get("parallelism")
    if completions is None:
        causes.append(cause("spec.completions", "Required value: when completion mode is Indexed",
                            "FieldValueRequired"))
    if isinstance(parallelism, int) and parallelism > MAX_PARALLELISM_INDEXED:
        causes.append(cause("spec.parallelism", f"Invalid value: {parallelism}: must be less than or equal to "
                                                f"{MAX_PARALLELISM_INDEXED} when completion mode is Indexed"))
    if isinstance(max_failed, int) and isinstance(completions, int) and max_failed > completions:
        causes.append(cause("spec.maxFailedIndexes", f"Invalid value: {max_failed}: must be less than or equal "
                                                     "to completions"))
    return causes


def _exit_code_causes(requirement, base, containers):
    causes = []
    operator = requirement.get("operator")
    if not operator:
        causes.append(cause(f"{base}.operator", 'Required value: valid values: ["In" "NotIn"]',
                            "FieldValueRequired"))
    elif operator not in OPERATORS:
        causes.append(cause(f"{base}.operator", f'Unsupported value: "{operator}": supported values: "In", '
                                                '"NotIn"', "FieldValueNotSupported"))
    name = requirement.get("containerName")
    if name is not None and name not in containers:
        causes.append(cause(f"{base}.containerName", f'Invalid value: "{name}": must be one of the container or '
                                                     "initContainer names in the pod template"))
    values = requirement.get("values") or []
    if not values:
        causes.append(cause(f"{base}.values", "Invalid value: []: at least one value is required"))
    elif len(values) > MAX_EXIT_CODE_VALUES:
        causes.append(cause(f"{base}.values", f"Too many: {len(values)}: must have at most {MAX_EXIT_CODE_VALUES} "
                                              "items", "FieldValueTooMany"))
    for index, value in enumerate(values):
        if operator == "In" and value == 0:
            causes.append(cause(f"{base}.values[{index}]", "Invalid value: 0: must not be 0 for the In operator"))
        if value in values[:index]:
            causes.append(cause(f"{base}.values[{index}]", f"Duplicate value: {value}", "FieldValueDuplicate"))
    if values != sorted(values):
        causes.append(cause(f"{base}.values", f"Invalid value: {values}: must be ordered"))
    return causes


def _condition_causes(patterns, base):
    causes = []
    if len(patterns) > MAX_CONDITION_PATTERNS:
        causes.append(cause(base, f"Too many: {len(patterns)}: must have at most {MAX_CONDITION_PATTERNS} items",
                            "FieldValueTooMany"))
    for index, pattern in enumerate(patterns):
        status = pattern.get("status")
        if status not in CONDITION_STATUSES:
            causes.append(cause(f"{base}[{index}].status", f'Unsupported value: "{status}": supported values: '
                                                           '"False", "True", "Unknown"', "FieldValueNotSupported"))
    return causes


def _rule_causes(spec, rule, base, containers):
    causes = []
    action = rule.get("action")
    if not action:
        causes.append(cause(f"{base}.action", 'Required value: valid values: ["Count" "FailIndex" "FailJob" '
                                              '"Ignore"]', "FieldValueRequired"))
    elif action == "FailIndex" and spec.get("backoffLimitPerIndex") is None:
        causes.append(cause(f"{base}.action", 'Invalid value: "FailIndex": requires the backoffLimitPerIndex to '
                                              "be set"))
    elif action not in ACTIONS:
        causes.append(cause(f"{base}.action", f'Unsupported value: "{action}": supported values: "Count", '
                                              '"FailIndex", "FailJob", "Ignore"', "FieldValueNotSupported"))
    on_codes, on_conditions = rule.get("onExitCodes"), rule.get("onPodConditions") or []
    if on_codes is not None:
        causes += _exit_code_causes(on_codes, f"{base}.onExitCodes", containers)
    if on_conditions:
        causes += _condition_causes(on_conditions, f"{base}.onPodConditions")
    if on_codes is not None and on_conditions:
        causes.append(cause(base, "Invalid value: \"\": specifying both OnExitCodes and OnPodConditions is not "
                                  "supported"))
    if on_codes is None and not on_conditions:
        causes.append(cause(base, "Invalid value: \"\": specifying one of OnExitCodes and OnPodConditions is "
                                  "required"))
    return causes


def _policy_causes(spec):
    policy = spec.get("podFailurePolicy")
    replacement = spec.get("podReplacementPolicy")
    causes = []
    if policy is not None:
        if replacement != "Failed":
            causes.append(cause("spec.podReplacementPolicy", f'Unsupported value: "{replacement}": supported '
                                                             'values: "Failed"', "FieldValueNotSupported"))
        rules = policy.get("rules") or []
        if len(rules) > MAX_RULES:
            causes.append(cause("spec.podFailurePolicy.rules", f"Too many: {len(rules)}: must have at most "
                                                               f"{MAX_RULES} items", "FieldValueTooMany"))
        template = (spec.get("template") or {}).get("spec") or {}
        containers = {c.get("name") for c in (template.get("containers") or []) + (
            template.get("initContainers") or [])}
        for index, rule in enumerate(rules):
            causes += _rule_causes(spec, rule, f"spec.podFailurePolicy.rules[{index}]", containers)
    elif replacement not in REPLACEMENT_POLICIES:
        causes.append(cause("spec.podReplacementPolicy", f'Unsupported value: "{replacement}": supported values: '
                                                         '"Failed", "TerminatingOrFailed"', "FieldValueNotSupported"))
    return causes


def restart_policy_causes(spec, template_spec):
    """Jobs run to completion: Never or OnFailure (Never only with a pod failure policy)."""
    policy = template_spec.get("restartPolicy")
    field = "spec.template.spec.restartPolicy"
    if policy in (None, "", "Always"):
        return [cause(field, 'Required value: valid values: "OnFailure", "Never"', "FieldValueRequired")]
    if policy not in ("OnFailure", "Never"):
        return [cause(field, f'Unsupported value: "{policy}": supported values: "OnFailure", "Never"',
                      "FieldValueNotSupported")]
    if spec.get("podFailurePolicy") is not None and policy != "Never":
        return [cause(field, f'Invalid value: "{policy}": only "Never" is supported when podFailurePolicy is '
                             "specified")]
    return []


def spec_causes(spec):
    """validateJobSpec's rules for counts, completion mode and failure policies (the pod template is checked
    by the caller)."""
    causes = []
    for key in ("parallelism", "completions", "activeDeadlineSeconds", "backoffLimit", "ttlSecondsAfterFinished",
                "backoffLimitPerIndex", "maxFailedIndexes"):
        causes += _nonnegative(spec, key)
    return causes + _indexed_causes(spec) + _policy_causes(spec)


def _without_scheduling_directives(template):
    template = clone(template or {})
    for section, key in SCHEDULING_DIRECTIVES:
        (template.get(section) or {}).pop(key, None)
    return template


def _immutable(res, name, key):
    return invalid(res, name, [cause(f"spec.{key}", "Invalid value: ...: field is immutable")])


def check_update(res, old, new):
    """ValidateJobSpecUpdate: what stays fixed once a job exists."""
    name = old["metadata"]["name"]
    old_spec, new_spec = old.get("spec") or {}, new.get("spec") or {}
    for key in ("selector", "completionMode", "podFailurePolicy", "backoffLimitPerIndex"):
        if old_spec.get(key) != new_spec.get(key):
            raise _immutable(res, name, key)
    old_template, new_template = old_spec.get("template"), new_spec.get("template")
    if old_spec.get("suspend") and not (old.get("status") or {}).get("startTime"):
        old_template, new_template = map(_without_scheduling_directives, (old_template, new_template))
    if old_template != new_template:
        raise _immutable(res, name, "template")
    completions = new_spec.get("completions")
    if old_spec.get("completions") != completions:
        if not is_indexed(new):
            raise _immutable(res, name, "completions")
        if completions is not None and completions != new_spec.get("parallelism"):  # elastic Indexed Jobs
            raise invalid(res, name, [cause("spec.completions", f"Invalid value: {completions}: can only be "
                                                                "modified in tandem with spec.parallelism")])
