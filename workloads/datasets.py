"""Data sets that ship with packages or are generated; nothing is downloaded.

- ``digits(size=8|4)``: scikit-learn's bundled 8x8 handwritten digits (1797 samples), X float32 in [0, 1];
  size 4 is a 2x2 average-pooled 4x4 view for tiny devices.
- ``accelerometer(seed)``: a seeded synthetic 3-axis accelerometer stream cut into 64-sample windows
  (25 Hz, 2.56 s) of 6 activities by 12 subjects, each subject with its own gait and sensor orientation.
- ``shifted_digits``: rotated and thickened digits, the "shifted distribution" personalisation story.
- ``personalisation_split``: population (pre-training) and user (adaptation) splits for a story; the
  imperfect-data stories (``noisy-labels``, ``unlabelled``, ``input-noise``) take ``StoryOptions``.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np

F32 = np.float32
DATASETS = ("digits8", "digits4", "accel")
ALIASES = {"digits": "digits8", "digits8x8": "digits8", "digits4x4": "digits4", "accelerometer": "accel"}
STORIES = ("new-class", "shift", "plain", "noisy-labels", "unlabelled", "input-noise")
# the imperfect-data stories start from the shift story's population (same pre-training, cached once)
BASE_STORY = {"noisy-labels": "shift", "unlabelled": "shift", "input-noise": "shift"}
LABEL_NOISE_KINDS = ("symmetric", "confusable")
UNLABELLED = -1            # the label of a sample that came without one (story unlabelled)
# story unlabelled on digits: the user's hand is rotated 15 degrees (not shift's 25): self-training needs a
# model that is right on most of the user's samples to begin with (~75 % here, ~50 % at 25 degrees)
UNLABELLED_ANGLE_DEG = 15.0
NOISE_TEST_DRAWS = 10      # story input-noise: noisy readings of each held-out test digit
# stories unlabelled and input-noise on digits: the user test set is every digit held out of both
# pre-training and the user's stream (the user's test rows and the population's test rows, ~540 digits,
# not ~180): on ~180 digits one seed's accuracy has a binomial standard error of ~2-3 pp
ACTIVITIES = ("still", "walk", "run", "stairs-up", "stairs-down", "shake")


@dataclass
class Dataset:
    """X (samples first, float32), y (int64), optional subject ids; iterates as ``X, y``."""

    name: str
    X: np.ndarray
    y: np.ndarray
    classes: tuple[str, ...]
    groups: np.ndarray | None = None

    def __iter__(self):
        return iter((self.X, self.y))

    def __len__(self) -> int:
        return len(self.y)


def _pool_4x4(X8: np.ndarray) -> np.ndarray:
    return X8.reshape(-1, 4, 2, 4, 2).mean(axis=(2, 4)).reshape(-1, 16).astype(F32)


def digits(size: int = 8) -> Dataset:
    """scikit-learn's bundled digits, flattened rows of size*size pixels in [0, 1]."""
    if size not in (8, 4):
        raise ValueError(f"datasets.digits: size must be 8 or 4 (got {size})")
    from sklearn.datasets import load_digits

    d = load_digits()
    X = (d.data / 16.0).astype(F32)
    if size == 4:
        X = _pool_4x4(X)
    return Dataset(f"digits{size}", X, d.target.astype(np.int64), tuple(str(i) for i in range(10)))


def _rotate(imgs: np.ndarray, deg: np.ndarray) -> np.ndarray:
    """Bilinear rotation of (N, 8, 8) images about their centre by per-image angles (vectorised)."""
    n, h, w = imgs.shape
    t = np.deg2rad(deg)[:, None, None]
    yy, xx = np.meshgrid(np.arange(h) - (h - 1) / 2, np.arange(w) - (w - 1) / 2, indexing="ij")
    sy = np.cos(t) * yy - np.sin(t) * xx + (h - 1) / 2
    sx = np.sin(t) * yy + np.cos(t) * xx + (w - 1) / 2
    y0, x0 = np.floor(sy).astype(int), np.floor(sx).astype(int)
    fy, fx = sy - y0, sx - x0
    pad = np.pad(imgs, ((0, 0), (1, 2), (1, 2)))
    idx = np.arange(n)[:, None, None]

    def at(yi, xi):
        return pad[idx, np.clip(yi + 1, 0, h + 2), np.clip(xi + 1, 0, w + 2)]

    out = (at(y0, x0) * (1 - fy) * (1 - fx) + at(y0, x0 + 1) * (1 - fy) * fx
           + at(y0 + 1, x0) * fy * (1 - fx) + at(y0 + 1, x0 + 1) * fy * fx)
    return out.astype(F32)


