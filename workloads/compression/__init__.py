"""Compressed weights in flash (issue #14): one module per codec, each with ``encode(W, prune=, bits=, seed=)``
returning an ``Encoded`` (stored arrays, bits by part, decode work) and ``decode(enc)`` giving the float32
weights back, exactly what the codec keeps. ``compress_model`` applies one format to a model's layers;
``deeptwist`` trains with occasional compress-then-decode distortion.

Formats: f32 (dense), int8 (per output channel, 8 or 4 bits), binary (binary coding, 1-4 bit-planes, per-row
scales), csr (magnitude pruning, CSR index), xor (the XOR-decodable sparse-quantised format), lowrank (the
low-rank binary index).
"""
from __future__ import annotations

from dataclasses import dataclass
from types import ModuleType

import numpy as np

from . import binary, csr, dense, int8, lowrank, xor
from .base import (
    Encoded,
    as_rows,
    binary_code,
    binary_values,
    check_bits,
    check_prune,
    from_rows,
    int_quant,
    int_values,
    kept_values,
    magnitude_mask,
    scatter,
)

CODECS: dict[str, ModuleType] = {m.FORMAT: m for m in (dense, int8, binary, csr, xor, lowrank)}
FORMATS = tuple(CODECS)
BIAS_BITS = 32          # biases stay float32 in every format
FORMAT_FLAG = "--format"


def codec(fmt: str) -> ModuleType:
    """The codec module of a format; the error names the flag and the value."""
    if fmt not in CODECS:
        raise ValueError(f"{FORMAT_FLAG} {fmt}: must be one of {', '.join(FORMATS)}")
    return CODECS[fmt]


def check(fmt: str, prune: float = 0.0, bits: int | None = None) -> tuple[ModuleType, float, int]:
    """Validate a format, pruning rate and bit width together (before any work is done)."""
    c = codec(fmt)
    return c, check_prune(prune), check_bits(fmt, bits, c.BITS)


def encode(W: np.ndarray, fmt: str, *, prune: float = 0.0, bits: int | None = None, seed: int = 0, **opts) -> Encoded:
    return codec(fmt).encode(W, prune=prune, bits=bits, seed=seed, **opts)


def decode(enc: Encoded) -> np.ndarray:
    return codec(enc.format).decode(enc)


