"""Layers: analytic gradients against finite differences (float64), exact MAC counts against closed forms."""
import numpy as np
import pytest

from workloads import layers as L


def _layer_cases():
    return [
        ("dense_relu", L.Dense("d", 7, 5, relu=True), (3, 7)),
        ("dense_linear", L.Dense("d", 6, 4, relu=False), (2, 6)),
        ("conv_valid", L.Conv2D("c", (6, 6, 2), (4, 4, 3), 3, 3, 1, 1, 0, 0, relu=True), (2, 6, 6, 2)),
        ("conv_same_stride2", L.Conv2D("c", (7, 7, 2), (4, 4, 3), 3, 3, 2, 2, 2, 2, relu=False), (2, 7, 7, 2)),
        ("conv1d", L.Conv2D("c", (1, 12, 3), (1, 8, 4), 1, 5, 1, 1, 0, 0, relu=True), (2, 1, 12, 3)),
        ("dwconv_same", L.DepthwiseConv2D("w", (5, 5, 3), (5, 5, 3), 3, 3, 1, 1, 2, 2, relu=True), (2, 5, 5, 3)),
        ("dwconv_stride2", L.DepthwiseConv2D("w", (6, 6, 2), (2, 2, 2), 3, 3, 2, 2, 0, 0, relu=False), (2, 6, 6, 2)),
        ("maxpool", L.MaxPool("p", (5, 4, 2), (2, 2, 2), 2, 2), (2, 5, 4, 2)),
        ("avgpool", L.AvgPool("a", (4, 6, 2), (2, 3, 2), 2, 2), (2, 4, 6, 2)),
        ("gap", L.GlobalAvgPool("g", (3, 4, 5), (5,)), (2, 3, 4, 5)),
        ("flatten", L.Flatten("f", (2, 3, 2), (12,)), (2, 2, 3, 2)),
        ("relu", L.ReLU("r", (6,), (6,)), (3, 6)),
    ]


def _to64(layer, rng):
    layer.params = [rng.standard_normal(p.shape) * 0.5 for p in layer.params]


def _loss(layer, x, r):
    return float(np.sum(layer.forward(x) * r))


@pytest.mark.parametrize("name, layer, xshape", _layer_cases(), ids=[c[0] for c in _layer_cases()])
def test_gradients_match_finite_differences(name, layer, xshape):
    rng = np.random.default_rng(1)
    _to64(layer, rng)
    x = rng.standard_normal(xshape)
    y = layer.forward(x)
    r = rng.standard_normal(y.shape)
    dz = layer.act_backward(y, r)
    grads, _ = layer.weight_grad(x, dz)
    dx, _ = layer.input_grad(x, y, dz)
    eps = 1e-6
    # input gradient, every coordinate (vectorised over a perturbation basis is overkill for these sizes)
    num_dx = np.zeros_like(x)
    for idx in np.ndindex(x.shape):
        xp, xm = x.copy(), x.copy()
        xp[idx] += eps
        xm[idx] -= eps
        num_dx[idx] = (_loss(layer, xp, r) - _loss(layer, xm, r)) / (2 * eps)
    np.testing.assert_allclose(dx, num_dx, rtol=1e-5, atol=1e-6)
    for p, g in zip(layer.params, grads, strict=True):
        num = np.zeros_like(p)
        for idx in np.ndindex(p.shape):
            old = p[idx]
            p[idx] = old + eps
            lp = _loss(layer, x, r)
            p[idx] = old - eps
            lm = _loss(layer, x, r)
            p[idx] = old
            num[idx] = (lp - lm) / (2 * eps)
        np.testing.assert_allclose(g, num, rtol=1e-5, atol=1e-6)
    assert len(grads) == len(layer.params)


def test_softmax_cross_entropy_gradient():
    rng = np.random.default_rng(2)
    z = rng.standard_normal((4, 5))
    y = np.array([0, 3, 4, 1])
    losses, p = L.softmax_cross_entropy(z, y)
    g = L.softmax_ce_grad(p, y, len(y))
    eps = 1e-6
    num = np.zeros_like(z)
    for idx in np.ndindex(z.shape):
        zp, zm = z.copy(), z.copy()
        zp[idx] += eps
        zm[idx] -= eps
        num[idx] = (L.softmax_cross_entropy(zp, y)[0].mean() - L.softmax_cross_entropy(zm, y)[0].mean()) / (2 * eps)
    np.testing.assert_allclose(g, num, rtol=1e-5, atol=1e-8)
    np.testing.assert_allclose(losses, -np.log(p[np.arange(4), y]))


@pytest.mark.parametrize("n", [1, 5])
def test_mac_counts_closed_forms(n):
    rng = np.random.default_rng(3)
    d = L.Dense("d", 64, 32, relu=True)
    assert d.forward_macs(n) == n * 64 * 32
    c = L.Conv2D("c", (8, 8, 3), (6, 6, 16), 3, 3, 1, 1, 0, 0, relu=True)
    assert c.forward_macs(n) == n * 6 * 6 * 16 * 3 * 3 * 3
    w = L.DepthwiseConv2D("w", (8, 8, 4), (4, 4, 4), 3, 3, 2, 2, 1, 1, relu=True)
    assert w.forward_macs(n) == n * 4 * 4 * 4 * 3 * 3
    assert L.MaxPool("p", (8, 8, 4), (4, 4, 4), 2, 2).forward_macs(n) == 0
    # backward MACs on a dense (no zero) error equal the forward MACs; on a pruned error they scale with nnz
    for layer in (d, c, w):
        layer.params = [rng.standard_normal(p.shape).astype(np.float32) for p in layer.params]
        x = rng.standard_normal((n,) + layer.in_shape).astype(np.float32)
        dz = rng.standard_normal((n,) + layer.out_shape).astype(np.float32) + 10.0   # no zeros
        _, wm = layer.weight_grad(x, dz)
        _, im = layer.input_grad(x, None, dz)
        assert wm == im == layer.forward_macs(n)
        dz.reshape(-1)[::3] = 0.0
        nnz = np.count_nonzero(dz)
        fan_in = layer.forward_macs(1) // int(np.prod(layer.out_shape))
        assert layer.weight_grad(x, dz)[1] == layer.forward_macs(n)        # a dense kernel runs them all
        assert layer.weight_grad(x, dz, sparse=True)[1] == nnz * fan_in
        assert layer.input_grad(x, None, dz, sparse=True)[1] == nnz * fan_in
        assert nnz * fan_in < layer.forward_macs(n)


def test_conv_matches_direct_convolution():
    rng = np.random.default_rng(4)
    c = L.Conv2D("c", (5, 5, 2), (3, 3, 4), 3, 3, 1, 1, 0, 0, relu=False)
    c.params = [rng.standard_normal(p.shape) for p in c.params]
    x = rng.standard_normal((2, 5, 5, 2))
    W, b = c.params
    ref = np.zeros((2, 3, 3, 4))
    for i in range(3):
        for j in range(3):
            ref[:, i, j, :] = np.tensordot(x[:, i:i + 3, j:j + 3, :], W, axes=([1, 2, 3], [0, 1, 2])) + b
    np.testing.assert_allclose(c.forward(x), ref, rtol=1e-10)


def test_fake_quant_is_on_int8_grid():
    x = np.linspace(-2, 3, 101).astype(np.float32)
    q = L.fake_quant(x)
    s = 3 / 127
    np.testing.assert_allclose(q / s, np.rint(q / s), atol=1e-3)
    assert np.max(np.abs(q - x)) <= s / 2 + 1e-6
