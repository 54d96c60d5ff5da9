"""Capacity-planning sweeps (DESIGN.md §3): expand a grid of devices x workloads x schedules x seeds,
run every scenario through the simulator on a process pool or a Dask cluster, and stream the results
to ``results.jsonl`` one atomic line at a time, so an interrupted sweep resumes without losing work.

A grid file (TOML)::

    name = "boards"                       # optional, default: the file's stem
    base = "../scenarios/demo.toml"       # the scenario every point starts from (path relative to
                                          # this file), an embedded name ("demo"), or a [base] table
    [set]                                 # fixed dotted overrides for every point (not an axis)
    duration_s = 3600.0
    [axes]                                # each a list, or a range {from, to, step} (to inclusive)
    device = ["bbc-microbit-v1", "..."]   # or "*" for every bundled profile
    workload = ["mlp:16-12-10"]            # short for "workload.model"
    seed = {from = 0, to = 1}
    "schedule.batch" = [1, 4]             # any dotted scenario field
    [schedules.etf]                       # named schedules: each a table of dotted overrides
    "schedule.techniques.etf" = true

The feasibility matrix is device x schedule, where a "schedule" is everything but device and seed
(named schedule, the other axes, the workload); a cell fits only if every seed fits.
"""
from __future__ import annotations

import itertools
import json
import math
import os
import signal
import sys
import time
import traceback
from collections.abc import Callable, Iterable
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

GRID_KEYS = ("name", "base", "set", "axes", "schedules", "keep_timelines")
RANGE_KEYS = {"from", "to", "step"}
RESULTS_FILE = "results.jsonl"
MATRIX_FILE = "matrix.json"
FATAL_CONSTRAINT = {"out_of_memory": "peak_ram", "fragmentation": "peak_ram", "battery_empty": "battery_life"}
OBJECTIVE = ("best feasible schedule per device: highest mean accuracy gain (accuracy after - before "
             "personalisation, rounded to 0.1 percentage points), then lowest energy per day (J)")


# --- grid ------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Point:
    """One scenario of the grid: its stable key, its place, the axis values and the overrides."""

    key: str
    index: int
    device: str
    schedule: str
    seed: Any
    overrides: dict[str, Any]


@dataclass
class Grid:
    """A parsed sweep file: the base scenario and the axes to expand."""

    name: str
    path: str
    base: str | dict
    axes: dict[str, list]
    schedules: dict[str, dict[str, Any]] = field(default_factory=dict)
    keep_timelines: bool = False
    fixed: dict[str, Any] = field(default_factory=dict)

    def points(self) -> list[Point]:
        """Expand the grid in a fixed order: device, named schedule, other axes, seed."""
        devices = self.axes.get("device", [None])
        seeds = self.axes.get("seed", [None])
        others = [(k, v) for k, v in self.axes.items() if k not in ("device", "seed")]
        named = list(self.schedules.items()) or [(None, {})]
        out: list[Point] = []
        for dev in devices:
            for sname, sover in named:
                for combo in itertools.product(*[v for _, v in others]):
                    for seed in seeds:
                        over: dict[str, Any] = dict(self.fixed)
                        if dev is not None:
                            over["device"] = dev
                        over.update(sover)
                        over.update({k: val for (k, _), val in zip(others, combo, strict=True)})
                        if seed is not None:
                            over["seed"] = seed
                        label_parts = ([sname] if sname else []) + [
                            f"{_short(k)}={_fmt(val)}" for (k, _), val in zip(others, combo, strict=True)]
                        label = " ".join(label_parts) or "base"
                        key_parts = [f"device={_fmt(dev)}", f"schedule={label}", f"seed={_fmt(seed)}"]
                        out.append(Point(key="|".join(key_parts), index=len(out), device=str(dev or "base"),
                                         schedule=label, seed=seed, overrides=over))
        return out


def _short(key: str) -> str:
    if key == "workload.model":
        return "model"
    return key.removeprefix("schedule.techniques.").removeprefix("schedule.")


def _fmt(v: Any) -> str:
    if isinstance(v, bool):
        return "on" if v else "off"
    return str(v)


