"""Counting a sweep's records: states in a fixed order, the sweep's progress, reasons grouped."""
import collections

# Every state a record can have, in the order views list them (finished first, then active, then idle).
ORDER = ("succeeded", "failed", "interrupted", "running", "pending", "deleting", "not submitted", "not run")
DONE = ("succeeded", "failed")


def state_counts(records):
    """state -> number of cells, in ORDER (states outside ORDER last); only states that occur."""
    found = collections.Counter(record["state"] for record in records)
    ordered = [state for state in ORDER if found.get(state)]
    ordered += sorted(state for state in found if state not in ORDER)
    return {state: found[state] for state in ordered}


def progress(records):
    """(done, failed, total): done counts succeeded and failed cells."""
    counts = collections.Counter(record["state"] for record in records)
    return sum(counts[s] for s in DONE), counts["failed"], len(records)


def reason_groups(records, state):
    """[(cells, reason)] of the cells in `state`, the most common reason first ("12 cells: Insufficient
    nvidia.com/gpu")."""
    found = collections.Counter(record.get("reason") or "no reason given" for record in records
                                if record["state"] == state)
    return sorted(((count, reason) for reason, count in found.items()), key=lambda item: (-item[0], item[1]))
