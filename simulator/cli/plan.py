"""``edgesim plan`` and ``edgesim demo``: will this training schedule fit this device?"""
from __future__ import annotations

import functools
import json
import os
import sys
import tomllib
from pathlib import Path
from typing import Any

from device_profiles.loader import RUNTIMES
from simulator.config import FIDELITY_MODES, MEMORY_POLICIES, TRIGGERS
from simulator.files import emit_json, jsonable, write_atomic
from simulator.units import human_bytes

from .common import EXIT_NOFIT, EXIT_OK, add_command, exit_codes, finite_float, format_table

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
             ("checkpoint_every_steps", "schedule.checkpoint_every_steps"), ("name", "name"),
             ("fidelity", "fidelity.mode"))
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


def render(result: dict, out_dir: Path) -> Path:
    """Render the HTML/Markdown report; returns the path of report.html."""
    from reports import render_run

    return render_run(result, out_dir)


NOTE_MAX = 60       # longer notes go below the table, referenced as [n]


def verdict_table(result: dict) -> str:
    """The verdict rows with their notes (as in report.html): a short note in the table, a long one below it."""
    rows, below = [], []
    for c in result["constraints"]:
        note = c.get("note", "")
        if len(note) > NOTE_MAX:
            below.append(f"[{len(below) + 1}] {c['name']}: {note}")
            note = f"[{len(below)}]"
        rows.append([c["name"], _fmt(c["budget"], c["unit"]), _fmt(c["observed"], c["unit"]),
                     _fmt(c["margin"], c["unit"]),
                     "not observed" if c["observed"] is None and c["ok"] else "ok" if c["ok"] else "FAIL", note])
    return "\n".join([format_table(["constraint", "budget", "observed", "margin", "verdict", "note"], rows), *below])


def _fmt(v: Any, unit: str) -> str:
    if v is None:
        return "-"
    if unit == "B":
        return f"{v:,} B ({human_bytes(v)})" if abs(v) >= 1024 else f"{v:,} B"
    if unit == "1":
        return f"{v:.2%}"
    return f"{v:.4g} {unit}"


def _out_dir(args, name: str) -> Path:
    """Where the run goes, decided before any work: an explicit --out that is a file, or that holds an
    earlier run's result.json, is refused; the default directory is never overwritten (a fresh
    ``<name>-2``, ``-3``, ... is taken, and said)."""
    if args.out:
        out = Path(args.out)
        if out.exists() and not out.is_dir():
            raise ValueError(f"--out {args.out}: is an existing file, not a directory")
        if (out / "result.json").exists():
            raise ValueError(f"--out {args.out}: already holds a run (result.json): choose another --out "
                             "or remove that directory first")
        return out
    out = Path("edgesim-out") / name
    k = 1
    while out.exists() and (not out.is_dir() or any(out.iterdir())):
        k += 1
        out = Path("edgesim-out") / f"{name}-{k}"
    if k > 1:
        print(f"edgesim: edgesim-out/{name} holds an earlier run: writing this one to {out}", file=sys.stderr)
    return out


def _run(scenario: dict, args, progress: bool, where: str | None = None) -> int:
    from simulator.run import run_scenario
    from simulator.scenario import load_scenario
    from simulator.static_fit import ModelTooBig
    from simulator.verdict import summarise

    sc = load_scenario(scenario, where=where)           # bad input exits 2 before any work
    if sc.name in (".", "..") or any(c in sc.name for c in "/\\\0"):
        raise ValueError(f"{where or 'command line'}: name = {sc.name!r}: it names the output directory, so "
                         "it must be a plain name (no '/', not '..')")
    out_dir = _out_dir(args, sc.name)
    # progress goes to stderr, so it shows with --json too (stdout holds the JSON alone)
    try:
        result = run_scenario(scenario, progress=progress, workers=os.cpu_count() or 1, where=where)
    except ModelTooBig as e:                          # the static check: no run, no result file
        if args.json:
            emit_json({"fits": False, "static_check": str(e)})
        else:
            print(f"DOES NOT FIT (static check, nothing simulated): {e}")
        return EXIT_NOFIT
    if getattr(args, "verify", False):
        result["verification"] = _verify(scenario, where, out_dir, progress)
    path = write_result(result, out_dir)
    report = render(result, out_dir)
    if args.json:
        obj = {k: v for k, v in result.items() if k != "timelines"}
        obj["result_path"] = str(path)
        obj["report"] = str(report)
        emit_json(obj)
    else:
        print(summarise(result))
        print(f"runtime: {result['runtime']}{'' if 'runtime' in scenario else _RUNTIME_NOTE}")
        print()
        print(verdict_table(result))
        print()
        if "verification" in result:
            print(verification_text(result["verification"], plan_step_s=result.get("step_latency_s")))
            print()
        print(f"result: {path}")
        print(f"report: {report}")
    return EXIT_OK if result["fits"] else EXIT_NOFIT


