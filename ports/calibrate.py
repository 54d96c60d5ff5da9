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

from contextlib import ExitStack
from pathlib import Path
from typing import Any

import numpy as np

from workloads.trace import Op

from .boards import Board
from .errors import GuestMemoryError, ProtocolError
from .session import BoardSession
from .waiting import waiting

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
        out.append((f"softmax-ce {n}", 5, n, 1, Op("loss", "reduce", 0, 4 * n, 4 * n)))
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
    """Run both calibrations on fresh boots of ``board``; return coefficients, per-kind costs, footprint
    and residuals. A virtual twin runs micro-benchmark networks (``calibrate_twin``); the micro:bit v1 its
    kernels one at a time (bench.py)."""
    if board.twin is not None:
        return calibrate_twin(board, log_path, progress, qemu_binary)
    with BoardSession(board, log_path=log_path, qemu_binary=qemu_binary) as s:
        rows = measure_compute(s, progress)
        firmware = s.firmware_version
        log = s.log_path
    with BoardSession(board, log_path=log, qemu_binary=qemu_binary) as s:
        foot = measure_footprint(s)
    coef = fit([dict(r) for r in rows], board.cycles_per_instruction)
    costs = fit_kind_costs(rows, board.cycles_per_instruction)
    resid = np.array([r["residual"] for r in rows])
    static = board.ram_bytes - foot["heap_total_bytes"]
    return {
        "board": board.name, "machine": board.machine, "firmware": firmware, "serial_log": log,
        "coefficients": {k: round(v, 1) for k, v in coef.items()},
        "kind_costs": _rounded(costs), "kind_residuals": kind_residuals(rows),
        "acceptable": bool(np.sqrt(np.mean(resid ** 2)) <= RESIDUAL_RMS_ACCEPTABLE),
        "residual_rms_acceptable": RESIDUAL_RMS_ACCEPTABLE,
        "ram_reserved_bytes": int(static + foot["port_bytes"]),
        "static_ram_bytes": int(static), "footprint": foot,
        "benchmarks": _bench_rows(rows),
        "residual_max_abs": float(np.max(np.abs(resid))), "residual_rms": float(np.sqrt(np.mean(resid ** 2))),
        "cycles_per_instruction": board.cycles_per_instruction,
    }


def _rounded(costs: dict[str, tuple[float, ...]]) -> dict[str, dict[str, float]]:
    return {k: dict(zip(KIND_COST_FIELDS, (round(v, 4) for v in c), strict=True)) for k, c in costs.items()}


def _bench_rows(rows: list[dict]) -> list[dict]:
    return [{k: v for k, v in r.items() if k != "op"} | {"kind": r["row"], "macs": r["op"].macs,
                                                         "bytes_read": r["op"].bytes_read,
                                                         "bytes_written": r["op"].bytes_written} for r in rows]


def kind_residuals(rows: list[dict]) -> dict[str, dict]:
    """Per cost row: how many micro-benchmarks it priced, and the fit's relative residuals (rms, max)."""
    out = {}
    for key in sorted({r["row"] for r in rows}):
        rk = np.array([r["residual"] for r in rows if r["row"] == key])
        out[key] = {"ops": int(rk.size), "residual_rms": float(np.sqrt(np.mean(rk ** 2))),
                    "residual_max_abs": float(np.max(np.abs(rk)))}
    return out




