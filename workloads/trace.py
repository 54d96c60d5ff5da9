"""The op trace: the one contract between workloads and the simulator (docs/architecture.md §1).

A training step is a generator of ``Op`` records. The numpy math really runs; each op says what it
cost (MACs, bytes moved, dtype) and which buffers it allocates and frees. The simulator knows nothing
of layers and the workloads know nothing of SimPy.
"""
from __future__ import annotations

import itertools
from collections.abc import Generator
from dataclasses import dataclass
from typing import Any

TENSOR_KINDS = ("weight", "bias", "activation", "grad", "wgrad", "optim", "workspace", "input")
OP_KINDS = ("matmul", "conv", "eltwise", "reduce", "update", "copy", "flash_read", "flash_write", "decode")
DTYPES = ("f32", "i8", "i32")

_ids = itertools.count(1)


def new_tensor_id() -> int:
    """A process-wide unique tensor id."""
    return next(_ids)


@dataclass(frozen=True)
class Tensor:
    """A buffer an op allocates. ``kind`` is one of TENSOR_KINDS."""

    id: int
    nbytes: int
    kind: str
    name: str = ""


@dataclass(frozen=True)
class Op:
    """One unit of work and what it cost.

    ``flash_read``/``flash_write`` ops carry their traffic in ``bytes_read``/``bytes_written`` and
    zero MACs (swap to flash). A ``decode`` op expands compressed weights from flash into a dense buffer:
    ``macs`` counts its decode operations (``workloads.compression``), ``bytes_read`` the compressed bytes. ``free`` lists tensor ids released *after* this op.
    """

    name: str
    kind: str
    macs: int
    bytes_read: int
    bytes_written: int
    dtype: str = "f32"
    alloc: tuple[Tensor, ...] = ()
    free: tuple[int, ...] = ()


def collect(gen: Generator[Op, None, Any]) -> tuple[list[Op], Any]:
    """Run an op generator to the end: (the ops, its return value). The numpy math runs here."""
    ops: list[Op] = []
    append = ops.append
    try:
        while True:
            append(next(gen))
    except StopIteration as stop:
        return ops, stop.value
