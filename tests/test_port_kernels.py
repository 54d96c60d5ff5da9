"""edgetrain's C kernels (ports/native) compiled with the host's gcc and checked against the numpy
layers of workloads/layers.py, kernel by kernel (fast: no QEMU)."""
from __future__ import annotations

import ctypes
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from workloads import layers as L

SRC = Path(__file__).resolve().parents[1] / "ports" / "native" / "edgetrain.c"
needs_gcc = pytest.mark.skipif(shutil.which("gcc") is None,
                               reason="gcc missing: apt-get install gcc (the README set-up installs build tools)")
F32 = np.float32
TOL = {"rtol": 2e-5, "atol": 2e-6}


class ConvT(ctypes.Structure):
    _fields_ = [(n, ctypes.c_int16) for n in ("h", "w", "cin", "oh", "ow", "cout", "kh", "kw", "sh", "sw", "pt", "pl")]


@pytest.fixture(scope="module")
def lib(tmp_path_factory):
    if shutil.which("gcc") is None:
        pytest.skip("gcc missing: apt-get install gcc")
    so = tmp_path_factory.mktemp("et") / "libedgetrain.so"
    subprocess.run(["gcc", "-O2", "-Wall", "-Wextra", "-Werror", "-fPIC", "-shared", "-o", str(so), str(SRC), "-lm"],
                   check=True)
    lb = ctypes.CDLL(str(so))
    lb.et_softmax_xent.restype = ctypes.c_float
    lb.et_sgd_update.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int, ctypes.c_float,
                                 ctypes.c_float]
    return lb


def P(a: np.ndarray):
    assert a.flags.c_contiguous
    return a.ctypes.data_as(ctypes.c_void_p)


def rnd(rng, *shape):
    return rng.standard_normal(shape).astype(F32)


