"""Time of one training step: edgesim's traced numpy step vs the same model in PyTorch (CPU).

For every zoo model at batch 1, 8 and 32: median wall time of ``job.train_step`` (numpy math plus the
op trace, SGD with momentum) next to a PyTorch step (zero_grad, forward, cross-entropy, backward, SGD
step) on the same weights and batch, and their ratio (torch / numpy: above 1 means numpy is faster).
Both run with one BLAS/intra-op thread, the best setting for models this small. The first step's
losses are compared as a check that both sides build the same model. Torch is optional: without it the
numpy times are printed with a note. Run: ``.venv/bin/python benchmarks/train_step.py [--reps N]``.
"""
from __future__ import annotations

import argparse
import itertools
import statistics
import sys
import time

import numpy as np
from tqdm import tqdm

import workloads as W
from workloads import layers as L
from workloads.pretrain import single_thread_blas

BATCHES = (1, 8, 32)


def torch_model(model, torch):
    """The same network in PyTorch (NCHW inside, flattening in NHWC order), weights copied from ``model``."""
    nn = torch.nn

    class ToNCHW(nn.Module):
        def __init__(self, shape):
            super().__init__()
            self.shape = shape

        def forward(self, x):
            return x.reshape((-1,) + self.shape).permute(0, 3, 1, 2)

    class FlattenNHWC(nn.Module):
        def forward(self, x):
            return x.permute(0, 2, 3, 1).flatten(1)

    class GAP(nn.Module):
        def forward(self, x):
            return x.mean(dim=(2, 3))

    mods: list = []
    if len(model.internal_shape) == 3:
        mods.append(ToNCHW(model.internal_shape))
    for ly in model.layers:
        if isinstance(ly, L.Dense):
            m = nn.Linear(*ly.params[0].shape)
            m.weight.data = torch.from_numpy(ly.params[0].T.copy())
            m.bias.data = torch.from_numpy(ly.params[1].copy())
            mods.append(m)
        elif isinstance(ly, (L.Conv2D, L.DepthwiseConv2D)):
            if ly.ph or ly.pw:
                mods.append(nn.ZeroPad2d((ly.pw // 2, ly.pw - ly.pw // 2, ly.ph // 2, ly.ph - ly.ph // 2)))
            cin = ly.in_shape[2]
            if isinstance(ly, L.Conv2D):
                m = nn.Conv2d(cin, ly.out_shape[2], (ly.kh, ly.kw), (ly.sh, ly.sw))
                m.weight.data = torch.from_numpy(ly.params[0].transpose(3, 2, 0, 1).copy())
            else:
                m = nn.Conv2d(cin, cin, (ly.kh, ly.kw), (ly.sh, ly.sw), groups=cin)
                m.weight.data = torch.from_numpy(ly.params[0].transpose(2, 0, 1)[:, None].copy())
            m.bias.data = torch.from_numpy(ly.params[1].copy())
            mods.append(m)
        elif isinstance(ly, L.MaxPool):
            mods.append(nn.MaxPool2d((ly.kh, ly.kw)))
        elif isinstance(ly, L.AvgPool):
            mods.append(nn.AvgPool2d((ly.kh, ly.kw)))
        elif isinstance(ly, L.GlobalAvgPool):
            mods.append(GAP())
        elif isinstance(ly, L.Flatten):
            mods.append(FlattenNHWC())
        if getattr(ly, "relu", False):
            mods.append(nn.ReLU())
    return nn.Sequential(*mods)


def _median_time(fn, reps: int) -> float:
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def _cell(name: str, batch: int, reps: int, torch) -> tuple:
    """(model, batch, numpy s, torch s | None, ratio | None, |first-step loss difference|)."""
    job = W.make_job(name, story="plain", pretrain=False, momentum=0.9, lr=0.01)
    xs, ys = zip(*itertools.islice(job.labelled_stream(), batch), strict=True)
    xs, ys = np.stack(xs), np.array(ys)
    tm = None
    if torch is not None:
        tm = torch_model(job.model, torch)             # copies the initial weights before numpy trains
        opt = torch.optim.SGD(tm.parameters(), lr=0.01, momentum=0.9)
        tx = torch.from_numpy(xs.reshape(batch, -1) if len(job.model.internal_shape) == 1 else xs)
        ty = torch.from_numpy(ys)
        with torch.no_grad():
            tl = float(torch.nn.functional.cross_entropy(tm(tx), ty))

        def torch_step():
            opt.zero_grad(set_to_none=True)
            loss = torch.nn.functional.cross_entropy(tm(tx), ty)
            loss.backward()
            opt.step()
    _, nl = W.collect(job.train_step(xs, ys))               # warm-up and the first-step loss
    t_np = _median_time(lambda: W.collect(job.train_step(xs, ys)), reps)
    if tm is None:
        return name, batch, t_np, None, None, float("nan")
    torch_step()
    t_t = _median_time(torch_step, reps)
    return name, batch, t_np, t_t, t_t / t_np, abs(nl - tl)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reps", type=int, default=40, help="timed steps per cell (median reported)")
    args = ap.parse_args(argv)
    try:
        import torch
    except ImportError:
        torch = None
        print("note: torch is not installed here (.venv/bin/pip install torch==2.13.0 takes the local wheel); "
              "printing numpy times only")
    if torch is not None:
        torch.set_num_threads(1)
    rows = []
    cells = [(name, b) for name in W.zoo() for b in BATCHES]
    with single_thread_blas():
        for name, batch in tqdm(cells, desc="train step", unit="cell", file=sys.stderr):
            rows.append(_cell(name, batch, args.reps, torch))
    print(f"\none training step, median of {args.reps}, 1 thread each (ms); ratio = torch / numpy "
          "(> 1: numpy faster)")
    print(f"{'model':14s} {'batch':>5s} {'numpy ms':>9s} {'torch ms':>9s} {'ratio':>6s} {'|loss diff|':>11s}")
    for name, b, tn, tt, r, d in rows:
        tts = f"{tt * 1e3:9.3f}" if tt is not None else f"{'-':>9s}"
        rs = f"{r:6.2f}" if r is not None else f"{'-':>6s}"
        print(f"{name:14s} {b:5d} {tn * 1e3:9.3f} {tts} {rs} {d:11.2e}")
    if torch is not None:
        ratios = [r[4] for r in rows]
        print(f"\nnumpy at least as fast as torch in {sum(r >= 1 for r in ratios)}/{len(ratios)} cells; "
              f"geometric-mean ratio {float(np.exp(np.mean(np.log(ratios)))):.2f}")
        bad = [r for r in rows if not r[5] < 1e-3]
        if bad:
            print(f"warning: first-step losses differ for {[(r[0], r[1]) for r in bad]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
