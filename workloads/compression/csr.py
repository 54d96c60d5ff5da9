"""Magnitude pruning stored as compressed sparse rows: the kept values (float32, int8 per row, or 1-bit sign
with a per-row scale: ``bits`` 32 / 8 / 1), a column index per kept value (``ceil(log2 cols)`` bits) and a
row pointer per output channel plus one (``ceil(log2 (kept + 1))`` bits): the index overhead is counted.
Decode work (to a dense buffer): a zero fill per weight, then per kept weight an index load, a value load
and a store (+ a multiply when quantised), and one pointer load per row."""
from __future__ import annotations

import numpy as np

from .base import Encoded, as_rows, check_bits, check_prune, from_rows, kept_values, magnitude_mask, scatter, width

FORMAT = "csr"
BITS = (32, 8, 1)


def index_bits(rows: int, cols: int, kept: int) -> int:
    """Bits of a CSR index: column indices and row pointers."""
    return kept * width(cols) + (rows + 1) * width(kept + 1)


def encode_mask(M: np.ndarray, mask: np.ndarray, vbits: int, fmt: str = FORMAT, prune: float = 0.0,
                extra: dict | None = None) -> Encoded:
    """CSR of a given mask (shared with the low-rank format's value storage)."""
    rows, cols = M.shape
    vals, scales, bits = kept_values(M, mask, vbits)
    r, c = np.nonzero(mask)
    rowptr = np.concatenate([[0], np.cumsum(np.bincount(r, minlength=rows))]).astype(np.int32)
    k = vals.size
    bits["index"] = index_bits(rows, cols, k)
    ops = M.size + k * (3 + (vbits != 32)) + rows + 1
    data = {"values": vals, "scales": scales, "col": c.astype(np.int32), "rowptr": rowptr, "rows_cols": (rows, cols)}
    return Encoded(fmt, (), bits, k, ops, data, {"prune": prune, "value_bits": vbits, **(extra or {})})


def encode(W: np.ndarray, *, prune: float = 0.0, bits: int | None = None, seed: int = 0) -> Encoded:
    vb = check_bits(FORMAT, bits, BITS)
    prune = check_prune(prune)
    M = as_rows(W)
    enc = encode_mask(M, magnitude_mask(M, prune), vb, prune=prune)
    enc.shape = tuple(np.shape(W))
    return enc


def dense_mask(enc: Encoded) -> np.ndarray:
    """The kept positions, rebuilt from the row pointers and column indices."""
    rows, cols = enc.data["rows_cols"]
    r = np.repeat(np.arange(rows), np.diff(enc.data["rowptr"]))
    mask = np.zeros((rows, cols), bool)
    mask[r, enc.data["col"]] = True
    return mask


def decode(enc: Encoded) -> np.ndarray:
    return from_rows(scatter(dense_mask(enc), enc.data["values"]), enc.shape)
