"""Run a workload's training on the emulated board, beside the host reference and the simulator.

The host builds the job (``workloads.make_job``, plain float32 SGD, batch 1, fused updates), sends its
initial weights to the board and streams the same labelled samples to both. Per step the board
answers its loss, the guest microseconds of each op (x 1000 = instructions under ``-icount
shift=0``) and the live heap after each op; the host keeps its own loss and op trace, from which the
simulator's cost model and heap model give the prediction.
"""
from __future__ import annotations

import itertools
import struct
import time
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .boards import Board
from .errors import GuestError, GuestMemoryError, ProtocolError, QemuExited
from .micropython import protocol as P
from .predict import PortFootprint, fits_in_heap_map, predict_trace
from .repl import checksum
from .session import BoardSession
from .waiting import waiting

MODULES = ("mlpk.py", "mlp.py", "srv.py")   # import order: each compiles on a clean heap
WEIGHTS_PER_LINE = P.FLOATS_PER_LINE
LINE_TIMEOUT_S = 5.0     # a data line is answered at once; no answer means the line was lost: resend
LR = 0.05
LOSS_RTOL = 1e-3      # float32 on both sides; the board sums in a different order and has its own exp/log
LOSS_ATOL = 1e-4


def mlp_sizes(job: Any) -> list[int]:
    """Layer sizes of an all-Dense job (``mlp:`` specs); ValueError for anything else."""
    from workloads.layers import Dense

    layers = job.model.layers
    if not layers or not all(isinstance(layer, Dense) for layer in layers):
        raise ValueError(f"workload {job.name!r}: the micro:bit's MicroPython port trains MLPs only "
                         "(mlp:IN-...-OUT specs)")
    if len(layers) > P.MLP_MAX_LAYERS:
        raise ValueError(f"workload {job.name!r}: {len(layers)} dense layers, the micro:bit port holds at most "
                         f"{P.MLP_MAX_LAYERS} (protocol.MLP_MAX_LAYERS)")
    ops = mlp_op_count(len(layers))
    if ops > P.MLP_MAX_OPS:
        raise ValueError(f"workload {job.name!r}: {ops} ops per step, the micro:bit port records at most "
                         f"{P.MLP_MAX_OPS} (protocol.MLP_MAX_OPS)")
    return [layers[0].in_shape[0]] + [layer.out_shape[0] for layer in layers]


def mlp_op_count(n_layers: int) -> int:
    """Ops mlp.step() records for ``n_layers`` dense layers: the input copy, the loss, and per layer a
    forward, dW and update, plus a ReLU backward and a dx for all but one layer."""
    return 2 + P.MLP_OPS_PER_LAYER * n_layers - 2


def hex_floats(values: np.ndarray) -> str:
    """8 hex digits per float32 (its uint32 bits, high first): what mlpio.hexf() decodes, exactly."""
    return "".join(f"{u:08x}" for u in np.asarray(values, dtype="<f4").ravel().view("<u4"))


@dataclass
class BoardStep:
    loss: float
    base_alloc_bytes: int
    op_us: list[int]              # per-op guest timer ticks (the micro:bit: ticks_us)
    op_heap_bytes: list[int]
    tick_instructions: int = 1000  # instructions per tick (ticks_us under -icount shift=0: 1000)
    op_alloc_bytes: list[int] | None = None   # a twin: bytes allocated during each op (buffers + garbage)

    @property
    def instructions(self) -> int:
        return self.tick_instructions * sum(self.op_us)

    @property
    def op_instructions(self) -> list[int]:
        return [self.tick_instructions * v for v in self.op_us]

    @property
    def heap_peak_bytes(self) -> int:
        return max(self.op_heap_bytes)


@dataclass
class BoardRun:
    footprint_alloc_bytes: int = 0   # live heap in main() before the model (REPL + edgesim modules)
    model_alloc_bytes: int = 0       # after allocating the model and the sample buffer
    free_after_model_bytes: int = 0
    heap_total_bytes: int = 0
    steps: list[BoardStep] = field(default_factory=list)
    wall_per_step_s: list[float] = field(default_factory=list)