def _thicken(imgs: np.ndarray) -> np.ndarray:
    """Grey dilation with a cross, blended half-way: thicker strokes."""
    p = np.pad(imgs, ((0, 0), (1, 1), (1, 1)))
    dil = np.maximum.reduce([p[:, 1:-1, 1:-1], p[:, :-2, 1:-1], p[:, 2:, 1:-1], p[:, 1:-1, :-2], p[:, 1:-1, 2:]])
    return (0.5 * imgs + 0.5 * dil).astype(F32)


def shifted_digits(X8: np.ndarray, seed: int = 0, angle_deg: float = 25.0) -> np.ndarray:
    """The user's handwriting: 8x8 digit rows rotated by ``angle_deg`` (+-5 deg jitter) and thickened."""
    rng = np.random.default_rng(seed + 1)
    imgs = X8.reshape(-1, 8, 8)
    ang = angle_deg + rng.uniform(-5, 5, len(imgs))
    return np.clip(_thicken(_rotate(imgs, ang)), 0, 1).reshape(-1, 64).astype(F32)


def accelerometer(seed: int = 0, subjects: int = 12, windows_per_class: int = 40, length: int = 64,
                  rate_hz: float = 25.0) -> Dataset:
    """Seeded synthetic 3-axis accelerometer windows (in g, roughly [-3, 3]) for 6 activities.

    Each activity has a step frequency and a motion pattern per axis; each subject has a gait-speed
    factor, an amplitude factor and a sensor orientation (gravity direction), so a new user is a real
    distribution shift. X has shape (N, length, 3), groups holds the subject id.
    """
    rng = np.random.default_rng(seed)
    t = np.arange(length) / rate_hz
    # per activity: base frequency (Hz), amplitude per axis (g), second-harmonic weight, asymmetry
    act = {
        0: (0.0, (0.02, 0.02, 0.02), 0.0, 0.0),
        1: (1.8, (0.25, 0.15, 0.45), 0.3, 0.0),
        2: (2.7, (0.5, 0.3, 1.2), 0.5, 0.0),
        3: (1.5, (0.2, 0.2, 0.55), 0.2, 0.6),
        4: (2.0, (0.25, 0.2, 0.7), 0.6, -0.6),
        5: (5.0, (1.2, 0.9, 0.3), 0.1, 0.0),
    }
    Xs, ys, gs = [], [], []
    for s in range(subjects):
        speed = rng.uniform(0.8, 1.25)
        amp = rng.uniform(0.75, 1.3)
        tilt = rng.normal(0, 0.5, 3)
        grav = np.array([0.0, 0.0, 1.0]) + tilt
        grav /= np.linalg.norm(grav)
        for c, (f0, a, h2, asym) in act.items():
            n = windows_per_class
            f = f0 * speed * rng.uniform(0.92, 1.08, (n, 1, 1))
            ph = rng.uniform(0, 2 * np.pi, (n, 1, 3))
            w = 2 * np.pi * f * t[None, :, None]
            base = np.sin(w + ph) + h2 * np.sin(2 * w + 2 * ph) + asym * np.maximum(np.sin(w + ph), 0) ** 2
            motion = amp * np.asarray(a)[None, None, :] * base
            noise = rng.normal(0, 0.05, (n, length, 3))
            Xs.append((grav[None, None, :] + motion + noise).astype(F32))
            ys.append(np.full(n, c))
            gs.append(np.full(n, s))
    return Dataset("accel", np.concatenate(Xs), np.concatenate(ys).astype(np.int64), ACTIVITIES,
                   groups=np.concatenate(gs))


def load(name: str, seed: int = 0) -> Dataset:
    """A data set by name: digits8 | digits4 | accel (aliases: digits, accelerometer). Cached in-process;
    the arrays are read-only (index them to get a copy)."""
    key = ALIASES.get(name, name)
    if key not in DATASETS:
        raise ValueError(f"unknown dataset {name!r} (known: {', '.join(DATASETS)})")
    return _load(key, seed if key == "accel" else 0)


