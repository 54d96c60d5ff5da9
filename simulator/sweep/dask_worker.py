"""What a Dask worker keeps between sweep tasks, as the local pool's workers do: the simulator, the
workloads and scikit-learn imported once (``WarmWorker``, a worker plugin), and so the workloads'
in-process caches (pre-trained states, data sets) warm for every later scenario the worker runs.

Measured on ``benchmarks/sweep.py``'s grid (18 scenarios of ~0.13 s each): a fresh Dask worker spent
1.2-2.7 s importing these on its first task, more than the whole sweep takes on one warm worker; the
pool's workers had them already (forked from a server that imported them once). Imported only by
``dask_backend`` (it needs ``dask.distributed``).
"""
from __future__ import annotations

import importlib

from distributed import WorkerPlugin

from .worker import PRELOAD_MODULES

PLUGIN_NAME = "edgesim-sweep-warm"


class WarmWorker(WorkerPlugin):
    """Imports ``PRELOAD_MODULES`` on every worker of the cluster, those there now and those that join
    later. Idempotent: registering it again (a second sweep on the same cluster) does nothing."""

    idempotent = True
    name = PLUGIN_NAME

    def setup(self, worker) -> None:
        for mod in PRELOAD_MODULES:
            importlib.import_module(mod)


def warm_workers(client) -> None:
    """Register ``WarmWorker`` on ``client``'s cluster; returns once every current worker has run it."""
    client.register_plugin(WarmWorker(), name=PLUGIN_NAME)
