"""The traced training job (``make_job``): real numpy training whose every op yields an ``Op`` record.

A step is built as a *plan* (a list of planned ops, each with the math to run and the trace keys it
reads and allocates), then executed: every planned op runs its numpy math, and yields an ``Op`` whose
``free`` lists the tensors whose last use it was (found by a liveness pass over the plan). The
techniques are plan transformations or changes to the math:

- instance_filter: the loss op scores each sample; samples under the threshold skip backward (all of
  them: the loss op frees everything and the step ends).
- error_map_prune / grad_prune: a ``prune_error`` op zeroes small error entries before each
  conv/dense backward; the backward MACs are ``nnz(error) * fan_in``, i.e. what a sparse kernel runs.
- update bias / last-k / sparse: fewer trainable parameters, fewer wgrad MACs, backward stops at the
  first trainable layer; sparse picks a seeded random fraction of output units/channels per step.
- etf: the classifier is a fixed simplex ETF (no wgrad, no optimiser state); backward only passes through.
- fused_update: each layer's update follows its own gradient; only one layer's wgrad is ever live.
- recompute: only segment inputs (every ~sqrt(L) layers) stay live after the forward pass; the rest are
  recomputed (``*.recompute`` ops, extra forward MACs) just before their segment's backward.
- swap: activations the backward needs are written to flash after their last forward use
  (``swap_out.*``, flash_write) and read back just before their first backward use (``swap_in.*``).
- int8: weights on a fixed per-tensor int8 grid (1 byte each; updates use stochastic rounding),
  activations fake-quantised to int8 (1 byte each) in the forward pass; gradients stay float32.
"""
from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Generator, Iterator
from dataclasses import dataclass, field

import numpy as np

from . import datasets as D
from . import layers as L
from .model import Model, ModelSpec, build_model, etf_matrix, resolve
from .optim import Adam, make_optimizer
from .techniques import Techniques
from .trace import Op, Tensor, new_tensor_id

F32 = np.float32
NO_TECHNIQUES = Techniques()   # the default: plain full backprop
# A device conv kernel builds im2col patches a few at a time (CMSIS-NN's arm_convolve_* uses two), so the
# workspace a conv op allocates is IM2COL_PATCHES patches of fan_in values; its bytes moved still count
# every patch. (The host computes with the full patch matrix; the trace describes the device.)
IM2COL_PATCHES = 2


# ----------------------------------------------------------------------------------------------- plan

@dataclass
class _PlannedOp:
    name: str
    kind: str
    dtype: str
    run: Callable[[], tuple[int, int, int]]        # does the math; returns (macs, bytes_read, bytes_written)
    reads: list[str] = field(default_factory=list)
    allocs: list[tuple[str, str, Callable[[], int]]] = field(default_factory=list)  # (key, kind, nbytes())
    ends_step: Callable[[], bool] | None = None    # True after run: skip the rest (frees everything live)


def _vkey(key: str) -> str:
    """The host value a trace key refers to (recomputed/swapped copies hold the same value)."""
    return key[2:] if key[:2] in ("r.", "s.") else key


def execute(plan: list[_PlannedOp], values: dict) -> Generator[Op, None, None]:
    """Run a plan, yielding one ``Op`` per planned op with allocs and frees from a liveness pass."""
    last: dict[str, int] = {}
    n_alloc = 0
    for i, p in enumerate(plan):
        for k in p.reads:
            last[k] = i
        for a in p.allocs:
            n_alloc += 1
            if last.get(a[0], -1) < i:
                last[a[0]] = i
    if n_alloc != len({a[0] for p in plan for a in p.allocs}):  # pragma: no cover - a planner bug
        raise RuntimeError("plan allocates a key twice")
    frees_at: list[list[str]] = [[] for _ in plan]
    for k, i in last.items():
        frees_at[i].append(k)
    live: dict[str, Tensor] = {}
    for i, p in enumerate(plan):
        macs, br, bw = p.run()
        allocs = ()
        if p.allocs:
            allocs = tuple(Tensor(new_tensor_id(), int(nb()), kind, key) for key, kind, nb in p.allocs)
            for t in allocs:
                live[t.name] = t
        end = p.ends_step is not None and p.ends_step()
        freed = list(live) if end else [k for k in frees_at[i] if k in live]
        free_ids = tuple(live.pop(k).id for k in freed)
        for k in freed:   # the host copy goes too (a recomputed / swapped-in copy is a new key, same value)
            values.pop(_vkey(k), None)
        yield Op(p.name, p.kind, int(macs), int(br), int(bw), p.dtype, allocs, free_ids)
        if end:
            return