_RUNTIME_NOTE = " (assumed: the default; --runtime micropython plans for the MicroPython firmware)"


def _verify(scenario: dict, where: str | None, out_dir: Path, progress: bool) -> dict:
    """One training step of the scenario's schedule on the device's virtual twin (ports.verify)."""
    from ports.verify import verify_scenario

    return verify_scenario(scenario, where=where, log_path=out_dir / "verify.serial.log", progress=progress)


def verification_text(v: dict, plan_step_s: float | None = None) -> str:
    """The --verify table: the step measured on the twin beside the simulator's prediction, and why the
    plan's own step time differs from it (the twin holds the port's code in its heap)."""
    from ports.verify import verification_rows

    if not v.get("verified"):
        return f"verification on the twin: not run: {v.get('reason')}"
    head = (f"verification: one training step (batch {v['batch']}) on {v['board']}'s twin {v['machine']} "
            f"({v['firmware'].split(';')[0]}): {'agrees' if v['agree'] else 'DISAGREES'} within "
            f"±{v['tolerance_relative']:.0%}")
    text = head + "\n" + format_table(["", "twin (measured)", "simulator (predicted)", "error"],
                                       verification_rows(v))
    port = v.get("port_footprint_bytes")
    if port and plan_step_s and v.get("measured", {}).get("fits"):
        text += (f"\nthe twin loads the port from source: its code holds {port:,} B of the GC heap, which the "
                 f"prediction above includes (fewer free bytes, more collections); the plan's own step time, "
                 f"{plan_step_s:.3f} s, takes the code as frozen into flash")
    return text


def run_plan(args) -> int:
    from simulator.scenario import apply_overrides, scenario_dict

    over = overrides_from_args(args)
    if args.scenario:
        from simulator.scenario import load_scenario

        base = scenario_dict(args.scenario)
        if not base:
            raise ValueError(f"{args.scenario}: the scenario file is empty (a scenario needs at least its "
                             "device and workload; see simulator/scenarios/*.toml)")
        load_scenario(base, where=args.scenario)       # the file alone: its own errors name the file
        # what fails from here on comes from the flags: errors name the command line
        where = f"command line ({args.scenario} with {_flags_text(over)})" if over else args.scenario
    else:
        if not args.device or not args.workload:
            raise ValueError("plan: give a SCENARIO.toml, or both --device and --workload")
        device = Path(args.device).stem if args.device.endswith(".toml") else args.device
        base = {"name": f"plan-{device}-{args.workload}".replace(":", "_").replace("/", "_")}
        where = "command line"
    d = apply_overrides(base, over)
    return _run(d, args, progress=True, where=where)


