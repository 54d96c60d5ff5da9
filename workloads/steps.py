"""Step builders: the forward, loss and backward ops of a training step as a step program.

``StepBuilder`` knows the model, the techniques and what is trainable; it returns ``ProgramOp`` lists
that ``program.run_program`` runs. How the techniques change the program:

- instance_filter: the loss op scores each sample; samples under the threshold skip backward (all of
  them: the loss op frees everything and the step ends).
- error_map_prune / grad_prune: a ``prune_error`` op zeroes small error entries before each
  conv/dense backward; the backward MACs are ``nnz(error) * fan_in``, i.e. what a sparse kernel runs.
- update bias / last-k / sparse: fewer trainable parameters, fewer wgrad MACs, backward stops at the
  first trainable layer; sparse picks a seeded random fraction of output units/channels per step.
- etf: the classifier is fixed (not trainable): no wgrad, no optimiser state; backward only passes through.
- fused_update: each layer's update follows its own gradient; only one layer's wgrad is ever live.
- recompute: only segment inputs (every ~sqrt(L) layers) stay live after the forward pass; the rest are
  recomputed (``*.recompute`` ops, extra forward MACs) just before their segment's backward.
- int8: weights 1 byte each (stochastic rounding after updates), activations fake-quantised to 1 byte.
"""
from __future__ import annotations

import math
from collections.abc import Callable
from typing import TYPE_CHECKING

import numpy as np

from . import layers as L
from .compression import decode_op_name
from .model import Model
from .program import ProgramOp, StepState, value_key
from .techniques import Techniques
from .transforms import prune_errors, stochastic_round

if TYPE_CHECKING:
    from .early_filter import EarlyFilter

F32 = np.float32
# A device conv kernel builds im2col patches a few at a time (CMSIS-NN's arm_convolve_* uses two), so the
# workspace a conv op allocates is IM2COL_PATCHES patches of fan_in values; its bytes moved still count
# every patch. (The host computes with the full patch matrix; the trace describes the device.)
IM2COL_PATCHES = 2


