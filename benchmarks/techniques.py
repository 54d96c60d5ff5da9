"""What each training technique buys on LeNet-digits: MACs saved and accuracy change, measured.

Part 1 (the anchor: instance filtering + error-map pruning saved 79 % of training MACs at +0.2 %
accuracy on LeNet/MNIST; our target is >= 60 % fewer MACs within 1 % accuracy): LeNet-digits trained
from scratch through the traced ``train_step`` for the same number of steps and samples, once per
technique and for a few threshold pairs of the two together, over several seeds. MACs are the sum of
every op's MACs in the trace (forward, backward, recompute, updates), so savings are what was really
skipped. Peak live bytes are the step's own buffers (max over sampled steps); flash bytes are swap
traffic per step.

Part 2 (personalisation): the pre-trained LeNet learns a new class on the device (80 steps, batch 8);
user and retention accuracy after, per technique.

Run: ``.venv/bin/python benchmarks/techniques.py [--seeds 3 --epochs 10]``.
"""
from __future__ import annotations

import argparse
import itertools
import sys

import numpy as np
from tqdm import tqdm

import workloads as W
from workloads import Techniques
from workloads.pretrain import single_thread_blas

MODEL = "lenet-digits"
IF, EMP = 0.2, 0.2          # thresholds of the headline pair (nats; fraction of each sample's max error)

PART1 = [
    ("baseline", Techniques()),
    ("instance filter (0.2 nats)", Techniques(instance_filter=IF)),
    ("error-map prune (0.2)", Techniques(error_map_prune=EMP)),
    ("IF + EMP (0.2, 0.2)", Techniques(instance_filter=IF, error_map_prune=EMP)),
    ("IF + EMP (0.05, 0.1)", Techniques(instance_filter=0.05, error_map_prune=0.1)),
    ("IF + EMP (0.1, 0.3)", Techniques(instance_filter=0.1, error_map_prune=0.3)),
    ("grad prune (0.2)", Techniques(grad_prune=0.2)),
    ("ETF classifier", Techniques(etf=True)),
    ("update bias only", Techniques(update="bias")),
    ("update last-2", Techniques(update="last-k", last_k=2)),
    ("update sparse 25 %", Techniques(update="sparse", sparse_fraction=0.25)),
    ("fused update", Techniques(fused_update=True)),
    ("recompute", Techniques(recompute=True)),
    ("swap to flash", Techniques(swap=True)),
    ("int8", Techniques(int8=True)),
]


def train(tech: Techniques, *, story: str, steps: int, batch: int, lr: float, seed: int) -> dict:
    """Train through the trace; totals of MACs, the largest step peak and flash traffic, accuracy after."""
    job = W.make_job(MODEL, story=story, techniques=tech, lr=lr, momentum=0.9, seed=seed)
    before = job.evaluate()
    stream = job.labelled_stream()
    macs = peak = flash = 0
    for i in range(steps):
        xs, ys = zip(*itertools.islice(stream, batch), strict=True)
        ops, _ = W.collect(job.train_step(np.stack(xs), np.array(ys)))
        macs += sum(o.macs for o in ops)
        if i % 25 == 0 or i == steps - 1:
            s = W.check_trace(ops, job.persistent_tensors())
            peak = max(peak, s.peak_live_bytes)
            flash = max(flash, s.flash_write_bytes + s.flash_read_bytes)
    after = job.evaluate()
    return {"macs": macs, "peak": peak, "flash": flash, "before": before, "after": after,
            "persistent": sum(t.nbytes for t in job.persistent_tensors())}


