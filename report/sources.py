"""Records (see report/__init__.py) of the sweep from what needs no cluster: the plan alone (every cell
"not submitted") and the state `make local` keeps in build/local-state.json (local/state.py writes it;
the CLI passes its path and states in)."""
import json
import time

from toolbox.errors import ToolboxError


def plan_record(cell, state="not submitted"):
    return {"name": cell.name, "model": cell.model, "dataset": cell.dataset, "hparams": dict(cell.hparams),
            "state": state, "reason": "", "detail": "", "node": "", "gpu": "", "started": None,
            "seconds": None, "job": ""}


def plan_records(cells):
    return [plan_record(cell) for cell in cells]


def read_local_state(path):
    """The parsed file, or None when `make local` has not written it; a file that is not the expected
    JSON is an error that names it."""
    try:
        with open(path, encoding="utf-8") as handle:
            data = json.load(handle)
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as err:
        raise ToolboxError(path, f"cannot read the state of local runs: {err}",
                           hint="`make local` writes it again; delete it to start afresh") from None
    if not isinstance(data, dict) or not isinstance(data.get("cells"), dict):
        raise ToolboxError(path, "not a state file of `make local` (no \"cells\" mapping)")
    return data


def local_records(cells, data, states, now=None):
    """The grid's cells with the state `make local` recorded for them ("not run" when it has none or
    one outside `states`); a running cell's duration so far counts up to `now`."""
    now = time.time() if now is None else now
    found = data.get("cells") or {}
    records = []
    for cell in cells:
        entry = found.get(cell.name)
        record = plan_record(cell, "not run")
        if isinstance(entry, dict):
            state = entry.get("state") if entry.get("state") in states else "not run"
            code = entry.get("exit_code")
            record.update(state=state, started=_number(entry.get("started")), seconds=_number(entry.get("seconds")),
                          node="this machine" if state != "not run" else "",
                          gpu=_gpus(entry.get("gpus")))
            if state in ("failed", "interrupted"):
                record["reason"] = f"exit code {code}" if code is not None else state
                record["detail"] = record["reason"] + (f"; log: {entry['log']}" if entry.get("log") else "")
        if record["state"] == "running" and record["seconds"] is None and record["started"] is not None:
            record["seconds"] = max(now - record["started"], 0.0)
        records.append(record)
    return records


def _number(value):
    return value if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def _gpus(value):
    if isinstance(value, (list, tuple)):
        return "GPU " + ",".join(str(g) for g in value) if value else ""
    return f"GPU {value}" if value not in (None, "") else ""
