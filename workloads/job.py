"""The traced personalisation job (``make_job``): real numpy training whose every op yields an ``Op``.

``Job`` sets a model up for a story (pre-trained on the population, the techniques' trainable set,
optimiser state as persistent tensors) and runs inference and training steps as step programs built by
``steps.StepBuilder`` and run by ``program.run_program``.
"""
from __future__ import annotations

import math
from collections.abc import Generator, Iterator

import numpy as np

from . import datasets as D
from .compression.config import CompressionSpec, compress_frozen
from .early_filter import EarlyFilter
from .imperfect import DataTechniques
from .model import build_model, resolve
from .optim import make_optimizer
from .pretrain import pretrained_state, single_thread_blas
from .program import ProgramOp, StepState, from_template, run_program, trace_template
from .spec import ModelSpec
from .steps import StepBuilder
from .techniques import Techniques
from .trace import Op, Tensor, new_tensor_id
from .transforms import apply_swap, install_etf, quantise_weights

F32 = np.float32
NO_TECHNIQUES = Techniques()   # the default: plain full backprop


# The step a scenario fine-tunes at on the device when it names none: smaller than ``default_lr``'s MLP rate
# (which sets up a job from scratch); the zoo CNNs' rate, for every model.
FINE_TUNE_LR = 0.005


def default_lr(spec: ModelSpec, optimizer: str = "sgd") -> float:
    """The learning rate ``make_job`` uses when none is given: 0.05 for MLPs, 0.005 for CNNs (SGD;
    fine-tuning the zoo CNNs at 0.05 with momentum 0.9 diverges), 0.001 for Adam."""
    if optimizer == "adam":
        return 0.001
    return 0.05 if spec.family == "mlp" else 0.005


