"""Compressed frozen layers in the op trace: decode ops, the decode buffer, flash and RAM accounting, and
the ``[workload.compression]`` table's validation (issue #14)."""
from __future__ import annotations

import itertools

import numpy as np
import pytest

import workloads as W
from workloads import Techniques
from workloads.compression import decode
from workloads.compression.config import CompressionSpec

LAST1 = Techniques(update="last-k", last_k=1)
XOR = {"format": "xor", "prune": 0.91, "bits": 1}


def batch(job, n=4):
    xs, ys = zip(*itertools.islice(job.labelled_stream(), n), strict=True)
    return np.stack(xs), np.array(ys)


def test_frozen_layers_are_decoded_before_each_forward_and_the_buffer_freed_by_it():
    job = W.make_job("lenet-digits", techniques=LAST1, compression=XOR)
    assert list(job.compressed) == ["conv0", "conv2", "dense5"]      # dense6 is trained: stays dense
    ops, _ = W.collect(job.infer(np.zeros(64, np.float32)))
    names = [o.name for o in ops]
    for layer, enc in job.compressed.items():
        i = names.index(f"{layer}.decode.{enc.format}-{enc.params['value_bits']}")   # its format and bit width
        dec, fwd = ops[i], ops[i + 1]
        assert fwd.name == f"{layer}.forward" and dec.kind == "decode"
        assert dec.macs == enc.decode_ops > 0 and dec.bytes_read == enc.flash_bytes
        (buf,) = dec.alloc
        assert buf.kind == "workspace" and buf.nbytes == enc.n * 4 == dec.bytes_written
        assert buf.id in fwd.free                                   # freed by its only user
    assert not any(n.startswith("dense6.decode") for n in names)
    tr, _ = W.collect(job.train_step(*batch(job)))
    assert [o.name for o in tr if o.kind == "decode"] == [f"{k}.decode.{e.format}-{e.params['value_bits']}"
                                                          for k, e in job.compressed.items()]
    W.check_trace(tr, job.persistent_tensors())


def test_flash_and_ram_hold_the_compressed_layers():
    dense = W.make_job("lenet-digits", techniques=LAST1)
    comp = W.make_job("lenet-digits", techniques=LAST1, compression=XOR)
    enc_bytes = sum(e.flash_bytes for e in comp.compressed.values())
    dense_w = sum(e.n * 4 for e in comp.compressed.values())
    assert comp.flash_bytes() == dense.flash_bytes() - dense_w + enc_bytes
    ram = {t.name for t in comp.persistent_tensors()}
    assert not any(f"{k}.W" in ram for k in comp.compressed) and "dense6.W" in ram
    assert comp.trainable_bytes() == dense.trainable_bytes()        # checkpoints stay dense
    # the model computes with the decoded weights
    for ly in comp.model.param_layers():
        if ly.name in comp.compressed:
            assert np.array_equal(ly.params[0], decode(comp.compressed[ly.name]))


def test_a_frozen_layer_behind_a_trained_one_is_decoded_for_the_input_gradient():
    job = W.make_job("mlp-digits", techniques=Techniques(etf=True), compression={"format": "int8"})
    assert list(job.compressed) == ["dense1"]                      # the fixed ETF classifier
    tr, _ = W.collect(job.train_step(*batch(job)))
    names = [o.name for o in tr]
    i = names.index("dense1.decode_backward.int8-8")
    assert names[i + 1] == "dense1.backward_input"
    W.check_trace(tr, job.persistent_tensors())


@pytest.mark.parametrize("table,needle", [
    ({"prune": 0.5}, "workload.compression.format: missing"),
    ({"format": "zip"}, "workload.compression.format: zip: must be one of"),
    ({"format": "xor", "prune": 1.5}, "workload.compression.prune: 1.5: must be in [0, 1)"),
    ({"format": "xor", "bits": 8}, "workload.compression.bits: 8: format xor supports 1, 2, 3, 4"),
    ({"format": "xor", "colour": 1}, "workload.compression: unknown key 'colour'"),
    ({"format": "xor", "layers": "some"}, "workload.compression.layers: must be"),
    ({"format": "xor", "layer": {"dense0": {"bits": 9}}}, "workload.compression.layer.dense0.bits: 9"),
])
def test_table_validation_names_field_and_value(table, needle):
    with pytest.raises(ValueError, match=needle.replace("[", r"\[").replace(")", r"\)")):
        CompressionSpec.from_dict(table)


def test_a_trained_or_unknown_layer_is_refused():
    with pytest.raises(ValueError, match="dense1 is trained on the device"):
        W.make_job("mlp-digits", compression={"format": "xor", "prune": 0.9, "layers": ["dense1"]})
    with pytest.raises(ValueError, match="'conv9' is not a layer"):
        W.make_job("mlp-digits", compression={"format": "xor", "layers": ["conv9"]})


def test_per_layer_overrides():
    spec = CompressionSpec.from_dict({"format": "xor", "prune": 0.9, "layer": {"dense0": {"format": "int8"}}})
    job = W.make_job("mlp-digits", techniques=LAST1, compression=spec)
    assert job.compressed["dense0"].format == "int8" and job.compressed["dense0"].params["prune"] == 0.0
