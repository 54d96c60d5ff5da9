"""The early instance filter (docs/architecture.md §1; the seed's self-supervised early instance filtering): a small
head on an early layer's output predicts each sample's loss; a sample it calls trivial is dropped right there,
so it costs only the early layers and the head, not the later layers' forward, the backward or the update.

What the head learns (``techniques.early_filter_target``):
- ``loss`` (the default): it regresses each sample's true loss, taken at the loss op from the samples that
  went on, in log space (floored at ``FLOOR_FRACTION`` of the threshold: below it every sample is trivial
  alike). It predicts one loss per class and reads the one of the sample's label, a Dense head of
  ``early_filter_hidden`` ReLU units.
- ``label``: it is a softmax classifier of the label on the early features (inputs scaled by their running
  RMS), trained on every sample of the batch before the selection (the early features and the label are
  there for all of them); its own cross-entropy on the sample's label is the predicted loss. A sample the
  head finds hard to classify from early features is, far more often than not, one the network gets wrong
  (measured on LeNet-digits, seed 0: AUC ~0.85 for the top 10 % of losses, against ~0.6 for ``loss``).

Which samples go on (``techniques.early_filter_slack``):
- None: those predicted at >= ``early_filter`` nats.
- s: the top ``s x p`` of each batch by predicted loss, where ``p`` is a running estimate of the fraction of
  samples whose TRUE loss is >= ``early_filter`` (it starts at 1, so the first steps keep every sample, and
  it falls as the network learns). ``p`` comes from the losses of the samples that went on, the explored ones
  weighted 1/explore, so it is unbiased while ``early_filter_explore`` > 0. The head only ranks; how many
  samples are worth training on is set by the network's own losses.
- ``early_filter = 0`` keeps every sample in every mode (the simulator's worst-case memory probe).

A seeded fraction ``early_filter_explore`` of the samples it would drop goes on anyway and counts
1/explore times in the head's training and in ``p`` (importance weighting: the explored samples stand for
all the dropped ones). Without it the ``loss`` head drops hard samples it is never corrected on.

Its ops are traced like every other op: ``efilter.head`` (forward over the whole batch), ``efilter.select``
(compacts the kept samples' rows of the live batch buffers); for ``loss``, after the loss op,
``efilter.head.backward`` and ``efilter.head.update`` (plain SGD: no optimiser state); for ``label`` the
backward and the update run before ``efilter.select`` on the whole batch, and ``efilter.level`` updates ``p``
after the loss op. Its weights are persistent tensors of the job; its activations and gradients are step
buffers.
"""
from __future__ import annotations

import math

import numpy as np

from . import layers as L
from .model import Model
from .program import ProgramOp, StepState
from .techniques import Techniques
from .trace import Tensor, new_tensor_id

F32 = np.float32
FLOOR_FRACTION = 0.2      # ``loss`` targets are log(max(loss, FLOOR_FRACTION * threshold))
HEAD_SEED = 404           # offsets of the head's initial weights and exploration draws from the job's seed
LEVEL_RATE = 0.05         # the running fraction of samples at or above the threshold: weight of each new batch
SCALE_RATE = 0.1          # ``label``: the running RMS of the head's input features: weight of each new batch


