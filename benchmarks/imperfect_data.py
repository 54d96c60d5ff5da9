"""Learning from imperfect data on LeNet-digits (issue #15): each story and technique, 3 seeds.

Seeds 0-2 are where the set-ups and thresholds below were chosen (held-in); run ``--seed-offset 3`` for
seeds the tuning never saw (held-out) and report those separately. Each Done-when line prints its
per-seed figures and MET / NOT MET.

For every row: user accuracy and retention after on-device training (mean and min..max over the seeds),
training MACs (sum over every op of every step: techniques' extra work included), and peak RAM (the
persistent tensors -- weights, optimiser state, the techniques' state -- plus the largest step's
live bytes). The seed paper's claim is printed beside each section.

- noisy-labels: the user's hand (digits rotated 25 degrees, thickened), 40 % of the training labels
  flipped (symmetric, and to the confusable class); 800 steps of batch 8 from the shuffled stream.
- unlabelled: a 15-degree hand arriving class by class, 10 % labelled; 3 passes of batch 8 at lr 0.002
  through a 64-sample replay buffer; each seed's row is the mean of ``--repeats`` runs (4) whose replay
  draws differ (one run's accuracy moves by 6-8 pp sd from the draws alone, more than the differences
  judged). The user test set is every held-out digit in the user's hand (~540). A "no training" row
  shows the pre-trained model. Chosen on seeds 0-2 (4 runs each, from lr 0.001 / 0.002 / 0.005, Sinkhorn
  rho 0.5 / 0.8, weight 0.5 / 1, allocation per batch or over the buffer, k-centre or class-balanced
  representative buffer); before that, at lr 0.005 and one run per seed, the labelled 10 % alone ended
  below the pre-trained model (seeds 0-2: 73.0 -> 61.0 %) and the held-in leads (+13.5 pp, +13.1 pp)
  did not hold on seeds 3-14 (-3.7 pp, -1.1 pp).
- input-noise: unshifted digits under the sensor's dark-signal noise (``datasets.sensor_noise``:
  |N(0, 0.3^2)| added to every pixel, clipped at 1) rising over the first pass and staying there; 10
  passes of batch 8. Full fine-tuning at lr 0.001 (faster diverges on the noisy inputs), the bias-only
  rows at lr 0.003. The test set is 10 noisy readings of each of the ~540 held-out digits (was 5
  readings of 180 digits: a binomial standard error of ~2-3 pp on one seed's accuracy).
  Why this noise: white Gaussian noise of std 0.3-0.4 destroys the 8x8 digits' information (a network
  trained on noisy data recovers under half of the loss, full fine-tuning 5-20 %); a dark signal (thermal
  dark current, stray light: it only ever adds charge) shifts every pixel up and keeps most of the
  information -- full fine-tuning wins half of the loss back -- so the comparison is fair.

The noise-bias line is judged two ways: the loss recovered on the mean over seeds, and the mean of
the per-seed recoveries (a seed that loses little to noise weighs as much as one that loses a lot).
For scale (measured once on the host, not run here): one bias set trained with Adam for 3000 steps of 32
on four noisy copies of the population's ~1080 training digits at noise 0.3, labels known, weights
frozen, recovers 44 / 26 / 83 % on seeds 0-2 (mean 51 %); so a per-seed mean of 50 % is about what biases
alone can reach on this model and noise, with 24x the distinct labelled samples the device sees (180) and
~300x the samples its bias-only steps use.

Run: ``.venv/bin/python benchmarks/imperfect_data.py [--seeds 3] [--seed-offset 3] [--repeats 4]
[--only noisy,unlabelled,noise]`` (a few minutes on one core; noisy-labels is the slowest).
"""
from __future__ import annotations

import argparse
import itertools
import sys

import numpy as np
from tqdm import tqdm

import workloads as W
from workloads import Techniques
from workloads.imperfect import STATE_NAMES
from workloads.pretrain import single_thread_blas

MODEL = "lenet-digits"
BUF = 64
NB_LABEL = "noise-adaptive biases (16+20/level)"
NOISE = 0.3             # the story's highest noise level (the Done-when's test point)
NB_LR = 0.003           # bias-only rows
FULL = "full fine-tuning"
ALONE = "labelled 10 % alone, representative"
SK_REP = "Sinkhorn (K=20), representative"
SK_FIFO = "Sinkhorn (K=20), FIFO"
UNL_PASSES = 3          # unlabelled: passes over the user's stream
# unlabelled: lr 0.002, not the default 0.005: at 0.005 training on the labelled 10 % alone ended below the
# pre-trained model on seeds 0-2 (4 runs each: 62.7 % vs 73.0 %); chosen on seeds 0-2 from 0.001 / 0.002 / 0.005
UNL_LR = 0.002
# unlabelled: training runs per seed and row (replay draws re-seeded), averaged: one run's user accuracy moves
# by 6-8 pp (sd) with the draws alone on seeds 0-2, more than the differences the Done-when lines judge
UNL_REPEATS = 4


