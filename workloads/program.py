"""A step program and its runner: how one training step or inference becomes an op trace.

A *step program* is a list of ``ProgramOp``s, each with the numpy math to run and the trace keys it reads
and allocates. ``run_program`` runs them in order and yields one ``Op`` per program op; each op's
``free`` lists the tensors whose last use it was (found by a liveness pass over the program). Keys
``r.<key>`` (recomputed) and ``s.<key>`` (swapped back in) are new buffers holding the value of ``<key>``.
"""
from __future__ import annotations

from collections.abc import Callable, Generator
from dataclasses import dataclass, field

import numpy as np

from .trace import Op, Tensor, new_tensor_id


@dataclass
class ProgramOp:
    """One op of a step program: its math (``run``) and the trace keys it reads and allocates."""

    name: str
    kind: str
    dtype: str
    run: Callable[[], tuple[int, int, int]]        # does the math; returns (macs, bytes_read, bytes_written)
    reads: list[str] = field(default_factory=list)
    allocs: list[tuple[str, str, Callable[[], int]]] = field(default_factory=list)  # (key, kind, nbytes())
    ends_step: Callable[[], bool] | None = None    # True after run: skip the rest (frees everything live)


@dataclass
class StepState:
    """What a training step's ops share while it runs: the batch size, the samples kept by instance
    filtering (``keep``; ``nk`` of them), the loss, and figures for ``Job.last_step``."""

    n: int
    nk: int = 0
    keep: np.ndarray | None = None
    loss: float = float("nan")
    is_sub: set = field(default_factory=set)
    stats: dict = field(default_factory=dict)
    labels: np.ndarray | None = None      # the batch's labels (the early filter's head predicts per label)
    early: np.ndarray | None = None       # the samples the early filter kept (None: all of them)
    losses: np.ndarray | None = None      # per-sample losses of the samples that reached the loss op

    def sub(self, key: str, arr: np.ndarray) -> np.ndarray:
        """The kept samples' rows of a full-batch value (instance filtering)."""
        if self.keep is None or key in self.is_sub:
            return arr
        return arr[self.keep]


def value_key(key: str) -> str:
    """The host value a trace key refers to (recomputed/swapped copies hold the same value)."""
    return key[2:] if key[:2] in ("r.", "s.") else key


def run_program(program: list[ProgramOp], values: dict) -> Generator[Op, None, None]:
    """Run a step program, yielding one ``Op`` per program op with allocs and frees from a liveness pass."""
    last: dict[str, int] = {}
    n_alloc = 0
    for i, p in enumerate(program):
        for k in p.reads:
            last[k] = i
        for a in p.allocs:
            n_alloc += 1
            if last.get(a[0], -1) < i:
                last[a[0]] = i
    if n_alloc != len({a[0] for p in program for a in p.allocs}):  # pragma: no cover - a builder bug
        raise RuntimeError("step program allocates a key twice")
    frees_at: list[list[str]] = [[] for _ in program]
    for k, i in last.items():
        frees_at[i].append(k)
    live: dict[str, Tensor] = {}
    for i, p in enumerate(program):
        macs, br, bw = p.run()
        allocs = ()
        if p.allocs:
            allocs = tuple(Tensor(new_tensor_id(), int(nb()), kind, key) for key, kind, nb in p.allocs)
            for t in allocs:
                live[t.name] = t
        end = p.ends_step is not None and p.ends_step()
        freed = list(live) if end else [k for k in frees_at[i] if k in live]
        free_ids = tuple(live.pop(k).id for k in freed)
        for k in freed:   # the host copy goes too (a recomputed / swapped-in copy is a new key, same value)
            values.pop(value_key(k), None)
        yield Op(p.name, p.kind, int(macs), int(br), int(bw), p.dtype, allocs, free_ids)
        if end:
            return


def trace_template(ops: list[Op]) -> list[tuple]:
    """A trace with tensor ids replaced by (op index, alloc index) references, to be traced again."""
    where = {t.id: (i, j) for i, op in enumerate(ops) for j, t in enumerate(op.alloc)}
    return [(op.name, op.kind, op.macs, op.bytes_read, op.bytes_written, op.dtype,
             tuple((t.nbytes, t.kind, t.name) for t in op.alloc), tuple(where[i] for i in op.free)) for op in ops]


def from_template(template: list[tuple]) -> Generator[Op, None, None]:
    """The ops of a ``trace_template`` again, with fresh tensor ids."""
    ids: list[list[int]] = []
    for name, kind, macs, br, bw, dt, allocs, frees in template:
        mine = [new_tensor_id() for _ in allocs]
        ids.append(mine)
        yield Op(name, kind, macs, br, bw, dt,
                 tuple(Tensor(i, nb, k, n) for i, (nb, k, n) in zip(mine, allocs, strict=True)),
                 tuple(ids[o][j] for o, j in frees))
