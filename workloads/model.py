"""Models built from spec strings, the zoo, and host-side (untraced) forward/backward for pre-training.

Weight initialisation (so a port can reproduce it): ``rng = np.random.default_rng(seed)``; for each layer
with parameters, in order, ``W = (rng.standard_normal(W.shape) * sqrt(g / fan_in)).astype(float32)`` with
``g = 2`` (He) for layers followed by ReLU and ``g = 1`` for the final linear layer; biases are zero.
fan_in is ``in`` for Dense (W shape (in, out), y = x @ W + b), ``kh*kw*C_in`` for Conv2D (W shape
(kh, kw, C_in, C_out)) and ``kh*kw`` for DepthwiseConv2D (W shape (kh, kw, C)).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from . import layers as L
from .spec import ModelSpec, SpecError, parse_spec


@dataclass(frozen=True)
class ZooEntry:
    """A named default workload: a spec and the data set it is trained on."""

    name: str
    spec: str
    dataset: str
    description: str


_ZOO = (
    ZooEntry("mlp-digits", "mlp:64-32-10", "digits8", "MLP on the 8x8 scikit-learn digits"),
    ZooEntry("lenet-digits", "cnn:8x8x1-c6k3same-p2-c16k3same-p2-d32-d10", "digits8",
             "LeNet-style CNN (conv-pool-conv-pool-fc-fc) on the 8x8 digits"),
    ZooEntry("dscnn-digits", "cnn:8x8x1-c8k3same-dw3same-c16k1-p2-gap-d10", "digits8",
             "depthwise-separable CNN (MobileNet-style block) on the 8x8 digits"),
    ZooEntry("cnn1d-accel", "cnn1d:64x3-c16k5-p2-c32k3-p2-gap-d6", "accel",
             "1-D CNN on 64-sample windows of a synthetic 3-axis accelerometer (6 activities)"),
    ZooEntry("mlp-microbit", "mlp:16-12-10", "digits4",
             "tiny MLP on 4x4 down-sampled digits, sized for a 16 KB micro:bit"),
)


def zoo() -> dict[str, ZooEntry]:
    """The named workloads, by name."""
    return {e.name: e for e in _ZOO}


def resolve(spec_or_name: str | ModelSpec) -> tuple[ModelSpec, str | None]:
    """A zoo name or a spec string -> (parsed spec, the zoo entry's data set or None)."""
    if isinstance(spec_or_name, ModelSpec):
        return spec_or_name, None
    z = zoo()
    if isinstance(spec_or_name, str) and spec_or_name in z:
        e = z[spec_or_name]
        return parse_spec(e.spec), e.dataset
    if isinstance(spec_or_name, str) and ":" not in spec_or_name:
        raise SpecError(f"{spec_or_name!r}: not a zoo name ({', '.join(z)}) nor a spec like mlp:64-32-10")
    return parse_spec(spec_or_name), None


class Model:
    """A stack of layers; ``parameters()`` lists every weight and bias array (float32, micrograd-style)."""

    def __init__(self, spec: ModelSpec, layers: list[L.Layer]):
        self.spec = spec
        self.layers = layers
        self.input_shape = spec.input_shape
        self.num_classes = spec.num_classes
        # internal layout of the first layer's input (cnn1d: (1, L, C); cnn: (H, W, C); mlp: (IN,))
        self.internal_shape = layers[0].in_shape

    def parameters(self) -> list[np.ndarray]:
        return [p for layer in self.layers for p in layer.parameters()]

    def param_layers(self) -> list[L.Layer]:
        return [layer for layer in self.layers if layer.params]

    def to_internal(self, xs: np.ndarray) -> np.ndarray:
        """A batch in the spec's input shape -> the first layer's layout, float32."""
        xs = np.asarray(xs, dtype=L.F32)
        return xs.reshape((xs.shape[0],) + self.internal_shape)

    def forward(self, xs: np.ndarray, quant: bool = False) -> np.ndarray:
        """Logits for a batch (host side, untraced)."""
        a = self.to_internal(xs)
        for layer in self.layers:
            a = layer.forward(a, quant)
        return a

    def predict(self, xs: np.ndarray, quant: bool = False, batch: int = 512) -> np.ndarray:
        out = [self.forward(xs[i:i + batch], quant).argmax(axis=1) for i in range(0, len(xs), batch)]
        return np.concatenate(out) if out else np.zeros(0, int)

    def state(self) -> list[np.ndarray]:
        return [p.copy() for p in self.parameters()]

    def load_state(self, state: list[np.ndarray]) -> None:
        for p, s in zip(self.parameters(), state, strict=True):
            p[...] = s

    def macs_forward(self, n: int = 1) -> int:
        return sum(layer.forward_macs(n) for layer in self.layers)


def _make_layer(i: int, ls) -> L.Layer:
    name = f"{ls.kind}{i}"
    a = ls.args
    if ls.kind == "dense":
        return L.Dense(name, ls.in_shape[0], a["units"], a["relu"])
    if ls.kind == "conv":
        return L.Conv2D(name, ls.in_shape, ls.out_shape, a["kh"], a["kw"], a["sh"], a["sw"], a["pad_h"], a["pad_w"],
                        a["relu"])
    if ls.kind == "dwconv":
        return L.DepthwiseConv2D(name, ls.in_shape, ls.out_shape, a["kh"], a["kw"], a["sh"], a["sw"], a["pad_h"],
                                 a["pad_w"], a["relu"])
    if ls.kind == "maxpool":
        return L.MaxPool(name, ls.in_shape, ls.out_shape, a["kh"], a["kw"])
    if ls.kind == "avgpool":
        return L.AvgPool(name, ls.in_shape, ls.out_shape, a["kh"], a["kw"])
    if ls.kind == "gap":
        return L.GlobalAvgPool(name, ls.in_shape, ls.out_shape)
    if ls.kind == "flatten":
        return L.Flatten(name, ls.in_shape, ls.out_shape)
    raise SpecError(f"unknown layer kind {ls.kind!r}")  # pragma: no cover - parse_spec guards this


def init_weights(model: Model, seed: int = 0) -> None:
    """Seeded He/LeCun-normal weights and zero biases, in layer order (see the module docstring)."""
    rng = np.random.default_rng(seed)
    for layer in model.param_layers():
        W, b = layer.params
        fan_in = int(np.prod(W.shape[:-1])) if not isinstance(layer, L.DepthwiseConv2D) else layer.fan_in
        gain = 2.0 if layer.relu else 1.0
        W[...] = (rng.standard_normal(W.shape) * math.sqrt(gain / fan_in)).astype(L.F32)
        b[...] = 0.0


def build_model(spec_or_name: str | ModelSpec, seed: int = 0) -> Model:
    """A freshly initialised model from a zoo name or a spec string."""
    spec, _ = resolve(spec_or_name)
    model = Model(spec, [_make_layer(i, ls) for i, ls in enumerate(spec.layers)])
    init_weights(model, seed)
    return model


def etf_matrix(dim: int, k: int, seed: int = 0) -> np.ndarray:
    """A simplex equiangular tight frame: k unit columns in ``dim`` dimensions with pairwise cosine
    -1/(k-1). Needs dim >= k - 1. Returned as a (dim, k) classifier weight."""
    if dim < k - 1:
        raise ValueError(f"techniques.etf: the classifier input has {dim} features, an ETF for {k} classes "
                         f"needs at least {k - 1}")
    centred = np.eye(k) - 1.0 / k
    w, v = np.linalg.eigh(centred)
    basis = v[:, w > 0.5]                              # k x (k-1), orthonormal, spans the centred space
    verts = basis * math.sqrt(k / (k - 1)) * math.sqrt((k - 1) / k)  # rows: unit vectors, cos -1/(k-1)
    verts = verts / np.linalg.norm(verts, axis=1, keepdims=True)
    rng = np.random.default_rng(seed + 7919)
    rot, _ = np.linalg.qr(rng.standard_normal((dim, dim)))
    return (rot[:, :k - 1] @ verts.T).astype(L.F32)   # (dim, k)
