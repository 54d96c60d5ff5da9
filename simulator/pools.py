"""Process pools that a signal can stop at any point (docs/architecture.md §6, exit codes): the plan's technique
variants and the sweep's local backend both end their workers through ``stop_pool``."""
from __future__ import annotations

import time
from concurrent.futures import ProcessPoolExecutor

TERMINATE_GRACE_S = 2.0     # a worker's SIGTERM clean-up (a twin's QEMU) gets this long before SIGKILL


def stop_pool(ex: ProcessPoolExecutor) -> None:
    """Cancel queued work and end the pool's own worker processes now (Ctrl-C must not wait a scenario).

    Safe at any point of the pool's life, also when a signal arrived while ``submit`` was still starting
    the pool's manager thread (``shutdown(wait=True)`` would then fail with "cannot join thread before
    it is started" and hide the signal)."""
    procs = list((getattr(ex, "_processes", None) or {}).values())
    try:
        ex.shutdown(wait=False, cancel_futures=True)
    except RuntimeError:
        pass
    for pr in procs:
        if pr.is_alive():
            pr.terminate()
    deadline = time.monotonic() + TERMINATE_GRACE_S
    for pr in procs:
        pr.join(timeout=max(0.0, deadline - time.monotonic()))
    for pr in procs:
        # still alive: a worker whose SIGTERM runs a Python handler that never gets to run (a child forked
        # from a threaded parent can hang in C on a lock another thread held): SIGKILL cannot be caught
        if pr.is_alive():
            pr.kill()
            pr.join(timeout=5)
