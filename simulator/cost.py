"""The op cost model, written once and used everywhere (simulator, predict_step, calibration).

    cycles = op_overhead_cycles
           + macs * cycles_per_mac_<dtype>                   matmul, conv, update
           + elems * cycles_per_elem_f32                     eltwise, reduce (elems = max(read, written) / dtype size)
           + (bytes_read + bytes_written) * cycles_per_byte_copy      copy, flash_read
           + macs * cycles_per_decode_op                     decode (macs = decode operations; compressed weights)
    a decode op's format (its name's last part: ``conv0.decode.int8-8``) picks its own figure from the runtime's
    ``decode_cycles_per_op`` table where it has one (``int8-8``, else ``int8``; before a kind_costs ``decode`` row, then
    cycles_per_decode_op); a decode op's fixed cost is decode_overhead_cycles where the runtime has it.
    a profile's measured ``kind_costs`` (per op kind: overhead + macs, bytes read and bytes written, each with
    its cost) replace the lines above for the f32 ops of the kinds they list (rows by ``cost_key``: the
    op kind, or ``loss`` / ``conv_direct`` where a profile has those rows; ``cost_keys``: a backward part's
    own row, such as ``conv.backward_weight``, first where a profile has it, and before it a role row,
    ``conv.input`` / ``reduce.gap``, where a native profile has one).
    flash_write: CPU time op_overhead_cycles plus the flash programming time bytes / write_bytes_per_s;
    seconds = cycles / clock_hz;  energy_j = seconds * active_current_a * supply_voltage_v
              (+ bytes_written * flash_write_energy_j_per_byte for flash writes)
MicroPython (a runtime with the calibrated garbage-collector figures, once ``CostModel.collect_garbage``
has named the heap): each op of a trace also pays the collections its garbage causes, ``gc_cycles`` at
the live bytes the trace holds at that op -- the same term ``edgesim emulate`` and ``--verify`` predict.
"""
from __future__ import annotations

import re
from typing import Any

from workloads.compression import decode_format
from workloads.trace import Op

DTYPE_BYTES = {"f32": 4, "i8": 1, "i32": 4}
MAC_KINDS = ("matmul", "conv", "update")
ELEM_KINDS = ("eltwise", "reduce")
COPY_KINDS = ("copy", "flash_read")


def op_elems(op: Op) -> int:
    """Elements an eltwise/reduce op touches: the larger of its input and output, in elements."""
    return max(op.bytes_read, op.bytes_written) // DTYPE_BYTES.get(op.dtype, 4)


def cost_key(op: Op) -> str:
    """The kind_costs row of an op: its kind, but ``loss`` for the loss op (exp/log per element, unlike
    the pools) and ``conv_direct`` for a convolution without an im2col workspace (depthwise: short
    per-channel windows, no patch reuse across filters). A profile without these rows uses the kind's."""
    if op.name == "loss":
        return "loss"
    if op.kind == "conv" and not any(t.kind == "workspace" for t in op.alloc):
        return "conv_direct"
    return op.kind


BACKWARD_PARTS = ("backward_weight", "backward_input")   # op name suffixes a kind_costs row may single out


_FIRST_LAYER = re.compile(r"^[a-z_]+0$")   # layer names are <type><index>: index 0 reads the raw sample
_GAP_LAYER = re.compile(r"^gap\d+$")


def op_role(op: Op) -> str | None:
    """A structural role that changes an op's soft-float cost, or None: ``input`` for an im2col
    convolution of the first layer (it reads the raw sample, whose zeros depend on the data set, not
    post-ReLU activations, about half of them zeros; soft-float multiplies and adds with a zero operand
    return early), ``gap`` for a global average pool (one long sum and a divide per channel, unlike the
    windowed pools it would share the ``reduce`` row with)."""
    layer = op.name.rpartition(".")[0]
    if op.kind == "conv" and cost_key(op) == "conv" and _FIRST_LAYER.match(layer):
        return "input"
    if op.kind == "reduce" and _GAP_LAYER.match(layer):
        return "gap"
    return None


