"""build/local-state.json: what `make local` is doing, for other tools (the sweep report) to read.

Written atomically (a temporary file renamed over the old one) when the run starts (every selected cell
"pending") and after state changes, at most every WRITE_INTERVAL seconds (longer for big grids, so that
writing never costs a measurable share of the run), and always at the end. Format: docs/local.md.
"""
import json
import os
import threading
import time

from toolbox.core.files import write_atomically
from toolbox.errors import warn

STATE_FILE = os.path.join("build", "local-state.json")
VERSION = 1
WRITE_INTERVAL = 0.5
# a write may take at most this share of the time between two writes (big grids: long JSON)
MAX_WRITE_SHARE = 0.05
STATES = ("pending", "running", "succeeded", "failed", "interrupted", "not run")


class StateRecord:
    def __init__(self, cells, path=STATE_FILE):
        self.path = path
        self.lock = threading.Lock()
        self.cells = {}
        models, datasets = {}, {}
        for cell in cells:
            models.setdefault(cell.model)
            datasets.setdefault(cell.dataset)
            self.cells[cell.name] = {"model": cell.model, "dataset": cell.dataset, "hparams": dict(cell.hparams),
                                     "state": "pending", "exit_code": None, "started": None, "seconds": None,
                                     "log": None, "gpus": None}
        self.grid = {"models": list(models), "datasets": list(datasets)}
        self.dirty = True
        self.broken = False
        self.last_write = 0.0
        self.interval = WRITE_INTERVAL

    def update(self, cell, **changes):
        """Record a change of one cell (thread-safe; written by the next flush)."""
        with self.lock:
            self.cells[cell.name].update(changes)
            self.dirty = True

    def flush(self, force=False):
        """Write the file if something changed and the last write is old enough (or force)."""
        now = time.monotonic()
        if self.broken or not self.dirty or (not force and now - self.last_write < self.interval):
            return
        with self.lock:
            text = json.dumps({"version": VERSION, "updated": time.time(), "grid": self.grid, "cells": self.cells},
                              ensure_ascii=False)
            self.dirty = False
        try:
            write_atomically(self.path, text)
        except OSError as err:
            self.broken = True
            warn(f"{self.path}: cannot write the state of this run ({err.strerror}); the runs go on")
            return
        spent = time.monotonic() - now
        self.interval = max(WRITE_INTERVAL, spent / MAX_WRITE_SHARE)
        self.last_write = time.monotonic()

