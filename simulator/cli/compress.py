"""``edgesim compress``: a zoo model's weights in one storage format — bits per weight, flash bytes, decode
work, exact round trip, accuracy before and after (held-out data) — optionally after DeepTwist fine-tuning."""
from __future__ import annotations

import sys

from simulator.files import emit_json
from simulator.units import human_bytes
from workloads.compression import FORMATS, apply, check, compress_model, roundtrip_exact
from workloads.compression import deeptwist as DT

from .common import add_command, format_table


def register(sub) -> None:
    p = add_command(
        sub, "compress", help="store a model's weights compressed: bits/weight, flash, decode work, accuracy",
        description="Encode every weight layer of MODEL (a zoo name or a spec) in one format and report, per\n"
                    "layer and in total: bits per weight, flash bytes, decode operations per weight, whether\n"
                    "decoding gives back exactly what the format keeps, and the accuracy on held-out data\n"
                    "before and after. Formats: f32, int8 (per output channel), binary (sign + row scale per\n"
                    "bit-plane), csr (magnitude pruning, CSR index), xor (XOR-decodable sparse-quantised bit-\n"
                    "planes with patches), lowrank (pruning mask as a Boolean product of binary factors).\n"
                    "--distort-every D first fine-tunes with DeepTwist: every D steps the weights are replaced\n"
                    "by their compressed-then-decoded values.",
        example="edgesim compress mlp-digits --format xor --prune 0.91 --bits 1 --distort-every 2",
    )
    p.add_argument("model", metavar="MODEL", help="a zoo name (edgesim workloads) or a spec like mlp:64-32-10")
    p.add_argument("--format", required=True, choices=FORMATS, help="storage format")
    p.add_argument("--prune", type=float, default=0.0, help="magnitude pruning rate in [0, 1)")
    p.add_argument("--bits", type=int, default=None,
                   help="bits per kept value: f32 32; int8 8|4; binary, xor 1-4 (bit-planes); csr, lowrank 32|8|1 "
                        "(default: the format's first)")
    p.add_argument("--distort-every", type=int, default=0, metavar="D",
                   help="DeepTwist: fine-tune, replacing the weights by their compressed version every D steps "
                        "(0: compress the pre-trained weights directly)")
    p.add_argument("--steps", type=int, default=DT.STEPS, help="DeepTwist fine-tuning steps")
    p.add_argument("--seed", type=int, default=0, help="model, data split and pre-training seed")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=run)


def _progress(total: int):
    try:
        from tqdm import tqdm
    except ImportError:  # pragma: no cover - tqdm ships with the project's dependencies
        return None, lambda: None
    bar = tqdm(total=total, desc="DeepTwist fine-tuning", unit="step", file=sys.stderr, leave=False)

    def update(done: int) -> None:
        bar.update(done - bar.n)
    return update, bar.close


def run(args) -> int:
    _, prune, bits = check(args.format, args.prune, args.bits)
    if args.distort_every < 0:
        raise ValueError(f"--distort-every {args.distort_every}: must be >= 0")
    if args.steps < 1:
        raise ValueError(f"--steps {args.steps}: must be >= 1")
    print(f"pre-training {args.model} (cached per process) ...", file=sys.stderr, flush=True)
    model, split = DT.pretrained(args.model, args.seed)
    compress_model(model, args.format, prune=prune, bits=bits, seed=args.seed)   # every layer can be held
    Xtr, ytr = split.pop_train
    Xte, yte = split.pop_test
    before = DT.accuracy(model, Xte, yte)
    if args.distort_every:
        update, close = _progress(args.steps)
        try:
            DT.train(model, Xtr, ytr, steps=args.steps, every=args.distort_every, seed=args.seed, progress=update,
                     distort=DT.distorter(args.format, prune=prune, bits=bits, seed=args.seed))
        finally:
            close()
    weights = {ly.name: ly.params[0].copy() for ly in model.param_layers()}
    cm = compress_model(model, args.format, prune=prune, bits=bits, seed=args.seed)
    apply(model, cm)
    after = DT.accuracy(model, Xte, yte)
    layers = []
    for name, enc in cm.layers.items():
        s = enc.summary()
        s["layer"] = name
        s["roundtrip_exact"] = roundtrip_exact(weights[name], enc)
        layers.append(s)
    dense_bytes = sum(v // 8 + cm.bias_bits[k] // 8 for k, v in cm.dense_bits.items())
    out = {"model": args.model, "format": args.format, "prune": prune, "bits": bits,
           "distort_every": args.distort_every, "steps": args.steps if args.distort_every else 0, "seed": args.seed,
           "weights": cm.weights, "bits_per_weight": cm.bits_per_weight, "flash_bytes": cm.flash_bytes,
           "flash_bytes_f32": dense_bytes, "decode_ops": cm.decode_ops,
           "decode_ops_per_weight": cm.decode_ops / max(cm.weights, 1),
           "accuracy_before": before, "accuracy_after": after,
           "roundtrip_exact": all(x["roundtrip_exact"] for x in layers), "layers": layers}
    if args.json:
        emit_json(out)
        return 0
    xor = args.format == "xor"
    head = ["layer", "shape", "weights", "kept", "bits/weight"] + (["xor bits/weight"] if xor else []) + \
        ["flash", "decode ops/weight", "exact"]
    rows = [[x["layer"], "x".join(map(str, x["shape"])), x["weights"], x["kept"], f"{x['bits_per_weight']:.3f} bit"]
            + ([f"{x['params']['xor_bits_per_weight']:.3f} bit"] if xor else [])
            + [human_bytes(x["flash_bytes"]), f"{x['decode_ops_per_weight']:.2f}", "yes" if x["roundtrip_exact"] else "NO"]
            for x in layers]
    print(format_table(head, rows))
    tune = f", after {args.steps} DeepTwist steps (distort every {args.distort_every})" if args.distort_every else ""
    print(f"\n{args.model} as {args.format} (prune {prune:g}, {bits} bit{'s' if bits != 1 else ''}){tune}:")
    print(f"  weights   {out['bits_per_weight']:.3f} bit/weight; flash {human_bytes(out['flash_bytes'])} with biases "
          f"(float32: {human_bytes(dense_bytes)}, {dense_bytes / max(out['flash_bytes'], 1):.1f}x smaller)")
    if xor:
        p = layers[0]["params"]
        sb = p["model_seed_bits"]
        print(f"  xor seed  {p['seed']} ({sb} bit{'s' if sb != 1 else ''}, stored once; each layer's xor bits/weight "
              f"carries a share pro rata to its weights)")
    print(f"  decode    {out['decode_ops']:,} operations per forward ({out['decode_ops_per_weight']:.2f} per weight)")
    print(f"  accuracy  {before * 100:.1f} % before, {after * 100:.1f} % after (held-out population data, "
          f"{len(yte)} samples)")
    print(f"  round trip exact on the kept weights: {'yes' if out['roundtrip_exact'] else 'NO'}")
    return 0