def cost_keys(op: Op, roles: bool = False) -> tuple[str, ...]:
    """The kind_costs rows that may price an op, most specific first: with ``roles``, the op's role row
    (``conv.input``, ``conv.input.backward_weight``, ``reduce.gap``, ... : native C rows, see ``op_role``);
    ``<cost_key>.backward_weight`` / ``.backward_input`` (a backward pass runs other loops than the forward
    one: native C rows), then ``cost_key(op)``, then the op kind. A profile without a row uses the next."""
    key = cost_key(op)
    part = op.name.rsplit(".", 1)[-1]
    fine = (f"{key}.{part}",) if part in BACKWARD_PARTS else ()
    role = op_role(op) if roles else None
    if role:
        fine = (f"{key}.{role}.{part}" if part in BACKWARD_PARTS else f"{key}.{role}", *fine)
    return (*fine, key, op.kind)


def decode_cycles_per_op(op: Op, runtime: Any) -> float | None:
    """The runtime's own figure for a decode op's format (``decode_cycles_per_op`` table: the row for its
    format and bit width, ``csr-8``, else for its format, ``csr``), or None."""
    table = getattr(runtime, "decode_cycles_per_op", None)
    fb = decode_format(op.name) if table else None
    if fb is None:
        return None
    return table.get(f"{fb[0]}-{fb[1]}", table.get(fb[0]))


def op_cycles(op: Op, runtime: Any) -> float:
    """CPU cycles of one op under a profile ``Runtime`` (flash programming time excluded)."""
    kind = op.kind
    per_op = decode_cycles_per_op(op, runtime) if kind == "decode" else None
    if per_op is not None:            # this format's own row: measured on the twins or its own estimate
        over = getattr(runtime, "decode_overhead_cycles", None)
        return float((runtime.op_overhead_cycles if over is None else over) + op.macs * per_op)
    measured = getattr(runtime, "kind_costs", None)
    key = next((k for k in cost_keys(op, roles=True) if k in measured), kind) if measured else kind
    if measured and key in measured and op.dtype == "f32":   # calibrated per kind (edgesim calibrate)
        k = measured[key]
        return float(k.overhead_cycles + op.macs * k.cycles_per_mac + op.bytes_read * k.cycles_per_byte_read
                     + op.bytes_written * k.cycles_per_byte_written)
    c = runtime.op_overhead_cycles
    if kind in MAC_KINDS:
        per_mac = runtime.cycles_per_mac_f32 if op.dtype == "f32" else runtime.cycles_per_mac_i8
        c += op.macs * per_mac
    elif kind in ELEM_KINDS:
        c += op_elems(op) * runtime.cycles_per_elem_f32
    elif kind in COPY_KINDS:
        c += (op.bytes_read + op.bytes_written) * runtime.cycles_per_byte_copy
    elif kind == "decode":
        if runtime.cycles_per_decode_op is None:
            raise ValueError(f"op {op.name!r}: the device profile's runtime table has no cycles_per_decode_op "
                             f"(needed to cost compressed weights)")
        over = getattr(runtime, "decode_overhead_cycles", None)
        c += op.macs * runtime.cycles_per_decode_op + (0.0 if over is None else over - runtime.op_overhead_cycles)
    elif kind != "flash_write":
        raise ValueError(f"op {op.name!r}: unknown op kind {kind!r}")
    return float(c)


