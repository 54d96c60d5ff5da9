"""Model spec strings: a short grammar so users describe a model without writing code.

Grammar (parts joined by ``-``; activations are ReLU, fused into the conv/dense layer before them)::

    mlp:IN-H1-...-OUT            dense layers; ReLU after each but the last     e.g. mlp:64-32-10
    cnn:HxWxC-PART-...-dOUT      2-D CNN on an H x W image with C channels     e.g. cnn:8x8x1-c8k3-p2-c16k3-gap-d10
    cnn1d:LxC-PART-...-dOUT      1-D CNN on L time steps of C channels         e.g. cnn1d:64x3-c16k5-p2-c32k3-gap-d6

    PART  cNkK[sS][same]   convolution, N filters, K x K kernel (1 x K in cnn1d), stride S (default 1),
                           padding "valid" unless "same" is given; + ReLU
          dwK[sS][same]    depthwise convolution, K x K kernel; + ReLU
          pK               max pool K x K, stride K (1 x K in cnn1d)
          aK               average pool K x K, stride K
          gap              global average pool
          dN               dense layer with N units (flattens first); ReLU unless it is the last part

The last part must be a dense layer: its width is the number of classes. Errors raise ``SpecError`` (a
``ValueError``) naming the spec and the offending part.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field

FAMILIES = ("mlp", "cnn", "cnn1d")
_LETTERS = "c (conv), dw (depthwise conv), p (max pool), a (avg pool), gap, d (dense)"

_CONV = re.compile(r"^c(\d+)k(\d+)(?:s(\d+))?(same)?$")
_DW = re.compile(r"^dw(\d+)(?:s(\d+))?(same)?$")
_POOL = re.compile(r"^([pa])(\d+)$")
_DENSE = re.compile(r"^d(\d+)$")


class SpecError(ValueError):
    """A malformed model spec; the message names the spec and the bad part."""


@dataclass(frozen=True)
class LayerSpec:
    """One parsed part: ``kind`` in conv | dwconv | maxpool | avgpool | gap | flatten | dense."""

    kind: str
    token: str
    args: dict = field(default_factory=dict)
    in_shape: tuple[int, ...] = ()
    out_shape: tuple[int, ...] = ()


@dataclass(frozen=True)
class ModelSpec:
    """A parsed spec: the canonical text, the input shape per sample and the layer list with shapes."""

    text: str
    family: str
    input_shape: tuple[int, ...]
    layers: tuple[LayerSpec, ...]

    @property
    def num_classes(self) -> int:
        return self.layers[-1].out_shape[-1]


def _pos_int(spec: str, part: str, what: str, s: str | None, default: int | None = None) -> int:
    if s is None:
        if default is None:
            raise SpecError(f"{spec}: part {part!r}: missing {what}")
        return default
    v = int(s)
    if v < 1:
        raise SpecError(f"{spec}: part {part!r}: {what} must be >= 1 (got {v})")
    return v


def _split(spec: str, body: str) -> list[str]:
    parts = body.split("-")
    for i, p in enumerate(parts):
        if p.strip() == "":
            before = parts[i - 1] if i > 0 else "<start>"
            after = parts[i + 1] if i + 1 < len(parts) else "<end>"
            raise SpecError(f"{spec}: empty part at position {i + 1} (between {before!r} and {after!r})")
    return [p.strip() for p in parts]


def _conv_out(spec: str, part: str, size: int, k: int, s: int, same: bool) -> tuple[int, int]:
    """Output length and total padding along one axis."""
    if same:
        out = -(-size // s)
        pad = max((out - 1) * s + k - size, 0)
        return out, pad
    if k > size:
        raise SpecError(f"{spec}: part {part!r}: kernel {k} is larger than the input ({size}) it slides over")
    return (size - k) // s + 1, 0


def parse_spec(spec: str) -> ModelSpec:
    """Parse a spec string (see the module docstring for the grammar) into a ``ModelSpec``."""
    if not isinstance(spec, str) or ":" not in spec:
        raise SpecError(f"{spec!r}: a spec is FAMILY:PARTS with FAMILY one of {', '.join(FAMILIES)} "
                        f"(e.g. mlp:64-32-10)")
    family, body = spec.split(":", 1)
    family = family.strip().lower()
    if family not in FAMILIES:
        raise SpecError(f"{spec}: unknown model family {family!r} (known: {', '.join(FAMILIES)})")
    parts = _split(spec, body)
    if family == "mlp":
        return _parse_mlp(spec, parts)
    return _parse_cnn(spec, family, parts)


def _parse_mlp(spec: str, parts: list[str]) -> ModelSpec:
    if len(parts) < 2:
        raise SpecError(f"{spec}: an mlp needs at least an input and an output size (e.g. mlp:64-10)")
    sizes = []
    for p in parts:
        if not p.isdigit():
            raise SpecError(f"{spec}: part {p!r}: mlp sizes are positive integers")
        sizes.append(_pos_int(spec, p, "layer size", p))
    layers = []
    for i, (a, b) in enumerate(zip(sizes, sizes[1:], strict=False)):
        last = i == len(sizes) - 2
        layers.append(LayerSpec("dense", parts[i + 1], {"units": b, "relu": not last}, (a,), (b,)))
    text = "mlp:" + "-".join(str(s) for s in sizes)
    return ModelSpec(text, "mlp", (sizes[0],), tuple(layers))


def _parse_input(spec: str, family: str, part: str) -> tuple[int, ...]:
    dims = part.lower().split("x")
    want = 3 if family == "cnn" else 2
    form = "HxWxC (e.g. 8x8x1)" if family == "cnn" else "LxC (e.g. 64x3)"
    if len(dims) != want or not all(d.isdigit() for d in dims):
        raise SpecError(f"{spec}: input part {part!r}: expected {form}")
    vals = tuple(_pos_int(spec, part, "input dimension", d) for d in dims)
    return vals


def _parse_cnn(spec: str, family: str, parts: list[str]) -> ModelSpec:
    if len(parts) < 2:
        raise SpecError(f"{spec}: a {family} needs an input shape and at least one dense output part")
    in_shape = _parse_input(spec, family, parts[0])
    one_d = family == "cnn1d"
    shape: tuple[int, ...] = (1, in_shape[0], in_shape[1]) if one_d else in_shape  # internal NHWC: H, W, C
    layers: list[LayerSpec] = []
    body = parts[1:]
    for idx, p in enumerate(body):
        last = idx == len(body) - 1
        tok = p.lower()
        if len(shape) == 1 and not tok.startswith("d"):
            raise SpecError(f"{spec}: part {p!r}: only dense parts may follow a dense or gap part")
        if m := _CONV.match(tok):
            n = _pos_int(spec, p, "filters", m.group(1))
            k = _pos_int(spec, p, "kernel", m.group(2))
            s = _pos_int(spec, p, "stride", m.group(3), 1)
            same = m.group(4) is not None
            kh = 1 if one_d else k
            oh, ph = _conv_out(spec, p, shape[0], kh, 1 if one_d else s, same)
            ow, pw = _conv_out(spec, p, shape[1], k, s, same)
            out = (oh, ow, n)
            layers.append(LayerSpec("conv", p, {"filters": n, "kh": kh, "kw": k, "sh": 1 if one_d else s, "sw": s,
                                                "pad_h": ph, "pad_w": pw, "relu": True}, shape, out))
        elif m := _DW.match(tok):
            k = _pos_int(spec, p, "kernel", m.group(1))
            s = _pos_int(spec, p, "stride", m.group(2), 1)
            same = m.group(3) is not None
            kh = 1 if one_d else k
            oh, ph = _conv_out(spec, p, shape[0], kh, 1 if one_d else s, same)
            ow, pw = _conv_out(spec, p, shape[1], k, s, same)
            out = (oh, ow, shape[2])
            layers.append(LayerSpec("dwconv", p, {"kh": kh, "kw": k, "sh": 1 if one_d else s, "sw": s,
                                                  "pad_h": ph, "pad_w": pw, "relu": True}, shape, out))
        elif m := _POOL.match(tok):
            k = _pos_int(spec, p, "pool size", m.group(2))
            kh = 1 if one_d else k
            if kh > shape[0] or k > shape[1]:
                raise SpecError(f"{spec}: part {p!r}: pool {k} is larger than its input {shape[0]}x{shape[1]}")
            out = (shape[0] // kh, shape[1] // k, shape[2])
            kind = "maxpool" if m.group(1) == "p" else "avgpool"
            layers.append(LayerSpec(kind, p, {"kh": kh, "kw": k}, shape, out))
        elif tok == "gap":
            layers.append(LayerSpec("gap", p, {}, shape, (shape[2],)))
        elif m := _DENSE.match(tok):
            n = _pos_int(spec, p, "units", m.group(1))
            if len(shape) == 3:
                flat = (shape[0] * shape[1] * shape[2],)
                layers.append(LayerSpec("flatten", "flatten", {}, shape, flat))
                shape = flat
            layers.append(LayerSpec("dense", p, {"units": n, "relu": not last}, shape, (n,)))
        else:
            letters = re.match(r"^[a-z]*", tok).group(0) or tok[:1]
            raise SpecError(f"{spec}: part {p!r}: unknown layer {letters!r} (known: {_LETTERS})")
        shape = layers[-1].out_shape
    if layers[-1].kind != "dense":
        raise SpecError(f"{spec}: the last part must be a dense layer dN giving the classes (got {body[-1]!r})")
    text = f"{family}:{parts[0].lower()}-" + "-".join(b.lower() for b in body)
    return ModelSpec(text, family, in_shape, tuple(layers))
