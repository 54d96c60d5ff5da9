"""Spec grammar: shapes of valid specs and clear errors naming the bad part."""
import pytest

import workloads as W
from workloads import SpecError, parse_spec


def test_mlp_spec_shapes():
    s = parse_spec("mlp:64-32-10")
    assert s.text == "mlp:64-32-10"
    assert s.input_shape == (64,)
    assert [ly.kind for ly in s.layers] == ["dense", "dense"]
    assert [ly.args["relu"] for ly in s.layers] == [True, False]
    assert s.num_classes == 10


def test_cnn_spec_shapes():
    s = parse_spec("cnn:8x8x1-c8k3-p2-c16k3-gap-d10")
    assert [ly.kind for ly in s.layers] == ["conv", "maxpool", "conv", "gap", "dense"]
    assert [ly.out_shape for ly in s.layers] == [(6, 6, 8), (3, 3, 8), (1, 1, 16), (16,), (10,)]


def test_cnn_same_padding_stride_and_flatten():
    s = parse_spec("cnn:8x8x1-c6k3same-p2-c4k3s2same-a2-d5")
    shapes = [(ly.kind, ly.out_shape) for ly in s.layers]
    assert shapes == [("conv", (8, 8, 6)), ("maxpool", (4, 4, 6)), ("conv", (2, 2, 4)), ("avgpool", (1, 1, 4)),
                      ("flatten", (4,)), ("dense", (5,))]


def test_cnn1d_spec_is_height_one():
    s = parse_spec("cnn1d:64x3-c16k5-p2-c32k3-gap-d6")
    assert s.input_shape == (64, 3)
    conv = s.layers[0]
    assert (conv.args["kh"], conv.args["kw"]) == (1, 5)
    assert [ly.out_shape for ly in s.layers] == [(1, 60, 16), (1, 30, 16), (1, 28, 32), (32,), (6,)]


def test_depthwise_spec():
    s = parse_spec("cnn:8x8x4-dw3same-c8k1-gap-d3")
    assert s.layers[0].kind == "dwconv" and s.layers[0].out_shape == (8, 8, 4)


@pytest.mark.parametrize("spec, words", [
    ("mlp:64--10", ["mlp:64--10", "empty part", "'64'", "'10'"]),
    ("cnn:8x8x1-c0k3", ["cnn:8x8x1-c0k3", "'c0k3'", "filters", "got 0"]),
    ("cnn:8x8x1-x5-d10", ["'x5'", "unknown layer 'x'"]),
    ("cnn:8x8x1-q3-d10", ["'q3'", "unknown layer 'q'"]),
    ("rnn:8-10", ["unknown model family 'rnn'"]),
    ("mlp:64-ab-10", ["'ab'", "positive integers"]),
    ("mlp:64-0-10", ["'0'", "layer size must be >= 1"]),
    ("mlp:64", ["at least an input and an output"]),
    ("cnn:8x8-c4k3-d10", ["'8x8'", "HxWxC"]),
    ("cnn:8x8x1-c4k9-d10", ["'c4k9'", "kernel 9", "larger"]),
    ("cnn:8x8x1-c4k3-p2", ["last part must be a dense"]),
    ("cnn:8x8x1-d10-c4k3-d2", ["'c4k3'", "only dense parts"]),
    ("cnn:4x4x1-p8-d2", ["'p8'", "pool 8"]),
    ("nocolon", ["FAMILY:PARTS"]),
])
def test_bad_specs_name_the_bad_part(spec, words):
    with pytest.raises(SpecError) as e:
        parse_spec(spec)
    for w in words:
        assert w in str(e.value), (w, str(e.value))
    assert isinstance(e.value, ValueError)


def test_zoo_entries_parse_and_build():
    z = W.zoo()
    for name in ("mlp-digits", "lenet-digits", "cnn1d-accel", "mlp-microbit"):
        assert name in z
    assert z["mlp-digits"].spec == "mlp:64-32-10"
    assert z["mlp-microbit"].spec == "mlp:16-12-10" and z["mlp-microbit"].dataset == "digits4"
    for e in z.values():
        m = W.build_model(e.name)
        assert m.spec.text == parse_spec(e.spec).text
        assert all(p.dtype.name == "float32" for p in m.parameters())


def test_build_model_unknown_name():
    with pytest.raises(SpecError, match="not a zoo name"):
        W.build_model("lenet")


def test_microbit_mlp_fits_16k_in_float32():
    m = W.build_model("mlp-microbit")
    assert sum(p.nbytes for p in m.parameters()) == (16 * 12 + 12 + 12 * 10 + 10) * 4
