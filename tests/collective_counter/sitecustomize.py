"""Counts the collectives a process calls through torch.distributed's Python API, for
tests/test_ddp.py: put this folder first on PYTHONPATH and set COUNT_COLLECTIVES_TO to a folder;
each process writes ``<pid>.json`` ({collective: calls}) there when it exits. Python imports
``sitecustomize`` at start-up, before any other module, so every later ``from torch.distributed import
...`` gets the counting function too."""

import atexit
import json
import os
from collections import Counter
from pathlib import Path

if os.environ.get("COUNT_COLLECTIVES_TO"):
    import torch.distributed as dist

    calls = Counter()

    def counting(name, collective):
        def counted(*args, **kwargs):
            calls[name] += 1
            return collective(*args, **kwargs)
        return counted

    for name in ("all_reduce", "all_gather", "all_gather_object", "broadcast", "broadcast_object_list",
                 "reduce", "gather", "gather_object", "scatter", "barrier", "all_to_all", "reduce_scatter"):
        setattr(dist, name, counting(name, getattr(dist, name)))

    atexit.register(lambda: (Path(os.environ["COUNT_COLLECTIVES_TO"]) / f"{os.getpid()}.json").write_text(
        json.dumps(dict(calls))))
