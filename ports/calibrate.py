"""Calibrate a profile's ``micropython`` runtime on the emulated board with micro-benchmarks.

Compute: each micro-benchmark times one kernel of ``ports/micropython/mlpk.py`` (a MAC loop of each
kind, an elementwise loop, a softmax, a copy, an empty op) on synthetic arrays of several sizes
(bench.py) and is described by the ``Op`` the workloads would emit for it; a least-squares fit of the
simulator's own cost model (``simulator.cost.op_cycles``, linear in its coefficients) to the measured
cycles (instructions x the profile's cycles per instruction) gives op_overhead_cycles,
cycles_per_mac_f32, cycles_per_elem_f32 and cycles_per_byte_copy. No training workload is run.
The model has one per-op overhead and one per-element cost, so the fit trades them off: the residuals
it prints say where (an empty op is over-, a softmax under-predicted).

Memory: an empty training step (the server with no layers: only the sample copy and the loss) gives the
heap the port takes before any tensor -- REPL, device modules, interpreter frames -- written as
``ram_reserved_bytes`` = RAM outside the GC heap + that footprint.
"""
from __future__ import annotations

import datetime as _dt
import re
from pathlib import Path
from typing import Any

import numpy as np

from workloads.trace import Op

from .boards import Board
from .errors import ProtocolError
from .session import BoardSession

# (label, bench code, n, m): codes as in bench.py
MAC_SIZES = ((4, 4), (8, 6), (16, 4), (12, 10), (16, 12), (24, 8), (32, 6))
ELEM_SIZES = (6, 12, 24, 48)
CE_SIZES = (4, 10, 16)
COPY_SIZES = (8, 16, 32, 64)
FITTED = ("op_overhead_cycles", "cycles_per_mac_f32", "cycles_per_elem_f32", "cycles_per_byte_copy")


def bench_ops() -> list[tuple[str, int, int, int, Op]]:
    """The micro-benchmarks and the Op each stands for (byte counts as the workloads' trace gives them)."""
    out = []
    for n, m in MAC_SIZES:
        out.append((f"fwd {n}x{m}", 0, n, m, Op(f"fwd{n}x{m}", "matmul", n * m, 4 * (n + n * m + m), 4 * m)))
        out.append((f"dw {n}x{m}", 1, n, m, Op(f"dw{n}x{m}", "matmul", n * m, 4 * (n + m), 4 * (n * m + m))))
        out.append((f"dx {n}x{m}", 2, n, m, Op(f"dx{n}x{m}", "matmul", n * m, 4 * (m + n * m), 4 * n)))
        out.append((f"upd {n}x{m}", 3, n, m, Op(f"upd{n}x{m}", "update", n * m + m, 8 * (n * m + m), 4 * (n * m + m))))
    for n in ELEM_SIZES:
        out.append((f"relu-back {n}", 4, n, 1, Op(f"dact{n}", "eltwise", 0, 8 * n, 4 * n)))
    for n in CE_SIZES:
        out.append((f"softmax-ce {n}", 5, n, 1, Op(f"ce{n}", "reduce", 0, 4 * n, 4 * n)))
    for n in COPY_SIZES:
        out.append((f"copy {n}", 6, n, 1, Op(f"copy{n}", "copy", 0, 4 * n, 4 * n)))
    for i in range(3):
        out.append((f"empty op #{i + 1}", 7, 1, 1, Op("empty", "copy", 0, 0, 0)))
    return out


def design_row(op: Op) -> list[float]:
    """op_cycles(op) as a linear function of FITTED: the coefficient of each, read off the cost model."""
    from simulator.cost import op_cycles

    row = []
    for name in FITTED:
        unit = _UnitRuntime(name)
        row.append(op_cycles(op, unit))
    return row


class _UnitRuntime:
    """A Runtime stand-in with one coefficient at 1 and the rest at 0 (for reading op_cycles' design)."""

    def __init__(self, one: str) -> None:
        for name in (*FITTED, "cycles_per_mac_i8"):
            setattr(self, name, 1.0 if name == one else 0.0)


def measure_compute(session: BoardSession, progress: bool = False) -> list[dict]:
    """Run every micro-benchmark on the board; return [{label, op, us, instructions}]."""
    session.install("mlpk.py")
    session.install("bench.py")
    session.drop_loader()
    session.exec("import gc\ngc.collect()\nimport mlpk\ngc.collect()\nimport bench\ngc.collect()")
    rows = []
    items = bench_ops()
    if progress:
        from tqdm import tqdm
        items = tqdm(items, desc="micro-benchmarks", unit="bench")
    for label, code, n, m, op in items:
        out = session.exec(f"bench.t({code},{n},{m})").strip()
        if not out.startswith("@"):
            raise ProtocolError(f"micro-benchmark {label}: unexpected answer {out[:60]!r}",
                                serial_tail=session.qemu.tail(), log_path=session.log_path)
        us = int(out[1:].split()[0])
        rows.append({"label": label, "op": op, "us": us, "instructions": 1000 * us})
    return rows


def measure_footprint(session: BoardSession, n_inputs: int = 16) -> dict:
    """The empty step: heap in use at its op boundaries minus its own buffers = the port's footprint."""
    from simulator.memory import Heap

    from .emulate import BoardRun, board_step, load_modules, start_training

    load_modules(session)
    run = BoardRun()
    start_training(session, [n_inputs], 0.0, run)
    x = np.linspace(0.0, 1.0, n_inputs, dtype=np.float32)
    st = board_step(session, 0, x, 0, 60.0)
    session.repl.write_chunked(b"e\r")
    session.repl.finish(timeout=10)
    rt = session.board.profile.runtime_for("micropython")
    vec = Heap.for_runtime(1 << 20, rt).size_for(4 * n_inputs)
    # after the copy: staging + copy live; after the loss: staging + copy + gradient live
    frames = max(st.op_heap_bytes[0] - 2 * vec, st.op_heap_bytes[1] - 3 * vec)
    return {"base_alloc_bytes": run.footprint_alloc_bytes, "port_bytes": int(frames),
            "heap_total_bytes": session.heap_total_bytes, "empty_step_heap_bytes": st.op_heap_bytes,
            "empty_step_us": st.op_us}