@functools.lru_cache(maxsize=16)
def _load(key: str, seed: int) -> Dataset:
    ds = accelerometer(seed) if key == "accel" else digits(8 if key == "digits8" else 4)
    for a in (ds.X, ds.y, ds.groups):
        if a is not None:
            a.setflags(write=False)
    return ds


def default_for_shape(input_shape: tuple[int, ...]) -> str:
    """The data set a spec without one trains on, chosen by its input shape."""
    if input_shape in ((64,), (8, 8, 1)):
        return "digits8"
    if input_shape in ((16,), (4, 4, 1)):
        return "digits4"
    if input_shape == (64, 3):
        return "accel"
    raise ValueError(f"no default dataset for input shape {'x'.join(map(str, input_shape))}: "
                     f"pass dataset= one of {', '.join(DATASETS)} with a matching input "
                     f"(64 or 8x8x1: digits8, 16 or 4x4x1: digits4, 64x3: accel)")


@dataclass
class Split:
    """Population (pre-training) and user (personalisation) data for one story, in the dataset's rows."""

    pop_train: tuple[np.ndarray, np.ndarray]
    pop_test: tuple[np.ndarray, np.ndarray]     # retention: old classes, population distribution
    user_train: tuple[np.ndarray, np.ndarray]   # the labelled stream on the device
    user_test: tuple[np.ndarray, np.ndarray]    # user accuracy
    new_class: int | None = None
    ordered: bool = False                 # the stream arrives in this order (class by class), not shuffled
    stream_noise: float = 0.0             # additive sensor noise (std) the stream ramps up to over one pass
    user_train_clean: np.ndarray | None = None   # the true labels behind noisy or missing ones


@dataclass(frozen=True)
class StoryOptions:
    """How imperfect the user's data is. ``label_noise``: fraction of the user's labels flipped
    (``label_noise_kind`` symmetric: to any other class; confusable: to the class whose mean sample is
    nearest); ``label_fraction``: fraction of the stream that comes with a label; ``noise_level``: scale
    (std of the Gaussian before rectification) of the sensor's dark-signal noise at the end of the ramp
    (``sensor_noise``; inputs in [0, 1]). Each applies to its story only."""

    label_noise: float = 0.4
    label_noise_kind: str = "symmetric"
    label_fraction: float = 0.1
    noise_level: float = 0.3

    def check(self, names: dict[str, str] | None = None) -> StoryOptions:
        """Raise ``ValueError`` naming the field (or its flag/key in ``names``) and the value if bad."""
        names = names or {}
        for f in ("label_noise", "label_fraction", "noise_level"):
            v = getattr(self, f)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0 <= v < 1:
                raise ValueError(f"{names.get(f, f)} must be a number in [0, 1) (got {v!r})")
        if self.label_noise_kind not in LABEL_NOISE_KINDS:
            raise ValueError(f"{names.get('label_noise_kind', 'label_noise_kind')} must be one of "
                             f"{', '.join(LABEL_NOISE_KINDS)} (got {self.label_noise_kind!r})")
        return self


def confusable_classes(X: np.ndarray, y: np.ndarray) -> np.ndarray:
    """For each class, the other class whose mean sample is nearest (where label noise goes when the
    user confuses look-alike classes)."""
    classes = np.unique(y)
    means = np.stack([X[y == c].reshape(int((y == c).sum()), -1).mean(axis=0) for c in classes])
    d = ((means[:, None, :] - means[None, :, :]) ** 2).sum(axis=2)
    np.fill_diagonal(d, np.inf)
    out = np.arange(int(y.max()) + 1)
    out[classes] = classes[d.argmin(axis=1)]
    return out


def flip_labels(y: np.ndarray, rate: float, kind: str, n_classes: int, rng: np.random.Generator,
                confusable: np.ndarray | None = None) -> np.ndarray:
    """Exactly round(rate * len(y)) labels (a seeded choice) flipped to a wrong class."""
    y = y.copy()
    flip = rng.choice(len(y), int(round(rate * len(y))), replace=False)
    if kind == "symmetric":
        y[flip] = (y[flip] + rng.integers(1, n_classes, len(flip))) % n_classes
    else:
        y[flip] = confusable[y[flip]]
    return y


