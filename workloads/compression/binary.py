"""Binary coding: ``w = sum_k alpha[k, row] * b_k``, b_k in {-1, +1}, one bit-plane per quantisation bit
and one float16 scale per output channel and plane (``bits`` 1 = sign and a per-row scale). Bit-planes are
stored packed (np.packbits). Decode work: one select-and-add per weight and plane."""
from __future__ import annotations

import numpy as np

from .base import (
    SCALE_BITS,
    Encoded,
    as_rows,
    binary_code,
    binary_values,
    check_bits,
    check_prune,
    from_rows,
    magnitude_mask,
)

FORMAT = "binary"
BITS = (1, 2, 3, 4)


def encode(W: np.ndarray, *, prune: float = 0.0, bits: int | None = None, seed: int = 0) -> Encoded:
    b = check_bits(FORMAT, bits, BITS)
    prune = check_prune(prune)
    M = as_rows(W)
    mask = magnitude_mask(M, prune)
    planes, alphas = binary_code(M, mask, b)
    data = {"planes": np.packbits(planes.reshape(b, -1), axis=1), "alphas": alphas, "rows_cols": M.shape}
    # a pruned weight still needs its place in a dense bit-plane: the mask (1 bit/weight) is stored when pruning
    index = M.size if prune > 0 else 0
    if prune > 0:
        data["mask"] = np.packbits(mask.ravel())
    bits_ = {"values": b * M.size, "scales": SCALE_BITS * alphas.size, "index": index}
    return Encoded(FORMAT, tuple(np.shape(W)), bits_, int(mask.sum()), b * M.size + (M.size if prune > 0 else 0),
                   data, {"prune": prune, "value_bits": b})


def decode(enc: Encoded) -> np.ndarray:
    rows, cols = enc.data["rows_cols"]
    b = enc.data["alphas"].shape[0]
    planes = np.unpackbits(enc.data["planes"], axis=1, count=rows * cols).astype(bool).reshape(b, rows, cols)
    if "mask" in enc.data:
        mask = np.unpackbits(enc.data["mask"], count=rows * cols).astype(bool).reshape(rows, cols)
    else:
        mask = np.ones((rows, cols), bool)
    return from_rows(binary_values(planes, enc.data["alphas"], mask), enc.shape)
