"""``edgesim plan`` and ``edgesim demo``: will this training schedule fit this device?"""
from __future__ import annotations

import json
import os
import sys
import tomllib
from pathlib import Path
from typing import Any

from simulator.files import emit_json, jsonable, write_atomic
from simulator.units import human_bytes

from .common import EXIT_NOFIT, EXIT_OK, add_command, format_table

DEMO = "demo"
PLAN_JSON_KEYS = ("fits", "constraints", "first_violation", "fatal", "peak_ram_bytes", "lower_bound_ram_bytes",
                  "step_latency_s", "deadline_miss_rate", "energy_per_day_j", "battery_life_days", "macs_total",
                  "accuracy_before", "accuracy_after", "dropped_frames")


def _literal(text: str, what: str) -> Any:
    """A TOML literal (``16``, ``0.5``, ``true``, ``"x"``, ``[1, 2]``); bare words stay strings."""
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        if text and all(c.isalnum() or c in "-_./:" for c in text):
            return text
        raise ValueError(f"{what}: cannot read the value {text!r} (use TOML: 16, 0.5, true, \"text\")") from None


def overrides_from_args(args) -> dict[str, Any]:
    """Dotted scenario overrides from the command-line flags."""
    o: dict[str, Any] = {}
    flags = (("device", "device"), ("workload", "workload.model"), ("runtime", "runtime"),
             ("duration_s", "duration_s"), ("seed", "seed"), ("batch", "schedule.batch"),
             ("steps", "schedule.steps"), ("trigger", "schedule.trigger"), ("every_n", "schedule.every_n"),
             ("period_s", "schedule.period_s"), ("memory_policy", "schedule.memory_policy"),
             ("checkpoint_every_steps", "schedule.checkpoint_every_steps"), ("name", "name"))
    for attr, key in flags:
        v = getattr(args, attr, None)
        if v is not None:
            o[key] = v
    for t in args.technique or []:
        k, _, v = t.partition("=")
        o[f"schedule.techniques.{k.strip()}"] = _literal(v.strip(), f"--technique {t}") if v else True
    for s in args.set or []:
        k, eq, v = s.partition("=")
        if not eq or not k.strip():
            raise ValueError(f"--set {s!r}: expected KEY=VALUE, e.g. --set schedule.batch=16")
        o[k.strip()] = _literal(v.strip(), f"--set {s}")
    return o


def write_result(result: dict, out_dir: Path) -> Path:
    """Write ``result.json`` atomically and return its path."""
    text = json.dumps(result, sort_keys=True, indent=1, default=jsonable, allow_nan=False) + "\n"
    return write_atomic(out_dir / "result.json", text)


def render(result: dict, out_dir: Path) -> str:
    """Render the HTML/Markdown report; returns the line to print."""
    from reports import render_run

    return f"report: {render_run(result, out_dir)}"


def verdict_table(result: dict) -> str:
    rows = []
    for c in result["constraints"]:
        rows.append([c["name"], _fmt(c["budget"], c["unit"]), _fmt(c["observed"], c["unit"]),
                     _fmt(c["margin"], c["unit"]), "ok" if c["ok"] else "FAIL"])
    return format_table(["constraint", "budget", "observed", "margin", "verdict"], rows)


def _fmt(v: Any, unit: str) -> str:
    if v is None:
        return "-"
    if unit == "B":
        return f"{v:,} B ({human_bytes(v)})" if abs(v) >= 1024 else f"{v:,} B"
    if unit == "1":
        return f"{v:.2%}"
    return f"{v:.4g} {unit}"


def _run(scenario: dict | str, args, progress: bool, where: str | None = None) -> int:
    from simulator.run import run_scenario
    from simulator.verdict import summarise

    result = run_scenario(scenario, progress=progress and not args.json, workers=os.cpu_count() or 1, where=where)
    out_dir = Path(args.out) if args.out else Path("edgesim-out") / result["scenario"]
    path = write_result(result, out_dir)
    report = render(result, out_dir)
    if args.json:
        obj = {k: v for k, v in result.items() if k != "timelines"}
        obj["result_path"] = str(path)
        obj["report"] = report
        emit_json(obj)
    else:
        print(summarise(result))
        print()
        print(verdict_table(result))
        print()
        print(f"result: {path}")
        print(report)
    return EXIT_OK if result["fits"] else EXIT_NOFIT