# --- virtual twins: per-kind costs from micro-benchmark networks --------------------------------------
# Small networks nobody trains for real (never the zoo's): every layer kind, several sizes, strides and
# paddings; each op of their steps is one timed micro-benchmark. The zoo models and other specs are the
# validation set (tests, benchmarks/emulator.py).
TWIN_BENCH_SPECS = (
    "mlp:16-8-10", "mlp:64-24-10", "mlp:16-40-20-10",
    "cnn:8x8x1-c4k3-p2-d10", "cnn:8x8x1-c3k5same-a2-d10", "cnn:4x4x1-c8k2-c6k2-gap-d10",
    "cnn:8x8x1-c2k3s2same-dw3same-p2-d10", "cnn:8x8x1-dw3-c4k1-a3-d10", "cnn1d:64x3-c4k3-p4-gap-d6",
    "cnn:8x8x1-c8k3s2-dw2-gap-d10", "cnn:8x8x1-c3k3-c4k3-d10", "cnn:8x8x1-c2k2s2-c6k3same-p2-d10",
    "cnn1d:64x3-c4k5s2-c6k3-gap-d6", "cnn:8x8x1-c2k3-dw3-gap-d10",
)
MIN_PHASE_OPS = 6          # a backward part gets its own row (conv.backward_input) with this many benchmark ops
BENCH_STEPS = 2
BENCH_BATCHES = (1, 2, 3)  # the networks take turns: MACs grow with the batch, weight-sized buffers do not# MicroPython's boxed floats make every kernel allocate: an op pays a collection each time its garbage
# fills the free heap, and a collection marks the live heap. The kernels' costs are fitted without
# collections (any a benchmark op ran are taken out); the collector is measured on its own: gc.collect()
# beside ballasts filling these fractions of the free GC heap, and the garbage each op allocated per cycle.
GC_BALLAST_FRACTIONS = (0.0, 0.2, 0.4, 0.6)
KIND_COST_FIELDS = ("overhead_cycles", "cycles_per_mac", "cycles_per_byte_read", "cycles_per_byte_written")
RESIDUAL_RMS_ACCEPTABLE = 0.25


def cost_key(op: Op) -> str:
    """The kind_costs row an op is priced with (the simulator's own rule)."""
    from simulator.cost import cost_key as key

    return key(op)


def kind_cycles(op: Op, costs: dict[str, tuple[float, ...]]) -> float:
    """cycles of ``op`` under fitted kind costs (the form simulator.cost prices a profile's kind_costs with)."""
    from simulator.cost import cost_keys

    c = costs[next(k for k in cost_keys(op) if k in costs)]
    return c[0] + op.macs * c[1] + op.bytes_read * c[2] + op.bytes_written * c[3]


def fit_kind_costs(rows: list[dict], cpi: float) -> dict[str, tuple[float, ...]]:
    """Per cost row, non-negative least squares of cycles = overhead + macs x a + bytes read x b + bytes
    written x c over its micro-benchmarks, on relative error (each op counts alike, large or small): a
    row per simulator.cost.cost_key, and one per backward part (conv.backward_input: other loops than
    the forward pass) that has MIN_PHASE_OPS benchmark ops of 3 sizes or more."""
    from scipy.optimize import nnls

    from simulator.cost import cost_keys

    def solve(sel: list[dict]) -> tuple[float, ...]:
        X = np.array([[1.0, r["op"].macs, r["op"].bytes_read, r["op"].bytes_written] for r in sel])
        y = np.array([r["instructions"] * cpi for r in sel], dtype=float)
        w, _ = nnls(X / y[:, None], np.ones(len(y)))
        return tuple(float(v) for v in w)

    fine = set()
    for key in {cost_keys(r["op"])[0] for r in rows} - {cost_key(r["op"]) for r in rows}:
        sel = [r for r in rows if cost_keys(r["op"])[0] == key]
        if len(sel) >= MIN_PHASE_OPS and len({(r["op"].macs, r["op"].bytes_read) for r in sel}) >= 3:
            fine.add(key)
    groups: dict[str, list[dict]] = {}
    for r in rows:                     # each op fits the row that will price it
        key = cost_keys(r["op"])[0]
        groups.setdefault(key if key in fine else cost_key(r["op"]), []).append(r)
    costs = {key: solve(sel) for key, sel in sorted(groups.items())}
    for r in rows:
        r["row"] = next(k for k in cost_keys(r["op"]) if k in costs)
        r["cycles"] = float(r["instructions"] * cpi)
        r["fit_cycles"] = kind_cycles(r["op"], costs)
        r["residual"] = (r["fit_cycles"] - r["cycles"]) / r["cycles"] if r["cycles"] else 0.0
    return costs


