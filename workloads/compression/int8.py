"""Integers per output channel: ``w = q * s[row]``, q symmetric in [-(2^(b-1)-1), 2^(b-1)-1], one float16
scale per output channel. ``bits`` 8 (default) or 4 (two per byte). Decode work: one multiply per weight
(plus one unpack per weight at 4 bits)."""
from __future__ import annotations

import numpy as np

from .base import (
    SCALE_BITS,
    Encoded,
    as_rows,
    check_bits,
    check_prune,
    from_rows,
    int_quant,
    int_values,
    magnitude_mask,
)

FORMAT = "int8"
BITS = (8, 4)


def encode(W: np.ndarray, *, prune: float = 0.0, bits: int | None = None, seed: int = 0) -> Encoded:
    b = check_bits(FORMAT, bits, BITS)
    prune = check_prune(prune)
    M = as_rows(W)
    mask = magnitude_mask(M, prune)
    q, s = int_quant(M, mask, b)
    ops = M.size * (1 if b == 8 else 2)
    return Encoded(FORMAT, tuple(np.shape(W)), {"values": b * q.size, "scales": SCALE_BITS * s.size},
                   int(mask.sum()), ops, {"q": q.astype(np.int8), "scales": s}, {"prune": prune, "value_bits": b})


def decode(enc: Encoded) -> np.ndarray:
    return from_rows(int_values(enc.data["q"], enc.data["scales"]), enc.shape)