def run(tech: Techniques | None, story: str, *, seed: int, opts: dict, steps: int | None = None,
        passes: float | None = None, batch: int = 8, lr: float | None = None, repeat: int = 0) -> dict:
    """Train through the trace; ``tech=None``: no training at all. ``repeat`` > 0 re-seeds the job's
    training randomness (which buffered samples each step draws) and nothing else: same pre-trained
    model, same data, same stream."""
    job = W.make_job(MODEL, story=story, techniques=tech or Techniques(), seed=seed, lr=lr, story_options=opts)
    if repeat:      # one generator serves the job's steps and its techniques: re-seed it in place
        job._rng.bit_generator.state = np.random.default_rng([seed, repeat]).bit_generator.state
    before = job.evaluate()
    if steps is None:
        steps = int(passes * len(job.split.user_train[1]) / batch)
    stream = job.labelled_stream()
    macs = peak = 0
    for i in range(steps if tech is not None else 0):
        xs, ys = zip(*itertools.islice(stream, batch), strict=True)
        ops, _ = W.collect(job.train_step(np.stack(xs), np.array(ys)))
        macs += sum(o.macs for o in ops)
        if i % 10 == 0 or i == steps - 1:
            peak = max(peak, W.check_trace(ops, job.persistent_tensors()).peak_live_bytes)
    persistent = sum(t.nbytes for t in job.persistent_tensors())
    return {"before": before, "after": job.evaluate(), "macs": macs, "ram": persistent + peak,
            "state": sum(t.nbytes for t in job.persistent_tensors() if t.name.startswith(STATE_NAMES))}


def mean_of(rs: list[dict]) -> dict:
    """One seed's repeats as one row: accuracies and MACs averaged, RAM the largest."""
    avg = lambda part: {k: float(np.mean([r[part][k] for r in rs])) for k in rs[0][part]}   # noqa: E731
    return {"before": avg("before"), "after": avg("after"), "macs": float(np.mean([r["macs"] for r in rs])),
            "ram": max(r["ram"] for r in rs), "state": max(r["state"] for r in rs)}


def stats(rs: list[dict], key: str) -> tuple[float, float, float]:
    v = [r["after"][key] for r in rs]
    return float(np.mean(v)), min(v), max(v)


