"""Which layers a job keeps compressed in flash, in which format (a scenario's ``[workload.compression]``).

Only frozen weights are compressed: a layer the job trains stays dense float32 in RAM and is checkpointed
dense (its flash writes are the simulator's ordinary checkpoints of the trainable bytes). A compressed
layer's weights live in flash only; every op that needs them (forward, a recompute, the input gradient of a
frozen layer behind a trained one) is preceded by a ``decode`` op that expands them into a dense
workspace buffer, freed after that op. The job's model holds the decoded values, so its accuracy is the
compressed model's.

Table keys: ``format`` (required), ``prune`` (0), ``bits`` (the format's default), ``layers`` ("frozen":
every frozen layer, or a list of layer names, each of which must be frozen), ``seed`` (0), and per-layer
overrides ``[workload.compression.layer.<name>]`` with any of format / prune / bits, used when that layer
is compressed.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from . import Encoded, check, decode, encode, xor

KEYS = ("format", "prune", "bits", "layers", "seed", "layer")
LAYER_KEYS = ("format", "prune", "bits")
WHERE = "workload.compression"


@dataclass(frozen=True)
class CompressionSpec:
    """A validated ``[workload.compression]`` table."""

    format: str
    prune: float = 0.0
    bits: int | None = None
    layers: tuple[str, ...] | None = None          # None: every frozen layer
    seed: int = 0
    per_layer: dict = field(default_factory=dict)  # name -> {format, prune, bits}

    @classmethod
    def from_dict(cls, d: dict, where: str = WHERE) -> CompressionSpec:
        """Validate a table; errors name ``where``, the field and the value."""
        if not isinstance(d, dict):
            raise ValueError(f"{where}: must be a table (got {d!r})")
        unknown = sorted(set(d) - set(KEYS))
        if unknown:
            raise ValueError(f"{where}: unknown key {unknown[0]!r} (known: {', '.join(KEYS)})")
        if "format" not in d:
            raise ValueError(f"{where}.format: missing (one of f32, int8, binary, csr, xor, lowrank)")
        fmt, prune, bits = _checked(where, d.get("format"), d.get("prune", 0.0), d.get("bits"))
        layers = d.get("layers", "frozen")
        if layers == "frozen":
            names = None
        elif isinstance(layers, list) and layers and all(isinstance(x, str) for x in layers):
            names = tuple(layers)
        else:
            raise ValueError(f"{where}.layers: must be \"frozen\" or a list of layer names (got {layers!r})")
        seed = d.get("seed", 0)
        if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
            raise ValueError(f"{where}.seed: must be an integer >= 0 (got {seed!r})")
        per = {}
        for name, t in (d.get("layer") or {}).items():
            w = f"{where}.layer.{name}"
            if not isinstance(t, dict):
                raise ValueError(f"{w}: must be a table (got {t!r})")
            bad = sorted(set(t) - set(LAYER_KEYS))
            if bad:
                raise ValueError(f"{w}: unknown key {bad[0]!r} (known: {', '.join(LAYER_KEYS)})")
            f2 = t.get("format", fmt)
            p2 = t.get("prune", prune if f2 == fmt else 0.0)
            b2 = t.get("bits", bits if f2 == fmt else None)
            f2, p2, b2 = _checked(w, f2, p2, b2)
            per[name] = {"format": f2, "prune": p2, "bits": b2}
        return cls(fmt, prune, bits, names, seed, per)

    def to_dict(self) -> dict:
        d = {"format": self.format, "prune": self.prune, "bits": self.bits,
             "layers": "frozen" if self.layers is None else list(self.layers), "seed": self.seed}
        if self.per_layer:
            d["layer"] = {k: dict(v) for k, v in self.per_layer.items()}
        return d


def _checked(where: str, fmt, prune, bits) -> tuple[str, float, int]:
    try:
        _, p, b = check(fmt, prune, bits)
    except ValueError as e:
        # the codecs name command-line flags; a scenario names its table's field instead
        msg = str(e)
        for flag, key in (("--format", "format"), ("--prune", "prune"), ("--bits", "bits")):
            if msg.startswith(flag + " "):
                raise ValueError(f"{where}.{key}: {msg[len(flag) + 1:]}") from None
        raise ValueError(f"{where}: {msg}") from None
    return fmt, p, b


def compress_frozen(model, spec: CompressionSpec, trainable: dict[str, list[bool]]) -> dict[str, Encoded]:
    """Encode the frozen weights ``spec`` selects and load their decoded values into the model.

    Returns {layer name: Encoded}. A listed layer whose weights are trained is an error (trained layers
    stay dense)."""
    names = [ly.name for ly in model.param_layers()]
    for name in list(spec.layers or ()) + list(spec.per_layer):
        if name not in names:
            raise ValueError(f"{WHERE}.layers: {name!r} is not a layer of {model.spec.text} "
                             f"(layers with weights: {', '.join(names)})")
    out: dict[str, Encoded] = {}
    group: dict = {}                 # XOR layers, encoded together (one model seed) after the loop
    for ly in model.param_layers():
        trained = trainable.get(ly.name, [False, False])[0]
        chosen = ly.name in spec.layers if spec.layers is not None else not trained
        if not chosen:
            continue
        if trained:
            raise ValueError(f"{WHERE}.layers: {ly.name} is trained on the device; only frozen layers are "
                             f"compressed (trained layers stay dense in RAM)")
        o = spec.per_layer.get(ly.name, {"format": spec.format, "prune": spec.prune, "bits": spec.bits})
        try:
            if o["format"] == xor.FORMAT:
                group[ly.name] = (ly, xor.Layer(ly.params[0], prune=o["prune"], bits=o["bits"]))
                continue
            enc = encode(ly.params[0], o["format"], prune=o["prune"], bits=o["bits"], seed=spec.seed)
        except ValueError as e:
            raise ValueError(f"{WHERE}: layer {ly.name}: {e}") from None
        ly.params[0][...] = decode(enc)
        out[ly.name] = enc
    encs = xor.encode_layers([x for _, x in group.values()])
    for (name, (ly, _)), enc in zip(group.items(), encs, strict=True):
        ly.params[0][...] = decode(enc)
        out[name] = enc
    return {ly.name: out[ly.name] for ly in model.param_layers() if ly.name in out}