def gc_cycles(cycles: float, live_bytes: int, heap_bytes: int | None, runtime: Any) -> float:
    """Garbage-collection cycles a MicroPython op of ``cycles`` adds, starting on a collected heap of
    ``heap_bytes`` with ``live_bytes`` live: its garbage (gc_garbage_bytes_per_cycle x cycles) fills the
    free heap (garbage // free) times, and each collection marks the live heap. 0 without the figures."""
    g = getattr(runtime, "gc_garbage_bytes_per_cycle", None)
    per = getattr(runtime, "gc_collection_cycles", None)
    if g is None or per is None or not heap_bytes or live_bytes >= heap_bytes:
        return 0.0
    n = int(g * cycles // (heap_bytes - live_bytes))
    return n * (per + (getattr(runtime, "gc_cycles_per_live_byte", None) or 0.0) * live_bytes)


class CostModel:
    """Seconds and joules per op for one device and runtime; caches by op signature (ops repeat)."""

    def __init__(self, device: Any, runtime: str) -> None:
        self.device = device
        self.runtime = device.runtime_for(runtime)
        self.clock_hz = float(device.core.clock_hz)
        self.active_w = device.power.active_current_a * device.power.supply_voltage_v
        self.flash_j_per_byte = device.power.flash_write_energy_j_per_byte
        self.flash_bytes_per_s = device.flash.write_bytes_per_s
        self.cpi = device.core.cycles_per_instruction
        self._cache: dict[tuple, tuple[float, float, float]] = {}
        self._gc: tuple[int, int, Any] | None = None     # (heap bytes, live bytes before the trace, block size)

    def collect_garbage(self, heap_bytes: int, base_live_bytes: int, size_for: Any) -> bool:
        """Charge MicroPython's garbage collections from now on: the heap holds ``heap_bytes``, of which
        ``base_live_bytes`` (the persistent tensors) are live before any trace runs; ``size_for`` gives a
        tensor's bytes on the heap. False (and nothing changes) when the runtime has no GC figures."""
        rt = self.runtime
        if getattr(rt, "gc_garbage_bytes_per_cycle", None) is None or getattr(rt, "gc_collection_cycles", None) is None:
            return False
        self._gc = (int(heap_bytes), int(base_live_bytes), size_for)
        return True

    def gc_cycles_by_op(self, ops: list[Op]) -> list[float]:
        """Each op's garbage-collection cycles (all 0 without ``collect_garbage``): the live bytes at an op
        are the persistent ones plus the trace's tensors allocated and not yet freed (its own included)."""
        if self._gc is None:
            return [0.0] * len(ops)
        heap, base, size_for = self._gc
        live: dict[int, int] = {}
        held = 0
        out = []
        for op in ops:
            for t in op.alloc:
                b = size_for(t.nbytes)
                held += b - live.get(t.id, 0)
                live[t.id] = b
            out.append(gc_cycles(self.cost(op)[0], base + held, heap, self.runtime))
            for tid in op.free:
                held -= live.pop(tid, 0)
        return out

    def cost(self, op: Op) -> tuple[float, float, float]:
        """(cycles, seconds, energy_j) of one op."""
        key = (cost_keys(op, roles=True)[0], op.macs, op.bytes_read, op.bytes_written, op.dtype,   # the row prices it too
               decode_format(op.name) if op.kind == "decode" else None)                        # and a decode format
        hit = self._cache.get(key)
        if hit is not None:
            return hit
        cycles = op_cycles(op, self.runtime)
        seconds = cycles / self.clock_hz
        energy = seconds * self.active_w
        if op.kind == "flash_write":
            flash_s = op.bytes_written / self.flash_bytes_per_s
            seconds += flash_s
            energy += flash_s * self.active_w + op.bytes_written * self.flash_j_per_byte
        out = (cycles, seconds, energy)
        self._cache[key] = out
        return out

    def cumulative(self, ops: list[Op]) -> tuple[list[float], list[float]]:
        """(cum_seconds, cum_energy_j), each of len(ops) + 1: op i runs from cum_seconds[i] to [i + 1]."""
        cost = self.cost
        cum_t = [0.0] * (len(ops) + 1)
        cum_e = [0.0] * (len(ops) + 1)
        gc = self.gc_cycles_by_op(ops) if self._gc is not None else None
        t = e = 0.0
        for i, op in enumerate(ops):
            _, s, en = cost(op)
            if gc and gc[i]:
                g = gc[i] / self.clock_hz
                s += g
                en += g * self.active_w
            t += s
            e += en
            cum_t[i + 1], cum_e[i + 1] = t, e
        return cum_t, cum_e