class EarlyFilter:
    """The early filter of one job: where its head reads, its weights, and the ops of one step."""

    def __init__(self, model: Model, techniques: Techniques, seed: int):
        t = techniques
        n = len(model.layers)
        pos = t.early_filter_layer
        if not 1 <= pos < n or all(ly.view for ly in model.layers[pos:]):
            raise ValueError(f"techniques.early_filter_layer must be in 1..{n - 1} for {model.spec.text} and leave "
                             f"a compute layer after it (got {pos}): the head reads the output of the first "
                             f"early_filter_layer layers")
        self.threshold = float(t.early_filter)
        self.log_threshold = math.log(self.threshold) if self.threshold > 0 else -math.inf
        self.floor = FLOOR_FRACTION * self.threshold if self.threshold > 0 else 1e-6
        self.explore = t.early_filter_explore
        self.label = t.early_filter_target == "label"
        self.slack = t.early_filter_slack
        self.lr = float(t.early_filter_lr)
        self.level = 1.0                 # running fraction of samples whose true loss is >= the threshold
        self.scale: float | None = None  # ``label``: running RMS of the head's input features
        self.after = pos - 1                        # index of the layer whose output the head reads
        width = math.prod(model.layers[self.after].out_shape)
        self.width = width
        self.layers: list[L.Dense] = []
        if t.early_filter_hidden:
            self.layers.append(L.Dense("efilter.hidden", width, t.early_filter_hidden, relu=True))
            width = t.early_filter_hidden
        self.layers.append(L.Dense("efilter.out", width, model.num_classes, relu=False))
        init = np.random.default_rng(seed + HEAD_SEED)
        for ly in self.layers:
            W, b = ly.params
            W[...] = init.normal(0.0, math.sqrt(2.0 / W.shape[0]), W.shape).astype(F32)
            b[...] = 0.0
        if not self.label:
            # untrained, the head predicts the loss of a uniform guess for every sample: all of them are kept
            self.layers[-1].params[1][...] = math.log(math.log(max(2, model.num_classes)))
        self._draws = np.random.default_rng(seed + HEAD_SEED + 1)
        self._weight = np.ones(0)        # this step's kept samples' weights in the head's training
        self._persistent = tuple(
            Tensor(new_tensor_id(), p.nbytes, kind, f"{ly.name}.{pname}")
            for ly in self.layers for p, kind, pname in zip(ly.params, ("weight", "bias"), ("W", "b"), strict=True))

    def persistent_tensors(self) -> tuple[Tensor, ...]:
        """The head's weights and biases (float32; plain SGD keeps no optimiser state)."""
        return self._persistent

    def predict(self, features: np.ndarray, ys: np.ndarray) -> np.ndarray:
        """Predicted log-loss of each sample from its early features (N, ...) and its label."""
        h = features.reshape(len(features), -1)
        if self.label:
            h = h / (self.scale or 1.0)
        for ly in self.layers:
            h = ly.forward(h)
        return self._log_loss(h, ys)

    def _log_loss(self, out: np.ndarray, ys: np.ndarray) -> np.ndarray:
        """The head's output as a predicted log-loss per sample: read directly (``loss``), or the log of its
        own cross-entropy on the label (``label``)."""
        rows = np.arange(len(out))
        if not self.label:
            return out[rows, ys]
        z = out - out.max(axis=1, keepdims=True)
        ce = np.log(np.exp(z).sum(axis=1)) - z[rows, ys]
        return np.log(np.maximum(ce, 1e-12))

    def _choose(self, pred: np.ndarray) -> np.ndarray:
        """Which samples go on before exploration: over the threshold, or the top slack x level of them."""
        n = len(pred)
        if self.threshold == 0:
            return np.ones(n, bool)
        if self.slack is None:
            return pred >= self.log_threshold
        k = min(n, math.ceil(self.slack * self.level * n))
        keep = np.zeros(n, bool)
        keep[np.argsort(-pred, kind="stable")[:k]] = True
        return keep

    def _update_level(self, losses: np.ndarray, n: int) -> None:
        """``level`` from the true losses of the samples that went on (explored ones weighted 1/explore)."""
        if self.slack is not None and n:
            hard = float(((losses >= self.threshold) * self._weight).sum()) / n
            self.level += LEVEL_RATE * (hard - self.level)

    # ------------------------------------------------------------------------------------ the ops
    def select_ops(self, feature_key: str, values: dict, st: StepState) -> list[ProgramOp]:
        """After the early layers: the head over the whole batch (for ``label`` also its backward and update
        on the labels), then the selection, which keeps the chosen samples (and the explored ones) and
        compacts every live batch value to their rows, so the later layers, the loss and the backward see
        only them. Ends the step if none is kept."""
        keys = [f"{ly.name}.y" for ly in self.layers]
        x_key = "efilter.x" if self.label else feature_key

        def head_run():
            h = values[feature_key].reshape(st.n, -1)
            macs = br = bw = 0
            if self.label:               # scale by the running RMS of the features (one multiply each)
                rms = float(np.sqrt(np.mean(h * h))) + 1e-6
                self.scale = rms if self.scale is None else self.scale + SCALE_RATE * (rms - self.scale)
                h = values[x_key] = (h * F32(1.0 / self.scale)).astype(F32)
                macs, br, bw = h.size, h.nbytes, h.nbytes
            for ly, key in zip(self.layers, keys, strict=True):
                br += h.nbytes + sum(p.nbytes for p in ly.params)
                h = values[key] = ly.forward(h)
                macs += ly.forward_macs(st.n)
                bw += h.nbytes
            return macs, br, bw

        def select_run():
            pred = self._log_loss(values[keys[-1]], st.labels)
            keep = self._choose(pred)
            weight = np.ones(st.n)
            if self.explore:
                explored = ~keep & (self._draws.random(st.n) < self.explore)
                weight[explored] = 1.0 / self.explore
                keep |= explored
            idx = np.flatnonzero(keep)
            self._weight = weight[idx]
            st.stats["early_kept"] = len(idx)
            moved = 0
            if len(idx) < st.n:
                st.early = idx
                for k, v in list(values.items()):      # the live batch values (activations so far)
                    if isinstance(v, np.ndarray) and v.ndim and len(v) == st.n:
                        values[k] = v[idx]
                        moved += values[k].nbytes
            return 0, pred.nbytes + moved, moved

        allocs = [(key, "activation", lambda ly=ly: st.n * ly.out_shape[0] * 4)
                  for ly, key in zip(self.layers, keys, strict=True)]
        if self.label:
            allocs.insert(0, (x_key, "activation", lambda: st.n * self.width * 4))
        ops = [ProgramOp("efilter.head", "matmul", "f32", head_run, [feature_key], allocs)]
        if self.label:
            ops += self._train_program(x_key, keys, values, lambda: self._label_grad(values[keys[-1]], st))
        ops.append(ProgramOp("efilter.select", "copy", "f32", select_run, [keys[-1]],
                             ends_step=lambda: st.stats["early_kept"] == 0))
        return ops

    def train_ops(self, feature_key: str, values: dict, st: StepState) -> list[ProgramOp]:
        """After the loss op. ``loss``: one SGD step of the head on the kept samples' true losses (squared
        error in log space, explored samples weighted 1/explore). ``label``: ``efilter.level`` only (the head
        trained before the selection). The last op ends the step when instance filtering left nothing for the
        backward."""
        if self.label:
            def level_run():
                self._update_level(st.losses, st.n)
                return len(st.losses), st.losses.nbytes, 0
            return [ProgramOp("efilter.level", "reduce", "f32", level_run, [], ends_step=lambda: st.nk == 0)]
        keys = [f"{ly.name}.y" for ly in self.layers]
        return self._train_program(feature_key, keys, values, lambda: self._loss_grad(values[keys[-1]], st),
                                   ends_step=lambda: st.nk == 0)

    def _loss_grad(self, out: np.ndarray, st: StepState) -> tuple[np.ndarray, int, int]:
        """``loss``: d(weighted mean squared log-loss error)/d(output) of the kept samples, its MACs and the
        bytes it reads besides the output (the losses)."""
        losses = st.losses
        m = len(losses)
        ys = st.labels if st.early is None else st.labels[st.early]
        rows = np.arange(m)
        err = out[rows, ys] - np.log(np.maximum(losses, self.floor))
        st.stats["early_head_mse"] = float(np.mean(err * err))
        self._update_level(losses, st.n)
        d = np.zeros_like(out)
        d[rows, ys] = err * self._weight * (2.0 / m)
        return d, m, losses.nbytes

    def _label_grad(self, out: np.ndarray, st: StepState) -> tuple[np.ndarray, int, int]:
        """``label``: d(mean cross-entropy on the labels)/d(logits) over the whole batch, its MACs and the
        bytes it reads besides the logits (the labels)."""
        z = out - out.max(axis=1, keepdims=True)
        p = np.exp(z)
        p /= p.sum(axis=1, keepdims=True)
        rows = np.arange(len(out))
        st.stats["early_head_ce"] = float(np.mean(-np.log(np.maximum(p[rows, st.labels], 1e-12))))
        p[rows, st.labels] -= 1.0
        return (p / len(out)).astype(F32), 2 * out.size, st.labels.nbytes

    def _train_program(self, x_key: str, keys: list[str], values: dict, grad, ends_step=None) -> list[ProgramOp]:
        """``efilter.head.backward`` (gradient from ``grad()`` back through the head) and
        ``efilter.head.update`` (plain SGD at the head's own rate)."""
        grads: list[tuple[L.Dense, np.ndarray, np.ndarray]] = []

        def backward_run():
            out = values[keys[-1]]
            d, macs, extra = grad()
            m = len(out)
            br, bw = out.nbytes + extra, d.nbytes
            grads.clear()
            for i in range(len(self.layers) - 1, -1, -1):
                ly = self.layers[i]
                x = values[keys[i - 1]] if i else values[x_key].reshape(m, -1)
                (dW, db), mw = ly.weight_grad(x, d)
                grads.append((ly, dW, db))
                macs += mw
                br += x.nbytes + d.nbytes
                bw += dW.nbytes + db.nbytes
                if i:
                    d, mi = ly.input_grad(x, None, d)
                    d = self.layers[i - 1].act_backward(x, d)
                    macs += mi
                    br += d.nbytes + ly.params[0].nbytes
                    bw += d.nbytes
            return macs, br, bw

        def update_run():
            macs = br = bw = 0
            for ly, dW, db in grads:
                for p, g in zip(ly.params, (dW, db), strict=True):
                    p -= self.lr * g
                    macs += p.size
                    br += p.nbytes + g.nbytes
                    bw += p.nbytes
            grads.clear()
            return macs, br, bw

        wgrads = [(f"{ly.name}.dW", "wgrad", lambda ly=ly: sum(p.nbytes for p in ly.params)) for ly in self.layers]
        return [ProgramOp("efilter.head.backward", "matmul", "f32", backward_run, [x_key, *keys], wgrads),
                ProgramOp("efilter.head.update", "update", "f32", update_run, [k for k, _, _ in wgrads],
                          ends_step=ends_step)]
