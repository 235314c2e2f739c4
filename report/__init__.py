"""Views of a sweep built from plain data: the live terminal view of `make status watch=1`
(report/terminal.py) and the one-file HTML page of `make report` (report/html.py).

Nothing here talks to a cluster or to S3: the CLI gathers one record per cell and passes the list in.
A record is a dict: {"name", "model", "dataset", "hparams": {key: text}, "state", "reason", "detail",
"node", "gpu", "started", "seconds", "job"}; only name, model, dataset, hparams and state are required.
States: succeeded, failed, running, pending, deleting, not submitted (cluster); succeeded, failed,
running, pending, interrupted, not run (local runs).
"""