def _imperfect(base: Split, ds: Dataset, story: str, opts: StoryOptions, seed: int) -> Split:
    rng = np.random.default_rng(seed + 4099)
    Xu, yu = base.user_train
    k = len(ds.classes)
    if story == "noisy-labels":
        conf = confusable_classes(*base.pop_train) if opts.label_noise_kind == "confusable" else None
        noisy = flip_labels(yu, opts.label_noise, opts.label_noise_kind, k, rng, conf)
        return Split(base.pop_train, base.pop_test, (Xu, noisy), base.user_test, user_train_clean=yu)
    if story == "unlabelled":
        order = np.argsort(yu, kind="stable")          # class by class
        Xu, yu = Xu[order], yu[order]
        ys = np.full_like(yu, UNLABELLED)
        lab = rng.choice(len(yu), int(round(opts.label_fraction * len(yu))), replace=False)
        ys[lab] = yu[lab]
        return Split(base.pop_train, base.pop_test, (Xu, ys), base.user_test, ordered=True, user_train_clean=yu)
    # input-noise: the user's data is the population's (held out), the sensor adds noise; the test set is
    # NOISE_TEST_DRAWS noisy readings of each held-out digit (less sampling noise in the accuracy)
    Xt, yt = base.user_test
    Xt, yt = np.concatenate([Xt] * NOISE_TEST_DRAWS), np.concatenate([yt] * NOISE_TEST_DRAWS)
    noisy_test = sensor_noise(Xt, opts.noise_level, rng, ds.name)
    return Split(base.pop_train, base.pop_test, (Xu, yu), (noisy_test, yt), stream_noise=opts.noise_level)


def sensor_noise(x: np.ndarray, sigma: float, rng: np.random.Generator, dataset: str = "digits8") -> np.ndarray:
    """The input-noise story's sensor noise at level ``sigma``: a non-negative dark signal |N(0, sigma^2)|
    added to every value (thermal dark current and stray light only ever add charge: the mean rises by
    0.8 sigma, the spread is 0.6 sigma), clipped at the ADC's range ([0, 1] for the digits' pixels;
    the accelerometer, in g, is not clipped). ``sigma = 0``: ``x`` unchanged."""
    if not sigma:
        return np.asarray(x, F32)
    out = x + np.abs(rng.normal(0.0, sigma, np.shape(x)))
    if dataset.startswith("digits"):
        out = np.clip(out, 0.0, 1.0)
    return out.astype(F32)


def _parts(idx: np.ndarray, fracs: tuple[float, ...]) -> list[np.ndarray]:
    cuts = np.cumsum([int(round(f * len(idx))) for f in fracs[:-1]])
    return np.split(idx, cuts)