def table(title: str, claim: str, rows: list[tuple[str, list[dict]]]) -> None:
    print(f"\n{title}\n  seed's claim: {claim}")
    hdr = (f"  {'technique':34s} {'user acc (min..max)':>24s} {'retention':>10s} {'train MACs':>11s} "
           f"{'peak RAM':>10s} {'of it state':>11s}")
    print(hdr)
    print("  " + "-" * (len(hdr) - 2))
    for label, rs in rows:
        u, lo, hi = stats(rs, "user_accuracy")
        r, _, _ = stats(rs, "retention_accuracy")
        print(f"  {label:34s} {u * 100:7.1f} % ({lo * 100:4.1f}..{hi * 100:4.1f}) {r * 100:8.1f} % "
              f"{np.mean([x['macs'] for x in rs]) / 1e6:9.1f} M {max(x['ram'] for x in rs) / 1024:6.1f} KiB "
              f"{max(x['state'] for x in rs) / 1024:7.1f} KiB")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, default=3, help="how many seeds (default 3)")
    ap.add_argument("--seed-offset", type=int, default=0,
                    help="the first seed (default 0: seeds 0-2 are held-in; 3 runs held-out seeds)")
    ap.add_argument("--repeats", type=int, default=UNL_REPEATS,
                    help=f"unlabelled: training runs per seed and row, averaged (default {UNL_REPEATS})")
    ap.add_argument("--only", default="noisy,unlabelled,noise",
                    help="comma-separated sections: noisy (both label-noise kinds), unlabelled, noise")
    args = ap.parse_args(argv)
    if args.seeds < 1 or args.seed_offset < 0 or args.repeats < 1:
        ap.error(f"--seeds and --repeats must be >= 1 and --seed-offset >= 0 (got {args.seeds}, {args.repeats}, "
                 f"{args.seed_offset})")
    only = set(args.only.split(","))
    if not only <= {"noisy", "unlabelled", "noise"}:
        ap.error(f"--only: unknown section(s) {', '.join(sorted(only - {'noisy', 'unlabelled', 'noise'}))}")
    seeds = range(args.seed_offset, args.seed_offset + args.seeds)
    sat = Techniques(self_adaptive=0.9)
    unl = {"label_fraction": 0.1}
    noise = {"noise_level": NOISE}
    plan = {
        "noisy-sym": [("plain fine-tuning", None), ("self-adaptive (M=0.9)", sat)],
        "noisy-conf": [("plain fine-tuning", None), ("self-adaptive (M=0.9)", sat)],
        "unlabelled": [("no training (the pre-trained model)", "none"),
                       (ALONE, Techniques(buffer="representative", buffer_size=BUF)),
                       (SK_REP, Techniques(sinkhorn=20, buffer="representative", buffer_size=BUF)),
                       (SK_FIFO, Techniques(sinkhorn=20, buffer="fifo", buffer_size=BUF)),
                       ("Sinkhorn (K=20), reservoir", Techniques(sinkhorn=20, buffer="reservoir", buffer_size=BUF))],
        "noise": [("no adaptation", "none"), (FULL, Techniques()),
                  ("bias-only SGD, one set", Techniques(update="bias")),
                  (NB_LABEL, Techniques(noise_bias=True, noise_bias_steps=20))],
    }
    plan = {sec: rows for sec, rows in plan.items() if sec.split("-")[0] in only}
    cells = [(sec, label, t, s) for sec, rows in plan.items() for label, t in rows for s in seeds]
    res: dict[tuple[str, str], list[dict]] = {}
    with single_thread_blas():
        for sec, label, t, s in tqdm(cells, desc="imperfect data", unit="run", file=sys.stderr):
            if sec.startswith("noisy"):
                kind = "symmetric" if sec == "noisy-sym" else "confusable"
                r = run(t or Techniques(), "noisy-labels", seed=s, steps=800,
                        opts={"label_noise": 0.4, "label_noise_kind": kind})
            elif sec == "unlabelled":
                r = mean_of([run(None if t == "none" else t, "unlabelled", seed=s, passes=UNL_PASSES, lr=UNL_LR,
                                 opts=unl, repeat=k) for k in range(1 if t == "none" else args.repeats)])
            else:
                lr = NB_LR if t != "none" and (t.update == "bias" or t.noise_bias) else 0.001
                r = run(None if t == "none" else t, "input-noise", seed=s, passes=10, lr=lr, opts=noise)
            res.setdefault((sec, label), []).append(r)
    rows = lambda sec: [(label, res[(sec, label)]) for label, _ in plan[sec]]   # noqa: E731
    group = "held-in: the set-ups were chosen on these" if seeds.stop <= 3 else "held-out: not used for any choice"
    print(f"{MODEL}, seeds {seeds.start}-{seeds.stop - 1} ({group}), mean (min..max); SGD momentum 0.9, "
          f"lr {W.default_lr(W.parse_spec('cnn:8x8x1-d10'))} unless said")
    if "noisy-sym" in plan:
        table("noisy-labels, 40 % symmetric label noise (800 steps x batch 8)",
              "self-adaptive training improves generalisation under label noise at no extra computational cost "
              "(CIFAR-10/100, ImageNet)", rows("noisy-sym"))
        table("noisy-labels, 40 % noise to the confusable class (800 steps x batch 8)",
              "(same paper; asymmetric noise is the harder case)", rows("noisy-conf"))
    if "unlabelled" in plan:
        table(f"unlabelled, 10 % labelled, class by class ({args.repeats} runs per seed averaged; {UNL_PASSES} passes x batch 8 at lr {UNL_LR}, buffer {BUF})",
              "Sinkhorn label allocation beats FixMatch on CIFAR-10/100 and SVHN; representative data selection "
              "greatly improves accuracy and learning speed on non-i.i.d. streams", rows("unlabelled"))
    if "noise" in plan:
        table(f"input-noise, dark-signal sensor noise {NOISE} (10 passes x batch 8; lr 0.001 full, {NB_LR} bias-only; "
              "16+20/level: 16 unlabelled calibration batches + 20 bias-only SGD steps per noise level)",
              "adjusting conv biases to the run-time noise level counteracts the drop at low complexity",
              rows("noise"))
    print()
    for line in done_when(res, plan, seeds):
        print(line)
    return 0


