"""Optimisers that update parameter arrays in place, optionally only some output units/channels.

SGD (PyTorch convention): ``v = momentum * v + g; w -= lr * v`` (momentum 0: plain ``w -= lr * g``, no
state). Adam: the usual bias-corrected moments. ``cols`` restricts an update to indices on the last
axis (output units of a Dense W (in, out), output channels of a conv W, entries of a bias).
"""
from __future__ import annotations

import numpy as np


class SGD:
    """Stochastic gradient descent with optional momentum (one state array per parameter)."""

    def __init__(self, lr: float = 0.05, momentum: float = 0.0):
        if lr <= 0:
            raise ValueError(f"optimizer lr must be > 0 (got {lr})")
        if not 0 <= momentum < 1:
            raise ValueError(f"optimizer momentum must be in [0, 1) (got {momentum})")
        self.lr, self.momentum = lr, momentum

    def state_for(self, p: np.ndarray) -> list[np.ndarray]:
        return [np.zeros_like(p)] if self.momentum else []

    def step(self, p: np.ndarray, g: np.ndarray, state: list[np.ndarray], cols: np.ndarray | None = None) -> None:
        if cols is None:
            if self.momentum:
                v = state[0]
                v *= self.momentum
                v += g
                g = v
            p -= self.lr * g
            return
        if self.momentum:
            v = state[0]
            v[..., cols] = self.momentum * v[..., cols] + g
            g = v[..., cols]
        p[..., cols] -= self.lr * g


class Adam:
    """Adam (Kingma & Ba): two state arrays per parameter plus a step counter per parameter."""

    def __init__(self, lr: float = 1e-3, beta1: float = 0.9, beta2: float = 0.999, eps: float = 1e-8):
        if lr <= 0:
            raise ValueError(f"optimizer lr must be > 0 (got {lr})")
        self.lr, self.b1, self.b2, self.eps = lr, beta1, beta2, eps
        self._t: dict[int, int] = {}

    def state_for(self, p: np.ndarray) -> list[np.ndarray]:
        return [np.zeros_like(p), np.zeros_like(p)]

    def step(self, p: np.ndarray, g: np.ndarray, state: list[np.ndarray], cols: np.ndarray | None = None) -> None:
        m, v = state
        t = self._t[id(m)] = self._t.get(id(m), 0) + 1
        sel = (...,) if cols is None else (..., cols)
        m[sel] = self.b1 * m[sel] + (1 - self.b1) * g
        v[sel] = self.b2 * v[sel] + (1 - self.b2) * (g * g)
        mh = m[sel] / (1 - self.b1 ** t)
        vh = v[sel] / (1 - self.b2 ** t)
        p[sel] -= (self.lr * mh / (np.sqrt(vh) + self.eps)).astype(p.dtype)


OPTIMIZERS = ("sgd", "adam")   # the names make_optimizer takes: the one list (scenarios validate against it)


def make_optimizer(name: str, lr: float, momentum: float):
    """'sgd' or 'adam' by name; errors name the value."""
    if name == "sgd":
        return SGD(lr, momentum)
    if name == "adam":
        return Adam(lr)
    raise ValueError(f"optimizer must be one of {', '.join(OPTIMIZERS)} (got {name!r})")
