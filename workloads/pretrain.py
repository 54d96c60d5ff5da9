"""Pre-training on the population, host side and untraced (the device only ever fine-tunes).

``fit`` trains with Adam and the same layer math as the traced step; ``pretrained_state`` caches the
weights per (spec, data set, story, seed, etf) in-process.
"""
from __future__ import annotations

import contextlib
from typing import Any

import numpy as np

from . import datasets as D
from . import layers as L
from .model import Model, build_model
from .optim import Adam
from .spec import ModelSpec
from .transforms import install_etf

_PRETRAINED: dict[tuple, list[np.ndarray]] = {}
_BLAS = None


def single_thread_blas():
    """A context limiting BLAS to one thread: these matrices are tiny, and on a busy 2-core machine a
    spinning second BLAS thread makes small matmuls several times slower."""
    global _BLAS
    if _BLAS is None:
        try:
            from threadpoolctl import ThreadpoolController  # a dependency of scikit-learn
        except ImportError:  # pragma: no cover - then BLAS keeps its own thread count
            _BLAS = False
        else:
            _BLAS = ThreadpoolController()
    return _BLAS.limit(limits=1, user_api="blas") if _BLAS else contextlib.nullcontext()


def fit(model: Model, X: np.ndarray, y: np.ndarray, *, steps: int, batch: int = 32, lr: float = 0.01,
        seed: int = 0, frozen: frozenset[int] = frozenset(), bar: Any = None) -> None:
    """Host-side, untraced Adam training with the same layer math (used for pre-training)."""
    with single_thread_blas():
        _fit(model, X, y, steps=steps, batch=batch, lr=lr, seed=seed, frozen=frozen, bar=bar)


@contextlib.contextmanager
def _progress(steps: int, what: str):
    """A progress bar on stderr for a wait that can take minutes (a large model), shown only on a terminal
    and only in the main process (pool and Dask workers of sweeps and variants stay quiet)."""
    import multiprocessing
    import sys

    from tqdm import tqdm

    quiet = multiprocessing.parent_process() is not None
    bar = tqdm(total=steps, desc=f"pre-training {what} on the host", unit="step", leave=False, file=sys.stderr,
               disable=True if quiet else None, mininterval=0.5)
    try:
        yield bar
    finally:
        bar.close()


def _fit(model, X, y, *, steps, batch, lr, seed, frozen, bar=None) -> None:
    rng = np.random.default_rng(seed + 101)
    opt = Adam(lr)
    params = model.parameters()
    states = [opt.state_for(p) for p in params]
    pidx = {id(p): i for i, p in enumerate(params)}
    Xi = model.to_internal(X)
    n = len(y)
    perm = rng.permutation(n)
    pos = 0
    for _ in range(steps):
        if pos + batch > n:
            perm, pos = rng.permutation(n), 0
        sel = perm[pos:pos + batch]
        pos += batch
        acts = [Xi[sel]]
        for layer in model.layers:
            acts.append(layer.forward(acts[-1]))
        _, p = L.softmax_cross_entropy(acts[-1], y[sel])
        g = L.softmax_ce_grad(p, y[sel], len(sel))
        for i in range(len(model.layers) - 1, -1, -1):
            layer = model.layers[i]
            dz = layer.act_backward(acts[i + 1], g)
            if layer.params:
                grads, _ = layer.weight_grad(acts[i], dz)
                for prm, gr in zip(layer.params, grads, strict=True):
                    j = pidx[id(prm)]
                    if j not in frozen:
                        opt.step(prm, gr, states[j])
            if i > 0:
                g, _ = layer.input_grad(acts[i], acts[i + 1], dz)
        if bar is not None:
            bar.update(1)


def _pretrain_steps(model: Model) -> int:
    return 1500 if model.spec.family == "mlp" else 900


def pretrained_state(spec: ModelSpec, dataset: str, story: str, seed: int, etf: bool) -> list[np.ndarray]:
    """Pre-trained weights on the population split, cached in-process per (spec, dataset, story, seed, etf)."""
    key = (spec.text, dataset, story, seed, etf)
    if key not in _PRETRAINED:
        model = build_model(spec, seed)
        frozen = frozenset()
        if etf:
            frozen = install_etf(model, seed)
        steps = _pretrain_steps(model)
        with _progress(steps, spec.text) as bar:           # shown before the data set loads (seconds)
            ds = D.load(dataset, seed)
            split = D.personalisation_split(ds, story, seed)
            X, y = split.pop_train
            fit(model, X, y, steps=steps, seed=seed, frozen=frozen, bar=bar)
        _PRETRAINED[key] = model.state()
    return [a.copy() for a in _PRETRAINED[key]]
