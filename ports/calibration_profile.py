"""Writing a calibration into a device profile: the fitted MicroPython coefficients, the per-kind cost rows
and what was measured on which twin and firmware, each figure with its source (docs/architecture.md §4)."""
from __future__ import annotations

import datetime as _dt
import re
from pathlib import Path
from typing import Any

from .calibrate import GC_BALLAST_FRACTIONS, KIND_COST_FIELDS


def _measured_on(result: dict) -> str:
    date = _dt.date.today().isoformat()
    fw = result["firmware"].split(";")[0]
    if result.get("heap_bytes"):
        return (f"measured: edgesim calibrate {date} on twin {result['machine']} ({fw}, "
                f"MICROPY_HEAP_SIZE {result['heap_bytes']} B) under QEMU -icount shift=0,sleep=off")
    return f"measured: edgesim calibrate {date} on QEMU -M {result['machine']} ({fw}) under -icount shift=0"


def profile_values(result: dict) -> dict[str, tuple[Any, str]]:
    """The [runtime.micropython] keys calibration writes, each with its source line."""
    n = len(result["benchmarks"])
    on = _measured_on(result)
    what = ("ops of micro-benchmark networks (ports/calibrate.py TWIN_BENCH_SPECS, not the zoo)"
            if result.get("heap_bytes") else "micro-benchmarks of ports/micropython/mlpk.py kernels")
    fitsrc = (f"{on} (instructions x core.cycles_per_instruction); one-overhead least-squares fit over {n} "
              f"{what}; per-kind costs in [runtime.micropython.kind_costs] replace it for the kinds they list")
    foot = result["footprint"]
    ramsrc = (f"{on}: {result['static_ram_bytes']} B outside the GC heap ({result.get('heap_total_bytes') or foot['heap_total_bytes']} "
              f"B GC pool) + {foot['port_bytes']} B the port holds beside the workload's tensors (REPL, edgesim "
              f"device code and tables, interpreter state)")
    vals = {k: (v, fitsrc) for k, v in result["coefficients"].items()}
    if result.get("heap_bytes"):      # a twin: the port's own heap, apart from what the runtime reserves
        vals["port_heap_bytes"] = (foot["port_bytes"], (
            f"{on}: heap the edgesim port holds beside the workload's tensors (its code compiled from source, "
            f"tables, interpreter state; {foot['base_alloc_bytes']} B once loaded); a deployment that freezes "
            f"the code into flash holds less, so ram_reserved_bytes leaves it out"))
    else:
        vals["ram_reserved_bytes"] = (result["ram_reserved_bytes"], ramsrc)
    if result.get("gc"):
        gcsrc = (f"{on}: gc.collect() timed beside ballasts filling {', '.join(f'{f:.0%}' for f in GC_BALLAST_FRACTIONS)}"
                 f" of the free GC heap (cycles = a + b x live bytes), garbage per cycle the median over the "
                 f"micro-benchmark ops of the bytes they allocated beyond their buffers")
        for k, v in result["gc"].items():
            vals[k] = (v, gcsrc)
    return vals


def kind_costs_toml(result: dict, runtime: str = "micropython") -> str:
    """The ``[runtime.<runtime>.kind_costs]`` table of a calibration (cycles = instructions x CPI)."""
    n = len(result["benchmarks"])
    src = (f"{_measured_on(result)}: per op kind, non-negative least squares on relative error over {n} "
           f"micro-benchmark ops, instructions x core.cycles_per_instruction {result['cycles_per_instruction']:g}; "
           f"op residuals rms {100 * result['residual_rms']:.1f} %, max {100 * result['residual_max_abs']:.1f} %")
    lines = [f"[runtime.{runtime}.kind_costs]", f"source = {_toml(src)}"]
    for key, c in result["kind_costs"].items():
        lines.append(f"\"{key}\" = {{ " + ", ".join(f"{f} = {c[f]:.6g}" for f in KIND_COST_FIELDS) + " }")
    return "\n".join(lines) + "\n"


def write_calibration(src: str | Path, dst: str | Path, result: dict) -> Path:
    """The profile ``src`` with the calibration in it, written to ``dst`` (atomic; the result must load):
    [runtime.micropython]'s one-overhead figures and reserve, and its kind_costs table (replaced whole)."""
    from device_profiles import load_profile
    from simulator.files import write_atomic

    text = Path(src).read_text(encoding="utf-8")
    text = re.sub(r"\n\[runtime\.micropython\.kind_costs\]\n(?:(?!\[)[^\n]*\n)*", "\n", text)
    text = _set_table(text, src, profile_values(result))
    m = re.search(r"^\[runtime\.micropython\]\n((?:(?!\[)[^\n]*\n)*)", text, flags=re.M)
    body = m.group(1).rstrip("\n") + "\n\n" + kind_costs_toml(result) + "\n"
    text = text[:m.start(1)] + body + text[m.end(1):]
    return write_atomic(dst, text, validate=load_profile)


def write_runtime_table(src: str | Path, dst: str | Path, values: dict[str, tuple[Any, str]],
                        table: str = "runtime.micropython") -> Path:
    """Copy the profile ``src`` to ``dst`` with ``values`` set in ``[table]`` (other text untouched);
    atomic, and the result must load."""
    from device_profiles import load_profile
    from simulator.files import write_atomic

    out = _set_table(Path(src).read_text(encoding="utf-8"), src, values, table)
    return write_atomic(dst, out, validate=load_profile)   # the written profile must load


def _set_table(text: str, src: str | Path, values: dict[str, tuple[Any, str]],
               table: str = "runtime.micropython") -> str:
    """``text`` with ``values`` (and their sources) set in ``[table]``; ValueError if it has none."""
    lines = text.splitlines()
    try:
        start = next(i for i, ln in enumerate(lines) if ln.strip() == f"[{table}]")
    except StopIteration:
        raise ValueError(f"{src}: [{table}] is missing") from None
    end = next((i for i in range(start + 1, len(lines)) if lines[i].lstrip().startswith("[")), len(lines))
    body = lines[start + 1:end]
    for key, (value, source) in values.items():
        for k, v in ((key, _toml(value)), (f"{key}_source", _toml(source))):
            pat = re.compile(rf"^\s*{re.escape(k)}\s*=")
            idx = next((i for i, ln in enumerate(body) if pat.match(ln)), None)
            if idx is None:
                while body and not body[-1].strip():
                    body.pop()
                body.append(f"{k} = {v}")
            else:
                body[idx] = f"{k} = {v}"
    if body and body[-1].strip():
        body.append("")
    return "\n".join(lines[:start + 1] + body + lines[end:]) + "\n"


def _toml(v: Any) -> str:
    if isinstance(v, str):
        return '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(v, float):
        return repr(round(v, 1)) if abs(v) >= 10 else f"{v:.6g}"
    return str(v)
