"""Scenario files: what to simulate, validated at load (docs/architecture.md §3).

A scenario is a TOML table (or the same dict). Every field has a default stated in ``DEFAULTS``;
unknown keys and bad values raise ``ValueError`` naming the file, the dotted field and the value.
A loaded :class:`Scenario` holds typed, frozen configs (``simulator.config``). Sweeps change fields
with :func:`apply_overrides` (dotted keys such as ``"schedule.batch"``).
"""
from __future__ import annotations

import copy
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from device_profiles.loader import RUNTIMES, read_toml
from workloads import STORIES
from workloads.compression.config import CompressionSpec
from workloads.datasets import StoryOptions
from workloads.job import FINE_TUNE_LR
from workloads.optim import OPTIMIZERS
from workloads.techniques import Techniques

from .config import (
    FIDELITY_MODES,
    MEMORY_POLICIES,
    TRIGGERS,
    BatteryConfig,
    BudgetsConfig,
    EvalConfig,
    FidelityConfig,
    PipelineConfig,
    PowerConfig,
    ScheduleConfig,
    Variant,
    WorkloadConfig,
)
from .memory import POLICIES as HEAP_POLICIES

SCENARIO_DIR = Path(__file__).resolve().parent / "scenarios"

_STORY = StoryOptions()               # the imperfect-data stories' defaults live in workloads

# Every field and its default. A value of None means "derived" (explained beside it).
DEFAULTS: dict[str, Any] = {
    "name": "scenario",
    "seed": 0,
    "duration_s": 86400.0,            # one simulated day
    "device": "stm32f405-pyboard",    # bundled profile name or a .toml path
    "runtime": "native",              # native | micropython
    "workload": {
        "model": "mlp-digits",        # zoo name or spec string (mlp:64-32-10)
        "dataset": "auto",            # auto: the zoo entry's / the input shape's data set
        "story": "new-class",         # workloads.STORIES: new-class | shift | plain | noisy-labels | unlabelled | input-noise
        "label_noise": _STORY.label_noise,            # noisy-labels: fraction of wrong labels, [0, 1)
        "label_noise_kind": _STORY.label_noise_kind,  # noisy-labels: symmetric | confusable
        "label_fraction": _STORY.label_fraction,      # unlabelled: fraction of the stream labelled, [0, 1)
        "noise_level": _STORY.noise_level,            # input-noise: sensor noise std the stream rises to, [0, 1)
        "optimizer": "sgd",
        "lr": FINE_TUNE_LR,           # on-device fine-tuning wants a small step
        "momentum": 0.9,              # SGD momentum; 0 = plain SGD, no optimiser state (the micro:bit port)
        "compression": {},            # {}: dense; a table: frozen layers compressed in flash (workloads.compression.config)
    },
    "pipeline": {
        "sensor_rate_hz": 8.0,        # frames per second from the sensor
        "window": 8,                  # frames per inference input
        "deadline_s": 0.5,            # window ready -> inference result
        "queue_capacity": 4,          # items per bounded Store between stages
        "label_every": 4,             # every k-th window comes with the user's label
    },
    "schedule": {
        "trigger": "every-n",         # every-n | periodic | idle | charging
        "every_n": 32,                # labelled samples per trigger (every-n, idle, charging)
        "period_s": 3600.0,           # seconds between triggers (periodic)
        "batch": 8,
        "steps": 4,                   # training steps per trigger
        "memory_policy": "planned",   # planned (static arena from the planner) | heap (every tensor placed)
        "heap_policy": "first-fit",   # first-fit | best-fit (heap placement)
        "checkpoint_every_steps": 0,  # write the trainable weights to flash every N steps (0: never)
        "replay": 64,                 # labelled samples kept for batches (most recent)
        "max_steps": 0,               # stop training after this many steps (0: no limit)
        "techniques": {},             # workloads.Techniques fields
    },
    "power": {
        "idle_timeout_s": 0.002,      # after work the CPU idles this long before entering sleep
    },
    "battery": {
        "capacity_mah": None,         # None: the device profile's battery
        "voltage_v": None,
        "initial_fraction": 1.0,      # state of charge at t=0
        "harvest_w_by_hour": [],      # [] or 24 values: harvested power (W) for each hour of the day
        "sample_s": 300.0,            # battery bookkeeping/sampling period
    },
    "budgets": {
        "step_latency_s": 1.0,        # worst training-step latency
        "deadline_miss_rate": 0.01,   # inference deadline misses / inferences
        "battery_life_days": 7.0,     # at least this long on one charge
        "energy_per_day_j": None,     # None: battery capacity / battery_life_days
        "flash_wear_per_year": 0.2,   # fraction of flash endurance used per year (0.2: 5-year life)
    },
    "eval": {
        "points": 8,                  # host-side evaluations of accuracy/retention over the run
    },
    "fidelity": {
        "mode": "auto",               # auto: real steps while learning moves, then charged from records | full
        "real_rounds": 0,             # 0: until the loss curve is flat; N: N real training rounds (day 1 is always real)
    },
    "compare": {
        "variants": [],               # [{label, techniques}] technique variants for the report
    },
}

