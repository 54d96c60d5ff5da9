"""The step program a twin runs: the host's own op trace turned into rows for ``net.py``.

One row per traced op (code, layer, three input and three output buffer slots) and, per row, the slots
the trace frees after it. The board therefore allocates and drops the same buffers at the same ops as
the trace the simulator prices -- the heap comparison is like for like. Limits come from the protocol
module both sides read and are checked here, before anything boots.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .micropython import protocol as P

SUPPORTED_TECHNIQUES = ("fused_update",)


@dataclass(frozen=True)
class StepProgram:
    """What ``net.setup`` receives, plus the host op each row stands for."""

    geometry: tuple[int, ...]          # NET_GEOM ints per layer
    rows: tuple[int, ...]              # 8 ints per op
    frees: tuple[tuple[int, ...], ...]  # slots released after each op
    op_names: tuple[str, ...]
    n_inputs: int                      # values per sample
    slots: int
    batch: int = 1

    @property
    def n_ops(self) -> int:
        return len(self.op_names)


def layer_geometry(layer: Any) -> list[int]:
    """The NET_GEOM integers of one layer (kind, H, W, C, OH, OW, CO, KH, KW, SH, SW, PT, PL, RELU)."""
    from workloads import layers as L

    relu = int(bool(layer.relu))
    if isinstance(layer, L.Dense):
        return [P.L_DENSE, 1, 1, layer.in_shape[0], 1, 1, layer.out_shape[0], 1, 1, 1, 1, 0, 0, relu]
    if isinstance(layer, L.Flatten):
        return [P.L_FLATTEN] + [0] * (P.NET_GEOM - 1)
    h, w, c = layer.in_shape
    oh, ow, co = layer.out_shape if len(layer.out_shape) == 3 else (1, 1, layer.out_shape[0])
    if isinstance(layer, (L.Conv2D, L.DepthwiseConv2D)):
        kind = P.L_CONV if isinstance(layer, L.Conv2D) else P.L_DW
        return [kind, h, w, c, oh, ow, co, layer.kh, layer.kw, layer.sh, layer.sw, layer.ph // 2, layer.pw // 2, relu]
    if isinstance(layer, (L.MaxPool, L.AvgPool)):
        kind = P.L_MAXPOOL if isinstance(layer, L.MaxPool) else P.L_AVGPOOL
        return [kind, h, w, c, oh, ow, co, layer.kh, layer.kw, layer.kh, layer.kw, 0, 0, 0]
    if isinstance(layer, L.GlobalAvgPool):
        return [P.L_GAP, h, w, c, 1, 1, c, h, w, 1, 1, 0, 0, 0]
    raise ValueError(f"layer {layer.name} ({type(layer).__name__}): the MicroPython port has no kernel for it")


def check_job(job: Any) -> None:
    """The port trains with SGD (momentum allowed), batch 1 and fused updates, nothing else."""
    from workloads.optim import SGD

    extra = [t for t in job.techniques.active() if t not in SUPPORTED_TECHNIQUES]
    if extra:
        raise ValueError(f"workload {job.name!r}: the MicroPython port does not implement techniques "
                         f"{', '.join(extra)} (it trains with fused updates only)")
    if not job.techniques.fused_update:
        raise ValueError(f"workload {job.name!r}: the MicroPython port needs techniques.fused_update")
    if not isinstance(job.opt, SGD):
        raise ValueError(f"workload {job.name!r}: the MicroPython port trains with SGD (got {type(job.opt).__name__})")


def build_program(job: Any, ops: list, batch: int = 1) -> StepProgram:
    """Rows for ``net.py`` from one traced training step (of ``batch`` samples) of ``job``; ValueError
    naming the limit a model exceeds (protocol.py) or the op the port cannot run."""
    check_job(job)
    layers = job.model.layers
    if len(layers) > P.NET_MAX_LAYERS:
        raise ValueError(f"workload {job.name!r}: {len(layers)} layers, the port holds at most "
                         f"{P.NET_MAX_LAYERS} (protocol.NET_MAX_LAYERS)")
    if len(ops) > P.NET_MAX_OPS:
        raise ValueError(f"workload {job.name!r}: {len(ops)} ops per step, the port runs at most "
                         f"{P.NET_MAX_OPS} (protocol.NET_MAX_OPS)")
    geometry: list[int] = []
    for ly in layers:
        geo = layer_geometry(ly)
        if max(geo) > 32767:
            raise ValueError(f"workload {job.name!r}: layer {ly.name} has a dimension over 32767 "
                             "(the board's geometry table holds 16-bit integers)")
        geometry += geo
    index = {ly.name: i for i, ly in enumerate(layers)}
    in_key: dict[int, str] = {}
    cur = "input"
    for i, ly in enumerate(layers):
        in_key[i] = cur
        if not ly.view:
            cur = f"{ly.name}.y"
    logits = cur
    slot_of: dict[str, int] = {}      # live key -> slot
    key_of_id: dict[int, str] = {}
    free_slots: list[int] = []
    used = 0
    grad = "loss.grad"                # the gradient flowing backwards
    rows: list[int] = []
    frees: list[tuple[int, ...]] = []

    def slot(key: str) -> int:
        if key not in slot_of:
            raise ValueError(f"workload {job.name!r}: op reads {key!r}, which the trace has not allocated")
        return slot_of[key]

    for op in ops:
        outs = []
        for t in op.alloc:
            nonlocal_used = free_slots.pop(0) if free_slots else None
            if nonlocal_used is None:
                nonlocal_used = used
                used += 1
            slot_of[t.name] = nonlocal_used
            key_of_id[t.id] = t.name
            outs.append(t.name)
        lname, _, phase = op.name.rpartition(".")
        li = index.get(lname, -1)
        ins: list[str] = []
        if op.name == "input.load":
            code = P.OP_LOAD
        elif op.name == "loss":
            code, ins = P.OP_LOSS, [logits]
        elif phase == "forward" and li >= 0:
            code, ins = P.OP_FWD, [in_key[li]]
        elif phase == "backward_act" and li >= 0:
            code, ins = P.OP_ACT, [grad, f"{lname}.y"]
        elif phase == "backward_weight" and li >= 0:
            code, ins = P.OP_WGRAD, [in_key[li], grad]
        elif phase == "backward_input" and li >= 0:
            code = P.OP_DX
            ins = [grad, in_key[li] if layers[li].needs_input else None,
                   f"{lname}.y" if isinstance_name(layers[li], "MaxPool") else None]
        elif phase == "update" and li >= 0:
            code, ins = P.OP_UPD, [f"{lname}.dW", f"{lname}.db"]
        else:
            raise ValueError(f"workload {job.name!r}: op {op.name!r} has no kernel in the MicroPython port")
        order = _output_order(code, lname, op.name)
        by_name = {k: slot_of[k] for k in outs}
        if sorted(outs) != sorted(k for k in order if k in by_name) or len(outs) > 3:
            raise ValueError(f"workload {job.name!r}: op {op.name!r} allocates {outs}, the port expects {order}")
        o = [by_name.get(k, -1) for k in order] + [-1] * (3 - len(order))
        i = [slot(k) if k else -1 for k in ins] + [-1] * (3 - len(ins))
        rows += [code, li if code not in (P.OP_LOAD, P.OP_LOSS) else -1, *i[:3], *o[:3]]
        if code == P.OP_DX:
            grad = f"{lname}.dx"
        freed = []
        for tid in op.free:
            key = key_of_id.pop(tid)
            freed.append(slot_of.pop(key))
        free_slots += sorted(freed)
        free_slots.sort()
        frees.append(tuple(freed))
    if used > P.NET_MAX_SLOTS:
        raise ValueError(f"workload {job.name!r}: {used} live buffers, the port holds at most {P.NET_MAX_SLOTS} "
                         "(protocol.NET_MAX_SLOTS)")
    if sum(len(f) for f in frees) > P.NET_MAX_FREES:
        raise ValueError(f"workload {job.name!r}: too many buffer releases per step (protocol.NET_MAX_FREES)")
    n_in = 1
    for d in job.input_shape:
        n_in *= int(d)
    return StepProgram(tuple(geometry), tuple(rows), tuple(frees), tuple(op.name for op in ops), n_in, used, batch)


def isinstance_name(layer: Any, cls: str) -> bool:
    from workloads import layers as L

    return isinstance(layer, getattr(L, cls))


def _output_order(code: int, lname: str, opname: str) -> list[str]:
    """The buffers an op's kernel returns, in the order it returns them (net.py)."""
    if code == P.OP_LOAD:
        return ["input"]
    if code == P.OP_LOSS:
        return ["loss.grad"]
    if code == P.OP_FWD:
        return [f"{lname}.y", f"{opname}.cols"]
    if code == P.OP_WGRAD:
        return [f"{lname}.dW", f"{lname}.db", f"{lname}.cols_bw"]
    if code == P.OP_DX:
        return [f"{lname}.dx", f"{lname}.dcols"]
    return []


def setup_call(prog: StepProgram, lr: float, momentum: float, clock: tuple) -> str:
    """The ``setup(...)`` command for net.py (arguments only; no code)."""
    return (f"setup({list(prog.geometry)},{list(prog.rows)},{[list(f) for f in prog.frees]},"
            f"{prog.n_inputs},{prog.batch},{lr!r},{momentum!r},{clock!r})")