class StepBuilder:
    """Builds the step programs of one job. ``trainable`` maps a layer name to [W trainable, b trainable];
    ``opt_state`` maps ``id(param)`` to its optimiser state; ``qscale`` the int8 grid by ``id(W)``."""

    def __init__(self, model: Model, techniques: Techniques, trainable: dict[str, list[bool]], opt,
                 opt_state: dict[int, list[np.ndarray]], qscale: dict[int, float], rng: np.random.Generator,
                 decoders: dict | None = None, early: EarlyFilter | None = None):
        self.model, self.techniques, self.trainable = model, techniques, trainable
        self.early = early          # early_filter.EarlyFilter: its head's ops after its layer and after the loss
        self.decoders = decoders or {}      # layer name -> compression.Encoded: weights kept compressed in flash
        self.opt, self.opt_state, self.qscale, self.rng = opt, opt_state, qscale, rng
        self.act_size = 1 if techniques.int8 else 4
        self.w_size = 1 if techniques.int8 else 4
        names = [ly.name for ly in model.layers]
        self.first_bwd = min(names.index(n) for n in trainable)
        self.in_key: dict[int, str] = {}
        self.out_key: dict[int, str] = {}
        self.labeller = None        # imperfect.DataTechniques: its loss ops replace the plain loss op
        self.batch: np.ndarray | None = None    # the samples of the step being built

    def logits_key(self) -> str:
        """The key of the last forward program's logits."""
        return self.out_key[len(self.model.layers) - 1]

    # ---------------------------------------------------------------------------------- forward
    def forward(self, xs: np.ndarray, values: dict, st: StepState | None = None) -> list[ProgramOp]:
        """``input.load`` and one ``<layer>.forward`` op per non-view layer; in a training step (``st``) with
        the early filter, its ops after its layer, and the later layers over the samples it kept."""
        model, a, n = self.model, self.act_size, len(xs)
        self.batch = xs
        dt = "i8" if self.techniques.int8 else "f32"
        self.in_key = {}
        self.out_key = {}
        program: list[ProgramOp] = []

        def load():
            values["input"] = model.to_internal(xs)
            return 0, xs.size * 4, xs.size * a

        program.append(ProgramOp("input.load", "copy", dt, load, [], [("input", "input", lambda: xs.size * a)]))
        cur = "input"
        early = self.early if st is not None else None
        rows = lambda: n  # noqa: E731
        for i, ly in enumerate(model.layers):
            self.in_key[i] = cur
            if not ly.view:
                out = f"{ly.name}.y"
                program += self.decoded(ly, "decode", self.forward_op(ly, cur, out, values, dt,
                                                                     f"{ly.name}.forward", rows))
                cur = out
            self.out_key[i] = cur
            if early is not None and i == early.after:
                program += early.select_ops(cur, values, st)
                rows = lambda: n if st.early is None else len(st.early)  # noqa: E731
        return program

    def decoded(self, ly: L.Layer, tag: str, op: ProgramOp) -> list[ProgramOp]:
        """``op``, preceded by a ``decode`` op when ly's weights are compressed: it reads them from flash
        and writes a dense float32 buffer that ``op`` reads (and frees as its last user)."""
        enc = self.decoders.get(ly.name)
        if enc is None:
            return [op]
        key, nb = f"{ly.name}.{tag}.W", ly.params[0].size * 4
        op.reads.append(key)
        return [ProgramOp(decode_op_name(ly.name, tag, enc), "decode", "f32", lambda: (enc.decode_ops, enc.flash_bytes, nb), [],
                          [(key, "workspace", lambda: nb)]), op]

    def param_bytes(self, ly: L.Layer) -> int:
        return ly.params[0].size * self.w_size + ly.params[1].size * 4 if ly.params else 0

    def forward_op(self, ly: L.Layer, src: str, dst: str, values: dict, dt: str, name: str,
                   rows: Callable[[], int], recompute_state: StepState | None = None) -> ProgramOp:
        """One layer's forward over ``rows()`` samples (``recompute_state``: only the kept samples)."""
        a, q = self.act_size, self.techniques.int8
        per_in, per_out = math.prod(ly.in_shape), math.prod(ly.out_shape)

        def run():
            x = values[value_key(src)].reshape((-1,) + ly.in_shape)
            if recompute_state is not None:
                x = recompute_state.sub(value_key(src), x)
                recompute_state.is_sub.add(value_key(dst))
            values[value_key(dst)] = ly.forward(x, q)
            m = rows()
            ws = m * ly.out_shape[0] * ly.out_shape[1] * ly.fan_in * a if isinstance(ly, L.Conv2D) else 0
            return ly.forward_macs(m), m * per_in * a + self.param_bytes(ly) + ws, m * per_out * a + ws

        allocs = [(dst, "activation", lambda: rows() * per_out * a)]
        if isinstance(ly, L.Conv2D):
            allocs.append((f"{name}.cols", "workspace",
                           lambda: IM2COL_PATCHES * ly.fan_in * a))
        return ProgramOp(name, ly.kind, dt, run, [src], allocs)

    # ------------------------------------------------------------------------------- loss + backward
    def loss_and_backward(self, ys: np.ndarray, values: dict, st: StepState) -> list[ProgramOp]:
        """The ``loss`` op, the backward ops from the logits to the first trainable layer, the updates."""
        t, model = self.techniques, self.model
        nl = len(model.layers)
        logits_key = self.out_key[nl - 1]
        k = model.num_classes
        program: list[ProgramOp] = []

        def loss_run():
            logits = values[logits_key]
            yk = ys if st.early is None else ys[st.early]    # the samples the early filter kept
            losses, p = L.softmax_cross_entropy(logits, yk)
            st.loss, st.losses = float(losses.mean()), losses
            if t.instance_filter is None:
                st.nk = len(yk)
                values["loss.grad"] = L.softmax_ce_grad(p, yk, len(ys))   # dropped samples: zero gradient
            else:
                keep = losses >= t.instance_filter
                st.nk = int(keep.sum())
                st.keep = None if st.nk == len(yk) else np.flatnonzero(keep)
                if st.nk:   # skipped samples count as zero gradient: the mean stays over the whole batch
                    values["loss.grad"] = L.softmax_ce_grad(p[keep], yk[keep], len(ys))
            st.stats["kept"] = st.nk
            return 0, logits.size * 4, logits.size * 4

        if self.labeller is not None and self.labeller.changes_loss(ys):   # soft targets, weights, pseudo-labels
            program += self.labeller.loss_ops(self.batch, ys, values, st, logits_key, t.instance_filter)
        else:
            program.append(ProgramOp("loss", "reduce", "f32", loss_run, [logits_key],
                                     [("loss.grad", "grad", lambda: st.nk * k * 4)],
                                     ends_step=None if self.early else lambda: st.nk == 0))
            if self.early:   # its head learns from the true losses; its update ends a step with no backward
                program += self.early.train_ops(self.out_key[self.early.after], values, st)
        # recompute: which activations stay (segment inputs) and which are rebuilt per segment
        fwd_layers = [i for i in range(self.first_bwd, nl) if not model.layers[i].view]
        segments: list[list[int]] = []
        if t.recompute:
            s = max(1, math.ceil(math.sqrt(len(fwd_layers))))
            segments = [fwd_layers[j:j + s] for j in range(0, len(fwd_layers), s)]
        seg_of = {i: si for si, seg in enumerate(segments) for i in seg}
        recomputed: set[str] = set()
        for seg in segments:
            for i in seg[:-1]:
                recomputed.add(self.out_key[i])

        def akey(key: str) -> str:
            return "r." + key if key in recomputed else key

        g = "loss.grad"
        updates: list[ProgramOp] = []
        done_segments: set[int] = set()
        for i in range(nl - 1, self.first_bwd - 1, -1):
            ly = model.layers[i]
            if ly.view:
                continue
            if t.recompute and seg_of[i] not in done_segments:
                done_segments.add(seg_of[i])
                for j in segments[seg_of[i]][:-1]:
                    src = akey(self.in_key[j])
                    lj = model.layers[j]
                    program += self.decoded(lj, "decode_recompute",
                                            self.forward_op(lj, src, akey(self.out_key[j]), values,
                                                            "i8" if t.int8 else "f32", f"{lj.name}.recompute",
                                                            lambda: st.nk, recompute_state=st))
            x_key, y_key = akey(self.in_key[i]), akey(self.out_key[i])
            program += self.layer_backward(i, ly, g, x_key, y_key, values, st, updates)
            if i > self.first_bwd:
                g = self.dx_key(i)
        program += updates
        return program

    def dx_key(self, i: int) -> str:
        # the gradient w.r.t. layer i's input is stored under the key of the previous non-view layer
        return f"{self.model.layers[i].name}.dx"

    def layer_backward(self, i: int, ly: L.Layer, g: str, x_key: str, y_key: str, values: dict,
                       st: StepState, updates: list[ProgramOp]) -> list[ProgramOp]:
        """One layer's backward: ReLU mask, pruning, weight gradient, input gradient; its update op goes
        into ``updates`` (or right after its gradient with fused_update)."""
        t = self.techniques
        a = self.act_size
        ops: list[ProgramOp] = []
        gv = value_key(g)
        per_in = math.prod(ly.in_shape)
        oshape = (-1,) + ly.out_shape
        trainable = self.trainable.get(ly.name, [False, False])
        state: dict = {}
        sparse = t.error_map_prune is not None or t.grad_prune is not None

        def xval() -> np.ndarray:
            return st.sub(value_key(x_key), values[value_key(x_key)]).reshape((-1,) + ly.in_shape)

        def gval() -> np.ndarray:
            values[gv] = values[gv].reshape(oshape)
            return values[gv]

        if ly.relu:
            def act_run():
                values[gv] = ly.act_backward(st.sub(value_key(y_key), values[value_key(y_key)]).reshape(oshape),
                                             gval())
                n = values[gv].size
                return 0, n * 4 + n * a, n * 4
            ops.append(ProgramOp(f"{ly.name}.backward_act", "eltwise", "f32", act_run, [g, y_key]))
        if sparse and ly.params and i < len(self.model.layers) - 1:   # not the logits: keeps softmax zero-sum
            def prune_run():
                values[gv], kept = prune_errors(gval(), t, self.rng)
                st.stats["error_kept"] = st.stats.get("error_kept", 0) + kept
                st.stats["error_total"] = st.stats.get("error_total", 0) + values[gv].size
                n = values[gv].size
                return 0, n * 4, n * 4
            ops.append(ProgramOp(f"{ly.name}.prune_error", "eltwise", "f32", prune_run, [g]))
        upd = None
        if any(trainable):
            ops.append(self._weight_grad_op(ly, g, x_key, values, xval, gval, trainable, state, sparse))
            upd = self._update_op(ly, values, trainable, state)
        if i > self.first_bwd:
            dx = self.dx_key(i)
            is_conv = isinstance(ly, L.Conv2D)
            pool_y = isinstance(ly, L.MaxPool)       # the window maxima locate the gradient's target

            def dx_run():
                dz = gval()
                x = xval() if ly.needs_input else np.empty((len(dz),) + ly.in_shape, F32)  # avg pools: shape only
                y = st.sub(value_key(y_key), values[value_key(y_key)]).reshape(oshape) if pool_y else None
                d, macs = ly.input_grad(x, y, dz, sparse)
                values[value_key(dx)] = d
                ws = st.nk * ly.out_shape[0] * ly.out_shape[1] * ly.fan_in * 4 if is_conv else 0
                br = dz.size * 4 + (x.size * a if ly.needs_input else 0) + self.param_bytes(ly) + ws
                if pool_y:
                    br += y.size * a
                return macs, br, d.size * 4 + ws

            allocs = [(dx, "grad", lambda: st.nk * per_in * 4)]
            if is_conv:
                allocs.append((f"{ly.name}.dcols", "workspace",
                               lambda: ly.fan_in * 4))
            kind = ly.kind if ly.params else ("reduce" if ly.kind == "reduce" else "eltwise")
            reads = [g] + ([x_key] if ly.needs_input else []) + ([y_key] if pool_y else [])
            ops += self.decoded(ly, "decode_backward",
                                ProgramOp(f"{ly.name}.backward_input", kind, "f32", dx_run, reads, allocs))
        if upd is not None:
            if t.fused_update:
                ops.append(upd)
            else:
                updates.append(upd)
        return ops

    def _weight_grad_op(self, ly: L.Layer, g: str, x_key: str, values: dict, xval, gval,
                        trainable: list[bool], state: dict, sparse: bool) -> ProgramOp:
        """dW and db (or db only with a frozen W); update="sparse" picks this step's output rows here."""
        t, a = self.techniques, self.act_size
        W, _ = ly.params
        cout = W.shape[-1]
        ksel = max(1, round(t.sparse_fraction * cout)) if t.update == "sparse" else cout
        bias_only = not trainable[0]

        def wgrad_run():
            rows = None
            if t.update == "sparse":
                rows = np.sort(self.rng.choice(cout, ksel, replace=False))
            state["rows"] = rows
            dz = gval()
            if bias_only:
                axes = tuple(range(dz.ndim - 1))
                values[f"{ly.name}.db"] = dz.sum(axis=axes)
                return 0, dz.size * 4, cout * 4
            x = xval()
            grads, macs = ly.weight_grad(x, dz, rows, t.int8, sparse)
            values[f"{ly.name}.dW"], values[f"{ly.name}.db"] = grads
            return macs, x.size * a + dz.size * 4, (grads[0].size + grads[1].size) * 4

        allocs = [(f"{ly.name}.db", "wgrad", lambda: ksel * 4)]
        if not bias_only:
            allocs.insert(0, (f"{ly.name}.dW", "wgrad", lambda: W.size // cout * ksel * 4))
            if isinstance(ly, L.Conv2D):
                allocs.append((f"{ly.name}.cols_bw", "workspace",
                               lambda: IM2COL_PATCHES * ly.fan_in * a))
        reads = [g] if bias_only else [x_key, g]
        return ProgramOp(f"{ly.name}.backward_bias" if bias_only else f"{ly.name}.backward_weight",
                         "reduce" if bias_only else ly.kind, "f32", wgrad_run, reads, allocs)

    def _update_op(self, ly: L.Layer, values: dict, trainable: list[bool], state: dict) -> ProgramOp:
        """The optimiser step of one layer's trainable parameters (int8: back onto the grid)."""
        int8 = self.techniques.int8

        def update_run():
            macs = br = bw = 0
            rows = state.get("rows")
            for p, flag, pname in zip(ly.params, trainable, ("dW", "db"), strict=True):
                if not flag:
                    continue
                gr = values[f"{ly.name}.{pname}"]
                st = self.opt_state[id(p)]
                self.opt.step(p, gr, st, rows)
                if int8 and p.ndim > 1:
                    stochastic_round(p, self.qscale[id(p)], self.rng)
                sz = 1 if (int8 and p.ndim > 1) else 4
                macs += gr.size
                br += gr.size * (4 + sz) + sum(s.nbytes for s in st) // max(1, p.size) * gr.size
                bw += gr.size * sz + sum(s.nbytes for s in st) // max(1, p.size) * gr.size
            return macs, br, bw

        bias_only = not trainable[0]
        ureads = [f"{ly.name}.db"] if bias_only else [f"{ly.name}.dW", f"{ly.name}.db"]
        return ProgramOp(f"{ly.name}.update", "update", "f32", update_run, ureads)