def _acc(res: dict, sec: str, label: str) -> np.ndarray:
    return np.array([r["after"]["user_accuracy"] for r in res[(sec, label)]])


def _pp(v: np.ndarray) -> str:
    return ", ".join(f"{x * 100:+.1f}" for x in v)


def beats(name: str, a: np.ndarray, b: np.ndarray, seeds: range, target_pp: float = 0.0) -> str:
    """A "beats" line: the mean difference, per seed, how many seeds it wins, MET when the mean clears the
    target and more seeds win than lose."""
    d = a - b
    wins, losses = int((d > 0).sum()), int((d < 0).sum())
    met = d.mean() * 100 > target_pp and wins > losses
    return (f"Done-when: {name}: {d.mean() * 100:+.1f} pp on the mean of seeds {seeds.start}-{seeds.stop - 1} "
            f"(per seed {_pp(d)}; wins {wins}, losses {losses}); target mean > {target_pp:+.0f} pp and more "
            f"wins than losses: {'MET' if met else 'NOT MET'}")


def done_when(res: dict, plan: dict, seeds: range) -> list[str]:
    """Each Done-when line of issue #15 that these sections measure, with its per-seed figures."""
    out = []
    if "noisy-sym" in plan:
        out.append(beats("self-adaptive - plain at 40 % symmetric label noise",
                         _acc(res, "noisy-sym", "self-adaptive (M=0.9)"), _acc(res, "noisy-sym", "plain fine-tuning"),
                         seeds, 3.0))
    if "unlabelled" in plan:
        out.append(beats("Sinkhorn - the labelled 10 % alone", _acc(res, "unlabelled", SK_REP),
                         _acc(res, "unlabelled", ALONE), seeds))
        out.append(beats(f"representative - FIFO buffer ({BUF}, both with Sinkhorn)", _acc(res, "unlabelled", SK_REP),
                         _acc(res, "unlabelled", SK_FIFO), seeds))
    if "noise" in plan:
        out += noise_done_when(res, seeds)
    return out


def noise_done_when(res: dict, seeds: range) -> list[str]:
    base, nb, ft = (_acc(res, "noise", k) for k in ("no adaptation", NB_LABEL, FULL))
    cleans = np.array([W.make_job(MODEL, story="input-noise", seed=s, story_options={"noise_level": 0.0})
                       .evaluate()["user_accuracy"] for s in seeds])     # the same users' digits without noise
    lost = cleans.mean() - base.mean()
    rec = (nb.mean() - base.mean()) / lost if lost > 0 else float("nan")
    rec_ft = (ft.mean() - base.mean()) / lost if lost > 0 else float("nan")
    per = (nb - base) / np.maximum(cleans - base, 1e-9)
    per_ft = (ft - base) / np.maximum(cleans - base, 1e-9)
    m_nb = np.mean([r["macs"] for r in res[("noise", NB_LABEL)]])
    m_ft = np.mean([r["macs"] for r in res[("noise", FULL)]])
    cheap = m_nb / m_ft < 0.25
    return [
        f"Done-when: noise-adaptive biases recover {rec * 100:.0f} % of the {lost * 100:.1f} pp lost to noise on the "
        f"mean of seeds {seeds.start}-{seeds.stop - 1} ({cleans.mean() * 100:.1f} % clean -> {base.mean() * 100:.1f} % "
        f"noisy -> {nb.mean() * 100:.1f} % adapted; full fine-tuning {rec_ft * 100:.0f} %), mean of the per-seed "
        f"recoveries {per.mean() * 100:.0f} % (full fine-tuning {per_ft.mean() * 100:.0f} %), at {m_nb / 1e6:.1f} M MACs "
        f"= {m_nb / m_ft * 100:.0f} % of full fine-tuning's {m_ft / 1e6:.1f} M",
        f"  target >= 50 % on the mean and < 25 % of the MACs: {'MET' if rec >= 0.5 and cheap else 'NOT MET'}; "
        f">= 50 % on the mean of per-seed recoveries: {'MET' if per.mean() >= 0.5 and cheap else 'NOT MET'}",
        "  per seed (clean / noisy / adapted (% of the loss back) / full fine-tuning (%)): " + "; ".join(
            f"seed {s}: {c * 100:.1f} / {b * 100:.1f} / {a * 100:.1f} ({p * 100:.0f} %) / {f * 100:.1f} ({q * 100:.0f} %)"
            for s, c, b, a, p, f, q in zip(seeds, cleans, base, nb, per, ft, per_ft, strict=True)),
    ]


if __name__ == "__main__":
    sys.exit(main())