def make_mlp_job(workload: str, seed: int = 0, lr: float = LR, dataset: str | None = None):
    """The host reference the board is compared with: float32 SGD without momentum, fused updates."""
    from workloads import make_job
    from workloads.techniques import Techniques

    return make_job(workload, dataset=dataset, optimizer="sgd", momentum=0.0, lr=lr,
                    techniques=Techniques(fused_update=True), seed=seed)


def parse_step(answer: str, q: int) -> BoardStep:
    """``<q> <loss bits hex> <base> <us,...> <heap,...>`` from mlp.step()."""
    try:
        sq, bits, base, us, heap = answer.split(" ")
        if int(sq) != q:
            raise ValueError(f"answer for step {sq}, expected {q}")
        loss = struct.unpack("<f", struct.pack("<I", int(bits, 16)))[0]
        return BoardStep(loss, int(base), [int(v) for v in us.split(",")], [int(v) for v in heap.split(",")])
    except ValueError as e:
        raise ValueError(f"step {q}: unreadable answer {answer[:80]!r}: {e}") from None


def load_modules(session: BoardSession) -> None:
    """Write the device modules into the board's file system and import them, each on a collected heap."""
    for name in MODULES:
        session.install(name)
    session.drop_loader()
    for name in MODULES:
        session.exec(f"import gc\ngc.collect()\nimport {name[:-3]}\ngc.collect()")


def start_training(session: BoardSession, sizes: list[int], lr: float, run: BoardRun) -> None:
    r = session.repl
    r.start_program(f"gc.collect()\nsrv.main({sizes},{lr!r})")
    ans = r.read_answer(60)
    if not ans.startswith("ready "):
        raise ProtocolError(f"expected the ready line, got {ans[:60]!r}", serial_tail=session.qemu.tail(),
                            log_path=session.log_path)
    a, b, c = (int(v) for v in ans.split()[1:])
    run.footprint_alloc_bytes, run.model_alloc_bytes, run.free_after_model_bytes = a, b, c


