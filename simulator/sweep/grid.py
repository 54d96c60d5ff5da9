"""Sweep grid files (docs/architecture.md §3): parse and validate a grid, expand it into points in a fixed order.

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
"""
from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

GRID_KEYS = ("name", "base", "set", "axes", "schedules", "keep_timelines")
RANGE_KEYS = {"from", "to", "step"}


@dataclass(frozen=True)
class Point:
    """One scenario of the grid: its stable key, its place, the axis values and the overrides."""

    key: str
    index: int
    device: str
    schedule: str
    seed: Any
    overrides: dict[str, Any]
    sources: dict[str, str] = field(default_factory=dict, compare=False, repr=False)  # key -> grid table


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
                        src = dict.fromkeys(self.fixed, "[set]")
                        if dev is not None:
                            over["device"] = dev
                            src["device"] = "[axes]"
                        over.update(sover)
                        src.update(dict.fromkeys(sover, f"[schedules.{sname}]"))
                        over.update({k: val for (k, _), val in zip(others, combo, strict=True)})
                        src.update({k: "[axes]" for k, _ in others})
                        if seed is not None:
                            over["seed"] = seed
                            src["seed"] = "[axes]"
                        label_parts = ([sname] if sname else []) + [
                            f"{_short(k)}={_fmt(val)}" for (k, _), val in zip(others, combo, strict=True)]
                        label = " ".join(label_parts) or "base"
                        key_parts = [f"device={_fmt(dev)}", f"schedule={label}", f"seed={_fmt(seed)}"]
                        out.append(Point(key="|".join(key_parts), index=len(out), device=str(dev or "base"),
                                         schedule=label, seed=seed, overrides=over, sources=src))
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
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
            raise ValueError(f"{where}.{name} must be a finite number (got {v!r})")
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


def parse_grid(raw: dict, where: str = "<grid>", check: bool = True) -> Grid:
    """Validate a grid given as a dict (as read from TOML). Relative paths resolve against ``where``.
    ``check``: also load every point's scenario as a run would (``validate.check_grid``), so a bad value
    fails here, naming the table, the key and the value, before anything runs."""
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
    if not isinstance(name, str) or name in (".", "..") or "/" in name or "\\" in name or "\0" in name:
        raise ValueError(f"{where}: name must be a plain name (it names the output directory; got {name!r})")
    grid = Grid(name=name, path=where, base=base, axes=axes, schedules=schedules, keep_timelines=keep,
                fixed=_flatten(fixed))
    if not grid.points():
        raise ValueError(f"{where}: the grid expands to no scenarios")
    if check:
        from .validate import check_grid

        check_grid(grid)
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