def _template(ops: list[Op]) -> list[tuple]:
    """A trace with tensor ids replaced by (op index, alloc index) references, for replay."""
    where = {t.id: (i, j) for i, op in enumerate(ops) for j, t in enumerate(op.alloc)}
    return [(op.name, op.kind, op.macs, op.bytes_read, op.bytes_written, op.dtype,
             tuple((t.nbytes, t.kind, t.name) for t in op.alloc), tuple(where[i] for i in op.free)) for op in ops]


# ------------------------------------------------------------------------------------------ pretrain

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
        seed: int = 0, frozen: frozenset[int] = frozenset()) -> None:
    """Host-side, untraced Adam training with the same layer math (used for pre-training)."""
    with single_thread_blas():
        _fit(model, X, y, steps=steps, batch=batch, lr=lr, seed=seed, frozen=frozen)


def _fit(model, X, y, *, steps, batch, lr, seed, frozen) -> None:
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


def _pretrain_steps(model: Model) -> int:
    return 1500 if model.spec.family == "mlp" else 900


def pretrained_state(spec: ModelSpec, dataset: str, story: str, seed: int, etf: bool) -> list[np.ndarray]:
    """Pre-trained weights on the population split, cached in-process per (spec, dataset, story, seed, etf)."""
    key = (spec.text, dataset, story, seed, etf)
    if key not in _PRETRAINED:
        model = build_model(spec, seed)
        frozen = frozenset()
        if etf:
            frozen = _install_etf(model, seed)
        ds = D.load(dataset, seed)
        split = D.personalisation_split(ds, story, seed)
        X, y = split.pop_train
        fit(model, X, y, steps=_pretrain_steps(model), seed=seed, frozen=frozen)
        _PRETRAINED[key] = model.state()
    return [a.copy() for a in _PRETRAINED[key]]


def _install_etf(model: Model, seed: int) -> frozenset[int]:
    """Set the classifier to a fixed simplex ETF with zero bias; returns the frozen parameter indices."""
    clf = model.layers[-1]
    W, b = clf.params
    W[...] = etf_matrix(W.shape[0], W.shape[1], seed)
    b[...] = 0.0
    params = model.parameters()
    return frozenset(i for i, p in enumerate(params) if p is W or p is b)


# ----------------------------------------------------------------------------------------------- job