def run_plan(args) -> int:
    from simulator.scenario import apply_overrides, scenario_dict

    over = overrides_from_args(args)
    if args.scenario:
        base = scenario_dict(args.scenario)
        where = args.scenario
    else:
        if not args.device or not args.workload:
            raise ValueError("plan: give a SCENARIO.toml, or both --device and --workload")
        device = Path(args.device).stem if args.device.endswith(".toml") else args.device
        base = {"name": f"plan-{device}-{args.workload}".replace(":", "_").replace("/", "_")}
        where = "command line"
    d = apply_overrides(base, over)
    return _run(d, args, progress=True, where=where)


def run_demo(args) -> int:
    from simulator.scenario import SCENARIO_DIR, apply_overrides, scenario_dict

    d = apply_overrides(scenario_dict(SCENARIO_DIR / f"{DEMO}.toml"), overrides_from_args(args))
    if not args.json:
        print("edgesim demo: a simulated day of on-device personalisation (the embedded scenario "
              f"{SCENARIO_DIR / (DEMO + '.toml')})", file=sys.stderr)
    rc = _run(d, args, progress=True, where=str(SCENARIO_DIR / f"{DEMO}.toml"))
    return EXIT_OK if rc in (EXIT_OK, EXIT_NOFIT) else rc


def _schedule_flags(p) -> None:
    p.add_argument("--device", help="bundled profile name or a profile .toml path")
    p.add_argument("--workload", help="zoo model name or spec string, e.g. mlp:64-32-10")
    p.add_argument("--runtime", choices=("native", "micropython"))
    p.add_argument("--duration-s", dest="duration_s", type=float, help="simulated seconds")
    p.add_argument("--seed", type=int)
    p.add_argument("--batch", type=int)
    p.add_argument("--steps", type=int, help="training steps per trigger")
    p.add_argument("--trigger", choices=("every-n", "periodic", "idle", "charging"))
    p.add_argument("--every-n", dest="every_n", type=int, help="labelled samples per trigger")
    p.add_argument("--period-s", dest="period_s", type=float, help="seconds between periodic triggers")
    p.add_argument("--memory-policy", dest="memory_policy", choices=("planned", "heap"))
    p.add_argument("--checkpoint-every-steps", dest="checkpoint_every_steps", type=int)
    p.add_argument("--technique", action="append", metavar="NAME[=VALUE]",
                   help="a training technique switch (repeatable): etf, fused_update, instance_filter=0.1, ...")
    p.add_argument("--set", action="append", metavar="KEY=VALUE",
                   help="any scenario field by dotted key (repeatable), e.g. pipeline.sensor_rate_hz=16")
    p.add_argument("--name", help="scenario name (names the output directory)")
    p.add_argument("--out", help="output directory (default ./edgesim-out/<scenario name>/)")
    p.add_argument("--json", action="store_true", help="print the result (without timelines) as one JSON object")


def register(sub) -> None:
    p = add_command(sub, "plan", help="check whether a training schedule fits a device",
                    description="Simulate a device running inference on a sensor stream while it trains on a "
                                "schedule, and say whether it fits: RAM, flash, step latency, deadlines, energy, "
                                "battery life, flash wear. Exit 0 fits, 3 does not fit, 2 bad input.",
                    example="edgesim plan --device stm32f405-pyboard --workload mlp:64-32-10 --batch 8 "
                            "--technique fused_update")
    p.add_argument("scenario", nargs="?", metavar="SCENARIO.toml", help="a scenario file (flags override it)")
    _schedule_flags(p)
    p.set_defaults(func=run_plan)
    d = add_command(sub, "demo", help="run the embedded default scenario",
                    description="Personalise a digits classifier on a pyboard (STM32F405, Cortex-M4F) over a "
                                "simulated day, compare training techniques, and say what was found in plain words.",
                    example="edgesim demo --out /tmp/demo")
    _schedule_flags(d)
    d.set_defaults(func=run_demo)
