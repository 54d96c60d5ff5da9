"""What the simulator drives: a personalisation training job (docs/architecture.md §1, §3).

``workloads.make_job(...)`` returns an object with this interface. The simulator only iterates the
generators and reads the numbers; it never looks inside the model.
"""
from __future__ import annotations

from collections.abc import Generator, Iterator
from typing import Protocol

import numpy as np

from .trace import Op, Tensor


class TrainingJob(Protocol):
    name: str            # the workload spec, e.g. "mlp:64-32-10"
    input_shape: tuple[int, ...]
    num_classes: int

    def persistent_tensors(self) -> tuple[Tensor, ...]:
        """Buffers live for the whole run: weights, biases, optimiser state (kinds weight/bias/optim)."""

    def trainable_bytes(self) -> int:
        """Bytes of the parameters training changes: what a checkpoint writes to flash."""

    def flash_bytes(self) -> int:
        """Bytes of the model as stored in flash (all parameters, in the stored dtype)."""

    def labelled_stream(self) -> Iterator[tuple[np.ndarray, int]]:
        """The user's labelled samples in arrival order (cycles forever, seeded)."""

    def infer(self, x: np.ndarray) -> Generator[Op, None, int]:
        """Forward pass of one sample; yields its ops, returns the predicted class. Frees all it allocs."""

    def train_step(self, xs: np.ndarray, ys: np.ndarray) -> Generator[Op, None, float]:
        """One training step on a batch; yields ops, updates the weights, returns the batch loss.
        Every tensor it allocates is freed by its last op."""

    def evaluate(self) -> dict[str, float]:
        """{'user_accuracy': ..., 'retention_accuracy': ...} on held-out data, host-side, untraced."""