def _flatten(d: dict, prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        if isinstance(v, dict) and not (v and set(v) <= RANGE_KEYS):
            out.update(_flatten(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def _expand_range(where: str, r: dict) -> list:
    if "from" not in r or "to" not in r:
        raise ValueError(f"{where}: a range needs 'from' and 'to' (got {r!r})")
    start, stop, step = r["from"], r["to"], r.get("step", 1)
    for name, v in (("from", start), ("to", stop), ("step", step)):
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            raise ValueError(f"{where}.{name} must be a number (got {v!r})")
    if step <= 0:
        raise ValueError(f"{where}.step must be > 0 (got {step!r})")
    if stop < start:
        raise ValueError(f"{where}: 'to' ({stop!r}) is below 'from' ({start!r})")
    n = int(math.floor((stop - start) / step + 1e-9)) + 1
    if all(isinstance(v, int) for v in (start, stop, step)):
        return [start + i * step for i in range(n)]
    return [round(start + i * step, 12) for i in range(n)]


def load_grid(path: str | Path) -> Grid:
    """Parse and validate a sweep file; errors name the file, the field and the value."""
    from device_profiles.loader import read_toml

    return parse_grid(read_toml(path, "sweep"), str(path))


def parse_grid(raw: dict, where: str = "<grid>") -> Grid:
    """Validate a grid given as a dict (as read from TOML). Relative paths resolve against ``where``."""
    for k in raw:
        if k not in GRID_KEYS:
            raise ValueError(f"{where}: unknown key {k!r} (known: {', '.join(GRID_KEYS)})")
    here = Path(where).resolve().parent if where != "<grid>" else Path.cwd()
    base = raw.get("base")
    if base is None:
        raise ValueError(f"{where}: 'base' is missing (a scenario path or a [base] table)")
    if isinstance(base, str):
        from simulator.scenario import SCENARIO_DIR

        bp = Path(base)
        bp = bp if bp.is_absolute() else here / bp
        if not bp.is_file() and not Path(base).suffix and (SCENARIO_DIR / f"{base}.toml").is_file():
            bp = SCENARIO_DIR / f"{base}.toml"       # an embedded scenario name such as "demo"
        if not bp.is_file():
            raise ValueError(f"{where}: base = {base!r}: scenario file {bp} not found")
        base = str(bp)
    elif not isinstance(base, dict):
        raise ValueError(f"{where}: base must be a path or a table (got {base!r})")
    axes_raw = raw.get("axes", {})
    if not isinstance(axes_raw, dict):
        raise ValueError(f"{where}: [axes] must be a table (got {axes_raw!r})")
    axes: dict[str, list] = {}
    for k, v in _flatten(axes_raw).items():
        loc = f"{where}: axes.{k}"
        if k == "workload":
            k = "workload.model"                     # the short form: a list of model names or specs
        if isinstance(v, dict):
            v = _expand_range(loc, v)
        elif k == "device" and v == "*":
            from device_profiles import list_profiles

            v = [p.name for p in list_profiles()]
        elif not isinstance(v, list):
            v = [v]
        if not v:
            raise ValueError(f"{loc} is empty")
        if len(set(map(repr, v))) != len(v):
            raise ValueError(f"{loc} repeats a value (got {v!r})")
        axes[k] = v
    if "device" in axes:
        axes["device"] = [_check_device(where, here, d) for d in axes["device"]]
    schedules_raw = raw.get("schedules", {})
    if not isinstance(schedules_raw, dict):
        raise ValueError(f"{where}: [schedules] must be a table of named schedules (got {schedules_raw!r})")
    schedules = {}
    for sname, table in schedules_raw.items():
        if not isinstance(table, dict):
            raise ValueError(f"{where}: schedules.{sname} must be a table of overrides (got {table!r})")
        schedules[sname] = _flatten(table)
    fixed = raw.get("set", {})
    if not isinstance(fixed, dict):
        raise ValueError(f"{where}: [set] must be a table of dotted overrides (got {fixed!r})")
    keep = raw.get("keep_timelines", False)
    if not isinstance(keep, bool):
        raise ValueError(f"{where}: keep_timelines must be true or false (got {keep!r})")
    name = raw.get("name") or (Path(where).stem if where != "<grid>" else "sweep")
    grid = Grid(name=str(name), path=where, base=base, axes=axes, schedules=schedules, keep_timelines=keep,
                fixed=_flatten(fixed))
    if not grid.points():
        raise ValueError(f"{where}: the grid expands to no scenarios")
    return grid


def _check_device(where: str, here: Path, dev: Any) -> str:
    if not isinstance(dev, str):
        raise ValueError(f"{where}: axes.device holds {dev!r}, not a profile name or path")
    if dev.endswith(".toml"):
        p = Path(dev) if Path(dev).is_absolute() else here / dev
        if not p.is_file():
            raise ValueError(f"{where}: axes.device = {dev!r}: profile file {p} not found")
        return str(p)
    from device_profiles import list_profiles

    known = [p.name for p in list_profiles()]
    if dev not in known:
        raise ValueError(f"{where}: axes.device = {dev!r} is not a bundled profile (known: {', '.join(known)})")
    return dev


# --- one scenario (runs in a worker) ---------------------------------------------------------------

def _load_base(base: str | dict) -> dict:
    from simulator.scenario import scenario_dict

    return scenario_dict(base)


def run_point(point: Point, base: str | dict, keep_timelines: bool = False,
              inflight_dir: str | None = None) -> dict:
    """Run one grid point through the simulator; an exception becomes an error row with its message."""
    marker = Path(inflight_dir) / str(os.getpid()) if inflight_dir else None
    if marker is not None:
        marker.write_text(point.key)
    row: dict[str, Any] = {"key": point.key, "index": point.index, "device": point.device,
                           "schedule": point.schedule, "seed": point.seed, "overrides": point.overrides}
    t0 = time.perf_counter()
    try:
        from simulator.api import run_scenario
        from simulator.scenario import apply_overrides

        scenario = apply_overrides(_load_base(base), dict(point.overrides))
        result = run_scenario(scenario, progress=False, compare=False)   # the grid is the comparison
        if not keep_timelines:
            result = {k: v for k, v in result.items() if k != "timelines"}
        row.update(status="ok", result=_plain(result))
    except Exception as e:  # noqa: BLE001 - the row records it and the sweep goes on
        row.update(status="error", error=f"{type(e).__name__}: {e}",
                   trace=traceback.format_exc(limit=-3)[-2000:])
    row["elapsed_s"] = round(time.perf_counter() - t0, 4)
    if marker is not None:
        marker.unlink(missing_ok=True)
    return row


def _plain(o: Any) -> Any:
    """A result as plain JSON data: numpy scalars/arrays to Python, NaN to None, infinities to "inf"."""
    from simulator.files import jsonable as _jsonable

    def walk(v: Any) -> Any:
        if isinstance(v, float) and not math.isfinite(v):
            return None if math.isnan(v) else ("inf" if v > 0 else "-inf")
        if isinstance(v, dict):
            return {k: walk(x) for k, x in v.items()}
        if isinstance(v, list):
            return [walk(x) for x in v]
        return v

    return walk(json.loads(json.dumps(o, default=_jsonable, allow_nan=True)))


# --- results.jsonl ---------------------------------------------------------------------------------

class ResultsLog:
    """Append-only JSONL of finished rows: each line written whole, flushed and fsynced."""

    def __init__(self, path: str | Path):
        self.path = Path(path)

    def read(self, repair: bool = False) -> list[dict]:
        """Rows already on disk; a torn last line (a crash mid-write) is ignored, and cut off if ``repair``."""
        if not self.path.exists():
            return []
        data = self.path.read_bytes()
        rows, good_end = [], 0
        pos = 0
        while pos < len(data):
            nl = data.find(b"\n", pos)
            if nl < 0:
                break                                  # no newline: a torn last line
            line = data[pos:nl]
            try:
                row = json.loads(line)
                if not isinstance(row, dict) or "key" not in row:
                    raise ValueError("not a row")
            except ValueError:
                if nl + 1 < len(data):
                    lineno = data.count(b"\n", 0, pos) + 1
                    raise ValueError(f"{self.path}: line {lineno} is not a result row ({line[:60]!r}...)") from None
                break
            rows.append(row)
            pos = good_end = nl + 1
        if repair and good_end < len(data):
            with open(self.path, "r+b") as f:
                f.truncate(good_end)
                f.flush()
                os.fsync(f.fileno())
        return rows

    def append(self, row: dict) -> None:
        line = (json.dumps(row, sort_keys=True, allow_nan=False) + "\n").encode()
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            view = memoryview(line)
            while view:
                view = view[os.write(fd, view):]
            os.fsync(fd)
        finally:
            os.close(fd)


# --- running ---------------------------------------------------------------------------------------

@dataclass
class SweepOutcome:
    """What ``run_sweep`` did: every row of the grid that has finished (in grid order) and counts."""

    grid: Grid
    out_dir: Path
    rows: list[dict]
    ran: int
    skipped: int
    pool_restarts: int = 0
    worker_deaths: list[list[str]] = field(default_factory=list)   # keys in flight at each pool break

    @property
    def errors(self) -> int:
        return sum(r["status"] != "ok" for r in self.rows)


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


def run_sweep(grid: Grid, out_dir: str | Path, workers: int | None = None, scheduler: str | None = None,
              resume: bool = False, progress: bool = True,
              on_row: Callable[[dict], None] | None = None, connect_timeout_s: float = 10.0,
              retry_errors: bool = False, runner: Callable[..., dict] | None = None) -> SweepOutcome:
    """Run every point of ``grid`` not yet in ``out_dir/results.jsonl`` and return all finished rows.

    ``scheduler`` (``tcp://host:port``) runs on a Dask cluster; otherwise a local process pool of
    ``workers`` (default: CPU count). Without ``resume`` an existing results file is an error; with
    ``retry_errors`` a resumed sweep runs its error rows again (the newest row of a key wins).
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
    keep = ("ok",) if retry_errors else ("ok", "error")
    done = {r["key"]: r for r in log.read(repair=True) if r.get("status") in keep}
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
            _run_dask(grid, todo, scheduler, record, connect_timeout_s, runner)
        else:
            _run_pool(grid, todo, workers or os.cpu_count() or 1, out_dir, record, done, deaths, warn, runner)
    finally:
        bar.close()
    rows = [done[p.key] for p in points if p.key in done]
    return SweepOutcome(grid=grid, out_dir=out_dir, rows=rows, ran=len(todo), skipped=skipped,
                        pool_restarts=len(deaths), worker_deaths=deaths)


def _lost_row(p: Point, why: str) -> dict:
    return {"key": p.key, "index": p.index, "device": p.device, "schedule": p.schedule, "seed": p.seed,
            "overrides": p.overrides, "status": "error", "error": why, "elapsed_s": None}


def _new_pool(n: int) -> ProcessPoolExecutor:
    import multiprocessing as mp

    ctx = mp.get_context("forkserver")
    # workers fork from a server that has already imported the simulator, the workloads and
    # scikit-learn (1-2 s per process otherwise)
    ctx.set_forkserver_preload(["simulator.sweep", "simulator.api", "workloads", "sklearn.datasets"])
    return ProcessPoolExecutor(max_workers=n, mp_context=ctx, initializer=_worker_init, initargs=(os.getpid(),))


def _stop_pool(ex: ProcessPoolExecutor) -> None:
    """Cancel queued work and end the pool's own worker processes now (Ctrl-C must not wait a scenario)."""
    procs = list(getattr(ex, "_processes", {}).values())
    ex.shutdown(wait=False, cancel_futures=True)
    for pr in procs:
        if pr.is_alive():
            pr.terminate()
    for pr in procs:
        pr.join(timeout=5)


def _run_pool(grid: Grid, todo: list[Point], workers: int, out_dir: Path, record: Callable[[dict], None],
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
                record(_lost_row(p, "worker process died while running this scenario (BrokenProcessPool, "
                                    "also when run alone): out of host memory or a crash in native code?"))
        pending = [p for p in pending if p.key not in done]
    try:
        inflight.rmdir()
    except OSError:
        pass


def _run_batch(grid: Grid, points: list[Point], workers: int, inflight: Path,
               record: Callable[[dict], None], runner: Callable[..., dict] = run_point) -> list[str] | None:
    """Run ``points`` on one pool. Returns None when all finished, or the keys in flight when it broke."""
    ex = _new_pool(min(workers, len(points)))
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
        _stop_pool(ex)
        raise
    ex.shutdown(wait=True)
    return None


def _run_dask(grid: Grid, todo: list[Point], scheduler: str, record: Callable[[dict], None],
              connect_timeout_s: float = 10.0, runner: Callable[..., dict] = run_point) -> None:
    """Dask loop: ``dask.distributed`` is imported only here. A worker that dies is retried by Dask;
    a scenario Dask gives up on becomes an error row."""
    try:
        from dask.distributed import Client, as_completed
    except ImportError as e:
        raise ValueError(f"--scheduler needs dask.distributed: pip install 'edgesim[dask]' ({e})") from None
    try:
        client = Client(scheduler, timeout=f"{connect_timeout_s}s")
    except OSError as e:
        raise ValueError(f"--scheduler {scheduler}: cannot reach the Dask scheduler ({e})") from None
    try:
        # the base scenario travels as data: a remote worker need not have the file
        base = _load_base(grid.base)
        futs = [client.submit(runner, p, base, grid.keep_timelines, None, pure=False) for p in todo]
        by_fut = dict(zip(futs, todo, strict=True))
        for fut in as_completed(futs):
            p = by_fut[fut]
            try:
                row = fut.result()
            except Exception as e:  # noqa: BLE001 - e.g. KilledWorker: record it and go on
                row = _lost_row(p, f"{type(e).__name__}: {e}")
            record(row)
    finally:
        client.close()


# --- feasibility -----------------------------------------------------------------------------------

def _rel_margin(c: dict) -> float:
    """Margin as a fraction of the budget (negative: violated); inf when the budget is 0 or missing."""
    b, m = c.get("budget"), c.get("margin")
    if not isinstance(m, (int, float)) or isinstance(m, bool):
        return math.inf
    if not isinstance(b, (int, float)) or b == 0 or not math.isfinite(b):
        return math.copysign(math.inf, m) if m else 0.0
    return m / abs(b)


def binding_constraint(result: dict) -> dict | None:
    """The constraint that decides the verdict: the fatal event or first violation if any, else the
    constraint with the smallest margin relative to its budget."""
    cons = [c for c in result.get("constraints") or [] if isinstance(c, dict)]
    fatal = result.get("fatal")
    if fatal:
        kind = fatal.get("kind", "fatal")
        name = FATAL_CONSTRAINT.get(kind)
        for c in cons:
            if c.get("name") == name:
                return {**c, "rel_margin": min(_rel_margin(c), -1e-9), "fatal": kind}
        return {"name": kind, "margin": None, "unit": "", "rel_margin": -math.inf, "ok": False,
                "fatal": kind, "message": fatal.get("message")}
    fv = result.get("first_violation")
    if fv:
        for c in cons:
            if c.get("name") == fv.get("constraint"):
                return {**c, "rel_margin": _rel_margin(c)}
    if not cons:
        return None
    c = min(cons, key=lambda c: (c.get("ok", True), _rel_margin(c)))
    return {**c, "rel_margin": _rel_margin(c)}


def _gain(result: dict) -> float | None:
    a, b = result.get("accuracy_after"), result.get("accuracy_before")
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return float(a) - float(b)
    return None


def feasibility(rows: Iterable[dict]) -> dict:
    """Device x schedule matrix (fits, binding constraint, margin) and the best schedule per device."""
    rows = sorted(rows, key=lambda r: r["index"])
    devices = list(dict.fromkeys(r["device"] for r in rows))
    schedules = list(dict.fromkeys(r["schedule"] for r in rows))
    cells: dict[str, dict[str, dict]] = {d: {} for d in devices}
    groups: dict[tuple[str, str], list[dict]] = {}
    for r in rows:
        groups.setdefault((r["device"], r["schedule"]), []).append(r)
    for (dev, sched), rs in groups.items():
        errs = [r for r in rs if r["status"] != "ok"]
        oks = [r["result"] for r in rs if r["status"] == "ok"]
        cell: dict[str, Any] = {"runs": len(rs), "errors": len(errs)}
        if errs:
            cell.update(fits=None, binding="error", margin=None, unit="", rel_margin=None,
                        error=errs[0].get("error"))
        else:
            bind = [(binding_constraint(res) or {}) for res in oks]
            worst = min(bind, key=lambda b: b.get("rel_margin", math.inf)) if bind else {}
            gains = [g for g in (_gain(res) for res in oks) if g is not None]
            energies = [e for e in (res.get("energy_per_day_j") for res in oks) if isinstance(e, (int, float))]
            rel = worst.get("rel_margin")
            cell.update(
                fits=all(bool(res.get("fits")) for res in oks),
                binding=worst.get("name"), fatal=worst.get("fatal"), margin=worst.get("margin"), unit=worst.get("unit") or "",
                rel_margin=rel if rel is not None and math.isfinite(rel) else None,
                accuracy_gain=sum(gains) / len(gains) if gains else None,
                energy_per_day_j=sum(energies) / len(energies) if energies else None,
                peak_ram_bytes=max((res.get("peak_ram_bytes") or 0) for res in oks),
                ram_budget_bytes=oks[0].get("ram_budget_bytes"),
            )
        cells[dev][sched] = cell
    best = {}
    for dev in devices:
        feasible = [(s, c) for s, c in cells[dev].items() if c.get("fits")]
        if not feasible:
            best[dev] = None
            continue

        def score(sc: tuple[str, dict]) -> tuple:
            c = sc[1]
            g = c.get("accuracy_gain")
            e = c.get("energy_per_day_j")
            return (-(round(g * 1000) if g is not None else -10**9), e if e is not None else math.inf,
                    schedules.index(sc[0]))

        s, c = min(feasible, key=score)
        best[dev] = {"schedule": s, "accuracy_gain": c.get("accuracy_gain"),
                     "energy_per_day_j": c.get("energy_per_day_j"), "binding": c.get("binding"),
                     "rel_margin": c.get("rel_margin")}
    return {"devices": devices, "schedules": schedules, "cells": cells, "best": best, "objective": OBJECTIVE}