def personalisation_split(ds: Dataset, story: str, seed: int = 0, options: StoryOptions | None = None) -> Split:
    """Split a data set for a story.

    new-class: the last class is the user's new class ("my dog"), never seen in pre-training; the user
      stream mixes it with the user's own samples of the old classes. shift: digits are rotated and
      thickened for the user; accelerometer users are subjects held out of the population. plain:
      one ordinary train/test split of all classes (no personalisation), for from-scratch training.
    The imperfect-data stories take the shift story's split and ``options`` (``StoryOptions``):
    noisy-labels: a fraction of the user's training labels is wrong (the test labels are right).
    unlabelled: the stream arrives class by class and only a fraction of it is labelled (``UNLABELLED``
      elsewhere). input-noise: the user's data is unshifted population data (accelerometer: held-out
      subjects) under the sensor's dark-signal noise (``sensor_noise``) rising to ``noise_level`` over
      the stream; the user test set has the full noise (``NOISE_TEST_DRAWS`` readings of each sample).
      On digits both test on every held-out digit (the user's and the population's test rows; unlabelled:
      in the user's hand).
    """
    if story not in STORIES:
        raise ValueError(f"story must be one of {', '.join(STORIES)} (got {story!r})")
    if story in BASE_STORY:
        opts = (options or StoryOptions()).check()
        base = personalisation_split(ds, BASE_STORY[story], seed)
        if story == "input-noise" and ds.groups is None:   # digits: the unshifted user rows
            base = _unshifted(ds, seed)
            base.user_test = _cat(base.user_test, base.pop_test)
        if story == "unlabelled" and ds.groups is None:    # digits: a milder hand (15 degrees)
            base = _shifted_split(ds, seed, np.random.default_rng(seed), UNLABELLED_ANGLE_DEG)
            rows = _held_out_rows(len(ds.y), seed)          # the held-out population digits in the user's hand
            Xh = shifted_digits(load("digits8").X[rows], seed + 7919, UNLABELLED_ANGLE_DEG)
            base.user_test = _cat(base.user_test, (_pool_4x4(Xh) if ds.name == "digits4" else Xh, ds.y[rows]))
        return _imperfect(base, ds, story, opts, seed)
    rng = np.random.default_rng(seed)
    X, y = ds.X, ds.y
    n = len(y)
    if story == "plain":
        perm = rng.permutation(n)
        tr, te = _parts(perm, (0.75, 0.25))
        return Split((X[tr], y[tr]), (X[te], y[te]), (X[tr], y[tr]), (X[te], y[te]))
    if story == "new-class":
        new = int(y.max())
        old_idx = rng.permutation(np.flatnonzero(y != new))
        new_idx = rng.permutation(np.flatnonzero(y == new))
        p_tr, p_te, u_old = _parts(old_idx, (0.6, 0.2, 0.2))
        u_old_tr, u_old_te = _parts(u_old, (0.5, 0.5))
        n_tr, n_te = _parts(new_idx, (0.5, 0.5))
        u_tr = rng.permutation(np.concatenate([u_old_tr, n_tr]))
        u_te = np.concatenate([u_old_te, n_te])
        return Split((X[p_tr], y[p_tr]), (X[p_te], y[p_te]), (X[u_tr], y[u_tr]), (X[u_te], y[u_te]), new)
    # shift
    if ds.groups is not None:
        users = ds.groups.max() - np.arange(2)              # the last two subjects are "the user"
        u_mask = np.isin(ds.groups, users)
        pop = rng.permutation(np.flatnonzero(~u_mask))
        usr = rng.permutation(np.flatnonzero(u_mask))
        p_tr, p_te = _parts(pop, (0.8, 0.2))
        u_tr, u_te = _parts(usr, (0.5, 0.5))
        return Split((X[p_tr], y[p_tr]), (X[p_te], y[p_te]), (X[u_tr], y[u_tr]), (X[u_te], y[u_te]))
    return _shifted_split(ds, seed, rng)


def _shifted_split(ds: Dataset, seed: int, rng: np.random.Generator, angle_deg: float = 25.0) -> Split:
    """The digit shift story: the user's rows rotated by ``angle_deg`` and thickened."""
    X, y = ds.X, ds.y
    perm = rng.permutation(len(y))
    p_tr, p_te, u = _parts(perm, (0.6, 0.2, 0.2))
    u_tr, u_te = _parts(u, (0.5, 0.5))
    X8 = load("digits8").X
    Xs = shifted_digits(X8[u], seed, angle_deg)
    if ds.name == "digits4":
        Xs = _pool_4x4(Xs)
    k = len(u_tr)
    return Split((X[p_tr], y[p_tr]), (X[p_te], y[p_te]), (Xs[:k], y[u_tr]), (Xs[k:], y[u_te]))


def _cat(a: tuple[np.ndarray, np.ndarray], b: tuple[np.ndarray, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    return np.concatenate([a[0], b[0]]), np.concatenate([a[1], b[1]])


def _held_out_rows(n: int, seed: int) -> np.ndarray:
    """The population test rows of the digit shift split (``_shifted_split``, ``_unshifted``) for ``seed``."""
    return _parts(np.random.default_rng(seed).permutation(n), (0.6, 0.2, 0.2))[1]


def _unshifted(ds: Dataset, seed: int) -> Split:
    """The shift story's digit split with the user's rows left as they are (same rows, no rotation)."""
    rng = np.random.default_rng(seed)
    perm = rng.permutation(len(ds.y))
    p_tr, p_te, u = _parts(perm, (0.6, 0.2, 0.2))
    u_tr, u_te = _parts(u, (0.5, 0.5))
    X, y = ds.X, ds.y
    return Split((X[p_tr], y[p_tr]), (X[p_te], y[p_te]), (X[u_tr], y[u_tr]), (X[u_te], y[u_te]))