class Job:
    """A personalisation training job implementing ``workloads.api.TrainingJob``."""

    def __init__(self, workload: str | ModelSpec, *, dataset: str | None = None, story: str = "new-class",
                 techniques: Techniques = NO_TECHNIQUES, optimizer: str = "sgd", lr: float | None = None,
                 momentum: float = 0.9, seed: int = 0, pretrain: bool = True):
        if isinstance(techniques, dict):
            techniques = Techniques.from_dict(techniques)
        if not isinstance(techniques, Techniques):
            raise ValueError(f"techniques must be a workloads.Techniques or a dict (got {type(techniques).__name__})")
        spec, zoo_ds = resolve(workload)
        self.spec = spec
        self.name = spec.text
        self.input_shape = spec.input_shape
        self.num_classes = spec.num_classes
        self.techniques = t = techniques
        self.story = story
        self.seed = seed
        if story not in D.STORIES:
            raise ValueError(f"story must be one of {', '.join(D.STORIES)} (got {story!r})")
        self.dataset = D.ALIASES.get(dataset, dataset) if dataset else (zoo_ds or D.default_for_shape(spec.input_shape))
        ds = D.load(self.dataset, seed)
        per_sample = math.prod(ds.X.shape[1:])
        if per_sample != math.prod(self.input_shape):
            raise ValueError(f"dataset {self.dataset!r} gives {per_sample} values per sample but {spec.text} expects "
                             f"input {'x'.join(map(str, self.input_shape))}")
        if len(ds.classes) > self.num_classes:
            raise ValueError(f"dataset {self.dataset!r} has {len(ds.classes)} classes but {spec.text} "
                             f"outputs {self.num_classes}")
        self.split = D.personalisation_split(ds, story, seed)
        self.model = build_model(spec, seed)
        self._frozen_ids: set[int] = set()
        if t.etf:
            clf = self.model.layers[-1]
            _install_etf(self.model, seed)
            self._frozen_ids = {id(clf.params[0]), id(clf.params[1])}
        if pretrain and story != "plain":
            self.model.load_state(pretrained_state(spec, self.dataset, story, seed, t.etf))
        if lr is None:
            lr = default_lr(spec, optimizer)
        self.lr = lr
        self.opt = make_optimizer(optimizer, lr, momentum)
        self.optimizer_name = optimizer
        self._rng = np.random.default_rng(seed + 202)
        self._act_size = 1 if t.int8 else 4
        self._w_size = 1 if t.int8 else 4
        self._qscale: dict[int, float] = {}
        if t.int8:
            for layer in self.model.param_layers():
                W = layer.params[0]
                s = float(np.max(np.abs(W))) * 1.25 / 127.0 or 1.0 / 127.0
                self._qscale[id(W)] = s
                W[...] = np.clip(np.rint(W / s), -127, 127) * s
        self._choose_trainable()
        self._make_persistent()
        self.last_step: dict = {}
        self._infer_template: list | None = None     # figures of the last train_step (kept samples, error entries kept)

    # ------------------------------------------------------------------------------------ set-up
    def _choose_trainable(self) -> None:
        t = self.techniques
        players = [ly for ly in self.model.param_layers() if id(ly.params[0]) not in self._frozen_ids]
        if t.update == "last-k":
            players = players[-t.last_k:]
        self.trainable: dict[str, list[bool]] = {}
        for ly in players:
            self.trainable[ly.name] = [t.update != "bias", True]
        if not self.trainable:
            raise ValueError(f"{self.name}: nothing to train with techniques {t.active()}")
        names = [ly.name for ly in self.model.layers]
        self.first_bwd = min(names.index(n) for n in self.trainable)

    def _make_persistent(self) -> None:
        self._persistent: list[Tensor] = []
        self._state: dict[int, list[np.ndarray]] = {}
        for ly in self.model.param_layers():
            W, b = ly.params
            self._persistent.append(Tensor(new_tensor_id(), W.size * self._w_size, "weight", f"{ly.name}.W"))
            self._persistent.append(Tensor(new_tensor_id(), b.size * 4, "bias", f"{ly.name}.b"))
            for p, flag, pname in zip(ly.params, self.trainable.get(ly.name, [False, False]), ("W", "b"), strict=True):
                if flag:
                    st = self.opt.state_for(p)
                    self._state[id(p)] = st
                    for j, s in enumerate(st):
                        self._persistent.append(Tensor(new_tensor_id(), s.nbytes, "optim", f"{ly.name}.{pname}.state{j}"))

    # ------------------------------------------------------------------------------ TrainingJob API
    def persistent_tensors(self) -> tuple[Tensor, ...]:
        return tuple(self._persistent)

    def trainable_bytes(self) -> int:
        total = 0
        for ly in self.model.param_layers():
            flags = self.trainable.get(ly.name, [False, False])
            total += (ly.params[0].size * self._w_size if flags[0] else 0) + (ly.params[1].size * 4 if flags[1] else 0)
        return total

    def flash_bytes(self) -> int:
        return sum(ly.params[0].size * self._w_size + ly.params[1].size * 4 for ly in self.model.param_layers())

    def labelled_stream(self) -> Iterator[tuple[np.ndarray, int]]:
        X, y = self.split.user_train
        rng = np.random.default_rng(self.seed + 303)
        while True:
            for i in rng.permutation(len(y)):
                yield X[i].reshape(self.input_shape).astype(F32), int(y[i])

    def infer(self, x: np.ndarray) -> Generator[Op, None, int]:
        xs = np.asarray(x, F32).reshape((1,) + self.input_shape)
        if self._infer_template is not None:
            return (yield from self._infer_fast(xs))
        values: dict = {}
        plan = self._forward_plan(xs, values, training=False)
        out: dict = {}
        logits_key = self._out_key[len(self.model.layers) - 1]

        def classify():
            logits = values[logits_key]
            out["cls"] = int(np.argmax(logits[0]))
            return 0, logits.size * 4, 4

        plan.append(_PlannedOp("classify", "reduce", "f32", classify, [logits_key]))
        ops = []
        for op in execute(plan, values):
            ops.append(op)
            yield op
        self._infer_template = _template(ops)
        return out["cls"]

    def _infer_fast(self, xs: np.ndarray) -> Generator[Op, None, int]:
        """An inference's trace does not depend on the data: replay the first call's ops with fresh
        tensor ids while the same layer math runs (``Model.forward``)."""
        cls = int(np.argmax(self.model.forward(xs, self.techniques.int8)[0]))
        ids: list[list[int]] = []
        for name, kind, macs, br, bw, dt, allocs, frees in self._infer_template:
            mine = [new_tensor_id() for _ in allocs]
            ids.append(mine)
            yield Op(name, kind, macs, br, bw, dt,
                     tuple(Tensor(i, nb, k, n) for i, (nb, k, n) in zip(mine, allocs, strict=True)),
                     tuple(ids[o][j] for o, j in frees))
        return cls

    def train_step(self, xs: np.ndarray, ys: np.ndarray) -> Generator[Op, None, float]:
        xs = np.asarray(xs, F32).reshape((-1,) + self.input_shape)
        ys = np.asarray(ys, np.int64).reshape(-1)
        if len(xs) != len(ys) or len(ys) == 0:
            raise ValueError(f"train_step: {len(xs)} samples but {len(ys)} labels")
        values: dict = {}
        env = _StepEnv(len(ys))
        plan = self._forward_plan(xs, values, training=True)
        plan += self._loss_and_backward_plan(ys, values, env)
        plan = self._apply_swap(plan, values)
        yield from execute(plan, values)
        self.last_step = env.stats
        return env.loss

    def evaluate(self) -> dict[str, float]:
        q = self.techniques.int8
        Xu, yu = self.split.user_test
        Xr, yr = self.split.pop_test
        if self.split.new_class is not None:
            keep = yr != self.split.new_class
            Xr, yr = Xr[keep], yr[keep]
        with single_thread_blas():
            ua = float(np.mean(self.model.predict(Xu, q) == yu)) if len(yu) else float("nan")
            ra = float(np.mean(self.model.predict(Xr, q) == yr)) if len(yr) else float("nan")
        return {"user_accuracy": ua, "retention_accuracy": ra}

    # ---------------------------------------------------------------------------------- the plan
    def _forward_plan(self, xs: np.ndarray, values: dict, training: bool) -> list[_PlannedOp]:
        model, a, n = self.model, self._act_size, len(xs)
        q = self.techniques.int8
        dt = "i8" if q else "f32"
        self._in_key: dict[int, str] = {}
        self._out_key: dict[int, str] = {}
        plan: list[_PlannedOp] = []

        def load():
            values["input"] = model.to_internal(xs)
            return 0, xs.size * 4, xs.size * a

        plan.append(_PlannedOp("input.load", "copy", dt, load, [], [("input", "input", lambda: xs.size * a)]))
        cur = "input"
        for i, ly in enumerate(model.layers):
            self._in_key[i] = cur
            if ly.view:
                self._out_key[i] = cur
                continue
            out = f"{ly.name}.y"
            plan.append(self._fwd_op(ly, cur, out, values, n, dt, f"{ly.name}.forward", lambda: n))
            self._out_key[i] = cur = out
        return plan

    def _param_bytes(self, ly: L.Layer) -> int:
        return ly.params[0].size * self._w_size + ly.params[1].size * 4 if ly.params else 0

    def _fwd_op(self, ly: L.Layer, src: str, dst: str, values: dict, n: int, dt: str, name: str,
                rows: Callable[[], int], recompute_env: _StepEnv | None = None) -> _PlannedOp:
        a, q = self._act_size, self.techniques.int8
        per_in, per_out = math.prod(ly.in_shape), math.prod(ly.out_shape)

        def run():
            x = values[_vkey(src)].reshape((-1,) + ly.in_shape)
            if recompute_env is not None:
                x = recompute_env.sub(_vkey(src), x)
                recompute_env.is_sub.add(_vkey(dst))
            values[_vkey(dst)] = ly.forward(x, q)
            m = rows()
            ws = m * ly.out_shape[0] * ly.out_shape[1] * ly.fan_in * a if isinstance(ly, L.Conv2D) else 0
            return ly.forward_macs(m), m * per_in * a + self._param_bytes(ly) + ws, m * per_out * a + ws

        allocs = [(dst, "activation", lambda: rows() * per_out * a)]
        if isinstance(ly, L.Conv2D):
            allocs.append((f"{name}.cols", "workspace",
                           lambda: IM2COL_PATCHES * ly.fan_in * a))
        return _PlannedOp(name, ly.kind, dt, run, [src], allocs)

    def _loss_and_backward_plan(self, ys: np.ndarray, values: dict, env: _StepEnv) -> list[_PlannedOp]:
        t, model = self.techniques, self.model
        nl = len(model.layers)
        logits_key = self._out_key[nl - 1]
        k = self.num_classes
        plan: list[_PlannedOp] = []

        def loss_run():
            logits = values[logits_key]
            losses, p = L.softmax_cross_entropy(logits, ys)
            env.loss = float(losses.mean())
            if t.instance_filter is None:
                env.nk = len(ys)
                values["loss.grad"] = L.softmax_ce_grad(p, ys, env.nk)
            else:
                keep = losses >= t.instance_filter
                env.nk = int(keep.sum())
                env.keep = None if env.nk == len(ys) else np.flatnonzero(keep)
                if env.nk:   # skipped samples count as zero gradient: the mean stays over the whole batch
                    values["loss.grad"] = L.softmax_ce_grad(p[keep], ys[keep], len(ys))
            env.stats["kept"] = env.nk
            return 0, logits.size * 4, logits.size * 4

        plan.append(_PlannedOp("loss", "reduce", "f32", loss_run, [logits_key],
                               [("loss.grad", "grad", lambda: env.nk * k * 4)], ends_step=lambda: env.nk == 0))
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
                recomputed.add(self._out_key[i])

        def akey(key: str) -> str:
            return "r." + key if key in recomputed else key

        g = "loss.grad"
        updates: list[_PlannedOp] = []
        done_segments: set[int] = set()
        for i in range(nl - 1, self.first_bwd - 1, -1):
            ly = model.layers[i]
            if ly.view:
                continue
            if t.recompute and seg_of[i] not in done_segments:
                done_segments.add(seg_of[i])
                for j in segments[seg_of[i]][:-1]:
                    src = akey(self._in_key[j])
                    lj = model.layers[j]
                    plan.append(self._fwd_op(lj, src, akey(self._out_key[j]), values, 0,
                                             "i8" if t.int8 else "f32", f"{lj.name}.recompute",
                                             lambda: env.nk, recompute_env=env))
            x_key, y_key = akey(self._in_key[i]), akey(self._out_key[i])
            plan += self._layer_backward(i, ly, g, x_key, y_key, values, env, updates)
            if i > self.first_bwd:
                g = self._dx_key(i)
        plan += updates
        return plan

    def _dx_key(self, i: int) -> str:
        # the gradient w.r.t. layer i's input is stored under the key of the previous non-view layer
        return f"{self.model.layers[i].name}.dx"

    def _layer_backward(self, i: int, ly: L.Layer, g: str, x_key: str, y_key: str, values: dict,
                        env: _StepEnv, updates: list[_PlannedOp]) -> list[_PlannedOp]:
        t = self.techniques
        a = self._act_size
        ops: list[_PlannedOp] = []
        gv = _vkey(g)
        per_in = math.prod(ly.in_shape)
        oshape = (-1,) + ly.out_shape
        trainable = self.trainable.get(ly.name, [False, False])
        state: dict = {}
        sparse = t.error_map_prune is not None or t.grad_prune is not None

        def xval() -> np.ndarray:
            return env.sub(_vkey(x_key), values[_vkey(x_key)]).reshape((-1,) + ly.in_shape)

        def gval() -> np.ndarray:
            values[gv] = values[gv].reshape(oshape)
            return values[gv]

        if ly.relu:
            def act_run():
                values[gv] = ly.act_backward(env.sub(_vkey(y_key), values[_vkey(y_key)]).reshape(oshape), gval())
                n = values[gv].size
                return 0, n * 4 + n * a, n * 4
            ops.append(_PlannedOp(f"{ly.name}.backward_act", "eltwise", "f32", act_run, [g, y_key]))
        if sparse and ly.params and i < len(self.model.layers) - 1:   # not the logits: keeps softmax zero-sum
            def prune_run():
                values[gv], kept = _prune(gval(), t, self._rng)
                env.stats["error_kept"] = env.stats.get("error_kept", 0) + kept
                env.stats["error_total"] = env.stats.get("error_total", 0) + values[gv].size
                n = values[gv].size
                return 0, n * 4, n * 4
            ops.append(_PlannedOp(f"{ly.name}.prune_error", "eltwise", "f32", prune_run, [g]))
        if any(trainable):
            W, b = ly.params
            cout = W.shape[-1]
            ksel = max(1, round(t.sparse_fraction * cout)) if t.update == "sparse" else cout
            bias_only = not trainable[0]

            def wgrad_run():
                rows = None
                if t.update == "sparse":
                    rows = np.sort(self._rng.choice(cout, ksel, replace=False))
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
            ops.append(_PlannedOp(f"{ly.name}.backward_bias" if bias_only else f"{ly.name}.backward_weight",
                                  "reduce" if bias_only else ly.kind, "f32", wgrad_run, reads, allocs))

            def update_run():
                macs = br = bw = 0
                rows = state.get("rows")
                for p, flag, pname in zip(ly.params, trainable, ("dW", "db"), strict=True):
                    if not flag:
                        continue
                    gr = values[f"{ly.name}.{pname}"]
                    st = self._state[id(p)]
                    self.opt.step(p, gr, st, rows)
                    if self.techniques.int8 and p.ndim > 1:
                        _stochastic_round(p, self._qscale[id(p)], self._rng)
                    sz = 1 if (self.techniques.int8 and p.ndim > 1) else 4
                    macs += gr.size
                    br += gr.size * (4 + sz) + sum(s.nbytes for s in st) // max(1, p.size) * gr.size
                    bw += gr.size * sz + sum(s.nbytes for s in st) // max(1, p.size) * gr.size
                return macs, br, bw

            ureads = [f"{ly.name}.db"] if bias_only else [f"{ly.name}.dW", f"{ly.name}.db"]
            upd = _PlannedOp(f"{ly.name}.update", "update", "f32", update_run, ureads)
        else:
            upd = None

        if i > self.first_bwd:
            dx = self._dx_key(i)
            is_conv = isinstance(ly, L.Conv2D)

            pool_y = isinstance(ly, L.MaxPool)       # the window maxima locate the gradient's target

            def dx_run():
                dz = gval()
                x = xval() if ly.needs_input else np.empty((len(dz),) + ly.in_shape, F32)  # avg pools: shape only
                y = env.sub(_vkey(y_key), values[_vkey(y_key)]).reshape(oshape) if pool_y else None
                d, macs = ly.input_grad(x, y, dz, sparse)
                values[_vkey(dx)] = d
                ws = env.nk * ly.out_shape[0] * ly.out_shape[1] * ly.fan_in * 4 if is_conv else 0
                br = dz.size * 4 + (x.size * a if ly.needs_input else 0) + self._param_bytes(ly) + ws
                if pool_y:
                    br += y.size * a
                return macs, br, d.size * 4 + ws

            allocs = [(dx, "grad", lambda: env.nk * per_in * 4)]
            if is_conv:
                allocs.append((f"{ly.name}.dcols", "workspace",
                               lambda: ly.fan_in * 4))
            kind = ly.kind if ly.params else ("reduce" if ly.kind == "reduce" else "eltwise")
            reads = [g] + ([x_key] if ly.needs_input else []) + ([y_key] if pool_y else [])
            ops.append(_PlannedOp(f"{ly.name}.backward_input", kind, "f32", dx_run, reads, allocs))
        if upd is not None:
            if t.fused_update:
                ops.append(upd)
            else:
                updates.append(upd)
        return ops

    def _apply_swap(self, plan: list[_PlannedOp], values: dict) -> list[_PlannedOp]:
        """swap: write activations the backward needs to flash after their last forward use and read
        them back just before their first backward use (when anything happens in between)."""
        if not self.techniques.swap:
            return plan
        loss_i = next(i for i, p in enumerate(plan) if p.name == "loss")
        kinds = {k: kind for p in plan for k, kind, _ in p.allocs}
        sizes = {k: nb for p in plan[:loss_i] for k, _, nb in p.allocs}
        out_after: dict[int, list[_PlannedOp]] = {}
        in_before: dict[int, list[_PlannedOp]] = {}
        for key, kind in kinds.items():
            if kind not in ("activation", "input") or key not in sizes:
                continue
            fwd = [i for i, p in enumerate(plan[:loss_i + 1]) if key in p.reads or any(k == key for k, _, _ in p.allocs)]
            bwd = [i for i, p in enumerate(plan) if i > loss_i and key in p.reads]
            if not bwd or bwd[0] - fwd[-1] <= 2:
                continue
            f, b = fwd[-1], bwd[0]
            nb = sizes[key]
            dt = "i8" if self.techniques.int8 else "f32"

            def out_run(key=key, nb=nb):
                values["flash:" + key] = values[key]
                return 0, nb(), nb()

            def in_run(key=key, nb=nb):
                values[key] = values.pop("flash:" + key)
                return 0, nb(), nb()

            skey = "s." + key
            out_after.setdefault(f, []).append(_PlannedOp(f"swap_out.{key}", "flash_write", dt, out_run, [key]))
            in_before.setdefault(b, []).append(_PlannedOp(f"swap_in.{key}", "flash_read", dt, in_run, [],
                                                          [(skey, kind, nb)]))
            for p in plan[b:]:
                p.reads = [skey if r == key else r for r in p.reads]
        new: list[_PlannedOp] = []
        for i, p in enumerate(plan):
            new += in_before.get(i, [])
            new.append(p)
            new += out_after.get(i, [])
        return new