def measure_twin(board: Board, log_path: str | Path | None = None, progress: bool = False,
                 qemu_binary: str | None = None, specs: tuple[str, ...] = TWIN_BENCH_SPECS) -> dict:
    """Run every micro-benchmark network on one boot of ``board``'s twin: per-op instructions beside the
    host's op records, and heap figures (the port's own footprint, each network's heap peak)."""
    import itertools

    from workloads.trace import collect

    from .emulate import make_twin_job
    from .netrun import TwinPort, answer
    from .predict import predict_trace
    from .program import build_program
    from .session import TwinSession

    tick = board.twin.instructions_per_timer_tick
    rows: list[dict] = []
    heaps: list[dict] = []
    skipped: list[str] = []
    items = list(specs)
    with ExitStack() as stack:
        with waiting(f"booting the {board.twin.name} twin of {board.name} under QEMU and loading the port", progress):
            s = stack.enter_context(TwinSession(board, log_path=log_path, qemu_binary=qemu_binary))
        port = TwinPort(s.run)
        base = int(s.run("print(mem())").strip())
        if progress:
            from tqdm import tqdm
            items = tqdm(items, desc=f"micro-benchmarks on {board.twin.name}", unit="net")
        for i, spec in enumerate(items):
            batch = BENCH_BATCHES[i % len(BENCH_BATCHES)]
            job = make_twin_job(spec, pretrain=False)
            mom = float(job.opt.momentum)
            params = [p.copy() for p in job.model.parameters()]
            drawn = list(itertools.islice(iter(job.labelled_stream()), BENCH_STEPS * batch))
            samples = [(np.stack([x for x, _ in drawn[j:j + batch]]), np.array([y for _, y in drawn[j:j + batch]]))
                       for j in range(0, len(drawn), batch)]
            host = predict_trace(board.profile, job, samples)
            prog = build_program(job, host.pop("ops_step0"), batch)
            job2 = make_twin_job(spec, pretrain=False)               # the same steps again, for their op records
            traces = [collect(job2.train_step(x, y))[0] for x, y in samples]
            port.setup(prog, job.lr, mom, s.clock)
            port.send_params(job.model.layers, params)
            try:
                steps = [port.step(q, x, y) for q, (x, y) in enumerate(samples)]
            except GuestMemoryError:        # a twin with a small heap: that network is left out
                skipped.append(spec)
                continue
            for q, st in enumerate(steps):
                for op, t, live, got in zip(traces[q], st.op_ticks, st.op_heap_bytes, st.op_alloc_bytes, strict=True):
                    rows.append({"label": f"{spec} {op.name}", "op": op, "instructions": t * tick, "step": q,
                                 "live_bytes": live, "alloc_bytes": got})
                heaps.append({"spec": spec, "heap_peak_bytes": max(st.op_heap_bytes),
                              "predicted_workload_heap_peak_bytes": host["heap_peak_bytes"],
                              "n_inputs": prog.n_inputs * batch})
        gc_rows = []
        free = s.heap_total_bytes - int(s.run("print(mem())").strip())
        for frac in GC_BALLAST_FRACTIONS:
            s.run(f"ballast({int(frac * free)})")
            live, t = (int(v) for v in answer(s.run("gct()")).split())
            gc_rows.append({"live_bytes": live, "instructions": t * tick})
        s.run("ballast(0)")
        firmware = s.firmware_version
        log = s.log_path
        heap_total = s.heap_total_bytes
    return {"rows": rows, "heaps": heaps, "base_alloc_bytes": base, "firmware": firmware, "serial_log": log,
            "heap_total_bytes": heap_total, "gc_rows": gc_rows, "skipped_specs": skipped}


GC_NO_COLLECTION_FILL = 0.8   # an op at most this share of the free heap in garbage (at the highest rate seen) ran
                              # without a collection: its allocations are all its garbage


