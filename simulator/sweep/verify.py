"""The verification pass of ``edgesim sweep --verify``: after the sweep, each fitting cell of the feasibility
matrix (device x schedule) runs one training step of its schedule on its device's virtual twin, on the same
runner as the sweep (the local process pool, or the Dask cluster), and the measured-vs-predicted record
goes into that cell of ``matrix.json`` as ``verification``.

Layers (docs/architecture.md): this package is the simulator core and never imports ``ports``. The
command line, the one layer above both, hands in the verifier (``ports.verify.verify_scenario``, a
module-level function, so it pickles by reference to a pool or Dask worker); this module owns only what
belongs to the sweep: which cells, which scenario stands for a cell, the runner, the log and the matrix.
Doing the pass here, with a callable, rather than in the command line keeps one runner abstraction
(``pool.new_pool`` and the Dask client set-up) instead of a second copy of it above the core.

Each finished cell is appended to ``verify.jsonl`` (one fsynced line, as ``results.jsonl``) and the
matrix is rewritten atomically at once, so an interrupted pass keeps every cell that finished; a later
``--resume --verify`` reruns only the cells without an agreed-on measurement for the same scenario.
"""
from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .feasibility import save_matrix
from .grid import Grid, Point
from .results_log import ResultsLog
from .worker import fingerprint, load_base, plain

VERIFY_FILE = "verify.jsonl"        # one line per verified cell: {key, scenario_sha256, verification}
VERIFY_LOG_DIR = "verify-logs"      # the twins' serial logs, one per cell (local pool only)
PREFIX = "edgesim sweep --verify"

Verifier = Callable[..., dict]      # verify(scenario: dict, *, log_path: str | None) -> verification record


@dataclass(frozen=True)
class CellTask:
    """One fitting cell to verify: its matrix place, the grid point that stands for it (the cell's first
    seed) and that point's resolved scenario."""

    device: str
    schedule: str
    point: Point
    scenario: dict
    fingerprint: str

    @property
    def key(self) -> str:
        return f"{self.device}|{self.schedule}"

    @property
    def label(self) -> str:
        return f"{self.device} / {self.schedule}"


def cell_tasks(grid: Grid, fz: dict, rows: list[dict]) -> list[CellTask]:
    """The fitting cells of matrix ``fz`` in matrix order, each with its first finished point's scenario."""
    from simulator.scenario import apply_overrides

    base = load_base(grid.base)
    by_key = {p.key: p for p in grid.points()}
    first: dict[tuple[str, str], Point] = {}
    for r in sorted(rows, key=lambda r: r["index"]):
        p = by_key.get(r["key"])
        if r.get("status") == "ok" and p is not None:
            first.setdefault((r["device"], r["schedule"]), p)
    out = []
    for d in fz["devices"]:
        for s in fz["schedules"]:
            c = fz["cells"][d].get(s)
            p = first.get((d, s))
            if c and c.get("fits") and p is not None:
                out.append(CellTask(d, s, p, apply_overrides(base, dict(p.overrides)), fingerprint(base, p)))
    return out


def no_twin_reason(scenario: dict) -> str | None:
    """Why the scenario's device has no virtual twin (None when it has one): said without any worker."""
    from simulator.inputs import profile_for
    from simulator.scenario import load_scenario

    profile = profile_for(load_scenario(scenario))
    em = profile.emulator
    if em is not None and em.twin:
        return None
    return f"{profile.name} has no virtual twin: {profile.no_twin_reason or 'its profile has no [emulator] twin'}"


def verify_cell(verify: Verifier, label: str, scenario: dict, log_path: str | None, progress: bool = True) -> dict:
    """In a worker: say which cell boots a twin, run ``verify`` and return its record as plain data (an
    exception becomes a record with ``verified: False`` and the message: the pass goes on)."""
    if progress:
        print(f"{PREFIX}: {label}: booting its twin (QEMU) for one training step", file=sys.stderr, flush=True)
    t0 = time.perf_counter()
    try:
        rec = dict(verify(scenario, log_path=log_path))
    except Exception as e:  # noqa: BLE001 - the cell records it and the pass goes on
        rec = {"verified": False, "reason": f"the verification raised {type(e).__name__}: {e}"}
    rec["elapsed_s"] = round(time.perf_counter() - t0, 2)
    return plain(rec)


def _done_line(i: int, n: int, label: str, v: dict) -> str:
    if not v.get("verified"):
        return f"{PREFIX} [{i}/{n}] {label}: not run: {v.get('reason')}"
    if "errors" not in v:
        return (f"{PREFIX} [{i}/{n}] {label}: out of memory on the twin; "
                f"{'agrees' if v.get('agree') else 'DISAGREES'} with the prediction")
    e = v["errors"]
    return (f"{PREFIX} [{i}/{n}] {label}: {'agrees' if v.get('agree') else 'DISAGREES'} "
            f"(heap peak {100 * e['heap_peak']:+.1f} %, instructions per step {100 * e['instructions_per_step']:+.1f} %"
            f", {v.get('elapsed_s', 0):.1f} s)")


