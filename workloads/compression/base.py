"""What every codec shares: the encoded record with its bit accounting, the weight-matrix view, magnitude
pruning, binary-coding quantisation and the argument checks (docs/architecture.md §1, issue #14).

A layer's weight tensor is seen as a matrix of ``rows`` output channels by ``cols`` inputs (Dense W (in, out)
-> W.T; Conv2D (kh, kw, Cin, Cout) -> (Cout, kh*kw*Cin); Depthwise (kh, kw, C) -> (C, kh*kw)). Scales are
per output channel and stored as float16; "exact round trip" means ``decode(encode(W))`` equals, bit for bit,
the float32 value the codec says it keeps at every kept position and 0 at every pruned one.

Bits are counted from what ``encode`` really produced (array lengths times their declared field widths), in
parts: ``values`` (weights or bit-planes), ``index`` (where the kept weights are), ``scales``, ``patches``
and ``header`` (per-layer fields a decoder needs that the model spec does not give).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

F32 = np.float32
SCALE_BITS = 16          # scales are stored as IEEE float16
PRUNE_FLAG = "--prune"
BITS_FLAG = "--bits"


@dataclass
class Encoded:
    """One layer's weights in one format: the stored arrays, their bit accounting and the decode work.

    ``decode_ops`` counts the elementary operations a device decoder runs to expand the whole layer (word
    loads, ANDs, popcounts, multiplies, scatters: see each codec's docstring); 0 for dense float32.
    """

    format: str
    shape: tuple[int, ...]
    bits: dict[str, int]
    kept: int
    decode_ops: int
    data: dict = field(default_factory=dict)
    params: dict = field(default_factory=dict)

    @property
    def n(self) -> int:
        return math.prod(self.shape)

    @property
    def total_bits(self) -> int:
        return int(sum(self.bits.values()))

    @property
    def bits_per_weight(self) -> float:
        return self.total_bits / self.n

    @property
    def flash_bytes(self) -> int:
        return (self.total_bits + 7) // 8

    @property
    def decode_ops_per_weight(self) -> float:
        return self.decode_ops / self.n

    @property
    def prune_rate(self) -> float:
        return 1.0 - self.kept / self.n

    def summary(self) -> dict:
        """Plain numbers for tables and JSON."""
        return {"format": self.format, "shape": list(self.shape), "weights": self.n, "kept": self.kept,
                "prune_rate": self.prune_rate, "bits": dict(self.bits), "total_bits": self.total_bits,
                "bits_per_weight": self.bits_per_weight, "flash_bytes": self.flash_bytes,
                "decode_ops": self.decode_ops, "decode_ops_per_weight": self.decode_ops_per_weight,
                "params": {k: v for k, v in self.params.items() if isinstance(v, (int, float, str, bool))}}


# ------------------------------------------------------------------------------------------- checks

def check_prune(prune: float) -> float:
    """A pruning rate in [0, 1); the error names the flag and the value."""
    try:
        p = float(prune)
    except (TypeError, ValueError):
        raise ValueError(f"{PRUNE_FLAG} {prune!r}: must be a number in [0, 1)") from None
    if not (0.0 <= p < 1.0) or math.isnan(p):
        raise ValueError(f"{PRUNE_FLAG} {prune}: must be in [0, 1)")
    return p


def check_bits(fmt: str, bits: int | None, allowed: tuple[int, ...]) -> int:
    """A bit width this format supports (None: its first, the default)."""
    if bits is None:
        return allowed[0]
    if isinstance(bits, bool) or not isinstance(bits, (int, np.integer)) or int(bits) not in allowed:
        raise ValueError(f"{BITS_FLAG} {bits}: format {fmt} supports {', '.join(map(str, allowed))}")
    return int(bits)


# ------------------------------------------------------------------------------------ matrix view

def as_rows(W: np.ndarray) -> np.ndarray:
    """The (rows = output channels, cols = inputs) view of a weight tensor (a copy, float32)."""
    W = np.asarray(W, F32)
    if W.ndim == 1:
        return W.reshape(1, -1).copy()
    return np.ascontiguousarray(W.reshape(-1, W.shape[-1]).T)


def from_rows(M: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """Inverse of ``as_rows``."""
    if len(shape) == 1:
        return np.ascontiguousarray(M.reshape(shape), F32)
    return np.ascontiguousarray(M.T.reshape(shape), F32)


def width(n: int) -> int:
    """Bits of an unsigned field that holds 0 .. n-1 (at least 1)."""
    return max(1, int(n - 1).bit_length())


def gamma_bits(v: int) -> int:
    """Length of the Elias-gamma code of v >= 1 (a self-delimiting count: 1 bit for v = 1)."""
    return 2 * int(v).bit_length() - 1


# -------------------------------------------------------------------------------------------- pruning

def keep_count(n: int, prune: float) -> int:
    """How many of n weights magnitude pruning at this rate keeps (round half up of n * (1 - rate))."""
    return n - int(math.floor(prune * n + 0.5))


def magnitude_mask(M: np.ndarray, prune: float, what: str = "layer") -> np.ndarray:
    """Boolean mask keeping the largest-|w| weights of the whole layer (ties: the earlier position)."""
    n = M.size
    k = keep_count(n, prune)
    if k <= 0:
        raise ValueError(f"{PRUNE_FLAG} {prune}: a {what} of {n} weights would keep no weight")
    mask = np.zeros(n, bool)
    if k == n:
        mask[:] = True
    else:
        order = np.argsort(-np.abs(M.ravel()), kind="stable")
        mask[order[:k]] = True
    return mask.reshape(M.shape)


# ---------------------------------------------------------------------------------- quantisation

def f16(a: np.ndarray) -> np.ndarray:
    """Round scales to what float16 storage holds, back in float32."""
    return np.asarray(a, np.float32).astype(np.float16).astype(np.float32)


def binary_code(M: np.ndarray, mask: np.ndarray, planes: int) -> tuple[np.ndarray, np.ndarray]:
    """Greedy binary-coding quantisation per row: ``w ~ sum_k alpha[k, row] * b_k`` with b_k in {-1, +1}.

    Plane k takes the sign of the residual and the mean |residual| of the row's kept weights as its scale
    (float16-rounded). Returns (bits (planes, rows, cols) bool: True = +1, alphas (planes, rows) float32).
    Pruned positions get bit 0 (they are don't-cares).
    """
    r = np.where(mask, M, 0).astype(F32)
    cnt = np.maximum(mask.sum(axis=1), 1).astype(F32)
    bits = np.zeros((planes,) + M.shape, bool)
    alphas = np.zeros((planes, M.shape[0]), F32)
    for k in range(planes):
        b = (r >= 0) & mask
        a = f16(np.abs(np.where(mask, r, 0)).sum(axis=1) / cnt)
        bits[k], alphas[k] = b, a
        r = np.where(mask, r - np.where(b, 1, -1) * a[:, None], 0).astype(F32)
    return bits, alphas


def binary_values(bits: np.ndarray, alphas: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """The float32 weights a binary code stands for (0 where pruned), summed plane by plane in order."""
    out = np.zeros(bits.shape[1:], F32)
    for k in range(bits.shape[0]):
        out += np.where(bits[k], F32(1), F32(-1)) * alphas[k][:, None]
    return np.where(mask, out, F32(0)).astype(F32)


def int_quant(M: np.ndarray, mask: np.ndarray, bits: int) -> tuple[np.ndarray, np.ndarray]:
    """Symmetric per-row integer quantisation to ``bits`` (q in [-(2^(b-1)-1), 2^(b-1)-1]); float16 scales.

    Returns (q int8/int16, scales float32). Pruned positions get q = 0."""
    qmax = 2 ** (bits - 1) - 1
    m = np.abs(np.where(mask, M, 0)).max(axis=1)
    s = f16(np.where(m > 0, m / qmax, 1.0))
    s = np.where(s > 0, s, F32(1.0)).astype(F32)           # a scale that underflowed float16
    q = np.clip(np.rint(M / s[:, None]), -qmax, qmax).astype(np.int16)
    return np.where(mask, q, 0).astype(np.int16), s


def int_values(q: np.ndarray, s: np.ndarray) -> np.ndarray:
    return (q.astype(F32) * s[:, None]).astype(F32)


def kept_values(M: np.ndarray, mask: np.ndarray, vbits: int) -> tuple[np.ndarray, np.ndarray, dict[str, int]]:
    """Quantise the kept weights for a sparse format: 32 = float32 as is, 8 = int8 per row, 1 = sign and a
    per-row scale. Returns (the kept values in row-major order, per-row scales or empty, bits by part)."""
    if vbits == 32:
        vals = M[mask].astype(F32)
        return vals, np.zeros(0, F32), {"values": 32 * vals.size}
    if vbits == 1:
        b, a = binary_code(M, mask, 1)
        vals = binary_values(b, a, mask)[mask]
        return vals, a[0], {"values": vals.size, "scales": SCALE_BITS * a.shape[1]}
    q, s = int_quant(M, mask, vbits)
    vals = int_values(q, s)[mask]
    return vals, s, {"values": vbits * vals.size, "scales": SCALE_BITS * s.size}


def scatter(mask: np.ndarray, vals: np.ndarray) -> np.ndarray:
    """A dense float32 matrix with ``vals`` at the mask's positions (row-major order), 0 elsewhere."""
    out = np.zeros(mask.shape, F32)
    out[mask] = vals
    return out
