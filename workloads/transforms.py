"""Techniques that transform a step program or the numbers it works on (docs/architecture.md §1).

- ``apply_swap``: activations the backward needs go to flash after their last forward use and come back
  just before their first backward use (``swap_out.*`` / ``swap_in.*`` ops).
- ``prune_errors``: error-map pruning and stochastic gradient pruning of a backward error map.
- ``quantise_weights`` / ``stochastic_round``: weights on a fixed per-tensor int8 grid.
- ``install_etf``: the classifier becomes a fixed simplex ETF.
"""
from __future__ import annotations

import numpy as np

from .model import Model, etf_matrix
from .program import ProgramOp
from .techniques import Techniques


def apply_swap(program: list[ProgramOp], values: dict, int8: bool) -> list[ProgramOp]:
    """swap: write activations the backward needs to flash after their last forward use and read
    them back just before their first backward use (when anything happens in between)."""
    loss_i = next(i for i, p in enumerate(program) if p.name == "loss")
    kinds = {k: kind for p in program for k, kind, _ in p.allocs}
    sizes = {k: nb for p in program[:loss_i] for k, _, nb in p.allocs}
    out_after: dict[int, list[ProgramOp]] = {}
    in_before: dict[int, list[ProgramOp]] = {}
    for key, kind in kinds.items():
        if kind not in ("activation", "input") or key not in sizes:
            continue
        fwd = [i for i, p in enumerate(program[:loss_i + 1])
               if key in p.reads or any(k == key for k, _, _ in p.allocs)]
        bwd = [i for i, p in enumerate(program) if i > loss_i and key in p.reads]
        if not bwd or bwd[0] - fwd[-1] <= 2:
            continue
        f, b = fwd[-1], bwd[0]
        nb = sizes[key]
        dt = "i8" if int8 else "f32"

        def out_run(key=key, nb=nb):
            values["flash:" + key] = values[key]
            return 0, nb(), nb()

        def in_run(key=key, nb=nb):
            values[key] = values.pop("flash:" + key)
            return 0, nb(), nb()

        skey = "s." + key
        out_after.setdefault(f, []).append(ProgramOp(f"swap_out.{key}", "flash_write", dt, out_run, [key]))
        in_before.setdefault(b, []).append(ProgramOp(f"swap_in.{key}", "flash_read", dt, in_run, [],
                                                     [(skey, kind, nb)]))
        for p in program[b:]:
            p.reads = [skey if r == key else r for r in p.reads]
    new: list[ProgramOp] = []
    for i, p in enumerate(program):
        new += in_before.get(i, [])
        new.append(p)
        new += out_after.get(i, [])
    return new


def prune_errors(e: np.ndarray, t: Techniques, rng: np.random.Generator) -> tuple[np.ndarray, int]:
    """Error-map pruning (zero entries with |e| < frac * max|e| of their own sample) and stochastic
    gradient pruning (entries under tau = grad_prune * max|e| of their sample become +-tau with
    probability |e|/tau, else 0: unbiased). Returns the pruned map and its non-zero count."""
    if e.size == 0:
        return e, 0
    m = np.abs(e).reshape(len(e), -1).max(axis=1).reshape((-1,) + (1,) * (e.ndim - 1))
    if t.error_map_prune is not None:
        e = np.where(np.abs(e) >= t.error_map_prune * m, e, 0).astype(e.dtype)
    if t.grad_prune is not None:
        tau = np.maximum(t.grad_prune * m, 1e-30)
        small = np.abs(e) < tau
        keep = rng.random(e.shape) < np.abs(e) / tau
        e = np.where(small, np.where(keep, np.sign(e) * tau, 0), e).astype(e.dtype)
    return e, int(np.count_nonzero(e))


def quantise_weights(model: Model) -> dict[int, float]:
    """Snap every weight array onto a fixed per-tensor int8 grid (scale 1.25 * max|W| / 127);
    returns the scale by ``id(W)`` for the stochastic rounding after each update."""
    scales: dict[int, float] = {}
    for layer in model.param_layers():
        W = layer.params[0]
        s = float(np.max(np.abs(W))) * 1.25 / 127.0 or 1.0 / 127.0
        scales[id(W)] = s
        W[...] = np.clip(np.rint(W / s), -127, 127) * s
    return scales


def stochastic_round(p: np.ndarray, s: float, rng: np.random.Generator) -> None:
    """Snap a weight array back onto its int8 grid of scale ``s`` with stochastic rounding."""
    v = p / s
    p[...] = np.clip(np.floor(v + rng.random(p.shape)), -127, 127) * s


def install_etf(model: Model, seed: int) -> frozenset[int]:
    """Set the classifier to a fixed simplex ETF with zero bias; returns the frozen parameter indices."""
    clf = model.layers[-1]
    W, b = clf.params
    W[...] = etf_matrix(W.shape[0], W.shape[1], seed)
    b[...] = 0.0
    params = model.parameters()
    return frozenset(i for i, p in enumerate(params) if p is W or p is b)