def fit_gc(m: dict, rt: Any, cpi: float) -> dict:
    """The collector's figures: cycles per collection = a + b x live bytes (least squares over the
    ballasts), garbage bytes per cycle (median over the benchmark ops of what they allocated beyond
    their buffers, ops too small to weigh and ops a collection may have run in left out); then each benchmark op's cycles without the
    collections its garbage caused (simulator.cost.gc_cycles)."""
    from simulator.cost import gc_cycles
    from simulator.memory import Heap

    size = Heap.for_runtime(1 << 30, rt).size_for
    X = np.array([[1.0, r["live_bytes"]] for r in m["gc_rows"]])
    y = np.array([r["instructions"] * cpi for r in m["gc_rows"]], dtype=float)
    a, b = (float(v) for v in np.linalg.lstsq(X, y, rcond=None)[0])
    a, b = max(a, 1.0), max(b, 1e-3)          # profiles need figures > 0
    seen = []                                 # (garbage per cycle, cycles, free heap) of each op
    for r in m["rows"]:
        garbage = r["alloc_bytes"] - sum(size(t.nbytes) for t in r["op"].alloc)
        c = r["instructions"] * cpi
        if c > 20_000 and 0 <= garbage < 0.5 * (m["heap_total_bytes"] - r["live_bytes"]):
            seen.append((garbage / c, c, m["heap_total_bytes"] - r["live_bytes"]))
    # an op the collector ran in counts only what it allocated after its last collection (a 6 M-cycle
    # dense op on a 24 KB free heap shows ~0.001 B/cycle for a true ~0.03): only ops whose garbage, at
    # the highest rate seen, could not have filled the free heap say their rate
    g_hi = max((v for v, _, _ in seen), default=0.0)
    ratios = [v for v, c, free in seen if g_hi * c < GC_NO_COLLECTION_FILL * free] or [v for v, _, _ in seen]
    g = float(np.median(ratios)) if ratios else 0.0
    figures = {"gc_collection_cycles": a, "gc_cycles_per_live_byte": b, "gc_garbage_bytes_per_cycle": g}
    probe = type("GcFigures", (), figures)()
    for r in m["rows"]:
        c = r["instructions"] * cpi
        r["gc_cycles"] = gc_cycles(c, r["live_bytes"], m["heap_total_bytes"], probe)
        r["instructions"] = int(round((c - r["gc_cycles"]) / cpi))
    return figures


def calibrate_twin(board: Board, log_path: str | Path | None = None, progress: bool = False,
                   qemu_binary: str | None = None) -> dict:
    """Per-kind costs and the port's heap footprint of ``board``'s twin, with the fit's residuals."""
    from simulator.memory import Heap

    m = measure_twin(board, log_path, progress, qemu_binary)
    rows = m["rows"]
    cpi = board.cycles_per_instruction
    with waiting("fitting the per-kind costs and the collector's cost", progress):
        gc = fit_gc(m, board.profile.runtime_for("micropython"), cpi)
        legacy = fit([dict(r) for r in rows], cpi)          # the one-overhead model too (profiles need it)
        costs = fit_kind_costs(rows, cpi)
    resid = np.array([r["residual"] for r in rows])
    rt = board.profile.runtime_for("micropython")
    # the port's heap beyond the workload's tensors and the sample buffer, per network: its median is the
    # footprint the prediction adds (the port's code and tables, interpreter state)
    size = Heap.for_runtime(1 << 30, rt).size_for
    extra = [h["heap_peak_bytes"] - h["predicted_workload_heap_peak_bytes"] - size(4 * h["n_inputs"])
             for h in m["heaps"]]
    port_bytes = int(np.median(extra))
    static = board.ram_bytes - m["heap_total_bytes"]
    rms = float(np.sqrt(np.mean(resid ** 2)))
    return {
        "board": board.name, "machine": board.twin.name, "firmware": m["firmware"], "serial_log": m["serial_log"],
        "heap_bytes": board.heap_bytes, "heap_total_bytes": m["heap_total_bytes"],
        "coefficients": {k: round(v, 1) for k, v in legacy.items()},
        "kind_costs": _rounded(costs), "kind_residuals": kind_residuals(rows),
        "ram_reserved_bytes": int(static + port_bytes), "static_ram_bytes": int(static),
        "footprint": {"port_bytes": port_bytes, "base_alloc_bytes": m["base_alloc_bytes"],
                      "per_network_bytes": extra, "heap_total_bytes": m["heap_total_bytes"]},
        "benchmark_specs": [sp for sp in TWIN_BENCH_SPECS if sp not in m["skipped_specs"]],
        "benchmark_specs_too_big": m["skipped_specs"], "benchmarks": _bench_rows(rows),
        "gc": {k: round(v, 6) for k, v in gc.items()}, "gc_collections_measured": m["gc_rows"],
        "residual_rms": rms, "residual_max_abs": float(np.max(np.abs(resid))),
        "acceptable": rms <= RESIDUAL_RMS_ACCEPTABLE, "residual_rms_acceptable": RESIDUAL_RMS_ACCEPTABLE,
        "cycles_per_instruction": cpi,
    }
