"""Noise-adaptive biases (after the seed's "noise-adaptive biases" CNN paper: counteract the accuracy drop
under input noise by adjusting only the neurons' biases to the noise level met at run time).

Why biases: sensor noise shifts the statistics of every layer's pre-activations -- the story's noise
(``datasets.sensor_noise``: a non-negative dark signal, clipped at the ADC's full scale) raises every
pixel, and after each ReLU the extra variance raises the mean activations too. A per-channel bias
offset undoes a per-channel mean shift exactly; that is what the table stores, one bias set per level.

On the device, per noise level:

1. **measure** (every step, ``measure``): the dark floor of each sample -- the mean of its darkest quarter
   of values -- above the clean data's floor (one constant stored at deployment), scaled to the noise
   std; a batch's level is the median rounded to ``LEVEL_STEP``.
2. **calibrate** (the level's first ``CALIB_BATCHES`` batches, no labels needed): one forward pass per
   batch; layer by layer, each ReLU layer's bias is moved by the per-channel offset that brings the
   fraction of the batch's positions where the channel fires (pre-activation > 0) back to its clean
   firing rate (stored at deployment: ``reference``): the offset is minus the batch's pre-activation
   quantile at 1 - rate. Later layers see the already-corrected earlier layers. The offsets are averaged
   over the calibration batches (a running mean). Why firing rates, not mean activations (the first
   version, bisection to the clean mean after the ReLU): the noise widens every pre-activation's spread,
   and matching the mean lets the extra spread through as weak activations everywhere; matching how
   often a channel fires keeps its noise floor below the threshold. On LeNet-digits at noise 0.3, seeds
   0-2 (held-in; 20 fresh noisy readings of the ~540 held-out digits, 8 calibration batches): 26 / 11 / 71 %
   of the lost accuracy back with the means, 30 / 18 / 74 % with rates.
3. **refine** (then ``steps_per_level`` steps on labelled samples): bias-only SGD from the calibrated set.
4. **reuse**: the level's set is kept; later batches at that level only measure (and switch sets).
   Inference keys the set to the level measured over the last 8 readings (``predict_levels``).

Clean inputs (level 0) keep the pre-trained biases. A level met for the first time starts from the
nearest visited level's set; at inference a level whose calibration is not finished uses the nearest
finished one.
"""
from __future__ import annotations

import numpy as np

LEVEL_STEP = 0.1        # noise levels are the measured std rounded to this step
MAX_LEVEL = 4           # levels 0..4 (std 0, 0.1, 0.2, 0.3, 0.4 and above)
CALIB_BATCHES = 16      # unlabelled batches per level for the statistics correction (8 before: seeds 0-2
                        # recovered 29 / 15 / 73 % of the loss with 8, 35 / 20 / 73 % with 16, 36 / 19 / 74 % with 24)
FLOOR_QUANTILE = 0.25   # the dark floor: mean of a sample's darkest quarter of values
# E[dark floor] per unit of noise std for the story's noise on the 8x8 digits (fit: 0.05..0.4)
FLOOR_PER_STD = 0.336
QUANTILE_PASSES = 2     # elements touched per pre-activation by a selection (the quantile): ~2 passes

F32 = np.float32


def dark_floor(xs: np.ndarray) -> np.ndarray:
    """Per sample: the mean of its darkest ``FLOOR_QUANTILE`` of values (samples first)."""
    x = np.sort(xs.reshape(len(xs), -1), axis=1)
    k = max(1, int(FLOOR_QUANTILE * x.shape[1]))
    return x[:, :k].mean(axis=1)


def measure(xs: np.ndarray, clean_floor: float) -> np.ndarray:
    """Per-sample noise std estimate, given ``dark_floor`` of clean data."""
    return np.maximum(0.0, dark_floor(xs) - clean_floor) / FLOOR_PER_STD


def level_of(sigma: float) -> int:
    """The noise level (bias-set index) of a measured std."""
    return int(min(MAX_LEVEL, max(0, round(sigma / LEVEL_STEP))))


def measure_elements(xs: np.ndarray) -> int:
    """Elements the measurement touches: a selection of the darkest quarter (~2 passes) and its sum."""
    return 3 * int(xs.size)


def _relu_layers(model) -> list:
    """The bias layers followed by a ReLU (the last, linear layer is left alone: its mean logits are class
    priors, not a noise statistic)."""
    return [ly for ly in model.param_layers() if getattr(ly, "relu", False)]


def _pre_activation(ly, a: np.ndarray) -> np.ndarray:
    relu, ly.relu = ly.relu, False
    try:
        return ly.forward(a)
    finally:
        ly.relu = relu


def reference(model, X: np.ndarray, batch: int = 512) -> list[np.ndarray]:
    """Per ReLU layer, the per-channel firing rate (fraction of positions with pre-activation > 0) on
    clean data (computed at deployment)."""
    sums = None
    for i in range(0, len(X), batch):
        a = model.to_internal(X[i:i + batch])
        outs = []
        for ly in model.layers:
            if ly.params and getattr(ly, "relu", False):
                z = _pre_activation(ly, a)
                outs.append((z > 0).reshape(-1, z.shape[-1]).mean(axis=0) * len(a))
                a = np.maximum(z, 0)
            else:
                a = ly.forward(a)
        sums = outs if sums is None else [s + o for s, o in zip(sums, outs, strict=True)]
    return [(s / len(X)).astype(F32) for s in sums]


