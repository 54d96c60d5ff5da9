"""Replay buffers: which of the stream's samples the device keeps to train on (``techniques.buffer``).

- ``fifo``: the most recent ``size`` samples.
- ``reservoir``: a uniform sample of everything seen so far (Vitter's algorithm R).
- ``representative``: a set that covers the stream in the model's own embedding space (the input to
  the classifier layer). A new sample replaces the most redundant kept one (the one nearest to another
  kept sample) when it is farther from every kept sample than that redundant pair is apart: a greedy
  k-centre cover. The seed (on-device contrastive learning with data selection) scores samples by a
  contrastive criterion because it trains without labels; this device trains a classifier, so the
  classifier's own embedding is the natural similarity, and covering it keeps old classes that a
  class-by-class stream would otherwise flush out. Embeddings are taken when a sample arrives (one
  forward pass up to the classifier, counted) and kept beside it.

Each training step trains on a batch drawn (seeded) from the buffer after the new samples are offered.
"""
from __future__ import annotations

import numpy as np

BUFFER_POLICIES = ("fifo", "reservoir", "representative")


class ReplayBuffer:
    """``size`` samples of ``sample_shape``, their labels and (representative) their embeddings."""

    def __init__(self, policy: str, size: int, sample_shape: tuple[int, ...], embed_dim: int,
                 rng: np.random.Generator):
        if policy not in BUFFER_POLICIES:
            raise ValueError(f"techniques.buffer must be one of {', '.join(BUFFER_POLICIES)} (got {policy!r})")
        self.policy, self.size, self.rng = policy, size, rng
        self.x = np.zeros((size,) + tuple(sample_shape), np.float32)
        self.y = np.zeros(size, np.int64)
        self.emb = np.zeros((size, embed_dim), np.float32) if policy == "representative" else None
        self.nn = np.full(size, np.inf)                 # representative: distance to the nearest kept sample
        self.nn_idx = np.full(size, -1)                 # ... and which one it is
        self.n = 0          # samples kept
        self.seen = 0       # samples offered
        self.head = 0       # fifo: next slot to overwrite

    @property
    def nbytes(self) -> int:
        """Bytes the buffer keeps on the device: samples, labels (int32); representative: embeddings, the
        nearest-neighbour distance (f32) and index (int32) of each."""
        extra = (self.emb.nbytes + self.size * 8) if self.emb is not None else 0
        return int(self.x.nbytes + self.size * 4 + extra)

    def offer(self, xs: np.ndarray, ys: np.ndarray, emb: np.ndarray | None = None) -> int:
        """Offer new samples; returns the distance computations made (each of ``embed_dim`` MACs)."""
        dists = 0
        for i in range(len(ys)):
            self.seen += 1
            if self.policy == "fifo":
                self._put(self.head, xs[i], ys[i])
                self.head = (self.head + 1) % self.size
                self.n = min(self.size, self.n + 1)
            elif self.policy == "reservoir":
                if self.n < self.size:
                    self._put(self.n, xs[i], ys[i])
                    self.n += 1
                else:
                    j = int(self.rng.integers(0, self.seen))
                    if j < self.size:
                        self._put(j, xs[i], ys[i])
            else:
                dists += self._offer_representative(xs[i], ys[i], emb[i])
        return dists

    def _put(self, j: int, x: np.ndarray, y: int) -> None:
        self.x[j] = x
        self.y[j] = y

    def _offer_representative(self, x: np.ndarray, y: int, e: np.ndarray) -> int:
        n, emb, nn, nn_idx = self.n, self.emb, self.nn, self.nn_idx
        d = np.sqrt(((emb[:n] - e) ** 2).sum(axis=1))
        dists = n
        if n < self.size:                               # not full: keep it
            self._put(n, x, y)
            emb[n] = e
            if n:
                j = int(np.argmin(d))
                nn[n], nn_idx[n] = d[j], j
                closer = d < nn[:n]
                nn[:n][closer], nn_idx[:n][closer] = d[closer], n
            self.n += 1
            return dists
        w = int(np.argmin(nn))                          # the most redundant kept sample
        d_rest = d.copy()
        d_rest[w] = np.inf
        if d_rest.min() <= nn[w]:
            return dists                                # no farther out than that one: drop the new sample
        was_nearest = nn_idx == w
        self._put(w, x, y)
        emb[w] = e
        j = int(np.argmin(d_rest))
        nn[w], nn_idx[w] = d_rest[j], j
        closer = d_rest < nn
        nn[closer], nn_idx[closer] = d_rest[closer], w
        for i in np.flatnonzero(was_nearest & ~closer):   # their nearest was the sample just replaced
            di = np.sqrt(((emb[:n] - emb[i]) ** 2).sum(axis=1))
            di[i] = np.inf
            dists += n
            k = int(np.argmin(di))
            nn[i], nn_idx[i] = di[k], k
        return dists

    def draw(self, k: int) -> tuple[np.ndarray, np.ndarray]:
        """A seeded batch of ``k`` kept samples (without replacement when enough are kept)."""
        idx = self.rng.choice(self.n, k, replace=self.n < k)
        return self.x[idx].copy(), self.y[idx].copy()
