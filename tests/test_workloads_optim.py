"""Optimisers against their textbook formulas, whole and on a subset of output units."""
import numpy as np
import pytest

from workloads.optim import SGD, Adam, make_optimizer


def test_sgd_momentum_two_steps():
    p = np.array([1.0, -2.0], np.float32)
    opt = SGD(lr=0.1, momentum=0.9)
    st = opt.state_for(p)
    g1, g2 = np.array([0.5, 1.0], np.float32), np.array([-1.0, 2.0], np.float32)
    opt.step(p, g1, st)
    opt.step(p, g2, st)
    v1 = g1
    v2 = 0.9 * v1 + g2
    np.testing.assert_allclose(p, np.array([1.0, -2.0]) - 0.1 * v1 - 0.1 * v2, rtol=1e-6)


def test_plain_sgd_has_no_state():
    assert SGD(0.1, 0.0).state_for(np.zeros(3, np.float32)) == []


def test_adam_matches_formula():
    p = np.array([0.3, -0.7, 1.2], np.float32)
    ref = p.astype(np.float64).copy()
    opt = Adam(lr=0.01)
    st = opt.state_for(p)
    m = v = np.zeros(3)
    rng = np.random.default_rng(0)
    for t in range(1, 4):
        g = rng.standard_normal(3).astype(np.float32)
        opt.step(p, g, st)
        m = 0.9 * m + 0.1 * g
        v = 0.999 * v + 0.001 * g * g
        ref -= 0.01 * (m / (1 - 0.9 ** t)) / (np.sqrt(v / (1 - 0.999 ** t)) + 1e-8)
    np.testing.assert_allclose(p, ref, rtol=1e-5)


@pytest.mark.parametrize("opt", [SGD(0.1, 0.9), Adam(0.01)])
def test_column_subset_updates_only_those_columns(opt):
    p = np.ones((4, 5), np.float32)
    st = opt.state_for(p)
    cols = np.array([1, 3])
    opt.step(p, np.full((4, 2), 0.5, np.float32), st, cols)
    changed = np.flatnonzero(np.any(p != 1, axis=0))
    np.testing.assert_array_equal(changed, cols)


def test_make_optimizer_errors():
    with pytest.raises(ValueError, match="'rmsprop'"):
        make_optimizer("rmsprop", 0.1, 0.0)
    with pytest.raises(ValueError, match="momentum"):
        make_optimizer("sgd", 0.1, 1.5)
    with pytest.raises(ValueError, match="lr"):
        make_optimizer("sgd", 0.0, 0.0)