def _offset(z: np.ndarray, rate: np.ndarray) -> np.ndarray:
    """Per channel, the offset d with mean(z + d > 0) = rate: minus the (1 - rate) quantile of the channel's
    pre-activations (a channel that never or always fired on clean data is left alone)."""
    zs = np.sort(z, axis=0)
    pos = np.clip(1.0 - rate, 0.0, 1.0) * (len(z) - 1)          # linear interpolation between order statistics
    lo = np.floor(pos).astype(int)
    hi = np.minimum(lo + 1, len(z) - 1)
    ch = np.arange(z.shape[1])
    q = zs[lo, ch] * (1 - (pos - lo)) + zs[hi, ch] * (pos - lo)
    return np.where((rate > 0) & (rate < 1), -q, 0.0).astype(F32)


def calibrate(model, ref: list[np.ndarray], xs: np.ndarray, weight: float) -> tuple[int, int]:
    """One calibration batch: layer by layer, move each ReLU layer's bias by ``weight`` times the offset
    that brings this batch's firing rates to ``ref``. Returns (forward MACs, elements the quantiles touch)."""
    a = model.to_internal(xs)
    macs = elements = 0
    j = 0
    for ly in model.layers:
        macs += ly.forward_macs(len(xs))
        if ly.params and getattr(ly, "relu", False):
            z = _pre_activation(ly, a)
            z2 = z.reshape(-1, z.shape[-1])
            d = _offset(z2, ref[j])
            ly.params[1] += weight * d
            a = np.maximum(z + weight * d, 0)
            elements += QUANTILE_PASSES * z2.size
            j += 1
        else:
            a = ly.forward(a)
    return macs, elements


class BiasTable:
    """One copy of every bias array per noise level; level 0 holds the pre-trained biases."""

    def __init__(self, model, steps_per_level: int, clean_floor: float, clean_X: np.ndarray):
        self.model = model
        self.clean_floor = clean_floor
        self.biases = [ly.params[1] for ly in model.param_layers()]       # the model's live bias arrays
        self.sets = [[b.copy() for b in self.biases] for _ in range(MAX_LEVEL + 1)]
        self.ref = reference(model, clean_X)
        self.calibrated = [0] * (MAX_LEVEL + 1)
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

    @property
    def reference_nbytes(self) -> int:
        """The clean reference firing rates (one float per ReLU layer channel) and the clean floor."""
        return int(sum(r.nbytes for r in self.ref)) + 4

    def _visited(self, level: int) -> bool:
        return level == 0 or self.calibrated[level] > 0 or self.steps[level] > 0

    def ready(self, level: int) -> bool:
        """Whether ``level``'s set is finished calibrating (level 0: the pre-trained set)."""
        return level == 0 or self.calibrated[level] >= CALIB_BATCHES

    def switch(self, level: int) -> None:
        """Store the live biases into the current level's set and load ``level``'s set (a level met for
        the first time starts from the nearest visited level's set)."""
        if level == self.current:
            return
        for s, b in zip(self.sets[self.current], self.biases, strict=True):
            s[...] = b
        if not self._visited(level):
            near = min((lv for lv in range(MAX_LEVEL + 1) if self._visited(lv) and lv != level),
                       key=lambda lv: (abs(lv - level), -lv))
            for s, t in zip(self.sets[level], self.sets[near], strict=True):
                s[...] = t
        for s, b in zip(self.sets[level], self.biases, strict=True):
            b[...] = s
        self.current = level

    def calibrating(self, level: int) -> bool:
        """Whether a batch at ``level`` goes to the statistics correction (level 0 never does)."""
        return level > 0 and self.calibrated[level] < CALIB_BATCHES

    def calibrate(self, xs: np.ndarray) -> tuple[int, int]:
        """One calibration batch at the current level (running mean of the offsets)."""
        lv = self.current
        self.calibrated[lv] += 1
        return calibrate(self.model, self.ref, xs, 1.0 / self.calibrated[lv])

    def trains(self, level: int) -> bool:
        """Whether a step at ``level`` still adapts (level 0 never does: clean data keeps the pre-training)."""
        return level > 0 and self.steps[level] < self.steps_per_level

    def predict_levels(self, model, xs: np.ndarray, quant: bool = False, window: int = 8) -> np.ndarray:
        """Classes for a sequence of readings (host side), each with the bias set of the noise level
        measured over its window of ``window`` consecutive readings (the median, as for a training batch:
        the sensor's noise changes slowly, one reading's estimate is rough)."""
        sig = measure(xs, self.clean_floor)
        levels = np.repeat([level_of(float(np.median(sig[i:i + window]))) for i in range(0, len(sig), window)],
                           window)[:len(sig)]
        out = np.zeros(len(xs), int)
        keep = self.current
        for lv in np.unique(levels):
            use = int(lv)
            if not self.ready(use):         # a level not (fully) calibrated borrows the nearest ready one
                use = min((v for v in range(MAX_LEVEL + 1) if self.ready(v)), key=lambda v: (abs(v - use), -v))
            self.switch(use)
            sel = levels == lv
            out[sel] = model.predict(xs[sel], quant)
        self.switch(keep)
        return out
