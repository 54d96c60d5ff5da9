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

Cells share twin runs: the twin runs one training step, which depends only on a few resolved scenario
fields (``step_key``: device, runtime, workload, techniques, batch, seed), not on the schedule's timing,
pipeline, budgets or battery. Cells with the same step key boot one twin between them (the first cell in
matrix order runs it); every other cell of that key gets the same record with ``shared_with``, the label of
the cell that ran. ``matrix.json`` says how many cells and twin runs the pass had (``verification``).

Each finished cell is appended to ``verify.jsonl`` (one fsynced line, as ``results.jsonl``) and the
matrix is rewritten atomically at once, so an interrupted pass keeps every cell that finished; a later
``--resume --verify`` reruns only the steps without a finished measurement (a record of the same step key,
from any cell: a grid edit that leaves the step alone boots nothing).
"""
from __future__ import annotations

import hashlib
import json
import os
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from .feasibility import save_matrix
from .grid import Grid, Point
from .results_log import ResultsLog
from .worker import fingerprint, load_base, plain

VERIFY_FILE = "verify.jsonl"        # one line per verified cell: {key, label, scenario_sha256, step_sha256, verification}
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
    step: str = ""        # step_key(scenario): cells with the same one share one twin run

    @property
    def key(self) -> str:
        return f"{self.device}|{self.schedule}"

    @property
    def label(self) -> str:
        return f"{self.device} / {self.schedule}"


def step_key(scenario: dict) -> str:
    """SHA-256 of what one twin training step of ``scenario`` depends on, read from the loaded (typed)
    scenario: the device (its profile), the runtime, the whole workload (model, data set, story and its
    options, optimiser, lr, momentum, compression), the techniques, the batch and the seed (the job's
    pre-training and data order). ``ports.verify.verify_scenario`` runs one step whatever
    ``schedule.steps`` says, so neither it nor the schedule's timing (trigger, every_n, period), the
    replay or memory policy, the pipeline, power, battery, budgets, eval, fidelity or duration is in it."""
    from simulator.scenario import load_scenario

    sc = load_scenario(scenario)
    fields = {"device": sc.device, "runtime": sc.runtime, "workload": asdict(sc.workload),
              "techniques": asdict(sc.techniques), "batch": sc.schedule.batch, "seed": sc.seed}
    return hashlib.sha256(json.dumps(fields, sort_keys=True, default=str).encode()).hexdigest()


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
                sc = apply_overrides(base, dict(p.overrides))
                out.append(CellTask(d, s, p, sc, fingerprint(base, p), step_key(sc)))
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
    shared = f" (shared: the same step as {v['shared_with']})" if v.get("shared_with") else ""
    if not v.get("verified"):
        return f"{PREFIX} [{i}/{n}] {label}: not run: {v.get('reason')}{shared}"
    if "errors" not in v:
        return (f"{PREFIX} [{i}/{n}] {label}: out of memory on the twin; "
                f"{'agrees' if v.get('agree') else 'DISAGREES'} with the prediction{shared}")
    e = v["errors"]
    return (f"{PREFIX} [{i}/{n}] {label}: {'agrees' if v.get('agree') else 'DISAGREES'} "
            f"(heap peak {100 * e['heap_peak']:+.1f} %, instructions per step {100 * e['instructions_per_step']:+.1f} %"
            f", {v.get('elapsed_s', 0):.1f} s){shared}")


def _earlier_record(t: CellTask, mine: dict | None, by_step: dict[str, dict]) -> dict | None:
    """A finished record ``verify.jsonl`` already holds for cell ``t``'s step (None: run it): the cell's
    own line if its step is unchanged (or, for a line written before step keys, its scenario), else the
    line of another cell with the same step, marked as shared with the cell whose twin run it is."""
    if mine and mine["verification"].get("verified") and (
            mine.get("step_sha256") == t.step
            or ("step_sha256" not in mine and mine.get("scenario_sha256") == t.fingerprint)):
        return mine["verification"]
    other = by_step.get(t.step)
    if other is None:
        return None
    v = dict(other["verification"])
    origin = v.pop("shared_with", None) or other.get("label") or other["key"]
    return v if origin == t.label else v | {"shared_with": origin}


def run_verification(grid: Grid, fz: dict, rows: list[dict], out_dir: str | Path, verify: Verifier,
                     workers: int | None = None, scheduler: str | None = None, progress: bool = True,
                     connect_timeout_s: float = 10.0) -> dict:
    """Verify every fitting cell of ``fz`` (the matrix ``write_matrix`` wrote for ``rows``) with ``verify``
    and return the matrix with a ``verification`` record in each of those cells, and a top-level
    ``verification`` summary (cells, twin runs now and how many of them did not run the step, cells sharing
    a run, cells verified earlier, cells without a twin). Cells with the same ``step_key`` share one twin
    run and its record (``shared_with``). Cells whose device has no twin get ``verified: False`` and the
    reason, without a worker. The matrix on disk is rewritten atomically after every cell; steps finished
    earlier (``verify.jsonl``) are kept."""
    out_dir = Path(out_dir)
    log = ResultsLog(out_dir / VERIFY_FILE)
    mine: dict[str, dict] = {}
    by_step: dict[str, dict] = {}
    for r in log.read(repair=True):
        mine[r["key"]] = r
        if r.get("step_sha256") and r["verification"].get("verified"):
            by_step[r["step_sha256"]] = r               # the latest finished record of each step
    tasks = cell_tasks(grid, fz, rows)
    n = len(tasks)
    say = (lambda msg: print(msg, file=sys.stderr, flush=True)) if progress else (lambda msg: None)
    # twin_runs: steps handed to the verifier in this pass; refused: those of them it did not run (the port
    # refuses the step before booting, or the twin failed): their cells say why and a resume tries again
    summary = {"cells": n, "twin_runs": 0, "refused": 0, "shared": 0, "verified_earlier": 0, "no_twin": 0}
    fz["verification"] = summary
    count = 0

    def record(t: CellTask, v: dict, reused: bool = False) -> None:
        nonlocal count
        count += 1
        fz["cells"][t.device][t.schedule]["verification"] = v
        summary["shared"] += bool(v.get("shared_with")) and not reused
        own = mine.get(t.key) or {}
        if not reused or (own.get("step_sha256"), own.get("scenario_sha256")) != (t.step, t.fingerprint):
            log.append({"key": t.key, "label": t.label, "scenario_sha256": t.fingerprint, "step_sha256": t.step,
                        "verification": v})
        save_matrix(out_dir, fz)
        say(_done_line(count, n, t.label, v) + (" (verified earlier)" if reused else ""))

    groups: dict[str, list[CellTask]] = {}      # step key -> its cells in matrix order; the first one runs
    for t in tasks:
        old = _earlier_record(t, mine.get(t.key), by_step)
        if old is not None:
            summary["verified_earlier"] += 1
            record(t, old, reused=True)
            continue
        why = no_twin_reason(t.scenario)
        if why:
            summary["no_twin"] += 1
            record(t, plain({"verified": False, "no_twin": True, "device": t.device, "reason": why}))
        else:
            groups.setdefault(t.step, []).append(t)
    if not groups:
        return fz
    todo = [g[0] for g in groups.values()]
    summary["twin_runs"] = len(todo)

    def finished(t: CellTask, v: dict) -> None:
        """The twin run of ``t``'s step is done: its record for ``t`` and every cell sharing the step."""
        summary["refused"] += not v.get("verified")
        record(t, v)
        for other in groups[t.step][1:]:
            record(other, v | {"shared_with": t.label})

    n_cells = sum(len(g) for g in groups.values())
    say(f"{PREFIX}: {n_cells} fitting cell(s) to verify with {len(todo)} twin run(s), one per distinct training "
        f"step ({'Dask scheduler ' + scheduler if scheduler else 'local pool'})")
    if scheduler:
        _on_dask(todo, verify, scheduler, connect_timeout_s, finished, progress)
    else:
        logs = out_dir / VERIFY_LOG_DIR
        logs.mkdir(exist_ok=True)
        _on_pool(todo, verify, workers or os.cpu_count() or 1, logs, finished, progress)
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
