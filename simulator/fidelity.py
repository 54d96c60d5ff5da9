"""Fidelity: which training steps and inferences run the job's real numpy, and which are charged from
recorded traces (docs/architecture.md §3).

``full``: every step and every inference is real. ``auto`` (the default): every step is real for at least
the first simulated day (``REAL_DAYS``) and then while the learning curve still moves: until the mean loss
of the last ``FLAT_ROUNDS`` training rounds differs from the ``FLAT_ROUNDS`` before by less than
``FLAT_CHANGE`` (relative), or for ``fidelity.real_rounds`` rounds when the scenario states a number, and
at most ``MAX_REAL_DAYS``. After that a step is charged from a recorded real step's trace: the last one
for a data-independent trace (exact: every real step had the same ops); for data-dependent techniques
(instance filtering, pruning) a seeded draw from the last ``RECORDS`` real steps, i.e. from the measured
distribution of skipped work. Inferences are then charged from the recorded inference trace. Energy,
battery, RAM, flash wear and deadlines still come from every step and inference; losses, accuracy and
online accuracy come from real steps and inferences only (the weights stop changing when replay starts).
"""
from __future__ import annotations

import random
from collections import deque

from workloads.trace import Op

from .config import FidelityConfig

REAL_DAYS = 1.0        # every step real for at least this many simulated days (a 1-day run is all real)
MAX_REAL_DAYS = 3.0    # ... and at most this many, however noisy the loss curve stays
FLAT_ROUNDS = 4
FLAT_CHANGE = 0.05
RECORDS = 64
DAY_S = 86400.0


def replayable(ops: list[Op]) -> bool:
    """A trace can be charged again only if it frees everything it allocates (RAM returns to where it was)."""
    alloc = {t.id for op in ops for t in op.alloc}
    freed = {tid for op in ops for tid in op.free}
    return alloc <= freed


class Fidelity:
    """Decides when replay starts and holds the recorded traces to charge from."""

    def __init__(self, cfg: FidelityConfig, seed: int) -> None:
        self.mode = cfg.mode
        self.real_rounds = cfg.real_rounds
        self.replaying = False
        self.replay_from_s: float | None = None
        self._rng = random.Random(seed + 104729)
        self._steps: deque[list[Op]] = deque(maxlen=RECORDS)
        self._uniform = True          # every recorded step trace has the same ops (data-independent)
        self._infer_ops: list[Op] | None = None
        self._round_means: list[float] = []
        self._round_losses: list[float] = []
        self._ok = True               # every trace so far can be replayed
        self.last_round_s = 0.0       # when the last training round ended (its phase tells repeated days apart)

    # --- recording ---------------------------------------------------------------------------------

    def record_step(self, ops: list[Op], loss: float) -> None:
        self._round_losses.append(loss)
        if self.mode == "full":
            return
        self._ok = self._ok and replayable(ops)
        if self._steps and self._uniform:
            self._uniform = _same(self._steps[-1], ops)
        self._steps.append(ops)

    def record_inference(self, ops: list[Op]) -> None:
        if self.mode == "full" or self._infer_ops is not None:
            return
        self._ok = self._ok and replayable(ops)
        self._infer_ops = ops

    # --- charging ------------------------------------------------------------------------------------

    def step_trace(self) -> list[Op]:
        """A recorded step trace to charge a replayed step from."""
        if self._uniform:
            return self._steps[-1]
        return self._steps[self._rng.randrange(len(self._steps))]

    def inference_trace(self) -> list[Op]:
        return self._infer_ops

    @property
    def uniform(self) -> bool:
        """Every recorded step had the same ops: a real step costs exactly what a charged one does."""
        return self._uniform and bool(self._steps)

    # --- when to start -------------------------------------------------------------------------------

    def end_round(self, now: float) -> None:
        """A training round (one trigger's steps) ended at ``now``: start replay if the curve is flat."""
        self.last_round_s = now
        if self._round_losses:
            self._round_means.append(sum(self._round_losses) / len(self._round_losses))
            self._round_losses = []
        if self.replaying or self.mode == "full" or now < REAL_DAYS * DAY_S:
            return
        if not self._ok or not self._steps or self._infer_ops is None:
            return
        if self.real_rounds:
            go = len(self._round_means) >= self.real_rounds
        else:
            go = now >= MAX_REAL_DAYS * DAY_S or _flat(self._round_means)
        if go:
            self.replaying = True
            self.replay_from_s = now


def _flat(means: list[float]) -> bool:
    if len(means) < 2 * FLAT_ROUNDS:
        return False
    last = sum(means[-FLAT_ROUNDS:]) / FLAT_ROUNDS
    prev = sum(means[-2 * FLAT_ROUNDS:-FLAT_ROUNDS]) / FLAT_ROUNDS
    return abs(last - prev) <= FLAT_CHANGE * abs(prev)


def _same(a: list[Op], b: list[Op]) -> bool:
    """Same cost and memory: op names, kinds, MACs, bytes moved and allocation sizes."""
    if len(a) != len(b):
        return False
    for x, y in zip(a, b, strict=True):
        if (x.name, x.kind, x.macs, x.bytes_read, x.bytes_written, x.dtype) != \
                (y.name, y.kind, y.macs, y.bytes_read, y.bytes_written, y.dtype):
            return False
        if [t.nbytes for t in x.alloc] != [t.nbytes for t in y.alloc] or len(x.free) != len(y.free):
            return False
    return True

