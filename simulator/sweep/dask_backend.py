"""The cluster backend: grid points on a Dask scheduler (``--scheduler tcp://HOST:PORT``).
``dask.distributed`` is imported only here (and in ``dask_worker``), so the core needs no Dask."""
from __future__ import annotations

from collections.abc import Callable

from .grid import Grid, Point
from .worker import load_base, lost_row, run_point


def connect(scheduler: str, connect_timeout_s: float = 10.0):
    """A client of the Dask scheduler at ``scheduler``; no dask or no scheduler is bad input (exit 2)."""
    try:
        from dask.distributed import Client
    except ImportError as e:
        raise ValueError(f"--scheduler needs dask.distributed: pip install 'edgesim[dask]' ({e})") from None
    try:
        return Client(scheduler, timeout=f"{connect_timeout_s}s")
    except OSError as e:
        raise ValueError(f"--scheduler {scheduler}: cannot reach the Dask scheduler ({e})") from None


def run_dask(grid: Grid, todo: list[Point], scheduler: str, record: Callable[[dict], None],
             connect_timeout_s: float = 10.0, runner: Callable[..., dict] = run_point) -> None:
    """Dask loop. A worker that dies is retried by Dask; a scenario Dask gives up on becomes an error row."""
    client = connect(scheduler, connect_timeout_s)           # names a missing dask or scheduler
    from dask.distributed import as_completed

    try:
        from .dask_worker import warm_workers

        # workers import the simulator once, before the first task (as the pool's fork server does), and
        # keep the workloads' caches between tasks; the base scenario travels once to each worker as data
        # (a remote worker need not have the file); the tasks go to the scheduler in one message
        warm_workers(client)
        [base] = client.scatter([load_base(grid.base)], broadcast=True, hash=False)
        n = len(todo)
        futs = client.map(runner, todo, [base] * n, [grid.keep_timelines] * n, [None] * n, pure=False)
        by_fut = dict(zip(futs, todo, strict=True))
        for fut in as_completed(futs):
            p = by_fut[fut]
            try:
                row = fut.result()
            except Exception as e:  # noqa: BLE001 - e.g. KilledWorker: record it and go on
                row = lost_row(p, f"{type(e).__name__}: {e}")
            record(row)
    finally:
        client.close()