FAMILY = {0: ("copy",), 1: ("matmul", "conv", "update"), 2: ("eltwise", "reduce"), 3: ("copy",)}


def fit(rows: list[dict], cpi: float) -> dict:
    """Least-squares fit of the cost model's coefficients to cycles = instructions x CPI over all
    micro-benchmarks: the total-cycle error is what a step's prediction (a sum over ops) inherits. A
    coefficient the joint fit drives to <= 0 (profiles need > 0) is taken from its own family alone
    (intercept + slope over, e.g., the copy benchmarks) and the others are refitted with it fixed."""
    A = np.array([design_row(r["op"]) for r in rows], dtype=float)
    y = np.array([r["instructions"] * cpi for r in rows], dtype=float)
    coef = np.linalg.lstsq(A, y, rcond=None)[0]
    fixed: dict[int, float] = {}
    for j in range(1, len(FITTED)):
        if coef[j] <= 0:
            fam = [i for i, r in enumerate(rows) if r["op"].kind in FAMILY[j] and A[i, j] > 0]
            X = np.column_stack([np.ones(len(fam)), A[fam, j]])
            fixed[j] = max(float(np.linalg.lstsq(X, y[fam], rcond=None)[0][1]), 1e-3)
    if fixed:
        free = [j for j in range(len(FITTED)) if j not in fixed]
        rest = y - sum(A[:, j] * v for j, v in fixed.items())
        sub = np.linalg.lstsq(A[:, free], rest, rcond=None)[0]
        coef = np.zeros(len(FITTED))
        coef[free] = sub
        for j, v in fixed.items():
            coef[j] = v
    coef = np.maximum(coef, 0.0)
    pred = A @ coef
    for r, p in zip(rows, pred, strict=True):
        r["fit_cycles"] = float(p)
        r["cycles"] = float(r["instructions"] * cpi)
        r["residual"] = float((p - r["cycles"]) / r["cycles"]) if r["cycles"] else 0.0
    return {name: float(c) for name, c in zip(FITTED, coef, strict=True)}


def calibrate(board: Board, log_path: str | Path | None = None, progress: bool = False,
              qemu_binary: str | None = None) -> dict:
    """Run both calibrations on fresh boots of ``board``; return coefficients, footprint and residuals."""
    with BoardSession(board, log_path=log_path, qemu_binary=qemu_binary) as s:
        rows = measure_compute(s, progress)
        firmware = s.firmware_version
        log = s.log_path
    with BoardSession(board, log_path=log, qemu_binary=qemu_binary) as s:
        foot = measure_footprint(s)
    coef = fit(rows, board.cycles_per_instruction)
    resid = np.array([r["residual"] for r in rows])
    static = board.ram_bytes - foot["heap_total_bytes"]
    return {
        "board": board.name, "firmware": firmware, "serial_log": log,
        "coefficients": {k: round(v, 1) for k, v in coef.items()},
        "ram_reserved_bytes": int(static + foot["port_bytes"]),
        "static_ram_bytes": int(static), "footprint": foot,
        "benchmarks": [{k: v for k, v in r.items() if k != "op"} | {"kind": r["op"].kind, "macs": r["op"].macs}
                       for r in rows],
        "residual_max_abs": float(np.max(np.abs(resid))), "residual_rms": float(np.sqrt(np.mean(resid ** 2))),
        "cycles_per_instruction": board.cycles_per_instruction,
    }


def profile_values(result: dict) -> dict[str, tuple[Any, str]]:
    """The [runtime.micropython] keys calibration writes, each with its source line."""
    date = _dt.date.today().isoformat()
    n = len(result["benchmarks"])
    fitsrc = (f"measured: edgesim calibrate {date}, {result['firmware'].split(';')[0]} on QEMU -M microbit "
              f"-icount shift=0 (instructions x core.cycles_per_instruction); least-squares fit over {n} "
              f"micro-benchmarks of ports/micropython/mlpk.py kernels, residuals rms "
              f"{100 * result['residual_rms']:.1f} %, max {100 * result['residual_max_abs']:.1f} %")
    foot = result["footprint"]
    ramsrc = (f"measured: edgesim calibrate {date}: {result['static_ram_bytes']} B outside the GC heap "
              f"(16384 - gc heap {foot['heap_total_bytes']} B) + {foot['port_bytes']} B the port holds at an "
              f"empty training step (REPL, edgesim device modules, interpreter frames)")
    vals = {k: (v, fitsrc) for k, v in result["coefficients"].items()}
    vals["ram_reserved_bytes"] = (result["ram_reserved_bytes"], ramsrc)
    return vals


def write_runtime_table(src: str | Path, dst: str | Path, values: dict[str, tuple[Any, str]],
                        table: str = "runtime.micropython") -> Path:
    """Copy the profile ``src`` to ``dst`` with ``values`` set in ``[table]`` (other text untouched);
    atomic, and the result must load."""
    from device_profiles import load_profile

    lines = Path(src).read_text(encoding="utf-8").splitlines()
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
    out = "\n".join(lines[:start + 1] + body + lines[end:]) + "\n"
    from simulator.files import write_atomic

    return write_atomic(dst, out, validate=load_profile)   # the written profile must load


def _toml(v: Any) -> str:
    if isinstance(v, str):
        return '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(v, float):
        return repr(round(v, 1))
    return str(v)
