"""DeepTwist: train as usual, but every ``every`` steps replace the weights by their compressed-then-decoded
version and train on from there (Lee et al., "DeepTwist"). No masks or straight-through gradients: the
occasional distortion alone pulls the weights towards what the format can hold. The last step is always
followed by a distortion, so the trained model is the compressed one.

``experiment`` measures it on a zoo model: held-out accuracy of the pre-trained model (population split,
story new-class, the split the simulator's jobs pre-train on), after compressing it directly, after the
same fine-tuning without distortion and then compressing (the control), and after DeepTwist fine-tuning.
``recovered`` = (DeepTwist - compressed) / (dense - compressed): the share of the lost accuracy won back.
"""
from __future__ import annotations

from collections.abc import Callable

import numpy as np

from .. import datasets as D
from .. import layers as L
from ..model import Model, build_model, resolve
from ..optim import Adam
from ..pretrain import pretrained_state, single_thread_blas
from . import apply, compress_model

STEPS = 3000
EVERY = 2
LR = 0.005


def distorter(fmt: str, *, prune: float = 0.0, bits: int | None = None, layers: list[str] | None = None,
              seed: int = 0, **opts) -> Callable[[Model], None]:
    """A function that compresses a model's weights in ``fmt`` and writes the decoded values back."""
    def distort(model: Model) -> None:
        apply(model, compress_model(model, fmt, prune=prune, bits=bits, layers=layers, seed=seed, **opts))
    return distort


def train(model: Model, X: np.ndarray, y: np.ndarray, *, steps: int, every: int = 0,
          distort: Callable[[Model], None] | None = None, batch: int = 32, lr: float = LR, seed: int = 0,
          progress: Callable[[int], None] | None = None) -> None:
    """Adam on softmax cross-entropy (the pre-training loop's math); ``distort`` after every ``every``-th
    step and after the last (``every`` 0: only after the last; ``distort`` None: plain training).
    ``progress(steps done)`` is called every 50 steps and at the end."""
    if every < 0:
        raise ValueError(f"--distort-every {every}: must be >= 0")
    rng = np.random.default_rng(seed + 707)
    opt = Adam(lr)
    params = model.parameters()
    states = [opt.state_for(p) for p in params]
    Xi = model.to_internal(X)
    n = len(y)
    with single_thread_blas():
        for step in range(1, steps + 1):
            sel = rng.choice(n, size=min(batch, n), replace=False)
            acts = [Xi[sel]]
            for layer in model.layers:
                acts.append(layer.forward(acts[-1]))
            _, p = L.softmax_cross_entropy(acts[-1], y[sel])
            g = L.softmax_ce_grad(p, y[sel], len(sel))
            k = len(params)
            for i in range(len(model.layers) - 1, -1, -1):
                layer = model.layers[i]
                dz = layer.act_backward(acts[i + 1], g)
                if layer.params:
                    grads, _ = layer.weight_grad(acts[i], dz)
                    k -= len(layer.params)
                    for j, (prm, gr) in enumerate(zip(layer.params, grads, strict=True)):
                        opt.step(prm, gr, states[k + j])
                if i > 0:
                    g, _ = layer.input_grad(acts[i], acts[i + 1], dz)
            if distort is not None and ((every and step % every == 0) or step == steps):
                distort(model)
            if progress is not None and (step % 50 == 0 or step == steps):
                progress(step)


def accuracy(model: Model, X: np.ndarray, y: np.ndarray) -> float:
    return float(np.mean(model.predict(X) == y)) if len(y) else float("nan")


def pretrained(name: str, seed: int = 0) -> tuple[Model, D.Split]:
    """A zoo model (or spec) with its pre-trained weights and its data split (story new-class)."""
    spec, ds_name = resolve(name)
    ds_name = ds_name or D.default_for_shape(spec.input_shape)
    model = build_model(spec, seed)
    model.load_state(pretrained_state(spec, ds_name, "new-class", seed, False))
    return model, D.personalisation_split(D.load(ds_name, seed), "new-class", seed)


def experiment(name: str, fmt: str = "xor", *, prune: float = 0.91, bits: int | None = 1, every: int = EVERY,
               steps: int = STEPS, lr: float = LR, seed: int = 0, layers: list[str] | None = None) -> dict:
    """Accuracies (held-out population data) dense / compressed / fine-tuned then compressed / DeepTwist."""
    model, split = pretrained(name, seed)
    Xtr, ytr = split.pop_train
    Xte, yte = split.pop_test
    distort = distorter(fmt, prune=prune, bits=bits, layers=layers, seed=seed)
    state = model.state()
    out = {"model": name, "format": fmt, "prune": prune, "bits": bits, "every": every, "steps": steps, "seed": seed,
           "accuracy_dense": accuracy(model, Xte, yte)}
    distort(model)
    out["accuracy_compressed"] = accuracy(model, Xte, yte)
    model.load_state(state)
    train(model, Xtr, ytr, steps=steps, every=0, distort=distort, lr=lr, seed=seed)
    out["accuracy_finetune_compressed"] = accuracy(model, Xte, yte)
    model.load_state(state)
    train(model, Xtr, ytr, steps=steps, every=every, distort=distort, lr=lr, seed=seed)
    out["accuracy_deeptwist"] = accuracy(model, Xte, yte)
    lost = out["accuracy_dense"] - out["accuracy_compressed"]
    out["recovered"] = (out["accuracy_deeptwist"] - out["accuracy_compressed"]) / lost if lost > 0 else float("nan")
    return out
