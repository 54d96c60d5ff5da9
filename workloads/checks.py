"""Trace invariants the simulator relies on, and a small summary of a trace (MACs, peak live bytes)."""
from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from .trace import DTYPES, OP_KINDS, TENSOR_KINDS, Op, Tensor

PERSISTENT_KINDS = ("weight", "bias", "optim")


class TraceError(AssertionError):
    """A trace breaks the contract; the message names the op and the tensor."""


@dataclass
class TraceSummary:
    ops: int = 0
    macs: int = 0
    macs_by_kind: dict = field(default_factory=dict)
    peak_live_bytes: int = 0            # max over ops of bytes allocated by the step and not yet freed
    peak_live_by_kind: dict = field(default_factory=dict)   # at the peak
    max_live_wgrad_bytes: int = 0
    flash_read_bytes: int = 0
    flash_write_bytes: int = 0


def check_trace(ops: Iterable[Op], persistent: Iterable[Tensor] = ()) -> TraceSummary:
    """Raise ``TraceError`` unless: kinds/dtypes are known, MACs and bytes >= 0, tensor ids are unique,
    each allocated tensor is freed exactly once (at or after its alloc) and no step allocates a
    persistent kind (weight/bias/optim). Returns the trace's summary."""
    pids = {t.id for t in persistent}
    live: dict[int, Tensor] = {}
    seen: set[int] = set()
    s = TraceSummary()
    for op in ops:
        s.ops += 1
        if op.kind not in OP_KINDS:
            raise TraceError(f"op {op.name}: kind {op.kind!r} not in {OP_KINDS}")
        if op.dtype not in DTYPES:
            raise TraceError(f"op {op.name}: dtype {op.dtype!r} not in {DTYPES}")
        if op.macs < 0 or op.bytes_read < 0 or op.bytes_written < 0:
            raise TraceError(f"op {op.name}: negative cost ({op.macs}, {op.bytes_read}, {op.bytes_written})")
        if op.kind.startswith("flash") and op.macs:
            raise TraceError(f"op {op.name}: flash ops carry no MACs")
        for t in op.alloc:
            if t.id in seen or t.id in pids:
                raise TraceError(f"op {op.name}: tensor id {t.id} ({t.name}) allocated twice")
            if t.kind not in TENSOR_KINDS:
                raise TraceError(f"op {op.name}: tensor {t.name} kind {t.kind!r} not in {TENSOR_KINDS}")
            if t.kind in PERSISTENT_KINDS:
                raise TraceError(f"op {op.name}: a step allocates persistent kind {t.kind} ({t.name})")
            if t.nbytes < 0:
                raise TraceError(f"op {op.name}: tensor {t.name} has {t.nbytes} bytes")
            seen.add(t.id)
            live[t.id] = t
        s.macs += op.macs
        s.macs_by_kind[op.kind] = s.macs_by_kind.get(op.kind, 0) + op.macs
        live_bytes = sum(t.nbytes for t in live.values())
        if live_bytes > s.peak_live_bytes:
            s.peak_live_bytes = live_bytes
            by: dict[str, int] = {}
            for t in live.values():
                by[t.kind] = by.get(t.kind, 0) + t.nbytes
            s.peak_live_by_kind = by
        s.max_live_wgrad_bytes = max(s.max_live_wgrad_bytes, sum(t.nbytes for t in live.values() if t.kind == "wgrad"))
        if op.kind == "flash_read":
            s.flash_read_bytes += op.bytes_read
        if op.kind == "flash_write":
            s.flash_write_bytes += op.bytes_written
        for tid in op.free:
            if tid not in live:
                raise TraceError(f"op {op.name}: frees tensor id {tid} which is not live")
            del live[tid]
    if live:
        names = ", ".join(sorted(t.name or str(t.id) for t in live.values()))
        raise TraceError(f"tensors never freed: {names}")
    return s
