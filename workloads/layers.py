"""Layers in plain numpy with explicit forward and backward passes (batch first, NHWC, float32).

Each layer splits its backward into the pieces the op trace reports separately:
``act_backward`` (the fused ReLU's mask), ``weight_grad`` (dW, db) and ``input_grad`` (dx). Backward MAC
counts are ``entries(dz) * fan_in``: every entry for a dense kernel, the non-zeros for a sparse kernel
(``sparse=True``, used with error-map / gradient pruning), so pruned entries are MACs really skipped. Conv2D uses im2col on BLAS; a 1-D
convolution is a Conv2D with a 1 x K kernel over a height-1 input.
"""
from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import as_strided

F32 = np.float32


def fake_quant(x: np.ndarray) -> np.ndarray:
    """Symmetric per-tensor int8 fake quantisation: round to the int8 grid of scale max|x|/127."""
    m = float(np.max(np.abs(x))) if x.size else 0.0
    if m == 0.0:
        return x
    s = m / 127.0
    return (np.clip(np.rint(x / s), -127, 127) * s).astype(x.dtype)


def _count(a: np.ndarray, sparse: bool) -> int:
    """Error entries a backward kernel processes: all of them (dense), or the non-zeros (sparse)."""
    return int(np.count_nonzero(a)) if sparse else int(a.size)


class Layer:
    """Base class: no parameters, no MACs. ``in_shape``/``out_shape`` are per sample."""

    kind = "eltwise"          # op kind of the forward pass
    relu = False
    needs_input = False       # backward reads the layer input
    view = False              # a reshape: no op, no buffer

    def __init__(self, name: str, in_shape: tuple[int, ...], out_shape: tuple[int, ...]):
        self.name = name
        self.in_shape = tuple(in_shape)
        self.out_shape = tuple(out_shape)
        self.params: list[np.ndarray] = []

    def parameters(self) -> list[np.ndarray]:
        """The layer's parameter arrays (float32), updated in place by the optimiser."""
        return self.params

    def forward(self, x: np.ndarray, quant: bool = False) -> np.ndarray:
        raise NotImplementedError

    def forward_macs(self, n: int) -> int:
        return 0

    def act_backward(self, y: np.ndarray, dy: np.ndarray) -> np.ndarray:
        """Gradient through the fused ReLU: zero where the output was clipped."""
        return np.where(y > 0, dy, 0).astype(dy.dtype, copy=False) if self.relu else dy

    def weight_grad(self, x: np.ndarray, dz: np.ndarray, rows: np.ndarray | None = None,
                    quant: bool = False, sparse: bool = False) -> tuple[list[np.ndarray], int]:
        """Gradients of the parameters (only output units/channels ``rows`` if given) and the MACs spent
        (``sparse``: a kernel that skips zero error entries)."""
        return [], 0

    def input_grad(self, x: np.ndarray, y: np.ndarray | None, dz: np.ndarray,
                   sparse: bool = False) -> tuple[np.ndarray, int]:
        """Gradient w.r.t. the input and the MACs spent."""
        raise NotImplementedError


class Dense(Layer):
    """y = relu?(x @ W + b), W of shape (in, out) row-major."""

    kind = "matmul"
    needs_input = True

    def __init__(self, name: str, n_in: int, n_out: int, relu: bool):
        super().__init__(name, (n_in,), (n_out,))
        self.relu = relu
        self.params = [np.zeros((n_in, n_out), F32), np.zeros(n_out, F32)]

    def forward(self, x, quant=False):
        W, b = self.params
        xq = fake_quant(x) if quant else x
        z = xq @ W + b
        return np.maximum(z, 0, out=z) if self.relu else z

    def forward_macs(self, n):
        return n * self.in_shape[0] * self.out_shape[0]

    def weight_grad(self, x, dz, rows=None, quant=False, sparse=False):
        xq = fake_quant(x) if quant else x
        d = dz if rows is None else dz[:, rows]
        return [xq.T @ d, d.sum(axis=0)], _count(d, sparse) * self.in_shape[0]

    def input_grad(self, x, y, dz, sparse=False):
        return dz @ self.params[0].T, _count(dz, sparse) * self.in_shape[0]


