"""Learning from imperfect data on the device: the glue between a job and its imperfect-data techniques.

``DataTechniques`` holds what the techniques keep between steps (self-adaptive targets, the replay
buffer, the noise-level bias table: persistent tensors of kind ``optim`` -- training state kept for the
whole run, like the optimiser's moments -- named ``self_adaptive.targets``, ``buffer.<policy>``,
``noise_bias.table`` and ``noise_bias.reference``) and adds their work to a step:

- before the step (``before``): ``noise.measure`` and ``noise_bias.switch`` (load the bias set of the
  measured level), at a level still calibrating ``noise_bias.calibrate`` (a forward pass) and
  ``noise_bias.correct`` (the bias offsets) in place of the training step (a level whose set is done
  skips training), ``buffer.embed`` (representative: the new samples' embeddings), ``buffer.select`` (representative: the
  classifier layer on the new and the kept embeddings, for their classes), ``buffer.offer`` (which samples
  the buffer keeps), ``buffer.draw`` (the batch to train on);
- in place of the plain ``loss`` op (``loss_ops``): ``self_adaptive.targets`` (soft targets and
  weights), ``sinkhorn.allocate`` (pseudo-labels for the batch's unlabelled samples), then ``loss``
  with soft targets and per-sample weights. Samples without a label and without a pseudo-label skip the
  backward (like instance filtering), so training "on the labelled alone" costs only their backward.
"""
from __future__ import annotations

import math

import numpy as np

from . import noise_bias as NB
from . import self_adaptive as SA
from . import sinkhorn as SK
from .buffers import ReplayBuffer
from .datasets import UNLABELLED, Split
from .model import Model
from .program import ProgramOp, StepState
from .techniques import Techniques
from .trace import Tensor, new_tensor_id

F32 = np.float32
STATE_NAMES = ("self_adaptive.targets", "buffer.", "noise_bias.")   # prefixes of the state tensors
SINKHORN_RHO = 0.5          # fraction of a batch's unlabelled mass allocated to classes
SINKHORN_SLACK = 1.5        # class upper bound = slack * the class's share of the labels seen so far
SINKHORN_REG = 50.0         # entropic sharpness (x log-probabilities)
SINKHORN_WEIGHT = 1.0       # weight of the pseudo-labelled part of the loss against the labelled part