@dataclass
class _StepEnv:
    n: int
    nk: int = 0
    keep: np.ndarray | None = None
    loss: float = float("nan")
    is_sub: set = field(default_factory=set)
    stats: dict = field(default_factory=dict)

    def sub(self, key: str, arr: np.ndarray) -> np.ndarray:
        """The kept samples' rows of a full-batch value (instance filtering)."""
        if self.keep is None or key in self.is_sub:
            return arr
        return arr[self.keep]


def _prune(e: np.ndarray, t: Techniques, rng: np.random.Generator) -> tuple[np.ndarray, int]:
    """Error-map pruning (zero entries with |e| < frac * max|e| of their own sample) and stochastic
    gradient pruning (entries under tau = grad_prune * max|e| of their sample become +-tau with
    probability |e|/tau, else 0: unbiased). Returns the pruned map and its non-zero count."""
    if e.size == 0:
        return e, 0
    m = np.abs(e).reshape(len(e), -1).max(axis=1).reshape((-1,) + (1,) * (e.ndim - 1))
    if t.error_map_prune is not None:
        e = np.where(np.abs(e) >= t.error_map_prune * m, e, 0).astype(e.dtype)
    if t.grad_prune is not None:
        tau = np.maximum(t.grad_prune * m, 1e-30)
        small = np.abs(e) < tau
        keep = rng.random(e.shape) < np.abs(e) / tau
        e = np.where(small, np.where(keep, np.sign(e) * tau, 0), e).astype(e.dtype)
    return e, int(np.count_nonzero(e))


