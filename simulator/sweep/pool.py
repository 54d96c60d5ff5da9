"""The local backend: grid points on a process pool. A worker that dies breaks the pool; the points in
flight are rerun one by one (a point that kills its worker alone becomes an error row) and the pool
restarts. Ctrl-C or a killed sweep leaves no worker behind."""
from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path

from ..pools import stop_pool
from .grid import Grid, Point
from .worker import PRELOAD_MODULES, lost_row, run_point


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        return state not in ("Z", "X")
    except FileNotFoundError:
        return False
    except (OSError, IndexError):
        try:
            os.kill(pid, 0)
            return True
        except ProcessLookupError:
            return False
        except PermissionError:
            return True


def _watch_parent(pid: int, period_s: float = 0.5) -> None:
    while _alive(pid):
        time.sleep(period_s)
    os._exit(3)


def _worker_init(parent_pid: int) -> None:
    """In each pool worker: Ctrl-C goes to the sweep, which stops the pool (a worker must not die
    mid-row on its own); and a worker whose sweep was killed outright (SIGKILL) exits instead of
    waiting forever on the pool's queue."""
    import threading

    signal.signal(signal.SIGINT, signal.SIG_IGN)
    threading.Thread(target=_watch_parent, args=(parent_pid,), daemon=True, name="edgesim-watch-sweep").start()


def new_pool(n: int) -> ProcessPoolExecutor:
    """A pool of ``n`` workers forked from a server that has already imported the simulator."""
    import multiprocessing as mp

    ctx = mp.get_context("forkserver")
    # workers fork from a server that has already imported the simulator, the workloads and
    # scikit-learn (1-2 s per process otherwise)
    ctx.set_forkserver_preload(list(PRELOAD_MODULES))
    return ProcessPoolExecutor(max_workers=n, mp_context=ctx, initializer=_worker_init, initargs=(os.getpid(),))


def run_pool(grid: Grid, todo: list[Point], workers: int, out_dir: Path, record: Callable[[dict], None],
             done: dict[str, dict], deaths: list[list[str]], warn: Callable[[str], None],
             runner: Callable[..., dict] = run_point) -> None:
    """Process-pool loop. A dead worker breaks the pool: the scenarios in flight are noted in ``deaths``
    and rerun one by one in a fresh single-worker pool (a scenario that kills its worker alone becomes
    an error row), then the pool restarts and goes on."""
    inflight = out_dir / ".inflight"
    inflight.mkdir(exist_ok=True)
    for f in inflight.iterdir():
        f.unlink()
    pending = list(todo)
    while pending:
        suspects = _run_batch(grid, pending, workers, inflight, record, runner)
        if suspects is None:
            break
        deaths.append(suspects)
        warn(f"a worker process died (BrokenProcessPool) with {len(suspects)} scenario(s) in flight: "
             f"{'; '.join(suspects) or 'none'}; rerunning them alone, then restarting the pool")
        by_key = {p.key: p for p in pending}
        for key in suspects:                       # isolate: run each suspect alone
            p = by_key.get(key)
            if p is None:
                continue
            again = _run_batch(grid, [p], 1, inflight, record, runner)
            if again is not None:
                record(lost_row(p, "worker process died while running this scenario (BrokenProcessPool, "
                                   "also when run alone): out of host memory or a crash in native code?"))
        pending = [p for p in pending if p.key not in done]
    try:
        inflight.rmdir()
    except OSError:
        pass


def _run_batch(grid: Grid, points: list[Point], workers: int, inflight: Path,
               record: Callable[[dict], None], runner: Callable[..., dict] = run_point) -> list[str] | None:
    """Run ``points`` on one pool. Returns None when all finished, or the keys in flight when it broke."""
    ex = new_pool(min(workers, len(points)))
    recorded: set = set()
    try:
        futs = {ex.submit(runner, p, grid.base, grid.keep_timelines, str(inflight)): p for p in points}
        remaining = set(futs)
        while remaining:
            finished, remaining = wait(remaining, return_when=FIRST_COMPLETED)
            for fut in sorted(finished, key=lambda f: futs[f].index):
                try:
                    row = fut.result()
                except BrokenProcessPool:
                    suspects = sorted(f.read_text() for f in inflight.iterdir())
                    for f in inflight.iterdir():
                        f.unlink()
                    # the pool is dead: keep every row that did finish, then report the suspects
                    for other in sorted(futs, key=lambda f: futs[f].index):
                        if (other not in recorded and other.done() and not other.cancelled()
                                and other.exception() is None):
                            record(other.result())
                            recorded.add(other)
                    ex.shutdown(wait=True, cancel_futures=True)
                    return suspects
                record(row)
                recorded.add(fut)
    except BaseException:
        stop_pool(ex)
        raise
    ex.shutdown(wait=True)
    return None
