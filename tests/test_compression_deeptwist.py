"""DeepTwist: occasional compress-then-decode distortion during training (issue #14)."""
from __future__ import annotations

import numpy as np
import pytest

from workloads.compression import compress_model, decode
from workloads.compression import deeptwist as DT


@pytest.fixture(scope="module")
def mlp():
    return DT.pretrained("mlp-microbit", 0)


def test_distortion_runs_every_d_steps_and_after_the_last(mlp):
    model, split = mlp
    X, y = split.pop_train
    calls = []
    state = model.state()
    DT.train(model, X, y, steps=23, every=5, distort=lambda m: calls.append(1), seed=0)
    assert len(calls) == 23 // 5 + 1                    # steps 5, 10, 15, 20 and the last one
    calls.clear()
    DT.train(model, X, y, steps=20, every=5, distort=lambda m: calls.append(1), seed=0)
    assert len(calls) == 4                               # the last step is a multiple: no second call
    model.load_state(state)


def test_the_trained_model_is_the_compressed_one(mlp):
    model, split = mlp
    X, y = split.pop_train
    state = model.state()
    DT.train(model, X, y, steps=30, every=7, distort=DT.distorter("xor", prune=0.8, bits=1), seed=1)
    cm = compress_model(model, "xor", prune=0.8, bits=1)
    for ly in model.param_layers():          # compressing again changes nothing: it is already compressed
        assert np.array_equal(decode(cm.layers[ly.name]), ly.params[0])
    model.load_state(state)


def test_plain_training_moves_the_weights_and_bad_every_is_refused(mlp):
    model, split = mlp
    X, y = split.pop_train
    state = model.state()
    DT.train(model, X, y, steps=5, seed=0)
    assert not all(np.array_equal(a, b) for a, b in zip(state, model.state(), strict=True))
    model.load_state(state)
    with pytest.raises(ValueError, match="--distort-every -1: must be >= 0"):
        DT.train(model, X, y, steps=5, every=-1, distort=lambda m: None)


def test_deeptwist_wins_back_accuracy_that_compression_loses():
    r = DT.experiment("mlp-digits", "binary", prune=0.91, bits=1, steps=1000, every=2, seed=0)
    assert r["accuracy_compressed"] < r["accuracy_dense"] - 0.2          # 1 bit, 91 % pruned hurts
    assert r["accuracy_deeptwist"] > r["accuracy_compressed"] + 0.15
    assert r["accuracy_deeptwist"] > r["accuracy_finetune_compressed"] + 0.15   # not just the extra training
    assert r["recovered"] == pytest.approx((r["accuracy_deeptwist"] - r["accuracy_compressed"])
                                           / (r["accuracy_dense"] - r["accuracy_compressed"]))