_NUMBER_FIELDS_POSITIVE = {
    "duration_s", "pipeline.sensor_rate_hz", "pipeline.deadline_s", "schedule.period_s",
    "battery.sample_s", "budgets.step_latency_s", "budgets.battery_life_days",
}
_INT_FIELDS_POSITIVE = {
    "pipeline.window", "pipeline.queue_capacity", "pipeline.label_every", "schedule.every_n",
    "schedule.batch", "schedule.steps", "schedule.replay", "eval.points",
}
_INT_FIELDS_NONNEG = {"seed", "schedule.checkpoint_every_steps", "schedule.max_steps", "fidelity.real_rounds"}


@dataclass(frozen=True)
class Scenario:
    """A validated scenario: typed tables, the techniques it trains with, and where it came from."""

    name: str
    seed: int
    duration_s: float
    device: str
    runtime: str
    workload: WorkloadConfig
    pipeline: PipelineConfig
    schedule: ScheduleConfig
    techniques: Techniques
    power: PowerConfig
    battery: BatteryConfig
    budgets: BudgetsConfig
    eval: EvalConfig
    compare: tuple[Variant, ...]
    where: str = "<scenario>"
    fidelity: FidelityConfig = FidelityConfig("auto", 0)


def _merge(base: dict, over: dict, where: str, prefix: str = "") -> dict:
    """Defaults overlaid with the user's values; unknown keys are an error."""
    out = copy.deepcopy(base)
    for k, v in over.items():
        dotted = f"{prefix}{k}"
        if k not in base:
            known = ", ".join(sorted(base))
            raise ValueError(f"{where}: {dotted} is not a known field (value {v!r}); known: {known}")
        if isinstance(base[k], dict) and k not in ("techniques", "compression"):
            if not isinstance(v, dict):
                raise ValueError(f"{where}: {dotted} must be a table (got {v!r})")
            out[k] = _merge(base[k], v, where, dotted + ".")
        else:
            out[k] = copy.deepcopy(v)
    return out


def _get(d: dict, dotted: str) -> Any:
    for part in dotted.split("."):
        d = d[part]
    return d


