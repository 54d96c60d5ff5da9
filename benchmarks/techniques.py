"""What each training technique buys on LeNet-digits: MACs saved and accuracy change, measured.

Part 1 (the anchor: instance filtering + error-map pruning saved 79 % of training MACs at +0.2 %
accuracy on LeNet/MNIST; our target is >= 60 % fewer MACs within 1 % accuracy): LeNet-digits trained
from scratch through the traced ``train_step`` for the same number of steps and samples, once per
technique and for a few threshold pairs of the two together, over several seeds. MACs are the sum of
every op's MACs in the trace (forward, backward, recompute, updates), so savings are what was really
skipped. Accuracy is the mean test accuracy over the last 20 checkpoints (every 5 steps), with the
learning rate x0.1 for the last quarter of the steps, the same for every row (one end-of-training
evaluation at a constant rate moved the baseline 93.5-98.2 % over its last 100 steps). Peak live bytes
are the step's own buffers (max over sampled steps); flash bytes are swap traffic per step.

The early filter's headline (issue #13: >= 75 % fewer MACs within 1 pp of the baseline, mean of 3 seeds)
takes one row of the early-filter grid (``EF_GRID``: the ``loss`` head under an absolute threshold, and the
``label`` head under the slack rule, see workloads/early_filter.py) on seed 0 by a fixed rule
(``early_filter_headline``: the largest saving within 1 pp on seed 0) and reports it on seeds 1 and 2 (the
3-seed mean the target is judged on) and, with ``--seeds`` > 3, on seeds 3.. as extra held-out seeds. The
grid's rows were picked by trying settings on seed 0 only. The last four label-head rows (``IF.05``/``IF.07``:
the instance filter after the forward for the kept samples; slack 0.8; pruning 0.1-0.15) were added after
seeing seed 0: of 54 settings tried on seed 0 (11 with a 2x2- or 4x4-pooled head input, which saved ~2.5
points more MACs but lost 1.5-3 pp and was not kept), the 20 promising ones were rerun with 3 more head
initialisations (still seed 0), and these four had the largest savings within 1 pp on that 4-run mean
(75.1-75.3 % at -0.76..-0.94 pp; one head initialisation moves seed 0's accuracy by about +-0.6 pp). Epochs matter: the filtered rows train on fewer
samples and catch up later, while the baseline's accuracy has flattened by 10 epochs (so at 20 it spends
twice the MACs for the same accuracy); the headline is judged at the default 10 epochs. Measured at 10
epochs (``--seeds 6 --jobs 2``, run once after the four rows were added): the rule takes EF-label + EMP
(.3,s.8,.1,IF.07) (seed 0: 75.6 %, -0.70 pp); seeds 0-2 75.6 % fewer MACs at -0.24 pp, MET (seeds 1-2 alone
75.6 %, -0.02 pp); extra held-out seeds 3-5 75.2 % at -0.01 pp (seeds 4 and 5 alone: 74.3 and 74.4 %). The MAC
margin is thin (0.6 points). In part 2 (personalisation, seed 0) the same row saves 71.3 % but its user accuracy
reaches 86.9 % against the baseline's 94.0 %. Before these rows the rule took EF-label + EMP (0.3, s1, 0.2):
seeds 0-2 73.7 % at -0.85 pp, NOT MET.

Part 2 (personalisation): the pre-trained LeNet learns a new class on the device (80 steps, batch 8);
user and retention accuracy after, per technique.

Run: ``.venv/bin/python benchmarks/techniques.py [--seeds 6 --epochs 10 --jobs 2]`` (about 4 s per run on one
core; part 1 is (rows + 1) x seeds runs).
"""
from __future__ import annotations

import argparse
import itertools
import multiprocessing
import os
import sys

import numpy as np
from tqdm import tqdm

import workloads as W
from workloads import Techniques
from workloads.pretrain import single_thread_blas

