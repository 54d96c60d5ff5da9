"""Compressed weights in flash (issue #14), measured on the zoo.

Part 1: every format on every zoo model (pre-trained weights, story new-class): stored bits per weight
(weights only; every part counted: values, index, scales, patches, headers), model flash with float32
biases, held-out accuracy change (population test split), decode operations per weight, exact round trip.
Headline settings: f32; int8 (8 bit); binary (1 bit, no pruning); csr (91 % pruned, float32 values);
xor (91 % pruned, 1 bit); lowrank (91 % pruned, float32 values). The XOR row also gives the bit-plane
figure the seed paper's 0.09 bit/weight measures (bit-planes + patches + headers, the model seed shared
pro rata, without scales and the pruning index).

Part 2: the Done-when figures. XOR at 91 % pruning, 1 bit, per dense layer (each model's layers encoded
together, as in part 1, with one model seed); low-rank binary index bits
per weight against CSR's at the same pruning rate on the zoo's largest layers.

Part 3: DeepTwist (distort every D steps) vs compressing the pre-trained weights directly, 1 bit 91 %
pruned, on mlp-digits and lenet-digits over seeds; ``recovered`` = share of the lost accuracy won back.

Part 4: the demo with its frozen layers compressed (simulator/scenarios/demo-compressed.toml) against
the same scenario with dense frozen layers: flash, peak RAM, energy per day, decode cost, accuracy.

Run: ``.venv/bin/python benchmarks/compression.py [--seeds 3] [--skip-deeptwist] [--skip-demo]``.
"""
from __future__ import annotations

import argparse
import copy
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tqdm import tqdm  # noqa: E402

from workloads import zoo  # noqa: E402
from workloads.compression import apply, compress_model, roundtrip_exact  # noqa: E402
from workloads.compression import csr as CSR  # noqa: E402
from workloads.compression import deeptwist as DT  # noqa: E402
from workloads.compression import lowrank as LR  # noqa: E402
from workloads.compression.base import as_rows  # noqa: E402

SEED_XOR_BITS = 0.09     # the seed paper: AlexNet FC layers, 1 bit, 91 % pruned
HEADLINE = [("f32", 0.0, 32), ("int8", 0.0, 8), ("binary", 0.0, 1), ("csr", 0.91, 32), ("xor", 0.91, 1),
            ("lowrank", 0.91, 32)]


def table(head: list[str], rows: list[list]) -> str:
    out = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    out += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
    return "\n".join(out)


def part1(models: dict) -> str:
    rows = []
    jobs = [(name, f) for name in models for f in HEADLINE]
    for name, (fmt, prune, bits) in tqdm(jobs, desc="formats x models", unit="run", file=sys.stderr):
        model, split = models[name]
        state = model.state()
        Xte, yte = split.pop_test
        before = DT.accuracy(model, Xte, yte)
        cm = compress_model(model, fmt, prune=prune, bits=bits)
        exact = all(roundtrip_exact(ly.params[0], cm.layers[ly.name]) for ly in model.param_layers())
        apply(model, cm)
        after = DT.accuracy(model, Xte, yte)
        model.load_state(state)
        xbits = ""
        if fmt == "xor":
            xb = sum(e.params["xor_bits_per_weight"] * e.n for e in cm.layers.values()) / cm.weights
            xbits = f"{xb:.3f} (seed {SEED_XOR_BITS})"
        rows.append([name, fmt, f"{prune:g}", bits, f"{cm.bits_per_weight:.3f}", xbits, f"{cm.flash_bytes:,} B",
                     f"{(after - before) * 100:+.1f} pp", f"{cm.decode_ops / cm.weights:.2f}",
                     "yes" if exact else "NO"])
    return table(["model", "format", "prune", "bits", "bits/weight", "XOR bit-planes bits/weight", "flash",
                  "accuracy change", "decode ops/weight", "exact"], rows)


def part2(models: dict) -> str:
    xr, lr_rows = [], []
    layers = []
    for name, (model, _) in models.items():
        cm = compress_model(model, "xor", prune=0.91, bits=1)       # every layer, one model seed
        for ly in model.param_layers():
            layers.append((name, ly))
            e = cm.layers[ly.name]
            if ly.kind == "matmul":
                p, b = e.params, e.bits
                xr.append([name, ly.name, e.n, e.kept, p["block"], p["n_in"], p["slack"], p["patch_count"],
                           b["values"], b["patches"], b["header"],
                           f"{b['model_header']} of {p['model_seed_bits']} (seed {p['seed']})",
                           f"{p['xor_bits_per_weight']:.4f}", "yes" if p["xor_bits_per_weight"] <= 0.12 else "no",
                           "yes" if roundtrip_exact(ly.params[0], e) else "NO", f"{e.bits_per_weight:.3f}"])
    largest = sorted(layers, key=lambda t: -t[1].params[0].size)[:4]
    for name, ly in largest:
        W = ly.params[0]
        M = as_rows(W)
        e = LR.encode(W, prune=0.91, bits=32)
        csr_same = CSR.index_bits(*M.shape, e.kept) / e.n
        csr_target = CSR.index_bits(*M.shape, e.params["target_kept"]) / e.n
        lr_rows.append([name, ly.name, "x".join(map(str, M.shape)), e.params["target_kept"], e.kept,
                        f"{1 - e.kept / e.n:.3f}", e.params["extra_kept"], e.params["extra_pruned"],
                        f"{e.params['importance_kept']:.2f}", f"{e.bits['index'] / e.n:.3f}", f"{csr_same:.3f}",
                        f"{csr_target:.3f}"])
    return ("XOR format, 91 % pruned, 1 bit, every weight layer of each model encoded together (one model "
            "seed, Elias-gamma coded, stored once; each layer carries a whole-bit share of it in proportion to its "
            "weights), the dense layers shown. Bits/weight = (values + patches + the layer's header + its share "
            "of the model seed) / weights: everything the decoder needs for the bit-planes, the seed's measure; "
            "the total adds the float16 scales and the pruning index:\n\n"
            + table(["model", "layer", "weights", "kept", "block", "N_in", "slack", "patches", "value bits",
                     "patch bits", "layer header bits", "model seed bits (share of)", "bits/weight", "<= 0.12",
                     "exact", "total bits/weight"], xr)
            + "\n\nLow-rank binary index (rank 4, 64x64 tiles) vs CSR index, 91 % target, the zoo's largest "
              "layers (CSR at the low-rank mask's own kept count and at the target):\n\n"
            + table(["model", "layer", "rows x cols", "target kept", "kept", "prune rate", "extra kept",
                     "extra pruned", "importance kept", "low-rank index bits/weight", "CSR (same kept)",
                     "CSR (target)"], lr_rows))


