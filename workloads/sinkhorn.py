"""Sinkhorn label allocation: pseudo-labels for unlabelled samples as optimal transport (Tai, Bailis &
Valiant, "Sinkhorn Label Allocation", ICML 2021).

Samples (rows, mass 1 each) are transported to classes (columns) at cost ``-log p(class | sample)``.
Class ``c`` takes at most ``upper[c] * n`` of the mass (class-proportion bounds); a dummy "not
allocated" column takes what is left beyond ``rho * n`` (the allocation fraction), and a dummy row
absorbs unused class capacity, so the problem is balanced. The entropic problem is solved by ``iters``
Sinkhorn iterations in the log domain; each sample's row of the plan, without the dummy column, is its
soft pseudo-label (it sums to the mass allocated to real classes).
"""
from __future__ import annotations

import numpy as np


def _logsumexp(a: np.ndarray, axis: int) -> np.ndarray:
    m = a.max(axis=axis, keepdims=True)
    return (m + np.log(np.exp(a - m).sum(axis=axis, keepdims=True))).squeeze(axis)


def allocate(log_p: np.ndarray, upper: np.ndarray, rho: float, iters: int, reg: float = 10.0) -> np.ndarray:
    """The (n, C) allocation plan for an (n, C) matrix of log-probabilities: row i says how much of
    sample i goes to each class (sum <= 1); column c sums to at most ``upper[c] * n``; ``rho * n`` of the
    mass goes to real classes in total (when the bounds allow it). ``reg`` sharpens the plan."""
    n, k = log_p.shape
    if n == 0:
        return np.zeros((0, k))
    upper = np.asarray(upper, float)
    cap = np.concatenate([upper * n, [n * (1.0 - rho)]])           # class capacities + "not allocated"
    extra = cap.sum() - n                                           # the dummy row's mass
    if extra < 0:
        raise ValueError(f"sinkhorn: class bounds sum to {upper.sum():.3f} < allocation fraction {rho}")
    rows = np.concatenate([np.ones(n), [max(extra, 1e-12)]])
    logits = np.zeros((n + 1, k + 1))
    logits[:n, :k] = reg * log_p                                    # -reg * cost; dummies cost 0
    log_r, log_c = np.log(rows), np.log(np.maximum(cap, 1e-12))
    f, g = np.zeros(n + 1), np.zeros(k + 1)
    for _ in range(iters):
        f = log_r - _logsumexp(logits + g[None, :], axis=1)
        g = log_c - _logsumexp(logits + f[:, None], axis=0)
    plan = np.exp(logits + f[:, None] + g[None, :])
    rowsum = plan[:n].sum(axis=1, keepdims=True)
    return plan[:n, :k] / np.maximum(rowsum, 1e-12)                 # rows of the real samples, mass 1 each


def elements(n: int, k: int, iters: int) -> int:
    """Elements the solver touches (exp + add per plan entry, twice per iteration, plus the plan)."""
    return (2 * iters + 1) * (n + 1) * (k + 1)