MODEL = "lenet-digits"
IF, EMP = 0.2, 0.2          # thresholds of the headline pair (nats; fraction of each sample's max error)
EF_TARGET = (0.75, -0.01)   # issue #13: early filter + error-map pruning >= 75 % fewer MACs within 1 pp
HELD_IN = 3                 # the target's mean: seed 0 (chooses the row) and seeds 1, 2; seeds 3.. are extra held out
# the label head (workloads.early_filter): a linear softmax classifier on the early features at its own rate 0.1
LABEL = dict(early_filter_target="label", early_filter_hidden=0, early_filter_lr=0.1)
# Part 1's accuracy is the mean test accuracy over the last LATE_EVALS checkpoints, one every LATE_EVERY steps
# (the last one after the final step), the same for every row: at lr 0.02 a single end-of-training
# evaluation of the baseline moves 93.5-98.2 % over its last 100 steps. Training is not changed by it.
LATE_EVALS, LATE_EVERY = 20, 5
SHORT = "baseline, half the epochs"   # also run: is the baseline's accuracy still moving at the full budget?
DECAY = (0.75, 0.1)         # part 1, every row: the learning rate x0.1 for the last quarter of the steps

PART1 = [
    ("baseline", Techniques()),
    ("instance filter (0.2 nats)", Techniques(instance_filter=IF)),
    ("error-map prune (0.2)", Techniques(error_map_prune=EMP)),
    ("IF + EMP (0.2, 0.2)", Techniques(instance_filter=IF, error_map_prune=EMP)),
    ("IF + EMP (0.05, 0.1)", Techniques(instance_filter=0.05, error_map_prune=0.1)),
    ("IF + EMP (0.1, 0.3)", Techniques(instance_filter=0.1, error_map_prune=0.3)),
    ("early filter (0.5)", Techniques(early_filter=0.5)),
    ("EF + EMP (0.3, 0.2)", Techniques(early_filter=0.3, error_map_prune=EMP)),
    ("EF + EMP (0.5, 0.2)", Techniques(early_filter=0.5, error_map_prune=EMP)),
    ("EF + EMP (0.6, 0.2)", Techniques(early_filter=0.6, error_map_prune=EMP)),
    ("EF + EMP (0.8, 0.2)", Techniques(early_filter=0.8, error_map_prune=EMP)),
    ("EF-label + EMP (0.3, s2, 0.2)", Techniques(early_filter=0.3, early_filter_slack=2, error_map_prune=EMP, **LABEL)),
    ("EF-label + EMP (0.3, s1, 0.2)", Techniques(early_filter=0.3, early_filter_slack=1, error_map_prune=EMP, **LABEL)),
    ("EF-label + EMP (0.5, s1, 0.2)", Techniques(early_filter=0.5, early_filter_slack=1, error_map_prune=EMP, **LABEL)),
    ("EF-label + EMP (.3, s1, .2, x.1)", Techniques(early_filter=0.3, early_filter_slack=1, error_map_prune=EMP,
                                                    early_filter_explore=0.1, **LABEL)),
    # added after seeing seed 0 only (label head + instance filter after the forward, slack < 1, lighter pruning):
    # the four settings with the largest saving within 1 pp on seed 0's mean over 4 head initialisations
    # (HEAD_SEED 404, 1404, 2404, 3404), out of 54 seed-0 settings tried; see the module docstring
    ("EF-label + EMP (.3,s.8,.1,IF.07)", Techniques(early_filter=0.3, early_filter_slack=0.8, error_map_prune=0.1,
                                                    instance_filter=0.07, **LABEL)),
    ("EF-label + EMP (.3,s.8,.15,IF.07)", Techniques(early_filter=0.3, early_filter_slack=0.8, error_map_prune=0.15,
                                                     instance_filter=0.07, **LABEL)),
    ("EF-label + EMP (.3,s.8,.1,IF.05)", Techniques(early_filter=0.3, early_filter_slack=0.8, error_map_prune=0.1,
                                                    instance_filter=0.05, **LABEL)),
    ("EF-label + EMP (.3,s.8,.15,IF.05)", Techniques(early_filter=0.3, early_filter_slack=0.8, error_map_prune=0.15,
                                                     instance_filter=0.05, **LABEL)),
    ("EF + IF + EMP (.5, .2, .2)", Techniques(early_filter=0.5, instance_filter=IF, error_map_prune=EMP)),
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

# the early-filter grid the headline rule chooses from (thresholds in nats; s: slack; x: exploration)
EF_GRID = [label for label, _ in PART1 if label.startswith(("EF + EMP", "EF-label + EMP"))]


def train(tech: Techniques, *, story: str, steps: int, batch: int, lr: float, seed: int,
          decay: tuple[float, float] | None = None) -> dict:
    """Train through the trace; totals of MACs, the largest step peak and flash traffic, accuracy after.
    ``decay=(at, factor)``: the learning rate is multiplied by ``factor`` from step ``at * steps`` on."""
    job = W.make_job(MODEL, story=story, techniques=tech, lr=lr, momentum=0.9, seed=seed)
    before = job.evaluate()
    stream = job.labelled_stream()
    macs = peak = flash = 0
    late: list[dict] = []                      # evaluations at the last LATE_EVALS checkpoints
    for i in range(steps):
        if decay and i == int(decay[0] * steps):
            job.opt.lr = lr * decay[1]
        xs, ys = zip(*itertools.islice(stream, batch), strict=True)
        ops, _ = W.collect(job.train_step(np.stack(xs), np.array(ys)))
        macs += sum(o.macs for o in ops)
        if i % 25 == 0 or i == steps - 1:
            s = W.check_trace(ops, job.persistent_tensors())
            peak = max(peak, s.peak_live_bytes)
            flash = max(flash, s.flash_write_bytes + s.flash_read_bytes)
        if (steps - 1 - i) % LATE_EVERY == 0 and steps - 1 - i < LATE_EVALS * LATE_EVERY:
            late.append(job.evaluate())
    after = late[-1]
    smoothed = {k: float(np.mean([e[k] for e in late])) for k in after}
    return {"macs": macs, "peak": peak, "flash": flash, "before": before, "after": after, "smoothed": smoothed,
            "persistent": sum(t.nbytes for t in job.persistent_tensors())}


def _cell(args: tuple) -> tuple[str, int, dict]:
    """One part-1 run (a worker's task): the same numbers whichever process runs it."""
    label, tech, seed, steps, batch = args
    with single_thread_blas():
        return label, seed, train(tech, story="plain", steps=steps, batch=batch, lr=0.02, seed=seed, decay=DECAY)


def part1(seeds: int, epochs: int, batch: int, jobs: int = 1) -> tuple[bool, str]:
    n_train = len(W.make_job(MODEL, story="plain", pretrain=False).split.user_train[1])
    steps = epochs * n_train // batch
    cells = [(label, t, s, steps, batch) for label, t in PART1 for s in range(seeds)]
    cells += [(SHORT, Techniques(), s, steps // 2, batch) for s in range(seeds)]   # the equal-accuracy check
    got: dict[tuple[str, int], dict] = {}
    bar = tqdm(total=len(cells), desc="part 1", unit="run", file=sys.stderr)
    if jobs > 1:
        with multiprocessing.Pool(jobs) as pool:
            for label, seed, r in pool.imap_unordered(_cell, cells):
                got[label, seed] = r
                bar.update()
    else:
        for cell in cells:
            label, seed, r = _cell(cell)
            got[label, seed] = r
            bar.update()
    bar.close()
    res = {label: [got[label, s] for s in range(seeds)] for label, _ in PART1}
    base = res["baseline"]
    b_macs = np.mean([r["macs"] for r in base])
    b_acc = np.mean([r["smoothed"]["user_accuracy"] for r in base])
    print(f"\nPart 1: {MODEL} from scratch, {epochs} epochs x {n_train} digits, batch {batch}, SGD lr 0.02 "
          f"momentum 0.9 (x{DECAY[1]:g} from {DECAY[0] * 100:.0f} % of the steps on), mean of {seeds} seed(s); "
          f"test accuracy = mean over the last {LATE_EVALS} checkpoints, one every {LATE_EVERY} steps")
    hdr = (f"{'technique':32s} {'MACs (M)':>9s} {'saved':>7s} {'test acc':>9s} {'d acc':>7s} {'acc min..max':>13s} "
           f"{'peak live':>10s} {'persistent':>10s} {'flash/step':>10s}")
    print(hdr)
    print("-" * len(hdr))
    ok_rows = []
    for label, _ in PART1:
        rs = res[label]
        macs = np.mean([r["macs"] for r in rs])
        accs = [r["smoothed"]["user_accuracy"] for r in rs]
        saved = 1 - macs / b_macs
        dacc = np.mean(accs) - b_acc
        print(f"{label:32s} {macs / 1e6:9.1f} {saved * 100:6.1f}% {np.mean(accs) * 100:8.2f}% {dacc * 100:+6.2f}pp "
              f"{min(accs) * 100:6.1f}..{max(accs) * 100:5.1f} {max(r['peak'] for r in rs) / 1024:7.1f} KiB "
              f"{rs[0]['persistent'] / 1024:6.1f} KiB {max(r['flash'] for r in rs) / 1024:6.1f} KiB")
        if label.startswith("IF + EMP"):
            ok_rows.append((label, saved, dacc))
    head = next(r for r in ok_rows if r[0] == "IF + EMP (0.2, 0.2)")
    met = head[1] >= 0.60 and head[2] >= -0.01
    print(f"\nheadline IF + EMP (0.2, 0.2): {head[1] * 100:.1f} % fewer MACs, accuracy {head[2] * 100:+.2f} pp "
          f"(anchor: -79 % MACs, +0.2 %; target >= 60 % fewer within 1 %): {'MET' if met else 'NOT MET'}")
    print("thresholds: the three IF + EMP pairs above are every pair tried; (0.2, 0.2) was chosen on seed 0.")
    print("note: the instance filter runs the whole forward for every sample (~1/3 of a baseline step here); the "
          "early filter runs only the first 2 layers and its head for a sample it drops.")
    chosen = early_filter_headline(res, seeds, head)
    short = [got[SHORT, s] for s in range(seeds)]
    print(f"equal-accuracy check: the baseline trained {epochs / 2:g} epochs (x0.1 from 75 % of its steps on) "
          f"reaches {np.mean([r['smoothed']['user_accuracy'] for r in short]) * 100:.2f} % with "
          f"{np.mean([r['macs'] for r in short]) / 1e6:.1f} M MACs (vs {b_acc * 100:.2f} % at {epochs} epochs); "
          f"against it {chosen} saves {(1 - macs_of(res[chosen]) / macs_of(short)) * 100:.1f} % of the MACs at "
          f"{(acc_of(res[chosen]) - acc_of(short)) * 100:+.2f} pp")
    return met, chosen


def macs_of(rs: list[dict]) -> float:
    return float(np.mean([r["macs"] for r in rs]))


def acc_of(rs: list[dict]) -> float:
    return float(np.mean([r["smoothed"]["user_accuracy"] for r in rs]))


def early_filter_headline(res: dict[str, list[dict]], seeds: int, current: tuple[str, float, float]) -> str:
    """The early-filter headline. The rule, fixed in this code before a run: over ``EF_GRID``, take on seed 0
    the largest MAC saving whose accuracy is within 1 pp of seed 0's baseline; if none is, the most accurate
    row on seed 0 (and say so). Seeds 1.. only report it: the target is judged on the mean of seeds 0-2
    (``HELD_IN``), seeds 1 and 2 and any seeds from 3 on are shown on their own too. Returns its label."""
    base = res["baseline"]

    def figures(label: str, s: int) -> tuple[float, float]:
        r, b = res[label][s], base[s]
        return 1 - r["macs"] / b["macs"], r["smoothed"]["user_accuracy"] - b["smoothed"]["user_accuracy"]

    def verdict(rows: list[tuple[float, float]]) -> tuple[float, float, str]:
        saved, dacc = float(np.mean([p[0] for p in rows])), float(np.mean([p[1] for p in rows]))
        met = saved >= EF_TARGET[0] and dacc >= EF_TARGET[1]
        return saved, dacc, "MET" if met else "NOT MET"

    on0 = {label: figures(label, 0) for label in EF_GRID}
    close = [c for c in EF_GRID if on0[c][1] >= EF_TARGET[1]]
    chosen = max(close, key=lambda c: on0[c][0]) if close else max(EF_GRID, key=lambda c: on0[c][1])
    print(f"\nearly filter: rule = on seed 0, the largest saving within 1 pp of seed 0's baseline accuracy, over "
          f"the grid {', '.join(EF_GRID)}")
    for c in EF_GRID:
        print(f"  seed 0: {c:32s} {on0[c][0] * 100:5.1f} % fewer MACs, accuracy {on0[c][1] * 100:+.2f} pp")
    print(f"chosen on seed 0: {chosen}" + ("" if close else " (no row within 1 pp on seed 0: the most accurate one)"))
    per = [figures(chosen, s) for s in range(seeds)]
    for s in range(seeds):
        role = "chosen on" if s == 0 else "reported on" if s < HELD_IN else "extra held-out"
        print(f"  {role} seed {s}: {per[s][0] * 100:.1f} % fewer MACs, accuracy {per[s][1] * 100:+.2f} pp")
    saved, dacc, met = verdict(per[:HELD_IN])
    n = min(seeds, HELD_IN)
    print(f"early filter headline {chosen}, mean of seeds 0-{n - 1} ({n} seed(s)): {saved * 100:.1f} % fewer MACs, "
          f"accuracy {dacc * 100:+.2f} pp (target >= {EF_TARGET[0] * 100:.0f} % within 1 pp): {met}")
    if 1 < seeds:
        h = verdict(per[1:HELD_IN])
        print(f"  seeds 1-{n - 1} alone (not seen by the rule): {h[0] * 100:.1f} % fewer MACs, accuracy "
              f"{h[1] * 100:+.2f} pp: {h[2]}")
    if seeds > HELD_IN:
        x = verdict(per[HELD_IN:])
        print(f"  extra held-out seeds {HELD_IN}-{seeds - 1}: {x[0] * 100:.1f} % fewer MACs, accuracy "
              f"{x[1] * 100:+.2f} pp: {x[2]}")
    print(f"side by side: current filter {current[0]}: {current[1] * 100:.1f} % fewer MACs ({current[2] * 100:+.2f} pp)"
          f" | early filter {chosen}: {saved * 100:.1f} % ({dacc * 100:+.2f} pp) | the seed (LeNet/MNIST): 79 % "
          f"(+0.2 %)")
    return chosen


def part2(early: str, steps: int = 80, batch: int = 8) -> None:
    rows = []
    for label, tech in tqdm(PART1, desc="part 2", unit="run", file=sys.stderr):
        if label.startswith("IF + EMP (0.") and label != "IF + EMP (0.2, 0.2)":
            continue
        if label.startswith(("EF +", "EF-label +")) and label != early:   # the early filter: the one chosen in part 1
            continue
        rows.append((label, train(tech, story="new-class", steps=steps, batch=batch, lr=0.005, seed=0)))
    b = rows[0][1]
    print(f"\nPart 2: personalisation, {MODEL} pre-trained without class 9 learns it on the device "
          f"({steps} steps x batch {batch}, SGD lr 0.005 momentum 0.9, seed 0)")
    hdr = f"{'technique':32s} {'MACs (M)':>9s} {'saved':>7s} {'user acc':>16s} {'retention':>16s}"
    print(hdr)
    print("-" * len(hdr))
    for label, r in rows:
        print(f"{label:32s} {r['macs'] / 1e6:9.2f} {(1 - r['macs'] / b['macs']) * 100:6.1f}% "
              f"{r['before']['user_accuracy'] * 100:6.1f} -> {r['after']['user_accuracy'] * 100:5.1f}% "
              f"{r['before']['retention_accuracy'] * 100:6.1f} -> {r['after']['retention_accuracy'] * 100:5.1f}%")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, default=3, help="seeds per technique in part 1")
    ap.add_argument("--epochs", type=int, default=10, help="epochs of from-scratch training in part 1")
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--jobs", type=int, default=os.cpu_count() or 1,
                    help="processes for part 1's runs (default: every core); the numbers do not depend on it")
    args = ap.parse_args(argv)
    if args.jobs < 1:
        ap.error(f"--jobs must be >= 1 (got {args.jobs})")
    _, early = part1(args.seeds, args.epochs, args.batch, args.jobs)
    with single_thread_blas():
        part2(early)
    return 0


if __name__ == "__main__":
    sys.exit(main())