def part3(seeds: int) -> str:
    rows, summary = [], []
    for name in ("mlp-digits", "lenet-digits"):
        rec = []
        for seed in tqdm(range(seeds), desc=f"DeepTwist {name}", unit="seed", file=sys.stderr):
            r = DT.experiment(name, "binary", prune=0.91, bits=1, seed=seed)
            rec.append(r)
            rows.append([name, seed, f"{r['accuracy_dense'] * 100:.1f} %", f"{r['accuracy_compressed'] * 100:.1f} %",
                         f"{r['accuracy_finetune_compressed'] * 100:.1f} %", f"{r['accuracy_deeptwist'] * 100:.1f} %",
                         f"{r['recovered']:.2f}"])
        mean = {k: sum(r[k] for r in rec) / len(rec) for k in ("accuracy_dense", "accuracy_compressed",
                                                                "accuracy_deeptwist", "recovered")}
        pooled = (mean["accuracy_deeptwist"] - mean["accuracy_compressed"]) / \
            (mean["accuracy_dense"] - mean["accuracy_compressed"])
        summary.append(f"- {name}: mean recovered {mean['recovered']:.2f} over {seeds} seeds (from mean accuracies: "
                       f"{pooled:.2f}; needs >= 0.5)")
    return (f"1 bit, 91 % pruned (binary codes; the XOR format decodes to the same values), Adam lr {DT.LR}, "
            f"{DT.STEPS} steps, distort every {DT.EVERY}; the control fine-tunes as long without distortion, "
            "then compresses:\n\n"
            + table(["model", "seed", "dense", "compressed", "fine-tuned, then compressed", "DeepTwist", "recovered"],
                    rows) + "\n\n" + "\n".join(summary))


def part4() -> str:
    from simulator.run import run_scenario
    from simulator.scenario import scenario_dict

    raw = scenario_dict("demo-compressed")
    dense = copy.deepcopy(raw)
    del dense["workload"]["compression"]
    dense["name"] = "demo-compressed, dense frozen layers"
    out = {}
    for label, sc in tqdm([("compressed", raw), ("dense", dense)], desc="demo scenarios", unit="run", file=sys.stderr):
        out[label] = run_scenario(sc, compare=False)
    c = out["compressed"]["compression"]
    rows = []
    for label, r in out.items():
        comp = r["compression"]
        model_bytes = comp["model_flash_bytes"] if comp else c["model_flash_bytes_uncompressed"]
        rows.append([label, f"{r['flash_bytes']:,} B", f"{model_bytes:,} B",
                     f"{r['peak_ram_bytes']:,} B", f"{r['energy_per_day_j']:.1f} J",
                     f"{comp['decode_energy_j_per_day']:.1f} J" if comp else "0 J",
                     f"{comp['decode_s_per_inference'] * 1e3:.1f} ms" if comp else "0 ms",
                     f"{r['worst_inference_latency_s'] * 1e3:.1f} ms", f"{r['accuracy_after'] * 100:.1f} %",
                     f"{r['retention_after'] * 100:.1f} %", "yes" if r["fits"] else "no"])
    return ("demo-compressed (pyboard, MicroPython, lenet-digits, classifier personalised, frozen layers "
            f"{', '.join(c['layers'])} compressed) vs the same scenario with dense frozen layers, one day:\n\n"
            + table(["frozen layers", "flash (verdict)", "model bytes", "peak RAM", "energy/day", "of it decoding",
                     "decode per inference", "worst inference", "user accuracy", "retention", "fits"], rows))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, default=3, help="DeepTwist seeds")
    ap.add_argument("--skip-deeptwist", action="store_true")
    ap.add_argument("--skip-demo", action="store_true")
    args = ap.parse_args()
    models = {}
    for name in tqdm(list(zoo()), desc="pre-training the zoo", unit="model", file=sys.stderr):
        models[name] = DT.pretrained(name, 0)
    print("## Formats x zoo models\n\n" + part1(models))
    print("\n## Done-when: XOR per dense layer, low-rank index vs CSR\n\n" + part2(models))
    if not args.skip_deeptwist:
        print("\n## DeepTwist\n\n" + part3(args.seeds))
    if not args.skip_demo:
        print("\n## Demo: frozen layers compressed vs dense\n\n" + part4())


if __name__ == "__main__":
    main()
