"""The XOR-decodable sparse-quantised format (the seed paper's "weight encryption").

Encoding, per layer: prune by magnitude (or take the low-rank index's mask), binary-code the kept weights
into ``bits`` bit-planes (``base.binary_code``; one float16 scale per output channel and plane). Each plane,
flattened row-major, is cut into blocks of ``N_out`` bits. A fixed pseudo-random binary matrix ``X``
(``N_out x N_in``, generated from the layer's stored seed) expands each block's ``N_in`` stored bits ``x``
into ``X x`` over GF(2): every output bit is the XOR of the stored bits its row selects. The encoder solves
``X[care] x = plane[care]`` for the kept positions only (pruned positions are don't-cares) with
``gf2.solve``; where a block's system is inconsistent, the care bits the solution misses go to a patch list
(each patch: the position among the layer's kept weights; the decoder flips it). The stored rate is fixed:
every block of a layer has the same N_in, so a decoder expands any block in one step.

The block length is a format parameter the decoder is given like the bit count (``block``). By default it
follows from what the decoder knows (the layer's size and kept count): the largest of 64, 128, 256, ... or
the whole layer whose share of the kept weights fits ``AUTO_MAX_N_IN`` = 64 stored bits (two 32-bit words
per decoded bit): longer blocks store closer to the kept count (fewer patches), shorter ones decode with
fewer word operations. The encoder searches the seed (4 bits) and ``N_in = ceil(kept / blocks) +
slack`` (slack 0..7, Elias-gamma coded: 1 bit for 0; the decoder knows ``kept`` from the index) for the
fewest stored bits. Counted per layer: ``values`` (blocks x N_in x planes), ``patches`` (per plane an
Elias-gamma count, 1 bit for none, and ``ceil(log2 kept)`` bits per patch), ``header`` (seed and slack),
``scales`` and ``index`` (the mask: by default the cheaper of CSR column indices + row pointers and a
1-bit-per-weight bitmap, with one bit saying which; or the low-rank factors with ``index="lowrank"``).
``params['xor_bits_per_weight']`` is values + patches + header over all weights: the figure the seed's
0.09 bit/weight measures (it leaves out scales and the pruning index).

Decode work (to a dense buffer, decoding the kept positions only): the index (as CSR or low-rank), a zero
fill per weight, and per kept weight and plane ``ceil(N_in / 32)`` word ANDs and popcounts, a parity and a
select-and-add; one XOR per patch.
"""
from __future__ import annotations

import numpy as np

from . import gf2
from . import lowrank as LR
from .base import (
    SCALE_BITS,
    Encoded,
    as_rows,
    binary_code,
    binary_values,
    check_bits,
    check_prune,
    from_rows,
    gamma_bits,
    magnitude_mask,
    width,
)
from .csr import index_bits as csr_index_bits

FORMAT = "xor"
BITS = (1, 2, 3, 4)
SEED_BITS = 4
MAX_SLACK = 7
AUTO_MAX_N_IN = 64
INDEXES = ("auto", "csr", "bitmap", "lowrank")


def xor_matrix(seed: int, n_out: int, n_in: int) -> np.ndarray:
    """The layer's fixed expansion matrix (N_out x N_in, 0/1), reproducible from its seed and size."""
    rng = np.random.default_rng([0x584F52, int(seed), int(n_out), int(n_in)])
    return rng.random((n_out, n_in)) < 0.5