def _flags_text(over: dict[str, Any]) -> str:
    return ", ".join(f"{k}={v!r}" for k, v in over.items())


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
    p.add_argument("--runtime", choices=RUNTIMES,
                   help="what runs the training on the device (default: the scenario's, else native)")
    p.add_argument("--duration-s", dest="duration_s", type=finite_float, help="simulated seconds")
    p.add_argument("--seed", type=int, help="seed of the data, the weights and the sensor stream")
    p.add_argument("--batch", type=int, help="samples per training step")
    p.add_argument("--steps", type=int, help="training steps per trigger")
    p.add_argument("--trigger", choices=TRIGGERS, help="when training starts (schedule.trigger)")
    p.add_argument("--every-n", dest="every_n", type=int, help="labelled samples per trigger")
    p.add_argument("--period-s", dest="period_s", type=finite_float, help="seconds between periodic triggers")
    p.add_argument("--memory-policy", dest="memory_policy", choices=MEMORY_POLICIES,
                   help="planned: one static arena from the memory planner; heap: every tensor placed on a heap")
    p.add_argument("--checkpoint-every-steps", dest="checkpoint_every_steps", type=int,
                   help="write the trained weights to flash every N steps (0: never)")
    p.add_argument("--fidelity", choices=FIDELITY_MODES,
                   help="auto: real training steps for the first day and while the loss still falls, then steps "
                        "charged from recorded ones and repeated days charged as a whole; full: every step and "
                        "every event of the horizon simulated (fidelity.mode)")
    p.add_argument("--technique", action="append", metavar="NAME[=VALUE]",
                   help="a training technique switch (repeatable), e.g. etf, instance_filter=0.1; "
                        "the names are listed above")
    p.add_argument("--set", action="append", metavar="KEY=VALUE",
                   help="any scenario field by dotted key (repeatable), e.g. pipeline.sensor_rate_hz=16; "
                        "the keys are listed above")
    p.add_argument("--name", help="scenario name (names the output directory; a plain name, no '/')")
    p.add_argument("--out", help="output directory (default ./edgesim-out/<scenario name>/, or a fresh "
                                 "<name>-2, -3, ... when that holds an earlier run)")
    p.add_argument("--json", action="store_true", help="print the result (without timelines) as one JSON object")


def keys_and_techniques() -> str:
    """The one list of what --set and --technique accept, read from the scenario's defaults and the
    techniques' own fields (so it cannot fall behind them)."""
    import dataclasses
    import textwrap

    from simulator.scenario import DEFAULTS
    from workloads.techniques import Techniques

    def dotted(d: dict, prefix: str = "") -> list[str]:
        out = []
        for k, v in d.items():
            if isinstance(v, dict) and v and k != "techniques":
                out += dotted(v, f"{prefix}{k}.")
            else:
                out.append(f"{prefix}{k}")
        return out

    wrap = functools.partial(textwrap.fill, width=100, initial_indent="  ", subsequent_indent="  ")
    techs = [f.name for f in dataclasses.fields(Techniques)]
    return ("--set keys (scenario fields; see simulator/scenario.py for defaults):\n" + wrap(", ".join(dotted(DEFAULTS)))
            + "\n--technique names (also --set schedule.techniques.NAME=VALUE):\n" + wrap(", ".join(techs)))


PLAN_EXITS = exit_codes("0 the schedule fits", "3 it does not fit")


def register(sub) -> None:
    p = add_command(sub, "plan", help="check whether a training schedule fits a device",
                    description="Simulate a device running inference on a sensor stream while it trains on a "
                                "schedule, and say whether it fits: RAM, flash, step latency, deadlines, energy, "
                                "battery life, flash wear.\n\n" + keys_and_techniques(),
                    example="edgesim plan --device stm32f405-pyboard --workload mlp:64-32-10 --batch 8 "
                            "--technique fused_update", exits=PLAN_EXITS)
    p.add_argument("scenario", nargs="?", metavar="SCENARIO.toml", help="a scenario file (flags override it)")
    _schedule_flags(p)
    p.add_argument("--verify", action="store_true",
                   help="also run one training step of the schedule on the device's virtual twin (QEMU, MicroPython "
                        "1.25) and show it beside the prediction (heap peak, instructions per step, step time)")
    p.set_defaults(func=run_plan)
    d = add_command(sub, "demo", help="run the embedded default scenario",
                    description="Personalise a digits classifier on a pyboard (STM32F405, Cortex-M4F) over a "
                                "simulated day, compare training techniques, and say what was found in plain words."
                                "\n\n" + keys_and_techniques(),
                    example="edgesim demo --out /tmp/demo",
                    exits=exit_codes("0 the demo ran (whether or not its schedule fits)"))
    _schedule_flags(d)
    d.set_defaults(func=run_demo)