class DataTechniques:
    """The imperfect-data techniques of one job (``Techniques.self_adaptive``, ``sinkhorn``, ``buffer``,
    ``noise_bias``)."""

    def __init__(self, model: Model, t: Techniques, split: Split, input_shape: tuple[int, ...],
                 rng: np.random.Generator):
        self.model, self.t, self.input_shape, self.rng = model, t, input_shape, rng
        k = model.num_classes
        self.k = k
        X, _ = split.user_train
        self.sat = None
        if t.self_adaptive is not None:
            self.sat = SA.SelfAdaptiveTargets(len(X), k, t.self_adaptive, t.self_adaptive_start)
            self._index = {X[i].reshape(input_shape).astype(F32).tobytes(): i for i in range(len(X))}
        self.label_counts = np.zeros(k)
        self.buffer = None
        clf = model.layers[-1]
        self.embed_dim = math.prod(clf.in_shape)
        if t.buffer is not None:
            self.buffer = ReplayBuffer(t.buffer, t.buffer_size, input_shape, self.embed_dim, rng)
        self.bias_table = None
        if t.noise_bias:
            Xp = split.pop_train[0]
            clean = float(NB.dark_floor(Xp).mean())
            self.bias_table = NB.BiasTable(model, t.noise_bias_steps, clean, Xp)
        self.stats: dict = {}

    # ------------------------------------------------------------------------------------ state
    def persistent(self) -> list[Tensor]:
        """The techniques' state kept for the whole run (kind ``optim``; ``STATE_NAMES`` tells them apart)."""
        out = []
        if self.sat is not None:
            out.append(Tensor(new_tensor_id(), self.sat.nbytes, "optim", "self_adaptive.targets"))
        if self.buffer is not None:
            out.append(Tensor(new_tensor_id(), self.buffer.nbytes, "optim", f"buffer.{self.t.buffer}"))
        if self.bias_table is not None:
            out.append(Tensor(new_tensor_id(), self.bias_table.nbytes, "optim", "noise_bias.table"))
            out.append(Tensor(new_tensor_id(), self.bias_table.reference_nbytes, "optim", "noise_bias.reference"))
        return out

    # ------------------------------------------------------------------------------- before the step
    def before(self, xs: np.ndarray, ys: np.ndarray) -> tuple[np.ndarray, np.ndarray, list[ProgramOp], bool]:
        """(the batch to train on, the ops that chose it, whether to train at all). The math runs here."""
        self.stats = {}
        ops: list[ProgramOp] = []
        labelled = ys[ys != UNLABELLED]
        np.add.at(self.label_counts, labelled, 1)
        train = True
        if self.bias_table is not None:
            bt = self.bias_table
            sig = NB.measure(xs, bt.clean_floor)
            level = NB.level_of(float(np.median(sig)))
            ops.append(_cost_op("noise.measure", "eltwise", NB.measure_elements(xs)))
            if level != bt.current:
                nb = bt.set_nbytes
                ops.append(ProgramOp("noise_bias.switch", "copy", "f32", lambda nb=nb: (0, 2 * nb, 2 * nb)))
            bt.switch(level)
            calib = bt.calibrating(level)
            if calib:               # unlabelled statistics correction: one forward pass, biases moved in place
                macs, el = bt.calibrate(xs)
                nb, na = xs.size * 4, bt.set_nbytes
                # the forward pass holds one layer's input and output at a time (4 B each per sample)
                ws = len(xs) * 4 * max(math.prod(ly.in_shape) + math.prod(ly.out_shape) for ly in self.model.layers)
                ops.append(ProgramOp("noise_bias.calibrate", "matmul", "f32", lambda m=macs, b=nb, o=na: (m, b, o),
                                     allocs=[("noise_bias.activations", "workspace", lambda w=ws: w)]))
                ops.append(ProgramOp("noise_bias.correct", "eltwise", "f32", lambda e=el, o=na: (0, e * 4, o),
                                     reads=["noise_bias.activations"]))
            train = not calib and bt.trains(level)
            self.stats.update(noise_level=level, noise_std=float(np.median(sig)), bias_trained=train,
                              bias_calibrated=calib)
        if self.buffer is not None:
            buf, n = self.buffer, len(ys)
            if buf.size < n:
                raise ValueError(f"techniques.buffer_size ({buf.size}) must be >= the batch ({n})")
            emb = None
            if buf.policy == "representative":
                emb, macs = self._embed(xs)
                ops.append(ProgramOp("buffer.embed", "matmul", "f32",
                                     lambda m=macs, b=xs.size * 4: (m, b, n * self.embed_dim * 4)))
            clf = self.model.layers[-1]
            classify = lambda e: np.argmax(e @ clf.params[0] + clf.params[1], axis=1)   # noqa: E731
            classified = buf.offer(xs, ys, emb, classify)
            per = xs[0].size * 4 + 4
            if classified:          # representative: the classifier layer on the new and the kept embeddings
                m, k = classified * self.embed_dim * self.k, self.k
                ops.append(ProgramOp("buffer.select", "matmul", "f32",
                                     lambda m=m, c=classified, k=k: (m, c * self.embed_dim * 4 + (self.embed_dim + 1) * k * 4,
                                                                     c * 4)))
            ops.append(ProgramOp("buffer.offer", "copy", "f32", lambda b=n * per: (0, b, b)))
            xs, ys = buf.draw(n)
            ops.append(ProgramOp("buffer.draw", "copy", "f32", lambda b=n * per: (0, b, 0)))
        return xs, ys, ops, train

    def _embed(self, xs: np.ndarray) -> tuple[np.ndarray, int]:
        """The classifier's inputs for a batch (host math) and the forward MACs that took."""
        a = self.model.to_internal(xs)
        macs = 0
        for ly in self.model.layers[:-1]:
            a = ly.forward(a)
            macs += ly.forward_macs(len(xs))
        return a.reshape(len(xs), -1), macs

    def skipped_loss(self) -> float:
        """The loss a skipped step reports: the last loss its noise level trained at (0 if none)."""
        bt = self.bias_table
        v = bt.last_loss[bt.current] if bt is not None else float("nan")
        return 0.0 if math.isnan(v) else v

    def after(self, loss: float) -> None:
        if self.bias_table is not None:
            bt = self.bias_table
            bt.steps[bt.current] += 1
            bt.last_loss[bt.current] = loss

    # -------------------------------------------------------------------------------------- the loss
    def changes_loss(self, ys: np.ndarray) -> bool:
        """Whether this batch needs ``loss_ops`` instead of the plain cross-entropy."""
        return self.sat is not None or bool((ys == UNLABELLED).any())

    def loss_ops(self, xs: np.ndarray, ys: np.ndarray, values: dict, st: StepState, logits_key: str,
                 instance_filter: float | None) -> list[ProgramOp]:
        """Target ops and the ``loss`` op with soft targets (n, K) and per-sample weights."""
        n, k = len(ys), self.k
        unl = ys == UNLABELLED
        n_u = int(unl.sum())
        ops: list[ProgramOp] = []
        tkeys: list[str] = []

        def softmax():
            logits = values[logits_key]
            z = logits - logits.max(axis=1, keepdims=True)
            return z - np.log(np.exp(z).sum(axis=1, keepdims=True))     # log-probabilities

        if self.sat is not None and n_u < n:
            idx = np.array([self._index.get(x.astype(F32).tobytes(), -1) for x in xs])

            def sat_run():
                logp = softmax()
                lab = ~unl
                T, w = self.sat.update(idx[lab], ys[lab], np.exp(logp[lab]))
                values["targets.sat"] = (T, w)
                m = int(lab.sum())
                return 0, (n * k + m * k) * 4, SA.elements(m, k) * 4

            ops.append(ProgramOp("self_adaptive.targets", "eltwise", "f32", sat_run, [logits_key],
                                 [("targets.sat", "workspace", lambda: (n - n_u) * (k + 1) * 4)]))
            tkeys.append("targets.sat")
        if self.t.sinkhorn is not None and n_u:
            iters = self.t.sinkhorn

            def sk_run():
                logp = softmax()[unl]
                share = (self.label_counts + 0.5) / (self.label_counts.sum() + 0.5 * k)
                upper = np.minimum(1.0, SINKHORN_SLACK * share)
                values["targets.sinkhorn"] = SK.allocate(logp, upper, SINKHORN_RHO, iters, SINKHORN_REG)
                el = SK.elements(n_u, k, iters)
                return el, el * 4, n_u * k * 4

            ops.append(ProgramOp("sinkhorn.allocate", "reduce", "f32", sk_run, [logits_key],
                                 [("targets.sinkhorn", "workspace", lambda: (n_u + 1) * (k + 1) * 4)]))
            tkeys.append("targets.sinkhorn")

        def loss_run():
            logp = softmax()
            p = np.exp(logp)
            T = np.zeros((n, k), F32)
            w = np.zeros(n, F32)
            lab = ~unl
            if "targets.sat" in values:
                T[lab], w[lab] = values.pop("targets.sat")
            else:
                T[np.flatnonzero(lab), ys[lab]] = 1.0
                w[lab] = 1.0
            if "targets.sinkhorn" in values:
                T[unl] = values.pop("targets.sinkhorn")
                w[unl] = 1.0
            mass = T.sum(axis=1)
            losses = -(T * logp).sum(axis=1)
            keep = (w * mass) > 1e-6
            if instance_filter is not None:
                keep &= losses >= instance_filter
            w[unl] *= SINKHORN_WEIGHT
            w /= n                      # a mean over the batch: unlabelled samples with no allocation count as 0
            st.loss = float((w * losses).sum())
            st.nk = int(keep.sum())
            st.keep = None if st.nk == n else np.flatnonzero(keep)
            if st.nk:
                g = w[:, None] * (mass[:, None] * p - T)
                values["loss.grad"] = g[keep].astype(F32)
            st.stats.update(kept=st.nk, labelled=n - n_u, pseudo_labelled=int((keep & unl).sum()))
            return 0, (n * k * 2 + n) * 4, (n * k + n) * 4

        ops.append(ProgramOp("loss", "reduce", "f32", loss_run, [logits_key] + tkeys,
                             [("loss.grad", "grad", lambda: st.nk * k * 4)], ends_step=lambda: st.nk == 0))
        return ops

    # ----------------------------------------------------------------------------------- evaluation
    def predict(self, X: np.ndarray, quant: bool) -> np.ndarray:
        """Host-side predictions; with noise_bias each sample uses its measured level's bias set."""
        if self.bias_table is not None:
            return self.bias_table.predict_levels(self.model, X, quant)
        return self.model.predict(X, quant)


def _cost_op(name: str, kind: str, elements: int) -> ProgramOp:
    return ProgramOp(name, kind, "f32", lambda: (0, elements * 4, elements * 4))