def _blocks(flat: np.ndarray, n_out: int) -> np.ndarray:
    nb = -(-flat.shape[-1] // n_out)
    out = np.zeros(flat.shape[:-1] + (nb * n_out,), flat.dtype)
    out[..., :flat.shape[-1]] = flat
    return out.reshape(flat.shape[:-1] + (nb, n_out))


def _try(planes_b: np.ndarray, care_idx: np.ndarray, valid: np.ndarray, seed: int, n_out: int, n_in: int):
    """Solve every plane's blocks with one matrix: (x (planes, nb, n_in), patch mask (planes, nb, cmax))."""
    X = xor_matrix(seed, n_out, n_in)
    A = X[care_idx] & valid[:, :, None]                               # (nb, cmax, n_in)
    B = planes_b.shape[0]
    t = np.take_along_axis(planes_b, care_idx[None].repeat(B, 0), axis=2) & valid[None]
    x = gf2.solve(np.tile(A, (B, 1, 1)), t.reshape(-1, t.shape[-1])).reshape(B, A.shape[0], n_in)
    y = np.stack([gf2.matvec(X[care_idx[b]], x[:, b]) for b in range(A.shape[0])], axis=1)  # (B, nb, cmax)
    return x, (y != t) & valid[None]


def auto_block(n: int, kept: int) -> int:
    """The default block length for a layer of n weights with ``kept`` kept (see the module docstring)."""
    block = 64
    while block < n and -(-kept * 2 * block // n) <= AUTO_MAX_N_IN:
        block *= 2
    return n if block >= n else block


def _search(planes: np.ndarray, mask: np.ndarray, kept: int, seeds: int, block: int | None):
    """Cheapest (bits, n_out, seed, slack, n_in, x, patches) over block lengths, seeds and slack."""
    n = mask.size
    flat_mask = mask.ravel()
    flat_planes = planes.reshape(planes.shape[0], -1)
    cands = [block or auto_block(n, kept)]
    B = planes.shape[0]
    best = None
    for n_out in cands:
        mb = _blocks(flat_mask, n_out)                                 # (nb, n_out)
        nb = mb.shape[0]
        counts = mb.sum(axis=1)
        cmax = max(int(counts.max()), 1)
        order = np.argsort(~mb, axis=1, kind="stable")[:, :cmax]     # care positions first, in order
        valid = np.take_along_axis(mb, order, axis=1)
        pb = _blocks(flat_planes, n_out)                               # (B, nb, n_out)
        base = -(-kept // nb)
        if best is not None and nb * base * B >= best[0]:
            continue
        for seed in range(seeds):
            for slack in range(MAX_SLACK + 1):
                n_in = base + slack
                if n_in > n_out:
                    break
                header = SEED_BITS + gamma_bits(slack + 1)
                if best is not None and nb * n_in * B + header + B >= best[0]:
                    break
                x, bad = _try(pb, order, valid, seed, n_out, n_in)
                npatch = bad.reshape(B, -1).sum(axis=1)
                cost = nb * n_in * B + header + sum(gamma_bits(int(p) + 1) + int(p) * width(kept) for p in npatch)
                if best is None or cost < best[0]:
                    best = (cost, n_out, seed, slack, n_in, x, bad, order, valid)
                if npatch.sum() == 0:
                    break
    return best


def encode(W: np.ndarray, *, prune: float = 0.0, bits: int | None = None, seed: int = 0, seeds: int = 2 ** SEED_BITS,
           block: int | None = None, index: str = "auto", rank: int = LR.RANK, tile: int = LR.TILE) -> Encoded:
    """``seeds``: how many of the 2^SEED_BITS seeds the encoder tries; ``block``: the block length N_out
    (None: ``auto_block``)."""
    b = check_bits(FORMAT, bits, BITS)
    prune = check_prune(prune)
    if index not in INDEXES:
        raise ValueError(f"xor index must be one of {', '.join(INDEXES)} (got {index!r})")
    if block is not None and not (isinstance(block, (int, np.integer)) and block >= 1):
        raise ValueError(f"xor block must be a positive number of weights (got {block!r})")
    if not 1 <= seeds <= 2 ** SEED_BITS:
        raise ValueError(f"xor seeds must be in 1..{2 ** SEED_BITS} (got {seeds})")
    M = as_rows(W)
    extra: dict = {}
    if index == "lowrank":
        mask, factors, extra = LR.find_mask(M, prune, rank, tile)
        idx_bits, idx_ops = LR.index_bits(factors, rank), LR.mask_ops(factors)
    else:
        mask = magnitude_mask(M, prune)
        factors = None
    kept = int(mask.sum())
    if index != "lowrank":
        csr_bits, bitmap_bits = csr_index_bits(*M.shape, kept), M.size
        if index == "auto":
            index = "csr" if csr_bits <= bitmap_bits else "bitmap"
            csr_bits, bitmap_bits = csr_bits + 1, bitmap_bits + 1          # the bit that says which
        if index == "csr":
            idx_bits, idx_ops = csr_bits, 2 * kept + M.shape[0] + 1
        else:      # a word load per 32 weights, a bit test per weight
            idx_bits, idx_ops = bitmap_bits, -(-M.size // 32) + M.size
    planes, alphas = binary_code(M, mask, b)
    cost, n_out, sd, slack, n_in, x, bad, order, valid = _search(planes, mask, kept, seeds, block)
    # patch positions: the flat position of each missed care bit -> its rank among the kept weights
    flat_pos = (np.arange(x.shape[1])[:, None] * n_out + order)        # (nb, cmax)
    kept_rank = np.cumsum(mask.ravel()) - 1
    patches = [np.sort(kept_rank[flat_pos[bad[p]]]).astype(np.int32) for p in range(b)]
    npatch = [int(p.size) for p in patches]
    bits_ = {"values": x.shape[1] * n_in * b,
             "patches": sum(gamma_bits(p + 1) + p * width(kept) for p in npatch),
             "header": SEED_BITS + gamma_bits(slack + 1), "scales": SCALE_BITS * alphas.size, "index": idx_bits}
    words = -(-n_in // 32)
    ops = idx_ops + M.size + b * kept * (2 * words + 2) + sum(npatch)
    data = {"x": x, "patches": patches, "alphas": alphas, "mask": mask, "factors": factors, "rows_cols": M.shape}
    xbpw = (bits_["values"] + bits_["patches"] + bits_["header"]) / M.size
    params = {"prune": prune, "value_bits": b, "index": index, "block": n_out, "n_in": n_in, "seed": sd,
              "slack": slack, "blocks": int(x.shape[1]), "patch_count": sum(npatch), "xor_bits_per_weight": xbpw,
              **extra}
    return Encoded(FORMAT, tuple(np.shape(W)), bits_, kept, int(ops), data, params)


def decode(enc: Encoded) -> np.ndarray:
    rows, cols = enc.data["rows_cols"]
    p = enc.params
    if enc.data["factors"] is not None:
        mask = LR.rebuild(enc.data["factors"], (rows, cols))
    else:
        mask = enc.data["mask"]
    X = xor_matrix(p["seed"], p["block"], p["n_in"])
    x = enc.data["x"]
    B = x.shape[0]
    n = rows * cols
    planes = ((x.astype(np.int32) @ X.T.astype(np.int32)) & 1).astype(bool).reshape(B, -1)[:, :n]
    kept_pos = np.flatnonzero(mask.ravel())
    for k in range(B):
        planes[k, kept_pos[enc.data["patches"][k]]] ^= True
    vals = binary_values(planes.reshape(B, rows, cols), enc.data["alphas"], mask)
    return from_rows(vals, enc.shape)
