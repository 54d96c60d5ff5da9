"""Noise-adaptive biases (after "Noise-adaptive biases", the seed's CNN-under-noise paper): the device
measures the sensor noise it meets and keeps one set of biases per noise level; at a new level it adapts
only the biases (a bias-only update) for a few steps, then reuses that set whenever the level returns.
Clean inputs keep the pre-trained biases (level 0 is never overwritten by noisy data).

Noise is measured per sample from neighbouring-value differences: additive white noise of std s adds
s^2 to half the mean squared difference of neighbours, so ``s = sqrt(max(0, v - v_clean))`` with
``v = mean(diff(x)^2) / 2`` and ``v_clean`` the same figure on clean population data (one constant,
measured when the model is deployed). On the 8x8 digits it reads 0.03 / 0.19 / 0.39 / 0.49 for true
std 0 / 0.2 / 0.4 / 0.5 (per-sample spread 0.05-0.07).
"""
from __future__ import annotations

import numpy as np

LEVEL_STEP = 0.2        # noise levels are the measured std rounded to this step
MAX_LEVEL = 4           # levels 0..4 (std 0, 0.2, 0.4, 0.6, 0.8 and above)


def roughness(xs: np.ndarray) -> np.ndarray:
    """Half the mean squared difference of neighbouring values, per sample (samples first)."""
    x = xs.reshape(len(xs), -1)
    return (np.diff(x, axis=1) ** 2).mean(axis=1) / 2.0


def measure(xs: np.ndarray, clean_roughness: float) -> np.ndarray:
    """Per-sample noise std estimate of a batch, given ``roughness`` of clean data."""
    return np.sqrt(np.maximum(0.0, roughness(xs) - clean_roughness))


def level_of(sigma: float) -> int:
    """The noise level (bias-set index) of a measured std."""
    return int(min(MAX_LEVEL, max(0, round(sigma / LEVEL_STEP))))


def measure_elements(xs: np.ndarray) -> int:
    """Elements the measurement touches: a difference, a square and a sum per value."""
    return 3 * int(xs.size)


class BiasTable:
    """One copy of every bias array per noise level; level 0 holds the pre-trained biases."""

    def __init__(self, biases: list[np.ndarray], steps_per_level: int, clean_roughness: float):
        self.clean_roughness = clean_roughness
        self.biases = biases                                     # the model's live bias arrays
        self.sets = [[b.copy() for b in biases] for _ in range(MAX_LEVEL + 1)]
        self.steps = [0] * (MAX_LEVEL + 1)
        self.steps_per_level = steps_per_level
        self.current = 0
        self.last_loss = [float("nan")] * (MAX_LEVEL + 1)

    @property
    def set_nbytes(self) -> int:
        return int(sum(b.nbytes for b in self.biases))

    @property
    def nbytes(self) -> int:
        """The table kept on the device: every level's bias set."""
        return self.set_nbytes * (MAX_LEVEL + 1)

    def switch(self, level: int) -> None:
        """Store the live biases into the current level's set and load ``level``'s set."""
        if level == self.current:
            return
        for s, b in zip(self.sets[self.current], self.biases, strict=True):
            s[...] = b
        for s, b in zip(self.sets[level], self.biases, strict=True):
            b[...] = s
        self.current = level

    def trains(self, level: int) -> bool:
        """Whether a step at ``level`` still adapts (level 0 never does: clean data keeps the pre-training)."""
        return level > 0 and self.steps[level] < self.steps_per_level

    def predict_levels(self, model, xs: np.ndarray, quant: bool = False) -> np.ndarray:
        """Classes for a batch, each sample with the bias set of its measured noise level (host side)."""
        levels = np.array([level_of(s) for s in measure(xs, self.clean_roughness)])
        out = np.zeros(len(xs), int)
        keep = self.current
        for lv in np.unique(levels):
            self.switch(int(lv))
            sel = levels == lv
            out[sel] = model.predict(xs[sel], quant)
        self.switch(keep)
        return out
