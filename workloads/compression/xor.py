"""The XOR-decodable sparse-quantised format (the seed paper's "weight encryption").

Encoding, per layer: prune by magnitude (or take the low-rank index's mask), binary-code the kept weights
into ``bits`` bit-planes (``base.binary_code``; one float16 scale per output channel and plane). Each plane,
flattened row-major, is cut into blocks of ``N_out`` bits. A fixed pseudo-random binary matrix ``X``
(``N_out x N_in``, generated from the model's stored seed and the layer's sizes) expands each block's
``N_in`` stored bits ``x`` into ``X x`` over GF(2): every output bit is the XOR of the stored bits its row
selects. The encoder solves ``X[care] x = plane[care]`` for the kept positions only (pruned positions are
don't-cares) with ``gf2.solve``; where a block's system is inconsistent, the care bits the solution misses
go to a patch list (each patch: the position among the layer's kept weights; the decoder flips it). The
stored rate is fixed: every block of a layer has the same N_in, so a decoder expands any block in one step.

The block length is a format parameter the decoder is given like the bit count (``block``). By default it
follows from what the decoder knows (the layer's size and kept count): the largest of 64, 128, 256, ... or
the whole layer whose share of the kept weights fits ``AUTO_MAX_N_IN`` = 64 stored bits (two 32-bit words
per decoded bit): longer blocks store closer to the kept count (fewer patches), shorter ones decode with
fewer word operations.

One seed per model: the XOR layers of a model (``encode_layers``; ``compress_model`` and a scenario's
compressed layers use it) share one seed, stored once, Elias-gamma coded (seed 0: 1 bit, 1-2: 3 bits,
3-6: 5 bits, ...); layer ``i``'s matrix is ``xor_matrix(seed, N_out_i, N_in_i)``. Each layer then stores
a 1-bit flag: 0 = the model seed's matrix holds every care bit at ``N_in = ceil(kept / blocks)`` (slack 0)
with no patch, nothing more stored; 1 = an Elias-gamma slack (``N_in = ceil(kept / blocks) + slack``,
0..15) and per plane an Elias-gamma patch count and ``ceil(log2 kept)`` bits per patch follow. The decoder
knows ``kept`` from the index. The encoder tries seeds 0..``seeds``-1 (default 64) and, per seed, each
layer's cheapest code, and keeps the seed with the fewest bits in total (it stops once a longer seed code
cannot pay for itself). A single ``encode(W)`` is a one-layer model that carries the whole seed.

Counted per layer: ``values`` (blocks x N_in x planes), ``patches``, ``header`` (the flag, and the slack
code when the flag is 1), ``model_header`` (the layer's share of the model seed: its bits split over the
model's XOR layers in proportion to their weights, in whole bits by largest remainder, so the shares sum to
exactly the stored seed and the model total counts it once), ``scales`` and ``index`` (the mask: by default
the cheaper of CSR column indices + row pointers and a 1-bit-per-weight bitmap, with one bit saying which;
or the low-rank factors with ``index="lowrank"``). ``params['xor_bits_per_weight']`` is values + patches +
header + model_header over all weights: everything needed to rebuild the layer's bit-planes, the figure
the seed's 0.09 bit/weight measures (it leaves out scales and the pruning index).

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
SEEDS = 64                 # model seeds the encoder tries by default (0 .. SEEDS-1)
MAX_SLACK = 15
FLAG_BITS = 1              # per layer: 0 = model seed, slack 0, no patches; 1 = slack and patch counts follow
AUTO_MAX_N_IN = 64
INDEXES = ("auto", "csr", "bitmap", "lowrank")


def xor_matrix(seed: int, n_out: int, n_in: int) -> np.ndarray:
    """The layer's fixed expansion matrix (N_out x N_in, 0/1), reproducible from the seed and its size."""
    rng = np.random.default_rng([0x584F52, int(seed), int(n_out), int(n_in)])
    return rng.random((n_out, n_in)) < 0.5


def seed_bits(seed: int) -> int:
    """Stored bits of the model seed: Elias-gamma of seed + 1 (1 bit for seed 0, 3 for 1-2, 5 for 3-6, ...)."""
    return gamma_bits(int(seed) + 1)


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


def share_bits(total: int, weights: list[int]) -> list[int]:
    """Split ``total`` shared bits over layers in proportion to their weights, in whole bits (largest
    remainder; ties to the earlier layer): the shares sum to ``total`` exactly."""
    n = sum(weights)
    exact = [total * w / n for w in weights]
    out = [int(e) for e in exact]
    for i in sorted(range(len(weights)), key=lambda i: (-(exact[i] - out[i]), i))[:total - sum(out)]:
        out[i] += 1
    return out


