"""Linear algebra over GF(2), vectorised over many small systems at once (the XOR format's encoder).

Rows are bit vectors packed into uint64 words (bit j of a row lives in word j // 64, bit j % 64). A batch of
systems ``A x = t`` (one per block; the equations of a block are its care bits, zero rows pad the batch) is
solved by Gauss-Jordan elimination: for each unknown, the first unused row with a 1 there becomes its pivot
and is XORed into every other row with a 1 there. Unknowns without a pivot are set to 0. A system may be
inconsistent: the returned x then satisfies the pivot rows, and the equations it misses are the patches.
"""
from __future__ import annotations

import numpy as np

U64 = np.uint64


def pack_rows(bits: np.ndarray) -> np.ndarray:
    """(..., n) bool/0-1 -> (..., ceil(n / 64)) uint64, bit j in word j // 64 at position j % 64."""
    bits = np.asarray(bits, bool)
    n = bits.shape[-1]
    words = (n + 63) // 64
    padded = np.zeros(bits.shape[:-1] + (words * 64,), np.uint8)
    padded[..., :n] = bits
    # little-endian bit order inside each byte, bytes little-endian inside each word
    by = np.packbits(padded.reshape(bits.shape[:-1] + (words, 64)), axis=-1, bitorder="little")
    return by.view("<u8").reshape(bits.shape[:-1] + (words,)).astype(U64)


def unpack_rows(words: np.ndarray, n: int) -> np.ndarray:
    """Inverse of ``pack_rows``: (..., W) uint64 -> (..., n) bool."""
    w = np.ascontiguousarray(words.astype("<u8"))
    by = w.view(np.uint8).reshape(w.shape[:-1] + (w.shape[-1] * 8,))
    return np.unpackbits(by, axis=-1, bitorder="little")[..., :n].astype(bool)


def solve(A: np.ndarray, t: np.ndarray) -> np.ndarray:
    """Solve a batch of systems over GF(2).

    A: (batch, rows, n) 0/1, t: (batch, rows) 0/1. Returns x: (batch, n) bool satisfying every pivot row;
    with a consistent system, every row. Vectorised over the batch; loops over the n unknowns.
    """
    A = np.asarray(A, bool)
    t = np.asarray(t, bool)
    nb, m, n = A.shape
    aug = np.concatenate([A, t[:, :, None]], axis=2)
    R = pack_rows(aug)                                   # (nb, m, W)
    used = np.zeros((nb, m), bool)
    pivot = np.full((nb, n), -1, np.int64)
    ar = np.arange(nb)
    one = U64(1)
    for j in range(n):
        w, b = divmod(j, 64)
        col = ((R[:, :, w] >> U64(b)) & one).astype(bool)
        cand = col & ~used
        has = cand.any(axis=1)
        if not has.any():
            continue
        p = cand.argmax(axis=1)
        prow = R[ar, p]                                  # (nb, W)
        hit = col & has[:, None]
        hit[ar, p] = False
        R ^= np.where(hit[:, :, None], prow[:, None, :], U64(0))
        used[ar[has], p[has]] = True
        pivot[has, j] = p[has]
    rhs = ((R[:, :, n // 64] >> U64(n % 64)) & one).astype(bool)   # (nb, m)
    x = np.zeros((nb, n), bool)
    ok = pivot >= 0
    bi, ji = np.nonzero(ok)
    x[bi, ji] = rhs[bi, pivot[bi, ji]]
    return x


def matvec(M: np.ndarray, X: np.ndarray) -> np.ndarray:
    """GF(2) products: M (m, n) 0/1 times each row of X (batch, n) -> (batch, m) bool."""
    return ((X.astype(np.int32) @ M.T.astype(np.int32)) & 1).astype(bool)