def _is_num(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _check(d: dict, where: str) -> None:
    def bad(f: str, want: str) -> ValueError:
        return ValueError(f"{where}: {f} must be {want} (got {_get(d, f)!r})")

    for f in ("name", "device", "workload.model", "workload.dataset"):
        v = _get(d, f)
        if not isinstance(v, str) or not v:
            raise bad(f, "a non-empty string")
    for f, choices in (("runtime", RUNTIMES), ("schedule.trigger", TRIGGERS),
                       ("schedule.memory_policy", MEMORY_POLICIES), ("workload.story", STORIES),
                       ("workload.optimizer", OPTIMIZERS), ("schedule.heap_policy", HEAP_POLICIES),
                       ("fidelity.mode", FIDELITY_MODES)):
        if _get(d, f) not in choices:
            raise bad(f, "one of " + ", ".join(choices))
    for f in _NUMBER_FIELDS_POSITIVE:
        v = _get(d, f)
        if not _is_num(v) or v <= 0:
            raise bad(f, "a number > 0")
    for f in _INT_FIELDS_POSITIVE:
        v = _get(d, f)
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise bad(f, "an integer >= 1")
    for f in _INT_FIELDS_NONNEG:
        v = _get(d, f)
        if isinstance(v, bool) or not isinstance(v, int) or v < 0:
            raise bad(f, "an integer >= 0")
    w = d["workload"]
    StoryOptions(w["label_noise"], w["label_noise_kind"], w["label_fraction"], w["noise_level"]).check(
        {k: f"{where}: workload.{k}" for k in ("label_noise", "label_noise_kind", "label_fraction", "noise_level")})
    tech = d["schedule"]["techniques"]
    if isinstance(tech, dict) and tech.get("buffer") is not None:
        size = tech.get("buffer_size", Techniques().buffer_size)
        if _is_num(size) and _is_num(d["schedule"]["batch"]) and size < d["schedule"]["batch"]:
            raise ValueError(f"{where}: schedule.techniques.buffer_size must be >= schedule.batch "
                             f"{d['schedule']['batch']} (got {size})")
    lr = d["workload"]["lr"]
    if not _is_num(lr) or lr <= 0:
        raise bad("workload.lr", "a number > 0")
    momentum = d["workload"]["momentum"]
    if not _is_num(momentum) or not 0 <= momentum < 1:
        raise bad("workload.momentum", "a number in [0, 1)")
    for f in ("power.idle_timeout_s", "budgets.flash_wear_per_year", "budgets.deadline_miss_rate"):
        v = _get(d, f)
        if not _is_num(v) or v < 0:
            raise bad(f, "a number >= 0")
    frac = d["battery"]["initial_fraction"]
    if not _is_num(frac) or not 0 < frac <= 1:
        raise bad("battery.initial_fraction", "a number in (0, 1]")
    for f in ("battery.capacity_mah", "battery.voltage_v", "budgets.energy_per_day_j"):
        v = _get(d, f)
        if v is not None and (not _is_num(v) or v <= 0):
            raise bad(f, "a number > 0 (or absent)")
    h = d["battery"]["harvest_w_by_hour"]
    if not isinstance(h, list) or (h and (len(h) != 24 or not all(_is_num(x) and x >= 0 for x in h))):
        raise bad("battery.harvest_w_by_hour", "[] or a list of 24 numbers >= 0 (watts per hour of day)")
    if d["schedule"]["trigger"] == "charging" and not any(h):
        raise ValueError(f"{where}: schedule.trigger = 'charging' needs battery.harvest_w_by_hour "
                         f"with some hour > 0 W (got {h!r})")
    if not isinstance(d["compare"]["variants"], list):
        raise bad("compare.variants", "a list of {label, techniques} tables")
    for i, v in enumerate(d["compare"]["variants"]):
        if not isinstance(v, dict) or set(v) - {"label", "techniques"} or not isinstance(v.get("label"), str):
            raise ValueError(f"{where}: compare.variants[{i}] must be a table with a string label and a "
                             f"techniques table (got {v!r})")
        Techniques.from_dict(v.get("techniques", {}), where=f"{where}: compare.variants[{i}].techniques")


def _check_finite(v: Any, where: str, dotted: str = "") -> None:
    """NaN and infinities are refused wherever a scenario holds a number (techniques and variants too)."""
    if isinstance(v, float) and not math.isfinite(v):
        raise ValueError(f"{where}: {dotted} must be a finite number (got {v!r})")
    if isinstance(v, dict):
        for k, x in v.items():
            _check_finite(x, where, f"{dotted}.{k}" if dotted else str(k))
    elif isinstance(v, list):
        for i, x in enumerate(v):
            _check_finite(x, where, f"{dotted}[{i}]")


def load_scenario(path_or_dict: str | Path | dict, where: str | None = None) -> Scenario:
    """A validated Scenario from a TOML path, an embedded name (``demo``) or a dict."""
    if isinstance(path_or_dict, dict):
        raw, where = path_or_dict, where or "<scenario>"
    else:
        raw, path = _read_file(path_or_dict, where)
        where = where or str(path)
    d = _merge(DEFAULTS, raw, where)
    _check_finite(d, where)
    tech = d["schedule"]["techniques"]
    if not isinstance(tech, dict):
        raise ValueError(f"{where}: schedule.techniques must be a table (got {tech!r})")
    try:
        techniques = Techniques.from_dict(tech, where=f"{where}: schedule.techniques")
    except TypeError as e:
        raise ValueError(f"{where}: schedule.techniques: {e}") from None
    except ValueError as e:
        msg = str(e)
        raise ValueError(msg if msg.startswith(where) else f"{where}: schedule.{msg}") from None
    _check(d, where)
    comp = d["workload"]["compression"]
    if not isinstance(comp, dict):
        raise ValueError(f"{where}: workload.compression must be a table (got {comp!r})")
    compression = CompressionSpec.from_dict(comp, where=f"{where}: workload.compression") if comp else None
    schedule = {k: v for k, v in d["schedule"].items() if k != "techniques"}
    battery = {**d["battery"], "harvest_w_by_hour": tuple(d["battery"]["harvest_w_by_hour"])}
    variants = tuple(Variant(v["label"], Techniques.from_dict(v.get("techniques", {})))
                     for v in d["compare"]["variants"])
    return Scenario(name=d["name"], seed=d["seed"], duration_s=float(d["duration_s"]), device=d["device"],
                    runtime=d["runtime"], workload=WorkloadConfig(**{**d["workload"], "compression": compression}),
                    pipeline=PipelineConfig(**d["pipeline"]), schedule=ScheduleConfig(**schedule),
                    techniques=techniques, power=PowerConfig(**d["power"]), battery=BatteryConfig(**battery),
                    budgets=BudgetsConfig(**d["budgets"]), eval=EvalConfig(**d["eval"]), compare=variants,
                    fidelity=FidelityConfig(**d["fidelity"]),
                    where=where)


def scenario_dict(path_or_dict: str | Path | dict) -> dict:
    """The raw (un-defaulted) dict of a scenario file, for overrides; dicts are copied."""
    if isinstance(path_or_dict, dict):
        return copy.deepcopy(path_or_dict)
    return _read_file(path_or_dict)[0]


def _read_file(path_or_name: str | Path, where: str | None = None) -> tuple[dict, Path]:
    """Parse a scenario file (or an embedded scenario's name); errors name ``where`` or the path."""
    path = Path(path_or_name)
    if not path.suffix and not path.exists() and (SCENARIO_DIR / f"{path}.toml").is_file():
        path = SCENARIO_DIR / f"{path}.toml"
    raw = read_toml(path, "scenario", where=where)
    _resolve_device(raw, path)
    return raw, path


def _resolve_device(raw: dict, path: Path) -> None:
    """A relative profile path in a scenario file is relative to that file (when the file exists there)."""
    dev = raw.get("device")
    if isinstance(dev, str) and dev.endswith(".toml") and not Path(dev).is_absolute():
        rel = path.resolve().parent / dev
        if rel.is_file():
            raw["device"] = str(rel)


def apply_overrides(d: dict, overrides: dict[str, Any]) -> dict:
    """A copy of scenario dict ``d`` with dotted keys set (``{"schedule.batch": 16, "device": "x"}``).

    Intermediate tables are created as needed; validation happens in :func:`load_scenario`.
    """
    out = copy.deepcopy(d)
    for key, value in overrides.items():
        if not isinstance(key, str) or not key or any(not p for p in key.split(".")):
            raise ValueError(f"override key must be a dotted field name like 'schedule.batch' (got {key!r})")
        parts = key.split(".")
        node = out
        for i, p in enumerate(parts[:-1]):
            nxt = node.setdefault(p, {})
            if not isinstance(nxt, dict):
                raise ValueError(f"override {key!r}: {'.'.join(parts[:i + 1])} is not a table (got {nxt!r})")
            node = nxt
        node[parts[-1]] = copy.deepcopy(value)
    return out