def _pad(x: np.ndarray, ph: int, pw: int) -> np.ndarray:
    """Zero padding of H and W by ph, pw in total (the odd one at the bottom/right, like TF 'same')."""
    if ph == 0 and pw == 0:
        return x
    n, h, w, c = x.shape
    out = np.zeros((n, h + ph, w + pw, c), x.dtype)
    out[:, ph // 2:ph // 2 + h, pw // 2:pw // 2 + w] = x
    return out


def _windows(x: np.ndarray, kh: int, kw: int, sh: int, sw: int, oh: int, ow: int) -> np.ndarray:
    """(N, OH, OW, kh, kw, C) strided view of the padded input (no copy)."""
    s0, s1, s2, s3 = x.strides
    return as_strided(x, (x.shape[0], oh, ow, kh, kw, x.shape[3]), (s0, s1 * sh, s2 * sw, s1, s2, s3),
                      writeable=False)


def _col2im(dcols: np.ndarray, xshape: tuple[int, ...], kh: int, kw: int, sh: int, sw: int,
            ph: int, pw: int) -> np.ndarray:
    """Scatter-add (N, OH, OW, kh, kw, C) window gradients back to the (unpadded) input; loops over
    kernel positions only."""
    n, h, w, c = xshape
    _, oh, ow = dcols.shape[:3]
    dx = np.zeros((n, h + ph, w + pw, c), dcols.dtype)
    for i in range(kh):
        for j in range(kw):
            dx[:, i:i + sh * (oh - 1) + 1:sh, j:j + sw * (ow - 1) + 1:sw, :] += dcols[:, :, :, i, j, :]
    return dx[:, ph // 2:ph // 2 + h, pw // 2:pw // 2 + w, :]


class Conv2D(Layer):
    """2-D convolution by im2col + one BLAS matmul; W of shape (kh, kw, C_in, C_out)."""

    kind = "conv"
    needs_input = True

    def __init__(self, name, in_shape, out_shape, kh, kw, sh, sw, pad_h, pad_w, relu):
        super().__init__(name, in_shape, out_shape)
        self.kh, self.kw, self.sh, self.sw, self.ph, self.pw, self.relu = kh, kw, sh, sw, pad_h, pad_w, relu
        cin, cout = in_shape[2], out_shape[2]
        self.params = [np.zeros((kh, kw, cin, cout), F32), np.zeros(cout, F32)]

    @property
    def fan_in(self) -> int:
        return self.kh * self.kw * self.in_shape[2]

    def cols(self, x: np.ndarray, quant: bool = False) -> np.ndarray:
        """im2col: (N * OH * OW, kh * kw * C_in) patch matrix (a copy: the workspace buffer)."""
        xq = fake_quant(x) if quant else x
        oh, ow = self.out_shape[:2]
        win = _windows(_pad(xq, self.ph, self.pw), self.kh, self.kw, self.sh, self.sw, oh, ow)
        return win.reshape(x.shape[0] * oh * ow, self.fan_in)

    def forward(self, x, quant=False):
        W, b = self.params
        oh, ow, cout = self.out_shape
        z = (self.cols(x, quant) @ W.reshape(self.fan_in, cout) + b).reshape(x.shape[0], oh, ow, cout)
        return np.maximum(z, 0, out=z) if self.relu else z

    def forward_macs(self, n):
        oh, ow, cout = self.out_shape
        return n * oh * ow * cout * self.fan_in

    def weight_grad(self, x, dz, rows=None, quant=False, sparse=False):
        cout = self.out_shape[2]
        d = dz.reshape(-1, cout)
        if rows is not None:
            d = d[:, rows]
        dW = (self.cols(x, quant).T @ d).reshape(self.kh, self.kw, self.in_shape[2], d.shape[1])
        return [dW, d.sum(axis=0)], _count(d, sparse) * self.fan_in

    def input_grad(self, x, y, dz, sparse=False):
        oh, ow, cout = self.out_shape
        dcols = dz.reshape(-1, cout) @ self.params[0].reshape(self.fan_in, cout).T
        dcols = dcols.reshape(x.shape[0], oh, ow, self.kh, self.kw, self.in_shape[2])
        return _col2im(dcols, x.shape, self.kh, self.kw, self.sh, self.sw, self.ph, self.pw), _count(dz, sparse) * self.fan_in


class DepthwiseConv2D(Layer):
    """Depthwise convolution: one kh x kw filter per channel; W of shape (kh, kw, C). Computed as a sum
    over kernel positions of shifted (strided) input slices: vectorised, loops over kh*kw only."""

    kind = "conv"
    needs_input = True

    def __init__(self, name, in_shape, out_shape, kh, kw, sh, sw, pad_h, pad_w, relu):
        super().__init__(name, in_shape, out_shape)
        self.kh, self.kw, self.sh, self.sw, self.ph, self.pw, self.relu = kh, kw, sh, sw, pad_h, pad_w, relu
        c = in_shape[2]
        self.params = [np.zeros((kh, kw, c), F32), np.zeros(c, F32)]

    @property
    def fan_in(self) -> int:
        return self.kh * self.kw

    def _slices(self):
        oh, ow = self.out_shape[:2]
        for i in range(self.kh):
            for j in range(self.kw):
                yield i, j, (slice(None), slice(i, i + self.sh * (oh - 1) + 1, self.sh),
                             slice(j, j + self.sw * (ow - 1) + 1, self.sw))

    def forward(self, x, quant=False):
        W, b = self.params
        xp = _pad(fake_quant(x) if quant else x, self.ph, self.pw)
        z = np.empty((x.shape[0],) + self.out_shape, x.dtype)
        z[...] = b
        for i, j, sl in self._slices():
            z += xp[sl] * W[i, j]
        return np.maximum(z, 0, out=z) if self.relu else z

    def forward_macs(self, n):
        oh, ow, c = self.out_shape
        return n * oh * ow * c * self.kh * self.kw

    def weight_grad(self, x, dz, rows=None, quant=False, sparse=False):
        xp = _pad(fake_quant(x) if quant else x, self.ph, self.pw)
        d = dz
        if rows is not None:
            xp, d = xp[..., rows], dz[..., rows]
        dW = np.empty((self.kh, self.kw, d.shape[-1]), dz.dtype)
        for i, j, sl in self._slices():
            dW[i, j] = np.einsum("nhwc,nhwc->c", xp[sl], d)
        return [dW, d.sum(axis=(0, 1, 2))], _count(d, sparse) * self.fan_in

    def input_grad(self, x, y, dz, sparse=False):
        n, h, w, c = x.shape
        dx = np.zeros((n, h + self.ph, w + self.pw, c), dz.dtype)
        W = self.params[0]
        for i, j, sl in self._slices():
            dx[sl] += dz * W[i, j]
        ph, pw = self.ph // 2, self.pw // 2
        return dx[:, ph:ph + h, pw:pw + w, :], _count(dz, sparse) * self.fan_in


class _Pool(Layer):
    kind = "reduce"

    def __init__(self, name, in_shape, out_shape, kh, kw):
        super().__init__(name, in_shape, out_shape)
        self.kh, self.kw = kh, kw

    def _blocks(self, x):
        """(N, OH, kh, OW, kw, C) view of the input (a ragged bottom/right edge is dropped)."""
        oh, ow = self.out_shape[:2]
        return x[:, :oh * self.kh, :ow * self.kw].reshape(x.shape[0], oh, self.kh, ow, self.kw, x.shape[3])

    def _unblocks(self, g, xshape):
        oh, ow = self.out_shape[:2]
        g = g.reshape(xshape[0], oh * self.kh, ow * self.kw, xshape[3])
        if g.shape == tuple(xshape):
            return g
        dx = np.zeros(xshape, g.dtype)
        dx[:, :oh * self.kh, :ow * self.kw] = g
        return dx


class MaxPool(_Pool):
    """Max pooling, kh x kw window, stride = window (floor: a ragged edge is dropped). The gradient goes
    to the window's maximum; tied maxima share it equally (a valid subgradient)."""

    needs_input = True

    def forward(self, x, quant=False):
        return self._blocks(x).max(axis=(2, 4))

    def input_grad(self, x, y, dz, sparse=False):
        xb = self._blocks(x)
        y = xb.max(axis=(2, 4)) if y is None else y
        mask = xb == y[:, :, None, :, None, :]
        cnt = mask.sum(axis=(2, 4), dtype=dz.dtype)
        g = mask * (dz / cnt)[:, :, None, :, None, :]
        return self._unblocks(g.astype(dz.dtype, copy=False), x.shape), 0


class AvgPool(_Pool):
    """Average pooling, kh x kw window, stride = window."""

    def forward(self, x, quant=False):
        return self._blocks(x).mean(axis=(2, 4), dtype=x.dtype)

    def input_grad(self, x, y, dz, sparse=False):
        g = np.broadcast_to((dz * (1.0 / (self.kh * self.kw)))[:, :, None, :, None, :],
                            (dz.shape[0], self.out_shape[0], self.kh, self.out_shape[1], self.kw, dz.shape[3]))
        return self._unblocks(np.ascontiguousarray(g), (dz.shape[0],) + self.in_shape), 0


class GlobalAvgPool(Layer):
    """Mean over height and width: (N, H, W, C) -> (N, C)."""

    kind = "reduce"

    def forward(self, x, quant=False):
        return x.mean(axis=(1, 2))

    def input_grad(self, x, y, dz, sparse=False):
        h, w, c = self.in_shape
        return np.broadcast_to((dz / (h * w))[:, None, None, :], (dz.shape[0], h, w, c)).copy(), 0


class Flatten(Layer):
    """Reshape (N, H, W, C) -> (N, H*W*C): a view, costs nothing and owns no buffer."""

    view = True
    kind = "copy"

    def forward(self, x, quant=False):
        return x.reshape(x.shape[0], -1)

    def input_grad(self, x, y, dz, sparse=False):
        return dz.reshape((dz.shape[0],) + self.in_shape), 0


class ReLU(Layer):
    """A standalone ReLU (the spec grammar fuses ReLU into conv/dense; this is for custom stacks)."""

    relu = True

    def forward(self, x, quant=False):
        return np.maximum(x, 0)

    def input_grad(self, x, y, dz, sparse=False):
        return dz, 0      # the mask was applied by act_backward


def softmax_cross_entropy(logits: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-sample losses (nats) and the softmax probabilities; the gradient of the mean loss w.r.t. the
    logits is ``(p - onehot(y)) / N``."""
    z = logits - logits.max(axis=1, keepdims=True)
    e = np.exp(z)
    s = e.sum(axis=1, keepdims=True)
    losses = np.log(s[:, 0]) - z[np.arange(len(y)), y]
    return losses, e / s


def softmax_ce_grad(p: np.ndarray, y: np.ndarray, n: int) -> np.ndarray:
    """Gradient of the summed loss / n w.r.t. the logits."""
    g = p.copy()
    g[np.arange(len(y)), y] -= 1.0
    g *= 1.0 / n
    return g