def part1(seeds: int, epochs: int, batch: int) -> bool:
    n_train = len(W.make_job(MODEL, story="plain", pretrain=False).split.user_train[1])
    steps = epochs * n_train // batch
    cells = [(label, t, s) for label, t in PART1 for s in range(seeds)]
    res: dict[str, list[dict]] = {}
    for label, tech, seed in tqdm(cells, desc="part 1", unit="run", file=sys.stderr):
        res.setdefault(label, []).append(train(tech, story="plain", steps=steps, batch=batch, lr=0.02, seed=seed))
    base = res["baseline"]
    b_macs = np.mean([r["macs"] for r in base])
    b_acc = np.mean([r["after"]["user_accuracy"] for r in base])
    print(f"\nPart 1: {MODEL} from scratch, {epochs} epochs x {n_train} digits, batch {batch}, SGD lr 0.02 "
          f"momentum 0.9, mean of {seeds} seed(s)")
    hdr = (f"{'technique':28s} {'MACs (M)':>9s} {'saved':>7s} {'test acc':>9s} {'d acc':>7s} {'acc min..max':>13s} "
           f"{'peak live':>10s} {'persistent':>10s} {'flash/step':>10s}")
    print(hdr)
    print("-" * len(hdr))
    ok_rows = []
    for label, _ in PART1:
        rs = res[label]
        macs = np.mean([r["macs"] for r in rs])
        accs = [r["after"]["user_accuracy"] for r in rs]
        saved = 1 - macs / b_macs
        dacc = np.mean(accs) - b_acc
        print(f"{label:28s} {macs / 1e6:9.1f} {saved * 100:6.1f}% {np.mean(accs) * 100:8.2f}% {dacc * 100:+6.2f}pp "
              f"{min(accs) * 100:6.1f}..{max(accs) * 100:5.1f} {max(r['peak'] for r in rs) / 1024:7.1f} KiB "
              f"{rs[0]['persistent'] / 1024:6.1f} KiB {max(r['flash'] for r in rs) / 1024:6.1f} KiB")
        if label.startswith("IF + EMP"):
            ok_rows.append((label, saved, dacc))
    head = next(r for r in ok_rows if r[0] == "IF + EMP (0.2, 0.2)")
    met = head[1] >= 0.60 and head[2] >= -0.01
    print(f"\nheadline IF + EMP (0.2, 0.2): {head[1] * 100:.1f} % fewer MACs, accuracy {head[2] * 100:+.2f} pp "
          f"(anchor: -79 % MACs, +0.2 %; target >= 60 % fewer within 1 %): {'MET' if met else 'NOT MET'}")
    print("thresholds: the three IF + EMP pairs above are every pair tried; (0.2, 0.2) was chosen on seed 0.")
    print("note: forward MACs are never skipped, so they bound the saving (~1/3 of a baseline step here).")
    return met


def part2(steps: int = 80, batch: int = 8) -> None:
    rows = []
    for label, tech in tqdm(PART1, desc="part 2", unit="run", file=sys.stderr):
        if label.startswith("IF + EMP (0.") and label != "IF + EMP (0.2, 0.2)":
            continue
        rows.append((label, train(tech, story="new-class", steps=steps, batch=batch, lr=0.005, seed=0)))
    b = rows[0][1]
    print(f"\nPart 2: personalisation, {MODEL} pre-trained without class 9 learns it on the device "
          f"({steps} steps x batch {batch}, SGD lr 0.005 momentum 0.9, seed 0)")
    hdr = f"{'technique':28s} {'MACs (M)':>9s} {'saved':>7s} {'user acc':>16s} {'retention':>16s}"
    print(hdr)
    print("-" * len(hdr))
    for label, r in rows:
        print(f"{label:28s} {r['macs'] / 1e6:9.2f} {(1 - r['macs'] / b['macs']) * 100:6.1f}% "
              f"{r['before']['user_accuracy'] * 100:6.1f} -> {r['after']['user_accuracy'] * 100:5.1f}% "
              f"{r['before']['retention_accuracy'] * 100:6.1f} -> {r['after']['retention_accuracy'] * 100:5.1f}%")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, default=3, help="seeds per technique in part 1")
    ap.add_argument("--epochs", type=int, default=10, help="epochs of from-scratch training in part 1")
    ap.add_argument("--batch", type=int, default=16)
    args = ap.parse_args(argv)
    with single_thread_blas():
        part1(args.seeds, args.epochs, args.batch)
        part2()
    return 0


if __name__ == "__main__":
    sys.exit(main())
