"""Low-rank binary index: the pruning mask of each tile is the Boolean product of two binary matrices,
``mask_tile = U (tr x r) o V (r x tc)`` (entry (i, j) kept iff some k has U[i, k] and V[k, j]), i.e. the
union of r "rectangles" (a set of output channels times a set of inputs). Only U and V are stored:
``r * (tr + tc)`` bits per tile plus a rank field, against CSR's ``ceil(log2 cols)`` bits per kept weight.

The search (per layer): importance ``A = w**2``. For a threshold lam, each tile greedily picks up to r
rectangles, each maximising ``sum over its not-yet-covered entries of (A - lam)`` by alternating
maximisation (given the columns, take every row whose gain over them is positive; given the rows, the
columns likewise; from the 4 rows with the most positive gain as starts, at most 8 rounds each); a
rectangle with no positive gain is not taken (the tile's rank drops). lam is bisected so the layer keeps as
close as possible to ``keep_count(n, prune)`` weights. The mask that results differs from magnitude
pruning: the weights it keeps that magnitude pruning would drop (``extra_kept``) and those it drops that
magnitude pruning would keep (``extra_pruned``) are counted, and the kept values are stored like CSR's
(float32, int8 per row or 1-bit sign + row scale) in row-major mask order, without column indices.
Decode work: per tile row and rank, a select and an OR per 32-column word, then a zero fill per weight and
a value load and store (+ a multiply when quantised) per kept weight.
"""
from __future__ import annotations

import numpy as np

from .base import (
    Encoded,
    as_rows,
    check_bits,
    check_prune,
    from_rows,
    keep_count,
    kept_values,
    magnitude_mask,
    scatter,
    width,
)

FORMAT = "lowrank"
BITS = (32, 8, 1)
RANK = 4            # rectangles per tile (at most)
TILE = 64           # tile edge (rows and columns)
_STARTS = 4
_ROUNDS = 8
_BISECT = 40


def _rectangles(G: np.ndarray, rank: int) -> tuple[np.ndarray, np.ndarray]:
    """Greedy union of up to ``rank`` rectangles on a gain matrix G (modified: covered entries become 0).
    Returns U (tr, r) and V (r, tc) boolean."""
    us, vs = [], []
    for _ in range(rank):
        pos = np.maximum(G, 0).sum(axis=1)
        starts = np.argsort(-pos, kind="stable")[:_STARTS]
        best, best_gain = None, 0.0
        for i0 in starts:
            if pos[i0] <= 0:
                break
            Cs = G[i0] > 0
            Rs = np.zeros(G.shape[0], bool)
            for _r in range(_ROUNDS):
                rows2 = G[:, Cs].sum(axis=1) > 0
                if not rows2.any():
                    break
                cols2 = G[rows2].sum(axis=0) > 0
                if (rows2 == Rs).all() and (cols2 == Cs).all():
                    break
                Rs, Cs = rows2, cols2
            if not Rs.any() or not Cs.any():
                continue
            gain = float(G[np.ix_(Rs, Cs)].sum())
            if gain > best_gain:
                best, best_gain = (Rs.copy(), Cs.copy()), gain
        if best is None:
            break
        Rs, Cs = best
        us.append(Rs)
        vs.append(Cs)
        G[np.ix_(Rs, Cs)] = 0.0
    tr, tc = G.shape
    U = np.stack(us, axis=1) if us else np.zeros((tr, 0), bool)
    V = np.stack(vs, axis=0) if vs else np.zeros((0, tc), bool)
    return U, V


def _tiles(rows: int, cols: int, tile: int):
    for r0 in range(0, rows, tile):
        for c0 in range(0, cols, tile):
            yield slice(r0, min(r0 + tile, rows)), slice(c0, min(c0 + tile, cols))


def boolean_product(U: np.ndarray, V: np.ndarray) -> np.ndarray:
    """(tr, r) o (r, tc) over the Boolean semiring."""
    return (U.astype(np.int32) @ V.astype(np.int32)) > 0


def _masks(A: np.ndarray, lam: float, rank: int, tile: int):
    mask = np.zeros(A.shape, bool)
    factors = []
    for rs, cs in _tiles(*A.shape, tile):
        U, V = _rectangles(A[rs, cs] - lam, rank)
        factors.append((rs.start, cs.start, U, V))
        mask[rs, cs] = boolean_product(U, V)
    return mask, factors


def find_mask(M: np.ndarray, prune: float, rank: int = RANK, tile: int = TILE) -> tuple[np.ndarray, list, dict]:
    """The searched mask, its factors [(row0, col0, U, V) per tile] and the statistics that count it honestly."""
    if rank < 1 or tile < 2:
        raise ValueError(f"lowrank: rank must be >= 1 and tile >= 2 (got rank {rank}, tile {tile})")
    mag = magnitude_mask(M, prune)
    k = keep_count(M.size, prune)
    A = (M.astype(np.float64)) ** 2
    lo, hi = 0.0, float(A.max()) + 1.0
    best = None
    for _ in range(_BISECT):
        lam = 0.5 * (lo + hi)
        mask, factors = _masks(A, lam, rank, tile)
        cnt = int(mask.sum())
        if best is None or abs(cnt - k) < abs(best[0].sum() - k):
            best = (mask, factors)
        if cnt == k:
            break
        if cnt > k:
            lo = lam
        else:
            hi = lam
    mask, factors = best
    if not mask.any():
        raise ValueError(f"--format lowrank: no rank-{rank} mask keeps a weight of this layer at --prune {prune}")
    stats = {"target_kept": k, "extra_kept": int((mask & ~mag).sum()), "extra_pruned": int((mag & ~mask).sum()),
             "importance_kept": float(A[mask].sum() / max(A[mag].sum(), 1e-30))}
    return mask, factors, stats


def index_bits(factors: list, rank: int) -> int:
    """Bits of the stored factors: per tile a rank field and r * (rows + cols) bits."""
    return sum(width(rank + 1) + U.shape[1] * (U.shape[0] + V.shape[1]) for _, _, U, V in factors)


def mask_ops(factors: list) -> int:
    """Word operations that rebuild the mask: per tile row and rank, a select and an OR per 32-column word."""
    return sum(U.shape[0] * U.shape[1] * 2 * (-(-V.shape[1] // 32)) for _, _, U, V in factors)


def rebuild(factors: list, shape: tuple[int, int]) -> np.ndarray:
    mask = np.zeros(shape, bool)
    for r0, c0, U, V in factors:
        mask[r0:r0 + U.shape[0], c0:c0 + V.shape[1]] = boolean_product(U, V)
    return mask


def encode(W: np.ndarray, *, prune: float = 0.0, bits: int | None = None, seed: int = 0, rank: int = RANK,
           tile: int = TILE) -> Encoded:
    vb = check_bits(FORMAT, bits, BITS)
    prune = check_prune(prune)
    M = as_rows(W)
    mask, factors, stats = find_mask(M, prune, rank, tile)
    vals, scales, b = kept_values(M, mask, vb)
    b["index"] = index_bits(factors, rank)
    k = vals.size
    ops = mask_ops(factors) + M.size + k * (2 + (vb != 32))
    data = {"values": vals, "scales": scales, "factors": factors, "rows_cols": M.shape}
    return Encoded(FORMAT, tuple(np.shape(W)), b, k, ops, data,
                   {"prune": prune, "value_bits": vb, "rank": rank, "tile": tile, **stats})


def decode(enc: Encoded) -> np.ndarray:
    mask = rebuild(enc.data["factors"], enc.data["rows_cols"])
    return from_rows(scatter(mask, enc.data["values"]), enc.shape)
