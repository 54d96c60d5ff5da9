"""Codecs of workloads.compression: exact round trips on what each keeps, bit accounting, bad input, and
the GF(2) solver behind the XOR format (issue #14)."""
from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from workloads.compression import CODECS, FORMATS, check, compress_model, csr, decode, encode, gf2, lowrank, xor
from workloads.compression import base as B
from workloads.model import build_model


def weights(shape, seed=0):
    return np.random.default_rng(seed).standard_normal(shape).astype(np.float32)


def rows_view(W):
    return W.reshape(-1, W.shape[-1]).T


# ------------------------------------------------------------------------------------------- GF(2)

@given(st.integers(1, 6), st.integers(1, 40), st.integers(1, 90), st.integers(0, 2 ** 32 - 1))
@settings(max_examples=60, deadline=None)
def test_gf2_solves_every_consistent_system(nb, m, n, seed):
    rng = np.random.default_rng(seed)
    A = rng.random((nb, m, n)) < 0.5
    x0 = rng.random((nb, n)) < 0.5
    t = np.stack([gf2.matvec(A[i], x0[i:i + 1])[0] for i in range(nb)])
    x = gf2.solve(A, t)
    for i in range(nb):
        assert np.array_equal(gf2.matvec(A[i], x[i:i + 1])[0], t[i])


def test_gf2_finds_a_solution_whenever_one_exists_brute_force():
    rng = np.random.default_rng(3)
    for _ in range(200):
        m, n = rng.integers(1, 7), rng.integers(1, 6)
        A = rng.random((1, m, n)) < 0.5
        t = rng.random((1, m)) < 0.5
        exists = any(np.array_equal(gf2.matvec(A[0], np.array([xs], bool))[0], t[0])
                     for xs in itertools.product([False, True], repeat=int(n)))
        x = gf2.solve(A, t)
        assert np.array_equal(gf2.matvec(A[0], x)[0], t[0]) == exists


