"""Running a sweep: the points not yet in ``results.jsonl`` go to the local pool or a Dask cluster, each
finished row is appended as it arrives, and the outcome lists every finished row in grid order."""
from __future__ import annotations

import os
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from .grid import Grid
from .results_log import RESULTS_FILE, ResultsLog
from .worker import fingerprint, load_base, run_point

FINGERPRINT = "scenario_sha256"      # row field: the resolved scenario the row ran


@dataclass
class SweepOutcome:
    """What ``run_sweep`` did: every row of the grid that has finished (in grid order) and counts."""

    grid: Grid
    out_dir: Path
    rows: list[dict]
    ran: int
    skipped: int
    pool_restarts: int = 0
    stale: int = 0                     # finished rows whose scenario has changed since: run again
    worker_deaths: list[list[str]] = field(default_factory=list)   # keys in flight at each pool break

    @property
    def errors(self) -> int:
        return sum(r["status"] != "ok" for r in self.rows)


def run_sweep(grid: Grid, out_dir: str | Path, workers: int | None = None, scheduler: str | None = None,
              resume: bool = False, progress: bool = True,
              on_row: Callable[[dict], None] | None = None, connect_timeout_s: float = 10.0,
              retry_errors: bool = False, runner: Callable[..., dict] | None = None) -> SweepOutcome:
    """Run every point of ``grid`` not yet in ``out_dir/results.jsonl`` and return all finished rows.

    ``scheduler`` (``tcp://host:port``) runs on a Dask cluster; otherwise a local process pool of
    ``workers`` (default: CPU count). Without ``resume`` an existing results file is an error; with
    ``retry_errors`` a resumed sweep runs its error rows again (the newest row of a key wins). Resume is
    keyed by the resolved scenario: a row whose scenario has changed since (an edited grid or base
    file) is stale and runs again.
    ``runner`` replaces :func:`run_point` (same arguments; a module-level function, so it pickles).
    """
    runner = runner or run_point
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    log = ResultsLog(out_dir / RESULTS_FILE)
    if log.path.exists() and log.path.stat().st_size and not resume:
        raise ValueError(f"{log.path} already holds results: pass --resume to continue that sweep "
                         "or choose another --out")
    points = grid.points()
    base = load_base(grid.base)
    prints = {p.key: fingerprint(base, p) for p in points}
    keep = ("ok",) if retry_errors else ("ok", "error")
    on_disk = {r["key"]: r for r in log.read(repair=True)}           # the newest row of each key
    done = {k: r for k, r in on_disk.items() if r.get("status") in keep and r.get(FINGERPRINT) == prints.get(k)}
    stale = sum(1 for k, r in on_disk.items() if k in prints and r.get(FINGERPRINT) != prints[k])
    todo = [p for p in points if p.key not in done]
    skipped = len(points) - len(todo)
    if workers is not None and workers < 1:
        raise ValueError(f"--workers must be >= 1 (got {workers})")
    from tqdm import tqdm

    bar = tqdm(total=len(points), initial=skipped, desc=f"sweep {grid.name}", unit="scenario",
               disable=not progress, dynamic_ncols=True, file=sys.stderr)

    n_err = sum(r["status"] != "ok" for r in done.values())

    def record(row: dict) -> None:
        nonlocal n_err
        row[FINGERPRINT] = prints[row["key"]]
        log.append(row)
        done[row["key"]] = row
        n_err += row["status"] != "ok"
        if n_err:
            bar.set_postfix(errors=n_err, refresh=False)
        bar.update(1)
        if on_row:
            on_row(row)

    deaths: list[list[str]] = []

    def warn(msg: str) -> None:
        bar.write(f"edgesim sweep: {msg}", file=sys.stderr)

    try:
        if not todo:
            pass
        elif scheduler:
            from .dask_backend import run_dask

            run_dask(grid, todo, scheduler, record, connect_timeout_s, runner)
        else:
            from .pool import run_pool

            run_pool(grid, todo, workers or os.cpu_count() or 1, out_dir, record, done, deaths, warn, runner)
    finally:
        bar.close()
    rows = [done[p.key] for p in points if p.key in done]
    return SweepOutcome(grid=grid, out_dir=out_dir, rows=rows, ran=len(todo), skipped=skipped,
                        pool_restarts=len(deaths), stale=stale, worker_deaths=deaths)