@dataclass
class CompressedModel:
    """A model's weights in one format: per layer the encoded weight (or None: left float32) and biases."""

    format: str
    layers: dict[str, Encoded | None]
    dense_bits: dict[str, int]       # float32 bits of each layer's weight (the reference)
    bias_bits: dict[str, int]

    @property
    def total_bits(self) -> int:
        return sum((e.total_bits if e is not None else self.dense_bits[k]) + self.bias_bits[k]
                   for k, e in self.layers.items())

    @property
    def flash_bytes(self) -> int:
        """Bytes of the model in flash: each compressed layer rounded up to whole bytes, plus biases."""
        return sum((e.flash_bytes if e is not None else self.dense_bits[k] // 8) + self.bias_bits[k] // 8
                   for k, e in self.layers.items())

    @property
    def weights(self) -> int:
        return sum(v // 32 for v in self.dense_bits.values())

    @property
    def weight_bits(self) -> int:
        return sum(e.total_bits if e is not None else self.dense_bits[k] for k, e in self.layers.items())

    @property
    def bits_per_weight(self) -> float:
        """Stored bits of the weights (biases excluded) over the number of weights."""
        return self.weight_bits / max(self.weights, 1)

    @property
    def decode_ops(self) -> int:
        return sum(e.decode_ops for e in self.layers.values() if e is not None)


def compress_model(model, fmt: str, *, prune: float = 0.0, bits: int | None = None, seed: int = 0,
                   layers: list[str] | None = None, **opts) -> CompressedModel:
    """Encode the weights of ``layers`` (names; default every layer with parameters) in one format."""
    check(fmt, prune, bits)
    names = [ly.name for ly in model.param_layers()]
    chosen = names if layers is None else list(layers)
    unknown = [n for n in chosen if n not in names]
    if unknown:
        raise ValueError(f"compression layers: {', '.join(unknown)} not in the model (layers: {', '.join(names)})")
    out, dense_bits, bias_bits, group = {}, {}, {}, {}
    for ly in model.param_layers():
        W, b = ly.params
        dense_bits[ly.name] = 32 * W.size
        bias_bits[ly.name] = BIAS_BITS * b.size
        out[ly.name] = None
        if ly.name in chosen:
            try:
                if fmt == xor.FORMAT:          # encoded together below: one model seed for all XOR layers
                    group[ly.name] = xor.Layer(W, prune=prune, bits=bits,
                                               **{k: v for k, v in opts.items() if k != "seeds"})
                else:
                    out[ly.name] = encode(W, fmt, prune=prune, bits=bits, seed=seed, **opts)
            except ValueError as e:
                raise ValueError(f"{e} (layer {ly.name})") from None
    if group:
        out.update(zip(group, xor.encode_layers(list(group.values()), seeds=opts.get("seeds", xor.SEEDS)),
                       strict=True))
    return CompressedModel(fmt, out, dense_bits, bias_bits)


def apply(model, cm: CompressedModel) -> None:
    """Replace the model's weights by their decoded values (in place)."""
    for ly in model.param_layers():
        e = cm.layers.get(ly.name)
        if e is not None:
            ly.params[0][...] = decode(e)




def target(W: np.ndarray, enc: Encoded) -> np.ndarray:
    """What ``enc`` is meant to keep, computed from W without the storage format: the format's mask with
    the format's value quantisation (float32 as is, integers per row, or binary coding). A round trip is
    exact when ``decode(enc)`` equals this bit for bit."""
    M = as_rows(W)
    p = enc.params
    if enc.format == "csr":
        mask = csr.dense_mask(enc)
    elif enc.format == "lowrank":
        mask = lowrank.rebuild(enc.data["factors"], M.shape)
    elif enc.format == "xor":
        f = enc.data["factors"]
        mask = lowrank.rebuild(f, M.shape) if f is not None else magnitude_mask(M, p["prune"])
    else:
        mask = magnitude_mask(M, p["prune"])
    vb = p["value_bits"]
    if enc.format in ("csr", "lowrank"):
        out = scatter(mask, kept_values(M, mask, vb)[0])
    elif enc.format in ("binary", "xor"):
        out = binary_values(*binary_code(M, mask, vb), mask)
    elif enc.format == "int8":
        out = int_values(*int_quant(M, mask, vb))
    else:
        out = np.where(mask, M, np.float32(0)).astype(np.float32)
    return from_rows(out, enc.shape)


def decode_op_name(layer: str, tag: str, enc: Encoded) -> str:
    """The name of a ``decode`` op in a trace: ``<layer>.<tag>.<format>-<value bits>`` (``conv0.decode.int8-8``),
    so the cost model can price each format (and bit width) with its own row (simulator.cost)."""
    return f"{layer}.{tag}.{codec(enc.format).FORMAT}-{int(enc.params['value_bits'])}"


def decode_format(op_name: str) -> tuple[str, int] | None:
    """(format, value bits) of a decode op's name (``decode_op_name``), or None for a name without them."""
    fmt, _, bits = op_name.rpartition(".")[2].partition("-")
    return (fmt, int(bits)) if fmt in CODECS and bits.isdigit() else None


def roundtrip_exact(W: np.ndarray, enc: Encoded) -> bool:
    """Does decoding give back exactly what the format keeps (``target``)?"""
    return bool(np.array_equal(decode(enc), target(W, enc)))


__all__ = ["CODECS", "FORMATS", "CompressedModel", "Encoded", "apply", "check", "codec", "compress_model", "decode",
           "decode_format", "decode_op_name", "encode", "roundtrip_exact", "target"]