def conv_t(ly) -> ConvT:
    h, w, cin = ly.in_shape
    oh, ow, cout = ly.out_shape
    return ConvT(h, w, cin, oh, ow, cout, ly.kh, ly.kw, ly.sh, ly.sw, ly.ph // 2, ly.pw // 2)


@needs_gcc
@pytest.mark.parametrize("n,nin,nout,relu", [(1, 64, 32, True), (3, 7, 5, False), (2, 1, 1, True)])
def test_dense(lib, n, nin, nout, relu):
    rng = np.random.default_rng(n * 100 + nin)
    ly = L.Dense("d", nin, nout, relu)
    ly.params[0][...] = rnd(rng, nin, nout)
    ly.params[1][...] = rnd(rng, nout)
    x = rnd(rng, n, nin)
    W, b = ly.params
    y = np.empty((n, nout), F32)
    lib.et_dense_forward(P(x), P(W), P(b), P(y), n, nin, nout, int(relu))
    np.testing.assert_allclose(y, ly.forward(x), **TOL)
    dz = ly.act_backward(y, rnd(rng, n, nout))
    dW, db = np.empty_like(W), np.empty_like(b)
    lib.et_dense_weight_grad(P(x), P(dz), P(dW), P(db), n, nin, nout)
    (hW, hb), _ = ly.weight_grad(x, dz)
    np.testing.assert_allclose(dW, hW, **TOL)
    np.testing.assert_allclose(db, hb, **TOL)
    dx = np.empty_like(x)
    lib.et_dense_input_grad(P(dz), P(W), P(dx), n, nin, nout)
    np.testing.assert_allclose(dx, ly.input_grad(x, y, dz)[0], **TOL)


CONVS = [  # in_shape, filters, kh, kw, stride, same
    ((8, 8, 1), 6, 3, 3, 1, True), ((4, 4, 6), 16, 3, 3, 1, True), ((7, 6, 3), 4, 3, 2, 2, False),
    ((1, 64, 3), 16, 1, 5, 1, False), ((5, 5, 2), 3, 1, 1, 1, False), ((6, 7, 2), 5, 4, 4, 2, True),
]


def _conv_layer(cls, in_shape, filters, kh, kw, s, same, rng, depthwise=False):
    from workloads.spec import _conv_out
    sh = 1 if kh == 1 and in_shape[0] == 1 else s
    oh, ph = _conv_out("t", "p", in_shape[0], kh, sh, same)
    ow, pw = _conv_out("t", "p", in_shape[1], kw, s, same)
    out = (oh, ow, in_shape[2] if depthwise else filters)
    ly = cls("c", in_shape, out, kh, kw, sh, s, ph, pw, True)
    ly.params[0][...] = rnd(rng, *ly.params[0].shape)
    ly.params[1][...] = rnd(rng, *ly.params[1].shape)
    return ly


@needs_gcc
@pytest.mark.parametrize("n", [1, 3])
@pytest.mark.parametrize("case", CONVS)
def test_conv2d(lib, case, n):
    rng = np.random.default_rng(len(case[0]) + n + case[1])
    ly = _conv_layer(L.Conv2D, *case, rng)
    x = rnd(rng, n, *ly.in_shape)
    W, b = ly.params
    ct = conv_t(ly)
    y = np.empty((n,) + ly.out_shape, F32)
    cols = np.full(2 * ly.fan_in, np.nan, F32)
    lib.et_conv2d_forward(ctypes.byref(ct), P(x), P(W), P(b), P(y), P(cols), n, 1)
    np.testing.assert_allclose(y, ly.forward(x), **TOL)
    dz = ly.act_backward(y, rnd(rng, *y.shape))
    dW, db = np.empty_like(W), np.empty_like(b)
    lib.et_conv2d_weight_grad(ctypes.byref(ct), P(x), P(dz), P(dW), P(db), P(cols), n)
    (hW, hb), _ = ly.weight_grad(x, dz)
    np.testing.assert_allclose(dW, hW, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(db, hb, rtol=1e-4, atol=1e-5)
    dx = np.full_like(x, np.nan)
    dcol = np.full(ly.fan_in, np.nan, F32)
    lib.et_conv2d_input_grad(ctypes.byref(ct), P(dz), P(W), P(dx), P(dcol), n)
    np.testing.assert_allclose(dx, ly.input_grad(x, y, dz)[0], rtol=1e-4, atol=1e-5)


@needs_gcc
@pytest.mark.parametrize("n", [1, 2])
@pytest.mark.parametrize("case", [c for c in CONVS])
def test_depthwise(lib, case, n):
    rng = np.random.default_rng(7 + n + case[1])
    ly = _conv_layer(L.DepthwiseConv2D, *case, rng, depthwise=True)
    x = rnd(rng, n, *ly.in_shape)
    W, b = ly.params
    ct = conv_t(ly)
    y = np.empty((n,) + ly.out_shape, F32)
    lib.et_dwconv_forward(ctypes.byref(ct), P(x), P(W), P(b), P(y), n, 1)
    np.testing.assert_allclose(y, ly.forward(x), **TOL)
    dz = ly.act_backward(y, rnd(rng, *y.shape))
    dW, db = np.empty_like(W), np.empty_like(b)
    lib.et_dwconv_weight_grad(ctypes.byref(ct), P(x), P(dz), P(dW), P(db), n)
    (hW, hb), _ = ly.weight_grad(x, dz)
    np.testing.assert_allclose(dW, hW, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(db, hb, rtol=1e-4, atol=1e-5)
    dx = np.full_like(x, np.nan)
    lib.et_dwconv_input_grad(ctypes.byref(ct), P(dz), P(W), P(dx), n)
    np.testing.assert_allclose(dx, ly.input_grad(x, y, dz)[0], rtol=1e-4, atol=1e-5)


POOLS = [((8, 8, 6), 2, 2), ((7, 5, 3), 2, 2), ((1, 64, 16), 1, 2), ((3, 3, 2), 1, 1), ((6, 6, 1), 3, 3)]


@needs_gcc
@pytest.mark.parametrize("n", [1, 2])
@pytest.mark.parametrize("shape,kh,kw", POOLS)
def test_pools(lib, shape, kh, kw, n):
    rng = np.random.default_rng(kh * 10 + kw + n)
    h, w, c = shape
    out = (h // kh, w // kw, c)
    x = rnd(rng, n, *shape)
    x[0, 0, 0, 0] = x[0, 0, 1, 0] = x.max() + 1   # a tie inside a max window
    dz = rnd(rng, n, *out)
    mp = L.MaxPool("p", shape, out, kh, kw)
    y = np.empty((n,) + out, F32)
    lib.et_maxpool_forward(P(x), P(y), n, h, w, c, kh, kw)
    np.testing.assert_array_equal(y, mp.forward(x))
    dx = np.full_like(x, np.nan)
    lib.et_maxpool_input_grad(P(x), P(y), P(dz), P(dx), n, h, w, c, kh, kw)
    np.testing.assert_allclose(dx, mp.input_grad(x, y, dz)[0], **TOL)
    ap = L.AvgPool("a", shape, out, kh, kw)
    lib.et_avgpool_forward(P(x), P(y), n, h, w, c, kh, kw)
    np.testing.assert_allclose(y, ap.forward(x), **TOL)
    lib.et_avgpool_input_grad(P(dz), P(dx), n, h, w, c, kh, kw)
    np.testing.assert_allclose(dx, ap.input_grad(x, None, dz)[0], **TOL)


@needs_gcc
@pytest.mark.parametrize("shape", [(4, 4, 16), (1, 14, 32), (1, 1, 5)])
def test_gap(lib, shape):
    rng = np.random.default_rng(shape[1])
    n = 2
    x = rnd(rng, n, *shape)
    g = L.GlobalAvgPool("g", shape, (shape[2],))
    y = np.empty((n, shape[2]), F32)
    lib.et_gap_forward(P(x), P(y), n, shape[0] * shape[1], shape[2])
    np.testing.assert_allclose(y, g.forward(x), **TOL)
    dz = rnd(rng, n, shape[2])
    dx = np.full_like(x, np.nan)
    lib.et_gap_input_grad(P(dz), P(dx), n, shape[0] * shape[1], shape[2])
    np.testing.assert_allclose(dx, g.input_grad(x, y, dz)[0], **TOL)


@needs_gcc
def test_inplace_kernels(lib):
    """Kernels the planner may run in place give the same answer with the output over the input."""
    rng = np.random.default_rng(5)
    x = rnd(rng, 2, 6, 6, 3)
    want = L.MaxPool("p", (6, 6, 3), (3, 3, 3), 2, 2).forward(x)
    buf = x.copy()
    lib.et_maxpool_forward(P(buf), P(buf), 2, 6, 6, 3, 2, 2)
    np.testing.assert_array_equal(buf.reshape(-1)[:want.size], want.reshape(-1))
    buf = x.copy()
    lib.et_avgpool_forward(P(buf), P(buf), 2, 6, 6, 3, 2, 2)
    np.testing.assert_allclose(buf.reshape(-1)[:want.size],
                               L.AvgPool("a", (6, 6, 3), (3, 3, 3), 2, 2).forward(x).reshape(-1), **TOL)
    buf = x.copy()
    lib.et_gap_forward(P(buf), P(buf), 2, 36, 3)
    np.testing.assert_allclose(buf.reshape(-1)[:6], x.mean(axis=(1, 2)).reshape(-1), **TOL)
    logits = rnd(rng, 3, 10)
    y = np.array([1, 9, 0], np.int32)
    losses, p = L.softmax_cross_entropy(logits, y)
    buf = logits.copy()
    loss = lib.et_softmax_xent(P(buf), P(y), P(buf), 3, 10)
    np.testing.assert_allclose(loss, losses.mean(), rtol=1e-6)
    np.testing.assert_allclose(buf, L.softmax_ce_grad(p, y, 3), **TOL)


@needs_gcc
@pytest.mark.parametrize("n,k", [(1, 10), (4, 6), (2, 2)])
def test_softmax_xent(lib, n, k):
    rng = np.random.default_rng(n + k)
    logits = rnd(rng, n, k) * 5
    y = rng.integers(0, k, n).astype(np.int32)
    grad = np.empty_like(logits)
    loss = lib.et_softmax_xent(P(logits), P(y), P(grad), n, k)
    losses, p = L.softmax_cross_entropy(logits, y)
    np.testing.assert_allclose(loss, losses.mean(), rtol=1e-6)
    np.testing.assert_allclose(grad, L.softmax_ce_grad(p, y, n), **TOL)


@needs_gcc
def test_relu_backward(lib):
    rng = np.random.default_rng(3)
    y = np.maximum(rnd(rng, 50), 0)
    g = rnd(rng, 50)
    want = L.Dense("d", 1, 50, True).act_backward(y, g)
    lib.et_relu_backward(P(y), P(g), 50)
    np.testing.assert_array_equal(g, want)


@needs_gcc
@pytest.mark.parametrize("momentum", [0.0, 0.9])
def test_sgd_update(lib, momentum):
    from workloads.optim import SGD
    rng = np.random.default_rng(11)
    w, g = rnd(rng, 40), rnd(rng, 40)
    opt = SGD(0.05, momentum)
    st = opt.state_for(w)
    wc = w.copy()
    vc = np.zeros_like(w)
    for _ in range(3):
        opt.step(w, g, st)
        lib.et_sgd_update(P(wc), P(g), P(vc) if momentum else None, 40, 0.05, momentum)
    np.testing.assert_allclose(wc, w, rtol=1e-6, atol=1e-7)
    if momentum:
        np.testing.assert_allclose(vc, st[0], rtol=1e-6)
