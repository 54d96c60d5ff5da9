"""Dense float32: the reference format, 32 bits per weight. Pruned weights (``prune`` > 0) are stored as
zeros, so pruning saves no flash here. Decoding is reading: 0 decode operations."""
from __future__ import annotations

import numpy as np

from .base import Encoded, as_rows, check_bits, check_prune, from_rows, magnitude_mask

FORMAT = "f32"
BITS = (32,)


def encode(W: np.ndarray, *, prune: float = 0.0, bits: int | None = None, seed: int = 0) -> Encoded:
    check_bits(FORMAT, bits, BITS)
    prune = check_prune(prune)
    M = as_rows(W)
    mask = magnitude_mask(M, prune)
    vals = np.where(mask, M, np.float32(0)).astype(np.float32)
    return Encoded(FORMAT, tuple(np.shape(W)), {"values": 32 * vals.size}, int(mask.sum()), 0,
                   {"values": vals}, {"prune": prune, "value_bits": 32})


def decode(enc: Encoded) -> np.ndarray:
    return from_rows(enc.data["values"], enc.shape)