class Layer:
    """One layer made ready for the XOR encoder: its mask, index, binary code and block layout."""

    def __init__(self, W: np.ndarray, *, prune: float = 0.0, bits: int | None = None, block: int | None = None,
                 index: str = "auto", rank: int = LR.RANK, tile: int = LR.TILE):
        b = check_bits(FORMAT, bits, BITS)
        prune = check_prune(prune)
        if index not in INDEXES:
            raise ValueError(f"xor index must be one of {', '.join(INDEXES)} (got {index!r})")
        if block is not None and not (isinstance(block, (int, np.integer)) and block >= 1):
            raise ValueError(f"xor block must be a positive number of weights (got {block!r})")
        M = as_rows(W)
        self.shape, self.rows_cols, self.prune, self.b = tuple(np.shape(W)), M.shape, prune, b
        self.extra: dict = {}
        if index == "lowrank":
            mask, self.factors, self.extra = LR.find_mask(M, prune, rank, tile)
            self.idx_bits, self.idx_ops = LR.index_bits(self.factors, rank), LR.mask_ops(self.factors)
        else:
            mask, self.factors = magnitude_mask(M, prune), None
        kept = int(mask.sum())
        if index != "lowrank":
            csr_bits, bitmap_bits = csr_index_bits(*M.shape, kept), M.size
            if index == "auto":
                index = "csr" if csr_bits <= bitmap_bits else "bitmap"
                csr_bits, bitmap_bits = csr_bits + 1, bitmap_bits + 1          # the bit that says which
            if index == "csr":
                self.idx_bits, self.idx_ops = csr_bits, 2 * kept + M.shape[0] + 1
            else:      # a word load per 32 weights, a bit test per weight
                self.idx_bits, self.idx_ops = bitmap_bits, -(-M.size // 32) + M.size
        self.index, self.mask, self.kept, self.n = index, mask, kept, M.size
        self.planes, self.alphas = binary_code(M, mask, b)
        self.n_out = block or auto_block(self.n, kept)
        mb = _blocks(mask.ravel(), self.n_out)                            # (nb, n_out)
        self.nb = mb.shape[0]
        cmax = max(int(mb.sum(axis=1).max()), 1)
        self.order = np.argsort(~mb, axis=1, kind="stable")[:, :cmax]    # care positions first, in order
        self.valid = np.take_along_axis(mb, self.order, axis=1)
        self.pb = _blocks(self.planes.reshape(b, -1), self.n_out)         # (B, nb, n_out)
        self.base = -(-kept // self.nb)
        self._tries: dict = {}

    def solve(self, seed: int, slack: int):
        """(x, missed care bits) with this matrix; cached."""
        key = (seed, slack)
        if key not in self._tries:
            self._tries[key] = _try(self.pb, self.order, self.valid, seed, self.n_out, self.base + slack)
        return self._tries[key]

    def values_bits(self, slack: int) -> int:
        return self.nb * (self.base + slack) * self.b

    def patch_bits(self, bad: np.ndarray) -> int:
        return sum(gamma_bits(int(p) + 1) + int(p) * width(self.kept) for p in bad.reshape(self.b, -1).sum(axis=1))

    def clean(self, seed: int) -> bool:
        """Does this seed's matrix hold every care bit at slack 0 with no patch?"""
        return not self.solve(seed, 0)[1].any()

    def lower_bound(self) -> int:
        """Fewest bits the layer can take (values, flag; the model seed not included)."""
        return self.values_bits(0) + FLAG_BITS

    def best_with(self, seed: int, limit: float = float("inf")) -> tuple[int, int]:
        """(bits, slack) of the cheapest code under ``seed``: the clean flag, or slack and patches."""
        if self.clean(seed):
            return self.lower_bound(), 0
        best = None
        for slack in range(MAX_SLACK + 1):
            if self.base + slack > self.n_out:
                break
            head = self.values_bits(slack) + FLAG_BITS + gamma_bits(slack + 1)
            if head + self.b >= min(limit, best[0] if best else limit):
                break
            bad = self.solve(seed, slack)[1]
            cost = head + self.patch_bits(bad)
            if best is None or cost < best[0]:
                best = (cost, slack)
            if not bad.any():
                break
        return best if best is not None else (int(limit), 0)


def _layer_bound(ly: Layer, seed: int) -> int:
    """A lower bound of the layer's bits under ``seed`` from the slack-0 solve only: a layer that is not
    clean needs an explicit slack code and either slack (>= 2 more header bits and a word per block) or a
    patch count above 0 (>= 2 more bits), so at least 3 bits over the clean code."""
    return ly.lower_bound() if ly.clean(seed) else ly.lower_bound() + ly.b + 2


def encode_layers(layers: list[Layer], *, seeds: int = SEEDS) -> list[Encoded]:
    """Encode a model's XOR layers together: one model seed for all, chosen for the fewest total bits.

    The model seed (Elias-gamma) is stored once; each layer's figures include a whole-bit share of it in
    proportion to its weights (``share_bits``), so the layers' bits sum to exactly what is stored."""
    if not 1 <= seeds:
        raise ValueError(f"xor seeds must be >= 1 (got {seeds})")
    if not layers:
        return []
    floor = sum(ly.lower_bound() for ly in layers)
    best = None                                   # (total bits, seed, [(bits, slack) per layer])
    for seed in range(seeds):
        if best is not None and floor + seed_bits(seed) >= best[0]:
            break                                 # a later seed's code is longer than the best total can save
        if best is not None and seed_bits(seed) + sum(_layer_bound(ly, seed) for ly in layers) >= best[0]:
            continue
        per, total = [], seed_bits(seed)
        for ly in layers:
            limit = best[0] - total - sum(l2.lower_bound() for l2 in layers[len(per) + 1:]) if best else float("inf")
            c = ly.best_with(seed, limit + 1)
            per.append(c)
            total += c[0]
            if best is not None and total >= best[0]:
                break
        if len(per) == len(layers) and (best is None or total < best[0]):
            best = (total, seed, per)
    _, seed, per = best
    shares = share_bits(seed_bits(seed), [ly.n for ly in layers])
    return [_encoded(ly, seed, slack, share, len(layers)) for ly, (_, slack), share in zip(layers, per, shares, strict=True)]


def _encoded(ly: Layer, seed: int, slack: int, share: int, group: int) -> Encoded:
    clean = slack == 0 and ly.clean(seed)
    x, bad = ly.solve(seed, slack)
    b, n_in = ly.b, ly.base + slack
    # patch positions: the flat position of each missed care bit -> its rank among the kept weights
    flat_pos = (np.arange(ly.nb)[:, None] * ly.n_out + ly.order)        # (nb, cmax)
    kept_rank = np.cumsum(ly.mask.ravel()) - 1
    patches = [np.sort(kept_rank[flat_pos[bad[p]]]).astype(np.int32) for p in range(b)]
    npatch = [int(p.size) for p in patches]
    bits_ = {"values": ly.values_bits(slack), "patches": 0 if clean else ly.patch_bits(bad),
             "header": FLAG_BITS + (0 if clean else gamma_bits(slack + 1)), "model_header": share,
             "scales": SCALE_BITS * ly.alphas.size, "index": ly.idx_bits}
    words = -(-n_in // 32)
    ops = ly.idx_ops + ly.n + b * ly.kept * (2 * words + 2) + sum(npatch)
    data = {"x": x, "patches": patches, "alphas": ly.alphas, "mask": ly.mask, "factors": ly.factors,
            "rows_cols": ly.rows_cols}
    xbpw = (bits_["values"] + bits_["patches"] + bits_["header"] + bits_["model_header"]) / ly.n
    params = {"prune": ly.prune, "value_bits": b, "index": ly.index, "block": ly.n_out, "n_in": n_in, "seed": seed,
              "slack": slack, "blocks": ly.nb, "patch_count": sum(npatch), "clean": clean,
              "model_seed_bits": seed_bits(seed), "model_layers": group, "xor_bits_per_weight": xbpw, **ly.extra}
    return Encoded(FORMAT, ly.shape, bits_, ly.kept, int(ops), data, params)


def encode(W: np.ndarray, *, prune: float = 0.0, bits: int | None = None, seed: int = 0, seeds: int = SEEDS,
           block: int | None = None, index: str = "auto", rank: int = LR.RANK, tile: int = LR.TILE) -> Encoded:
    """One layer as a model of its own (it carries the whole model seed). ``seeds``: how many model seeds
    the encoder tries; ``block``: the block length N_out (None: ``auto_block``). ``seed`` is unused (the
    encoder searches the seed)."""
    return encode_layers([Layer(W, prune=prune, bits=bits, block=block, index=index, rank=rank, tile=tile)],
                         seeds=seeds)[0]


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