def run_verification(grid: Grid, fz: dict, rows: list[dict], out_dir: str | Path, verify: Verifier,
                     workers: int | None = None, scheduler: str | None = None, progress: bool = True,
                     connect_timeout_s: float = 10.0) -> dict:
    """Verify every fitting cell of ``fz`` (the matrix ``write_matrix`` wrote for ``rows``) with ``verify``
    and return the matrix with a ``verification`` record in each of those cells. Cells whose device has no
    twin get ``verified: False`` and the reason, without a worker. The matrix on disk is rewritten
    atomically after every cell; cells verified earlier for the same scenario (``verify.jsonl``) are kept."""
    out_dir = Path(out_dir)
    log = ResultsLog(out_dir / VERIFY_FILE)
    earlier = {r["key"]: r for r in log.read(repair=True)}
    tasks = cell_tasks(grid, fz, rows)
    n = len(tasks)
    say = (lambda msg: print(msg, file=sys.stderr, flush=True)) if progress else (lambda msg: None)
    count = 0

    def record(t: CellTask, v: dict, reused: bool = False) -> None:
        nonlocal count
        count += 1
        fz["cells"][t.device][t.schedule]["verification"] = v
        if not reused:
            log.append({"key": t.key, "scenario_sha256": t.fingerprint, "verification": v})
        save_matrix(out_dir, fz)
        say(_done_line(count, n, t.label, v) + (" (verified earlier)" if reused else ""))

    todo: list[CellTask] = []
    for t in tasks:
        old = earlier.get(t.key)
        if old and old.get("scenario_sha256") == t.fingerprint and old["verification"].get("verified"):
            record(t, old["verification"], reused=True)
            continue
        why = no_twin_reason(t.scenario)
        if why:
            record(t, plain({"verified": False, "no_twin": True, "device": t.device, "reason": why}))
        else:
            todo.append(t)
    if not todo:
        return fz
    say(f"{PREFIX}: {len(todo)} fitting cell(s) to run on their twins "
        f"({'Dask scheduler ' + scheduler if scheduler else 'local pool'})")
    if scheduler:
        _on_dask(todo, verify, scheduler, connect_timeout_s, record, progress)
    else:
        logs = out_dir / VERIFY_LOG_DIR
        logs.mkdir(exist_ok=True)
        _on_pool(todo, verify, workers or os.cpu_count() or 1, logs, record, progress)
    return fz


def _log_name(t: CellTask) -> str:
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in f"{t.device}--{t.schedule}")
    return f"{safe}.serial.log"


def _on_pool(todo: list[CellTask], verify: Verifier, workers: int, logs: Path,
             record: Callable[[CellTask, dict], None], progress: bool = True) -> None:
    """The cells on a local process pool (as the sweep's); a dead worker makes its cells unverified."""
    from concurrent.futures import FIRST_COMPLETED, wait
    from concurrent.futures.process import BrokenProcessPool

    from ..pools import stop_pool
    from .pool import new_pool

    ex = new_pool(min(workers, len(todo)))
    try:
        futs = {ex.submit(verify_cell, verify, t.label, t.scenario, str(logs / _log_name(t)), progress): t
                for t in todo}
        remaining = set(futs)
        while remaining:
            finished, remaining = wait(remaining, return_when=FIRST_COMPLETED)
            for fut in sorted(finished, key=lambda f: futs[f].point.index):
                try:
                    v = fut.result()
                except BrokenProcessPool:
                    v = {"verified": False, "reason": "the worker process died (BrokenProcessPool): out of host "
                                                      "memory? rerun with --resume --verify"}
                record(futs[fut], v)
    except BaseException:
        stop_pool(ex)
        raise
    ex.shutdown(wait=True)


def _on_dask(todo: list[CellTask], verify: Verifier, scheduler: str, connect_timeout_s: float,
             record: Callable[[CellTask, dict], None], progress: bool = True) -> None:
    """The cells on the sweep's Dask cluster; the serial logs stay on the workers (their temp files)."""
    from .dask_backend import connect

    client = connect(scheduler, connect_timeout_s)
    from dask.distributed import as_completed

    try:
        n = len(todo)
        futs = client.map(verify_cell, [verify] * n, [t.label for t in todo], [t.scenario for t in todo],
                          [None] * n, [progress] * n, pure=False)
        by_fut = dict(zip(futs, todo, strict=True))
        for fut in as_completed(futs):
            try:
                v: dict[str, Any] = fut.result()
            except Exception as e:  # noqa: BLE001 - e.g. KilledWorker: the cell says so
                v = {"verified": False, "reason": f"the Dask task failed: {type(e).__name__}: {e}"}
            record(by_fut[fut], v)
    finally:
        client.close()
