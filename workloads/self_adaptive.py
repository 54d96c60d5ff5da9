"""Self-adaptive training (Huang, Zhang & Zhang, "Self-Adaptive Training: beyond Empirical Risk
Minimization", NeurIPS 2020): each training sample's target is a running mix of its given label and the
model's own predictions, and samples whose target is confident weigh more.

Per sample i (its target ``t_i`` starts as the one-hot given label):
``t_i <- M * t_i + (1 - M) * p_i`` (p_i: the model's softmax, not differentiated); ``w_i = max_j t_ij``,
rescaled so the batch's weights sum to the batch size; loss ``-sum_i w_i sum_j t_ij log p_ij / n``.
As in the paper, the first ``start`` updates are plain cross-entropy (a warm-up: the pre-trained model
has not yet seen the user's data, so its early predictions on it are poor teachers). The targets are per-sample state kept on the device for the whole run (``nbytes``).
"""
from __future__ import annotations

import numpy as np


class SelfAdaptiveTargets:
    """Running soft targets for ``n_samples`` known samples of ``n_classes`` classes, momentum ``m``."""

    def __init__(self, n_samples: int, n_classes: int, momentum: float, start: int = 0):
        if not 0 <= momentum < 1:
            raise ValueError(f"techniques.self_adaptive must be a momentum in [0, 1) (got {momentum})")
        self.m = momentum
        self.t = np.zeros((n_samples, n_classes), np.float32)
        self.seen = np.zeros(n_samples, bool)
        self.start, self.calls = start, 0       # plain cross-entropy for the first ``start`` updates

    @property
    def nbytes(self) -> int:
        return int(self.t.nbytes)

    def update(self, idx: np.ndarray, labels: np.ndarray, probs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Mix the batch's predictions into its samples' targets; returns (targets (n, K), weights (n,)).
        ``idx`` -1: a sample with no state (its target is its one-hot label, mixed once)."""
        n, k = probs.shape
        self.calls += 1
        onehot = np.zeros((n, k), np.float32)
        onehot[np.arange(n), labels] = 1.0
        known = idx >= 0
        prev = onehot.copy()
        ki = idx[known]
        fresh = ~self.seen[ki]
        self.t[ki[fresh]] = onehot[known][fresh]
        self.seen[ki] = True
        prev[known] = self.t[ki]
        if self.calls <= self.start:
            return onehot, np.ones(n, np.float32)
        targets = (self.m * prev + (1.0 - self.m) * probs).astype(np.float32)
        self.t[ki] = targets[known]
        w = targets.max(axis=1)
        w = w * (n / w.sum())
        return targets, w.astype(np.float32)


def elements(n: int, k: int) -> int:
    """Elements the update touches: read target and prediction, mix, write back, row max, rescale."""
    return 4 * n * k + 2 * n