@given(st.integers(1, 5), st.integers(1, 200), st.integers(0, 2 ** 32 - 1))
@settings(max_examples=40, deadline=None)
def test_gf2_pack_round_trip(rows, n, seed):
    bits = np.random.default_rng(seed).random((rows, n)) < 0.5
    words = gf2.pack_rows(bits)
    assert words.shape == (rows, (n + 63) // 64)
    assert np.array_equal(gf2.unpack_rows(words, n), bits)
    # bit j lives in word j // 64 at position j % 64
    j = n - 1
    assert bool((int(words[0, j // 64]) >> (j % 64)) & 1) == bits[0, j]


# ------------------------------------------------------------------------------------ round trips

def reference_binary(W, prune, bits):
    """What 'binary coding of the magnitude-pruned weights' means, computed here without the codecs."""
    M = rows_view(W).astype(np.float32)
    n = M.size
    k = n - math.floor(prune * n + 0.5)
    order = np.argsort(-np.abs(M.ravel()), kind="stable")
    mask = np.zeros(n, bool)
    mask[order[:k]] = True
    mask = mask.reshape(M.shape)
    r = np.where(mask, M, 0).astype(np.float32)
    out = np.zeros_like(M)
    cnt = np.maximum(mask.sum(1), 1).astype(np.float32)
    for _ in range(bits):
        b = np.where(r >= 0, 1.0, -1.0).astype(np.float32)
        a = (np.abs(r).sum(1) / cnt).astype(np.float16).astype(np.float32)
        out += b * a[:, None]
        r = np.where(mask, r - b * a[:, None], 0).astype(np.float32)
    return np.where(mask, out, 0).T.reshape(W.shape), mask


def test_f32_round_trip_is_the_identity_and_pruning_keeps_the_largest():
    W = weights((64, 32))
    assert np.array_equal(decode(encode(W, "f32")), W)
    d = decode(encode(W, "f32", prune=0.75))
    kept = d != 0
    assert kept.sum() == 512
    assert np.array_equal(d[kept], W[kept])
    assert np.abs(W[kept]).min() >= np.abs(W[~kept]).max()


@pytest.mark.parametrize("bits", [8, 4])
def test_int8_per_output_channel(bits):
    W = weights((3, 3, 4, 8), 1)
    enc = encode(W, "int8", bits=bits)
    d = decode(enc)
    s = enc.data["scales"]                       # one per output channel
    assert s.shape == (8,)
    q = d / s                                    # output channel is the last axis of W
    qmax = 2 ** (bits - 1) - 1
    assert np.allclose(q, np.rint(q), atol=1e-3) and np.abs(q).max() <= qmax + 1e-3
    assert np.all(np.abs(d - W) <= s / 2 * 1.001 + 1e-7)


@given(st.integers(1, 24), st.integers(1, 24), st.floats(0, 0.95), st.integers(0, 2 ** 32 - 1), st.data())
@settings(max_examples=40, deadline=None)
def test_binary_xor_and_csr1_keep_exactly_the_binary_code(rows, cols, prune, seed, data):
    W = weights((cols, rows), seed)
    if W.size - math.floor(prune * W.size + 0.5) <= 0:
        return
    bits = data.draw(st.sampled_from(xor.BITS))
    ref, mask = reference_binary(W, prune, bits)
    assert np.array_equal(decode(encode(W, "binary", prune=prune, bits=bits)), ref)
    enc = encode(W, "xor", prune=prune, bits=bits, seeds=4)
    assert np.array_equal(decode(enc), ref)               # exact on the kept weights, 0 on the pruned
    assert enc.kept == mask.sum()
    if bits == 1:
        assert np.array_equal(decode(encode(W, "csr", prune=prune, bits=1)), ref)


@given(st.integers(1, 20), st.integers(1, 20), st.floats(0, 0.95), st.sampled_from(csr.BITS), st.integers(0, 2 ** 32 - 1))
@settings(max_examples=40, deadline=None)
def test_csr_round_trip_and_idempotence(rows, cols, prune, vb, seed):
    W = weights((cols, rows), seed)
    if W.size - math.floor(prune * W.size + 0.5) <= 0:
        return
    enc = encode(W, "csr", prune=prune, bits=vb)
    d = decode(enc)
    if vb == 32:
        kept = d != 0
        assert np.array_equal(d[kept], W[kept]) and kept.sum() <= enc.kept
    if vb != 8 and (d != 0).sum() == enc.kept:          # re-encoding what it decoded changes nothing
        assert np.array_equal(decode(encode(d, "csr", prune=prune, bits=vb)), d)


@given(st.integers(2, 40), st.integers(2, 40), st.floats(0.5, 0.95), st.integers(0, 2 ** 32 - 1))
@settings(max_examples=25, deadline=None)
def test_lowrank_keeps_exactly_the_boolean_product(rows, cols, prune, seed):
    W = weights((cols, rows), seed)
    try:
        enc = encode(W, "lowrank", prune=prune, bits=32, rank=2, tile=16)
    except ValueError:
        return                                           # nothing kept: an error, tested below
    mask = lowrank.rebuild(enc.data["factors"], enc.data["rows_cols"])
    d = rows_view(decode(enc))
    assert np.array_equal(d[mask], rows_view(W)[mask]) and not d[~mask].any()
    for _, _, U, V in enc.data["factors"]:
        assert U.shape[1] == V.shape[0] <= 2
    # the counts that make the comparison with magnitude pruning honest
    assert enc.kept == mask.sum() == enc.params["target_kept"] + enc.params["extra_kept"] - enc.params["extra_pruned"]


def test_xor_round_trip_with_patches_and_blocks():
    W = weights((64, 32), 5)
    ref, _ = reference_binary(W, 0.91, 2)
    enc = encode(W, "xor", prune=0.91, bits=2, block=64, seeds=1)   # small blocks, one seed: patches needed
    assert enc.params["patch_count"] > 0
    assert np.array_equal(decode(enc), ref)
    no_patch = dict(enc.data, patches=[np.zeros(0, np.int32)] * 2)
    assert not np.array_equal(decode(B.Encoded(enc.format, enc.shape, enc.bits, enc.kept, 0, no_patch, enc.params)), ref)


def test_xor_with_a_lowrank_index_keeps_the_lowrank_mask_binary_code():
    W = weights((64, 32), 6)
    e_lr = encode(W, "lowrank", prune=0.91, bits=1)
    e_x = encode(W, "xor", prune=0.91, bits=1, index="lowrank")
    assert np.array_equal(decode(e_x), decode(e_lr))
    assert e_x.bits["index"] == e_lr.bits["index"]


# ---------------------------------------------------------------------------------- bit accounting

def test_bits_by_part_and_flash_bytes():
    W = weights((64, 32), 2)                        # 32 output channels of 64 inputs
    n, rows, cols = W.size, 32, 64
    assert encode(W, "f32").bits == {"values": 32 * n}
    e8 = encode(W, "int8")
    assert e8.bits == {"values": 8 * n, "scales": 16 * rows} and e8.decode_ops == n
    eb = encode(W, "binary", bits=2)
    assert eb.bits == {"values": 2 * n, "scales": 2 * 16 * rows, "index": 0}
    ec = encode(W, "csr", prune=0.91)
    k = n - math.floor(0.91 * n + 0.5)
    assert ec.kept == k == 184
    assert ec.bits == {"values": 32 * k, "index": k * 6 + (rows + 1) * 8}
    ex = encode(W, "xor", prune=0.91, bits=1)
    p = ex.params
    assert ex.bits["values"] == p["blocks"] * p["n_in"] * 1
    assert ex.params["index"] == "csr"                     # 91 % pruned: CSR beats a 1-bit/weight bitmap
    assert ex.bits["index"] == csr.index_bits(rows, cols, k) + 1 and ex.bits["scales"] == 16 * rows
    half = encode(W, "xor", prune=0.5, bits=1)           # half pruned: the bitmap is cheaper
    assert half.params["index"] == "bitmap" and half.bits["index"] == n + 1
    assert encode(W, "xor", prune=0.5, bits=1, index="csr").bits["index"] == csr.index_bits(rows, cols, n // 2)
    # one layer alone is a model of its own: it carries the whole model seed
    assert ex.bits["model_header"] == xor.seed_bits(p["seed"]) == B.gamma_bits(p["seed"] + 1)
    if p["clean"]:
        assert ex.bits["header"] == xor.FLAG_BITS and ex.bits["patches"] == 0 and p["slack"] == 0
    else:
        assert ex.bits["header"] == xor.FLAG_BITS + B.gamma_bits(p["slack"] + 1)
        assert ex.bits["patches"] == B.gamma_bits(p["patch_count"] + 1) + p["patch_count"] * B.width(k)
    assert p["xor_bits_per_weight"] == pytest.approx(
        (ex.bits["values"] + ex.bits["patches"] + ex.bits["header"] + ex.bits["model_header"]) / n)
    for e in (e8, eb, ec, ex):
        assert e.total_bits == sum(e.bits.values())
        assert e.flash_bytes == math.ceil(e.total_bits / 8)
        assert e.bits_per_weight == pytest.approx(e.total_bits / n)


def test_decode_work_is_counted():
    W = weights((64, 32), 4)
    ops = {f: encode(W, f, prune=0.91 if f in ("csr", "xor", "lowrank") else 0.0).decode_ops for f in FORMATS}
    assert ops["f32"] == 0
    assert all(ops[f] > 0 for f in FORMATS if f != "f32")
    ex = encode(W, "xor", prune=0.91)
    words = -(-ex.params["n_in"] // 32)
    assert ex.decode_ops >= ex.kept * (2 * words + 2)


def test_compress_model_counts_biases_and_untouched_layers():
    m = build_model("mlp:64-32-10")
    cm = compress_model(m, "int8", layers=["dense0"])
    assert cm.layers["dense1"] is None
    assert cm.total_bits == (8 * 2048 + 16 * 32) + 32 * 320 + 32 * (32 + 10)
    assert cm.flash_bytes == (8 * 2048 + 16 * 32) // 8 + 320 * 4 + (32 + 10) * 4


# ------------------------------------------------------------------------------------- bad input

@pytest.mark.parametrize("fmt,prune,bits,needle", [
    ("xor", 1.0, 1, "--prune 1.0"), ("csr", -0.1, 32, "--prune -0.1"), ("csr", float("nan"), 32, "--prune nan"),
    ("int8", 0.0, 3, "--bits 3"), ("xor", 0.5, 8, "--bits 8"), ("binary", 0.0, 32, "--bits 32"),
    ("zip", 0.0, None, "--format zip"),
])
def test_bad_input_names_flag_and_value(fmt, prune, bits, needle):
    with pytest.raises(ValueError, match=needle.replace("[", r"\[")):
        check(fmt, prune, bits)


def test_a_layer_that_would_keep_nothing_is_refused_naming_it():
    m = build_model("mlp:16-12-10")
    with pytest.raises(ValueError, match=r"--prune 0\.999: a layer of 192 weights would keep no weight \(layer dense0\)"):
        compress_model(m, "csr", prune=0.999)


def test_every_format_is_registered_with_its_bits():
    assert FORMATS == ("f32", "int8", "binary", "csr", "xor", "lowrank")
    for f, c in CODECS.items():
        assert c.FORMAT == f and c.BITS
