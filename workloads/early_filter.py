"""The early instance filter (docs/architecture.md §1; the seed's self-supervised early instance filtering): a small
head on an early layer's output predicts each sample's loss; a sample it calls trivial (predicted loss
under ``techniques.early_filter`` nats) is dropped right there, so it costs only the early layers and the
head, not the later layers' forward, the backward or the update.

The head is trained on the device, self-supervised: the samples that go on through the network get their
true loss at the loss op, and that loss is the head's regression target (log space, floored at
``FLOOR_FRACTION`` of the threshold: below it every sample is trivial alike). It predicts one loss per
class and reads the one of the sample's label (training samples are labelled), a Dense head of
``early_filter_hidden`` ReLU units. A seeded fraction ``early_filter_explore`` of the samples it would
drop goes on anyway, and counts 1/explore times in the head's training (importance weighting: the explored
samples stand for all the dropped ones), so the head keeps learning the losses of what it drops. Without
that it drops hard samples it is never corrected on: a region of the data it calls easy stops training,
its loss grows, and the head does not see it (measured on LeNet-digits: about half the samples that were
hard got dropped).

Its ops are traced like every other op: ``efilter.head`` (forward over the whole batch),
``efilter.select`` (compacts the kept samples' rows of the live batch buffers), and after the loss op
``efilter.head.backward`` and ``efilter.head.update`` (plain SGD: no optimiser state). Its weights are
persistent tensors of the job; its activations and gradients are step buffers.
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
HEAD_LR = 0.02            # the head's SGD learning rate (its own, whatever the job's optimiser)
FLOOR_FRACTION = 0.2      # targets are log(max(loss, FLOOR_FRACTION * threshold))
HEAD_SEED = 404           # offsets of the head's initial weights and exploration draws from the job's seed


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
        self.after = pos - 1                        # index of the layer whose output the head reads
        width = math.prod(model.layers[self.after].out_shape)
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
        for ly in self.layers:
            h = ly.forward(h)
        return h[np.arange(len(h)), ys]

    # ------------------------------------------------------------------------------------ the ops
    def select_ops(self, feature_key: str, values: dict, st: StepState) -> list[ProgramOp]:
        """After the early layers: the head over the whole batch, then the selection, which keeps the
        samples predicted at >= the threshold (and the explored ones) and compacts every live batch value
        to their rows, so the later layers, the loss and the backward see only them. Ends the step if
        none is kept."""
        keys = [f"{ly.name}.y" for ly in self.layers]

        def head_run():
            h = values[feature_key].reshape(st.n, -1)
            macs = br = bw = 0
            for ly, key in zip(self.layers, keys, strict=True):
                br += h.nbytes + sum(p.nbytes for p in ly.params)
                h = values[key] = ly.forward(h)
                macs += ly.forward_macs(st.n)
                bw += h.nbytes
            return macs, br, bw

        def select_run():
            pred = values[keys[-1]][np.arange(st.n), st.labels]
            keep = pred >= self.log_threshold
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
        return [ProgramOp("efilter.head", "matmul", "f32", head_run, [feature_key], allocs),
                ProgramOp("efilter.select", "copy", "f32", select_run, [keys[-1]],
                          ends_step=lambda: st.stats["early_kept"] == 0)]

    def train_ops(self, feature_key: str, values: dict, st: StepState) -> list[ProgramOp]:
        """After the loss op: one SGD step of the head on the kept samples' true losses (squared error in
        log space, explored samples weighted 1/explore). The update op ends the step when instance
        filtering left nothing for the backward."""
        keys = [f"{ly.name}.y" for ly in self.layers]
        grads: list[tuple[L.Dense, np.ndarray, np.ndarray]] = []

        def backward_run():
            losses = st.losses
            m = len(losses)
            ys = st.labels if st.early is None else st.labels[st.early]
            out = values[keys[-1]]
            rows = np.arange(m)
            target = np.log(np.maximum(losses, self.floor))
            err = out[rows, ys] - target
            st.stats["early_head_mse"] = float(np.mean(err * err))
            d = np.zeros_like(out)
            d[rows, ys] = err * self._weight * (2.0 / m)
            macs, br, bw = m, out.nbytes + losses.nbytes, d.nbytes
            grads.clear()
            for i in range(len(self.layers) - 1, -1, -1):
                ly = self.layers[i]
                x = values[keys[i - 1]] if i else values[feature_key].reshape(m, -1)
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
                    p -= HEAD_LR * g
                    macs += p.size
                    br += p.nbytes + g.nbytes
                    bw += p.nbytes
            grads.clear()
            return macs, br, bw

        wgrads = [(f"{ly.name}.dW", "wgrad", lambda ly=ly: sum(p.nbytes for p in ly.params)) for ly in self.layers]
        return [ProgramOp("efilter.head.backward", "matmul", "f32", backward_run, [feature_key, *keys], wgrads),
                ProgramOp("efilter.head.update", "update", "f32", update_run, [k for k, _, _ in wgrads],
                          ends_step=lambda: st.nk == 0)]