def send_weights(session: BoardSession, params: list[np.ndarray]) -> None:
    for layer in range(len(params) // 2):
        send_floats(session, "w", layer, params[2 * layer].ravel())
        send_floats(session, "b", layer, params[2 * layer + 1].ravel())


def send_floats(session: BoardSession, kind: str, index: int, arr: np.ndarray) -> None:
    """Verified lines of WEIGHTS_PER_LINE floats into W[index] (w), B[index] (b) or the sample (x)."""
    for o in range(0, len(arr), WEIGHTS_PER_LINE):
        piece = arr[o:o + WEIGHTS_PER_LINE]
        h = hex_floats(piece)
        ck = checksum(h.encode())
        want = f"{o + len(piece)} {ck}"
        line = f"{kind} {index} {o} {ck} {h}"
        if len(line) > P.LINE_BYTES:
            raise ValueError(f"data line of {len(line)} bytes exceeds protocol.LINE_BYTES ({P.LINE_BYTES})")
        session.repl.exchange(line, lambda a, w=want: a == w, timeout=LINE_TIMEOUT_S)


def board_step(session: BoardSession, q: int, x: np.ndarray, y: int, timeout_s: float) -> BoardStep:
    send_floats(session, "x", 0, np.ravel(x))

    def ok(a: str) -> bool:
        body, sep, c = a.rpartition(" #")
        return bool(sep) and c.isdigit() and checksum(body.encode()) == int(c)

    ans = session.repl.exchange(f"s {q} {y}", lambda a: a == P.STEP_FAILED or ok(a), timeout=timeout_s)
    if ans == P.STEP_FAILED:
        raise step_failed(session, q)
    return parse_step(ans.rpartition(" #")[0], q)


def step_failed(session: Any, q: int) -> GuestError:
    """The board says step ``q`` started before and did not finish: it is not run again."""
    return GuestError(f"step {q} failed half-way on the board (its updates may be partly applied), so it "
                      "is not run again", serial_tail=session.qemu.tail(), log_path=session.log_path)


def emulate(board: Board, workload: str, steps: int, *, seed: int = 0, lr: float | None = None,
            momentum: float | None = None, log_path: str | Path | None = None, progress: bool = False,
            step_timeout_s: float = 30.0, qemu_binary: str | None = None) -> dict:
    """Train ``workload`` for ``steps`` steps on the emulated ``board`` and on the host; return the
    comparison (the ``emulation.json`` schema; see simulator/cli/emulate.py). A virtual twin runs the
    network port (any model the spec grammar gives, SGD with momentum); the micro:bit v1 its MLP port
    (plain SGD, lr 0.05)."""
    if steps < 1:
        raise ValueError(f"--steps must be >= 1 (got {steps})")
    if board.twin is not None:
        return emulate_twin(board, workload, steps, seed=seed, lr=lr, momentum=momentum, log_path=log_path,
                            progress=progress, qemu_binary=qemu_binary)
    if momentum:
        raise ValueError(f"{board.name}: the micro:bit port trains with plain SGD (momentum must be 0)")
    lr = LR if lr is None else lr
    job = make_mlp_job(workload, seed=seed, lr=lr)
    sizes = mlp_sizes(job)
    params = [p.copy() for p in job.model.parameters()]
    samples = list(itertools.islice(iter(job.labelled_stream()), steps))
    host = predict_trace(board.profile, job, samples)          # runs the host steps (mutates the job)
    run = BoardRun()
    t_total = time.monotonic()
    oom: GuestMemoryError | None = None
    with ExitStack() as stack:
        with waiting(f"booting {board.name} (QEMU {board.machine}) and loading the port", progress):
            s = stack.enter_context(BoardSession(board, log_path=log_path, qemu_binary=qemu_binary))
            load_modules(s)
        run.heap_total_bytes = s.heap_total_bytes
        try:
            start_training(s, sizes, lr, run)
            send_weights(s, params)
            it = range(steps)
            if progress:
                from tqdm import tqdm
                it = tqdm(it, desc=f"emulating {workload} on {board.name}", unit="step")
            for q in it:
                x, y = samples[q]
                t0 = time.monotonic()
                run.steps.append(board_step(s, q, x, int(y), step_timeout_s))
                run.wall_per_step_s.append(time.monotonic() - t0)
            s.repl.write_chunked(b"e\r")
            s.repl.finish(timeout=10)
        except GuestMemoryError as e:
            oom = e
        firmware = s.firmware_version
        log = s.log_path
    foot = PortFootprint.from_profile(board.profile, run.heap_total_bytes, sizes[0])
    return build_result(board, workload, job, sizes, steps, host, run, foot, firmware, log, oom,
                        time.monotonic() - t_total)


def build_result(board: Board, workload: str, job: Any, sizes: list[int], steps: int, host: dict, run: BoardRun,
                 foot: PortFootprint, firmware: str, log: str, oom: GuestMemoryError | None, wall_s: float) -> dict:
    """The emulation.json dict: the board's figures beside the simulator's and the host's."""
    pred_heap = host["heap_peak_bytes"] + foot.bytes
    pred_instr = host["instructions_per_step"]
    res: dict[str, Any] = {
        "board": board.name, "firmware": firmware, "qemu_machine": board.machine,
        "machine": board.twin.name if board.twin is not None else board.machine, "workload": workload,
        "layer_sizes": sizes, "steps": steps, "lr": job.opt.lr if hasattr(job.opt, "lr") else None,
        "serial_log": log, "wall_s": round(wall_s, 3),
        "heap_total_bytes": run.heap_total_bytes,
        "port_footprint_bytes": foot.bytes, "port_footprint": foot.as_dict(),
        "predicted_heap_peak_bytes": pred_heap,
        "predicted_workload_heap_peak_bytes": host["heap_peak_bytes"],
        "predicted_instructions_per_step": pred_instr,
        "predicted_instructions_by_step": host["instructions_by_step"],
        "predicted_fits": host["fits"], "predicted_ops": host["op_names"],
        "host_losses": host["losses"],
        "clock_hz": board.clock_hz, "cycles_per_instruction": board.cycles_per_instruction,
    }
    if oom is not None:
        res.update({"fits": False, "guest_memory_error": str(oom.message),
                    "failed_alloc_bytes": oom.failed_alloc_bytes, "heap_peak_bytes": None,
                    "instructions_per_step": None, "losses": [st.loss for st in run.steps],
                    "board_footprint_bytes": run.footprint_alloc_bytes})
        return res
    instr = [st.instructions for st in run.steps]
    heap_peak = max(st.heap_peak_bytes for st in run.steps)
    losses = [st.loss for st in run.steps]
    hl = np.asarray(host["losses"][:len(losses)])
    close = bool(np.allclose(losses, hl, rtol=LOSS_RTOL, atol=LOSS_ATOL))
    ips = float(np.mean(instr))
    res.update({
        "fits": True,
        "heap_peak_bytes": heap_peak,
        "board_footprint_bytes": run.footprint_alloc_bytes,
        "workload_heap_peak_bytes": heap_peak - run.footprint_alloc_bytes,
        "instructions_per_step": ips,
        "instructions_by_step": instr,
        "device_seconds_per_step": ips * board.cycles_per_instruction / board.clock_hz,
        "predicted_device_seconds_per_step": pred_instr * board.cycles_per_instruction / board.clock_hz,
        "op_instructions_step0": run.steps[0].op_instructions,
        "predicted_op_instructions_step0": host["op_instructions_step0"],
        "op_heap_bytes_step0": run.steps[0].op_heap_bytes,
        "losses": losses,
        "losses_match_host": close,
        "loss_max_abs_diff": float(np.max(np.abs(np.asarray(losses) - hl))),
        "loss_tolerance": {"rtol": LOSS_RTOL, "atol": LOSS_ATOL},
        "loss_falls": bool(np.mean(losses[len(losses) // 2:]) < np.mean(losses[:max(1, len(losses) // 2)]))
        if len(losses) >= 4 else None,
        "heap_error": (pred_heap - heap_peak) / heap_peak,
        "instructions_error": (pred_instr - ips) / ips,
        "wall_per_step_s": float(np.mean(run.wall_per_step_s)),
    })
    return res


TWIN_MOMENTUM = 0.9
NO_MEMORY_CRASH = "uncaught NLR"     # what MicroPython 1.25 prints before it exits on an unraisable error


def make_twin_job(workload: str, seed: int = 0, lr: float | None = None, momentum: float | None = None,
                  dataset: str | None = None, pretrain: bool = True):
    """The host reference a twin is compared with: SGD with momentum (default 0.9), fused updates, the
    workload's default learning rate."""
    from workloads import make_job
    from workloads.techniques import Techniques

    return make_job(workload, dataset=dataset, optimizer="sgd",
                    momentum=TWIN_MOMENTUM if momentum is None else momentum, lr=lr,
                    techniques=Techniques(fused_update=True), seed=seed, pretrain=pretrain)


def emulate_twin(board: Board, workload: str, steps: int, *, seed: int = 0, lr: float | None = None,
                 momentum: float | None = None, log_path: str | Path | None = None, progress: bool = False,
                 qemu_binary: str | None = None, job: Any = None, batch: int = 1) -> dict:
    """``emulate`` on a virtual twin: the host's step trace becomes net.py's program (checked against
    the protocol limits before boot), the host's initial weights and samples go to the board."""
    from .netrun import StepFailed, TwinPort
    from .program import build_program
    from .session import TwinSession
    from .twin.firmware import gc_pool_bytes

    with waiting(f"preparing {workload} on the host (the reference steps)", progress and job is None):
        job = job or make_twin_job(workload, seed=seed, lr=lr, momentum=momentum)
    mom = float(getattr(job.opt, "momentum", 0.0))
    params = [p.copy() for p in job.model.parameters()]
    drawn = list(itertools.islice(iter(job.labelled_stream()), steps * batch))
    samples = [(np.stack([x for x, _ in drawn[i:i + batch]]), np.array([y for _, y in drawn[i:i + batch]]))
               for i in range(0, len(drawn), batch)]
    pool = gc_pool_bytes(board.heap_bytes)
    foot = PortFootprint.from_profile(board.profile, pool, batch * int(np.prod(job.input_shape)))
    host = predict_trace(board.profile, job, samples, pool, foot.bytes)   # runs the host steps (mutates the job)
    ops0 = host.pop("ops_step0")
    prog = build_program(job, ops0, batch)                      # limits are checked before any boot
    tick = board.twin.instructions_per_timer_tick
    run = BoardRun()
    t_total = time.monotonic()
    oom: GuestMemoryError | None = None
    with ExitStack() as stack:
        with waiting(f"booting the {board.twin.name} twin of {board.name} under QEMU and loading the port", progress):
            s = stack.enter_context(TwinSession(board, log_path=log_path, qemu_binary=qemu_binary))
        run.heap_total_bytes = s.heap_total_bytes
        port = TwinPort(s.run)
        used = s.heap_map()
        clock = s.clock
        try:
            run.footprint_alloc_bytes = int(s.run("print(mem())").strip())
            run.model_alloc_bytes = port.setup(prog, job.lr, mom, clock)
            port.send_params(job.model.layers, params)
            it = range(steps)
            if progress:
                from tqdm import tqdm
                it = tqdm(it, desc=f"emulating {workload} on {board.name} ({board.twin.name})", unit="step")
            for q in it:
                x, y = samples[q]
                t0 = time.monotonic()
                st = port.step(q, x, y)
                run.steps.append(BoardStep(st.loss, st.base_alloc_bytes, st.op_ticks, st.op_heap_bytes, tick,
                                           st.op_alloc_bytes))
                run.wall_per_step_s.append(time.monotonic() - t0)
        except GuestMemoryError as e:
            oom = e
        except QemuExited as e:
            if NO_MEMORY_CRASH not in e.serial_tail:
                raise
            # MicroPython ends itself (nlr_jump_fail, exit 1) when even its MemoryError finds no memory
            oom = GuestMemoryError("guest MemoryError: the firmware ran out of memory while raising one and "
                                   f"stopped ({NO_MEMORY_CRASH})", exc_type="MemoryError",
                                   serial_tail=e.serial_tail, log_path=e.log_path)
        except StepFailed as e:
            raise step_failed(s, len(run.steps)) from e
        firmware = s.firmware_version
        log = s.log_path
    if run.heap_total_bytes != pool:
        foot = PortFootprint.from_profile(board.profile, run.heap_total_bytes, batch * prog.n_inputs)
    # the fit, once more, in the heap the port left (its block map): fragmentation included
    host["fits_total"] = host["fits"]
    lines = command_lengths(prog, job, params, samples, mom, clock)
    host["fits"] = host["fits"] and fits_in_heap_map(board.profile, job, ops0, used, batch * prog.n_inputs, lines)
    res = build_result(board, workload, job, [job.name], steps, host, run, foot, firmware, log, oom,
                       time.monotonic() - t_total)
    res.update({"momentum": mom, "heap_bytes": board.heap_bytes, "instructions_per_timer_tick": tick,
                "program_ops": prog.n_ops, "predicted_gc_instructions_per_step": host["gc_instructions_per_step"],
                "predicted_fits_heap_total": host["fits_total"],
                "batch": batch})
    return res


def command_lengths(prog: Any, job: Any, params: list[np.ndarray], samples: list, mom: float,
                    clock: tuple) -> tuple[int, int]:
    """Bytes of the setup call and of the longest data line after it: what the raw REPL's line buffer
    (kept for the session) grows to, before and after the model is allocated."""
    from .netrun import float_pieces
    from .program import setup_call

    def longest(values: np.ndarray, layer: int, which: int) -> int:
        return max((len(f"pw({layer},{which},{o},'{h}',{ck})") for o, h, ck in float_pieces(values)), default=0)

    data = [longest(x, -1, 0) for x, _ in samples[:1]]
    it = iter(params)
    for i, ly in enumerate(job.model.layers):
        if ly.params:
            data += [longest(next(it), i, 0), longest(next(it), i, 1)]
    return len(setup_call(prog, job.lr, mom, clock)), max(data)