class Job:
    """A personalisation training job implementing ``workloads.api.TrainingJob``."""

    def __init__(self, workload: str | ModelSpec, *, dataset: str | None = None, story: str = "new-class",
                 techniques: Techniques = NO_TECHNIQUES, optimizer: str = "sgd", lr: float | None = None,
                 momentum: float = 0.9, seed: int = 0, pretrain: bool = True, compression=None,
                 story_options: D.StoryOptions | dict | None = None):
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
        if isinstance(story_options, dict):
            story_options = D.StoryOptions(**story_options)
        self.story_options = story_options
        self.split = D.personalisation_split(ds, story, seed, story_options)
        self.model = build_model(spec, seed)
        self._frozen_ids: set[int] = set()
        if t.etf:
            clf = self.model.layers[-1]
            install_etf(self.model, seed)
            self._frozen_ids = {id(clf.params[0]), id(clf.params[1])}
        if pretrain and story != "plain":
            self.model.load_state(pretrained_state(spec, self.dataset, D.BASE_STORY.get(story, story), seed, t.etf))
        if lr is None:
            lr = default_lr(spec, optimizer)
        self.lr = lr
        self.opt = make_optimizer(optimizer, lr, momentum)
        self._rng = np.random.default_rng(seed + 202)
        self._w_size = 1 if t.int8 else 4
        self._qscale: dict[int, float] = quantise_weights(self.model) if t.int8 else {}
        self._choose_trainable()
        self.compressed = self._compress(compression)
        self._make_persistent()
        early = None
        if t.early_filter is not None:
            early = EarlyFilter(self.model, t, seed)
            self._persistent += early.persistent_tensors()
        self._steps = StepBuilder(self.model, t, self.trainable, self.opt, self._state, self._qscale, self._rng,
                                  self.compressed, early)
        self._data = None       # imperfect-data techniques (self_adaptive, sinkhorn, buffer, noise_bias)
        if t.self_adaptive is not None or t.sinkhorn is not None or t.buffer is not None or t.noise_bias:
            self._data = DataTechniques(self.model, t, self.split, self.input_shape, self._rng)
            self._steps.labeller = self._data
            self._persistent += self._data.persistent()
        self.last_step: dict = {}     # figures of the last train_step (kept samples, error entries kept)
        self._infer_template: list | None = None

    # ------------------------------------------------------------------------------------ set-up
    def _choose_trainable(self) -> None:
        t = self.techniques
        players = [ly for ly in self.model.param_layers() if id(ly.params[0]) not in self._frozen_ids]
        if t.update == "last-k":
            players = players[-t.last_k:]
        self.trainable: dict[str, list[bool]] = {}
        for ly in players:
            self.trainable[ly.name] = [t.update != "bias" and not t.noise_bias, True]
        if not self.trainable:
            raise ValueError(f"{self.name}: nothing to train with techniques {t.active()}")

    def _compress(self, compression) -> dict:
        """Frozen layers kept compressed in flash (``workloads.compression.config``): {name: Encoded}."""
        if compression is None:
            return {}
        if isinstance(compression, dict):
            compression = CompressionSpec.from_dict(compression)
        if self.techniques.int8:
            raise ValueError("workload.compression: cannot be combined with techniques.int8 (both re-encode weights)")
        return compress_frozen(self.model, compression, self.trainable)

    def _make_persistent(self) -> None:
        self._persistent: list[Tensor] = []
        self._state: dict[int, list[np.ndarray]] = {}
        for ly in self.model.param_layers():
            W, b = ly.params
            if ly.name not in self.compressed:     # compressed weights stay in flash, decoded per use
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
        """The model in flash: compressed layers at their encoded size, the others dense; biases float32."""
        return sum((self.compressed[ly.name].flash_bytes if ly.name in self.compressed else ly.params[0].size * self._w_size)
                   + ly.params[1].size * 4 for ly in self.model.param_layers())

    def labelled_stream(self) -> Iterator[tuple[np.ndarray, int]]:
        """The user's samples in arrival order, cycling: shuffled per pass, or in the split's order
        (``Split.ordered``); with ``Split.stream_noise`` the sensor noise ramps up over the first pass.
        Story unlabelled: most labels are ``datasets.UNLABELLED``."""
        X, y = self.split.user_train
        rng = np.random.default_rng(self.seed + 303)
        sigma, n = self.split.stream_noise, len(y)
        noise_rng = np.random.default_rng(self.seed + 505)
        k = 0
        while True:
            for i in (np.arange(n) if self.split.ordered else rng.permutation(n)):
                x = X[i].reshape(self.input_shape).astype(F32)
                if sigma:
                    x = D.sensor_noise(x, sigma * min(1.0, k / n), noise_rng, self.dataset)
                    k += 1
                yield x, int(y[i])

    def infer(self, x: np.ndarray) -> Generator[Op, None, int]:
        xs = np.asarray(x, F32).reshape((1,) + self.input_shape)
        if self._infer_template is not None:
            return (yield from self._infer_again(xs))
        values: dict = {}
        program = self._steps.forward(xs, values)
        out: dict = {}
        logits_key = self._steps.logits_key()

        def classify():
            logits = values[logits_key]
            out["cls"] = int(np.argmax(logits[0]))
            return 0, logits.size * 4, 4

        program.append(ProgramOp("classify", "reduce", "f32", classify, [logits_key]))
        ops = []
        for op in run_program(program, values):
            ops.append(op)
            yield op
        self._infer_template = trace_template(ops)
        return out["cls"]

    def _infer_again(self, xs: np.ndarray) -> Generator[Op, None, int]:
        """An inference's trace does not depend on the data: trace the first call's ops again with fresh
        tensor ids while the same layer math runs (``Model.forward``)."""
        cls = int(np.argmax(self.model.forward(xs, self.techniques.int8)[0]))
        yield from from_template(self._infer_template)
        return cls

    def train_step(self, xs: np.ndarray, ys: np.ndarray) -> Generator[Op, None, float]:
        xs = np.asarray(xs, F32).reshape((-1,) + self.input_shape)
        ys = np.asarray(ys, np.int64).reshape(-1)
        if len(xs) != len(ys) or len(ys) == 0:
            raise ValueError(f"train_step: {len(xs)} samples but {len(ys)} labels")
        values: dict = {}
        st = StepState(len(ys), labels=ys)
        before: list[ProgramOp] = []
        if self._data is not None:
            xs, ys, before, train = self._data.before(xs, ys)
            if not train:           # noise_bias: this noise level's biases are done; nothing to learn
                yield from run_program(before, values)
                self.last_step = dict(self._data.stats, kept=0)
                return self._data.skipped_loss()
        program = self._steps.forward(xs, values, st)
        program += self._steps.loss_and_backward(ys, values, st)
        if self.techniques.swap:
            program = apply_swap(program, values, self.techniques.int8)
        yield from run_program(before + program, values)
        self.last_step = st.stats
        if self._data is not None:
            self._data.after(st.loss)
            self.last_step.update(self._data.stats)
        return st.loss

    def evaluate(self) -> dict[str, float]:
        q = self.techniques.int8
        Xu, yu = self.split.user_test
        Xr, yr = self.split.pop_test
        if self.split.new_class is not None:
            keep = yr != self.split.new_class
            Xr, yr = Xr[keep], yr[keep]
        predict = self._data.predict if self._data is not None else self.model.predict
        with single_thread_blas():
            ua = float(np.mean(predict(Xu, q) == yu)) if len(yu) else float("nan")
            ra = float(np.mean(predict(Xr, q) == yr)) if len(yr) else float("nan")
        return {"user_accuracy": ua, "retention_accuracy": ra}


def make_job(workload: str | ModelSpec, *, dataset: str | None = None, story: str = "new-class",
             techniques: Techniques = NO_TECHNIQUES, optimizer: str = "sgd", lr: float | None = None,
             momentum: float = 0.9, seed: int = 0, pretrain: bool = True, compression=None,
             story_options: D.StoryOptions | dict | None = None) -> Job:
    """A traced personalisation job for a zoo name or spec (see ``workloads.api.TrainingJob``).

    ``dataset`` defaults to the zoo entry's, else by input shape (64 / 8x8x1: digits8, 16 / 4x4x1:
    digits4, 64x3: accel). ``story``: one of ``datasets.STORIES`` (plain: no pre-training, one
    train/test split). Pre-training is host-side and untraced, cached per (spec, dataset, story, seed).
    ``lr=None`` takes ``default_lr``. ``pretrain=False`` starts from the seeded initial weights (see
    ``workloads.model``). ``compression``: a ``[workload.compression]`` table (dict) or
    ``compression.config.CompressionSpec``: frozen layers kept compressed in flash, decoded per use.
    ``story_options``: ``datasets.StoryOptions`` (or its dict) for the imperfect-data stories.
    """
    return Job(workload, dataset=dataset, story=story, techniques=techniques, optimizer=optimizer, lr=lr,
               momentum=momentum, seed=seed, pretrain=pretrain, compression=compression,
               story_options=story_options)