def _stochastic_round(p: np.ndarray, s: float, rng: np.random.Generator) -> None:
    """Snap a weight array back onto its int8 grid of scale ``s`` with stochastic rounding."""
    v = p / s
    p[...] = np.clip(np.floor(v + rng.random(p.shape)), -127, 127) * s


def default_lr(spec: ModelSpec, optimizer: str = "sgd") -> float:
    """The learning rate ``make_job`` uses when none is given: 0.05 for MLPs, 0.005 for CNNs (SGD;
    fine-tuning the zoo CNNs at 0.05 with momentum 0.9 diverges), 0.001 for Adam."""
    if optimizer == "adam":
        return 0.001
    return 0.05 if spec.family == "mlp" else 0.005


def make_job(workload: str | ModelSpec, *, dataset: str | None = None, story: str = "new-class",
             techniques: Techniques = NO_TECHNIQUES, optimizer: str = "sgd", lr: float | None = None,
             momentum: float = 0.9, seed: int = 0, pretrain: bool = True) -> Job:
    """A traced personalisation job for a zoo name or spec (see ``workloads.api.TrainingJob``).

    ``dataset`` defaults to the zoo entry's, else by input shape (64 / 8x8x1: digits8, 16 / 4x4x1:
    digits4, 64x3: accel). ``story``: new-class | shift | plain (plain: no pre-training, one
    train/test split). Pre-training is host-side and untraced, cached per (spec, dataset, story, seed).
    ``lr=None`` takes ``default_lr`` (0.05 for MLPs, 0.005 for CNNs with SGD). ``pretrain=False`` starts
    from the seeded initial weights (see ``workloads.model``).
    """
    return Job(workload, dataset=dataset, story=story, techniques=techniques, optimizer=optimizer, lr=lr,
               momentum=momentum, seed=seed, pretrain=pretrain)
