"""Where each cell goes on the page: one block per model x dataset; in it, the hparam with the most values
as rows and the next one as columns; any further hparam that varies splits the block into small
multiples (one table per combination of their values). Values keep the order of the grid.
"""
import collections


class Table:
    """One table of a block: `caption` names the further hparams' values ('' when there are none)."""

    def __init__(self, caption, rows, columns):
        self.caption = caption
        self.rows, self.columns = rows, columns
        self.cells = collections.defaultdict(list)  # (row value, column value) -> records


class Block:
    """The cells of one model x dataset laid out as tables."""

    def __init__(self, model, dataset, records):
        self.model, self.dataset, self.records = model, dataset, records
        # hidden `_keys` follow the visible hparam they belong to: they would only split tables
        values = {key: found for key, found in hparam_values(records).items() if not key.startswith("_")}
        varying = [key for key, found in values.items() if len(found) > 1]
        ranked = sorted(varying, key=lambda key: -len(values[key]))  # stable: grid order breaks ties
        self.row_key = ranked[0] if ranked else None
        self.column_key = ranked[1] if len(ranked) > 1 else None
        self.split_keys = [key for key in varying if key not in (self.row_key, self.column_key)]
        self.fixed = {key: found[0] for key, found in values.items() if len(found) == 1}
        self.tables = self._tables(values)

    def _tables(self, values):
        rows = values.get(self.row_key, [""])
        columns = values.get(self.column_key, [""])
        tables = {}
        for record in self.records:
            hparams = record_hparams(record)
            caption = ", ".join(f"{key}={hparams.get(key, '')}" for key in self.split_keys)
            table = tables.get(caption)
            if table is None:
                table = tables[caption] = Table(caption, rows, columns)
            table.cells[(hparams.get(self.row_key, ""), hparams.get(self.column_key, ""))].append(record)
        return list(tables.values())


def record_hparams(record):
    return {str(key): "" if value is None else str(value) for key, value in (record.get("hparams") or {}).items()}


def hparam_values(records):
    """hparam -> its distinct values in order of appearance ('' for cells that lack it)."""
    keys = {}
    for record in records:
        keys.update(dict.fromkeys(record_hparams(record)))
    values = {key: {} for key in keys}  # dicts as ordered sets
    for record in records:
        hparams = record_hparams(record)
        for key in keys:
            values[key].setdefault(hparams.get(key, ""))
    return {key: list(found) for key, found in values.items()}


def blocks(records):
    """The blocks of a sweep, models and datasets in the order the grid lists them."""
    grouped = {}
    for record in records:
        grouped.setdefault((record.get("model") or "", record.get("dataset") or ""), []).append(record)
    return [Block(model, dataset, found) for (model, dataset), found in grouped.items()]
