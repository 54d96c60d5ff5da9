"""The op trace: invariants the simulator relies on, and what each technique does to it."""
import numpy as np
import pytest

import workloads as W
from workloads import Techniques, check_trace, collect
from workloads.trace import OP_KINDS


def _batch(job, n, seed=0):
    s = job.labelled_stream()
    xs, ys = zip(*[next(s) for _ in range(n)], strict=True)
    return np.stack(xs), np.array(ys)


def _step(job, n=8):
    xs, ys = _batch(job, n)
    ops, loss = collect(job.train_step(xs, ys))
    return ops, loss, check_trace(ops, job.persistent_tensors())


def _macs(ops, suffix):
    return sum(o.macs for o in ops if o.name.endswith(suffix))


ZOO = ["mlp-digits", "lenet-digits", "dscnn-digits", "cnn1d-accel", "mlp-microbit"]


@pytest.mark.parametrize("name", ZOO)
def test_trace_invariants_for_zoo_models(name):
    job = W.make_job(name)
    pids = [t.id for t in job.persistent_tensors()]
    assert len(set(pids)) == len(pids)
    assert {t.kind for t in job.persistent_tensors()} <= {"weight", "bias", "optim"}
    ops, loss, summ = _step(job, 4)
    assert np.isfinite(loss) and loss > 0
    assert all(o.kind in OP_KINDS and o.macs >= 0 for o in ops)
    ids = [t.id for o in ops for t in o.alloc]
    assert len(ids) == len(set(ids)) and not set(ids) & set(pids)
    assert summ.flash_read_bytes == summ.flash_write_bytes == 0
    ops2, _, _ = _step(job, 4)
    assert not {t.id for o in ops2 for t in o.alloc} & set(ids)       # fresh ids every step
    iops, cls = collect(job.infer(_batch(job, 1)[0][0]))
    check_trace(iops, job.persistent_tensors())
    assert 0 <= cls < job.num_classes
    assert all(o.kind != "update" for o in iops)


def test_eltwise_and_reduce_ops_carry_element_counts():
    job = W.make_job("mlp-digits")
    ops, _, _ = _step(job, 8)
    act = next(o for o in ops if o.name == "dense0.backward_act")
    assert act.bytes_written == 8 * 32 * 4 and act.bytes_read == 8 * 32 * 4 * 2
    loss = next(o for o in ops if o.name == "loss")
    assert loss.bytes_read == 8 * 10 * 4


@pytest.mark.parametrize("batch", [1, 8])
def test_mlp_step_macs_exact(batch):
    job = W.make_job("mlp:64-32-10")
    ops, _, _ = _step(job, batch)
    fwd = batch * (64 * 32 + 32 * 10)
    assert _macs(ops, ".forward") == fwd
    assert _macs(ops, ".backward_weight") == fwd          # no zero errors on this batch
    assert _macs(ops, ".backward_input") == batch * 32 * 10   # dense0 needs no input gradient
    assert _macs(ops, ".update") == 64 * 32 + 32 + 32 * 10 + 10
    assert [o.kind for o in ops if o.name.endswith(".update")] == ["update", "update"]
    assert sum(o.macs for o in ops) == 3 * fwd - batch * 64 * 32 + 64 * 32 + 32 + 32 * 10 + 10


def test_lenet_forward_macs_match_closed_form():
    job = W.make_job("lenet-digits")
    ops, _, _ = _step(job, 2)
    conv0 = 8 * 8 * 6 * 9
    conv2 = 4 * 4 * 16 * (9 * 6)
    dense = 64 * 32 + 32 * 10
    assert _macs(ops, ".forward") == 2 * (conv0 + conv2 + dense)
    assert job.model.macs_forward(2) == 2 * (conv0 + conv2 + dense)


def test_persistent_tensors_are_never_allocated_and_sizes_follow_data():
    job = W.make_job("mlp-digits")   # SGD with momentum: one optim buffer per parameter
    kinds = [t.kind for t in job.persistent_tensors()]
    assert kinds.count("weight") == 2 and kinds.count("bias") == 2 and kinds.count("optim") == 4
    assert sum(t.nbytes for t in job.persistent_tensors() if t.kind in ("weight", "bias")) == \
        sum(p.nbytes for p in job.model.parameters())
    assert job.flash_bytes() == job.trainable_bytes() == sum(p.nbytes for p in job.model.parameters())
    adam = W.make_job("mlp-digits", optimizer="adam", lr=1e-3)
    assert [t.kind for t in adam.persistent_tensors()].count("optim") == 8
    plain = W.make_job("mlp-digits", momentum=0.0)
    assert "optim" not in [t.kind for t in plain.persistent_tensors()]


def test_traced_step_is_plain_sgd_for_the_microbit_mlp():
    """Independent oracle: a hand-written 2-layer MLP SGD step equals the traced fused step at batch 1."""
    job = W.make_job("mlp:16-12-10", dataset="digits4", optimizer="sgd", lr=0.05, momentum=0.0,
                     techniques=Techniques(fused_update=True))
    W1, b1, W2, b2 = [p.copy().astype(np.float64) for p in job.model.parameters()]
    xs, ys = _batch(job, 1)
    x, y = xs[0].astype(np.float64), int(ys[0])
    h = np.maximum(x @ W1 + b1, 0)
    z = h @ W2 + b2
    p = np.exp(z - z.max())
    p /= p.sum()
    dz = p.copy()
    dz[y] -= 1
    dh = (W2 @ dz) * (h > 0)
    want = [W1 - 0.05 * np.outer(x, dh), b1 - 0.05 * dh, W2 - 0.05 * np.outer(h, dz), b2 - 0.05 * dz]
    ops, loss, summ = _step_given(job, xs, ys)
    assert loss == pytest.approx(-np.log(p[y]), rel=1e-5)
    for got, exp in zip(job.model.parameters(), want, strict=True):
        np.testing.assert_allclose(got, exp, rtol=1e-4, atol=1e-6)
    assert "optim" not in {t.kind for t in job.persistent_tensors()}


def _step_given(job, xs, ys):
    ops, loss = collect(job.train_step(xs, ys))
    return ops, loss, check_trace(ops, job.persistent_tensors())


def test_traced_step_matches_finite_difference_gradient():
    job = W.make_job("lenet-digits", momentum=0.0, lr=0.01)
    xs, ys = _batch(job, 4)
    before = [p.astype(np.float64) for p in job.model.parameters()]
    _step_given(job, xs, ys)
    after = job.model.parameters()
    ref = W.build_model("lenet-digits")

    def loss_at(params):
        for p, v in zip(ref.parameters(), params, strict=True):
            p[...] = v
        logits = ref.forward(xs).astype(np.float64)
        z = logits - logits.max(1, keepdims=True)
        return float(np.mean(np.log(np.exp(z).sum(1)) - z[np.arange(len(ys)), ys]))

    rng = np.random.default_rng(0)
    for k in (0, 2, 4, 6):                                    # a weight of each conv/dense layer
        idx = tuple(rng.integers(0, s) for s in before[k].shape)
        step = (before[k][idx] - after[k][idx]) / 0.01
        eps = 1e-2
        pp = [b.copy() for b in before]
        pp[k][idx] += eps
        lp = loss_at(pp)
        pp[k][idx] -= 2 * eps
        lm = loss_at(pp)
        assert step == pytest.approx((lp - lm) / (2 * eps), rel=0.05, abs=2e-3)


# ------------------------------------------------------------------------------------------ techniques

def test_fused_update_keeps_one_layer_of_wgrad_and_same_numerics():
    a = W.make_job("lenet-digits")
    b = W.make_job("lenet-digits", techniques=Techniques(fused_update=True))
    xs, ys = _batch(a, 8)
    _, la, sa = _step_given(a, xs, ys)
    ops, lb, sb = _step_given(b, xs, ys)
    per_layer = max(p.nbytes + q.nbytes for p, q in (ly.params for ly in a.model.param_layers()))
    total = sum(p.nbytes for p in a.model.parameters())
    assert sa.max_live_wgrad_bytes == total
    assert sb.max_live_wgrad_bytes <= per_layer < total
    assert la == lb
    for p, q in zip(a.model.parameters(), b.model.parameters(), strict=True):
        np.testing.assert_allclose(p, q, rtol=1e-6, atol=1e-7)
    names = [o.name for o in ops]
    assert names.index("dense6.update") < names.index("dense5.backward_weight")


def test_etf_classifier_has_no_wgrad_no_optim_and_stays_fixed():
    job = W.make_job("mlp-digits", techniques=Techniques(etf=True))
    clf = job.model.layers[-1]
    W0 = clf.params[0].copy()
    cos = (W0.T @ W0) / np.outer(np.linalg.norm(W0, axis=0), np.linalg.norm(W0, axis=0))
    np.testing.assert_allclose(cos[~np.eye(10, dtype=bool)], -1 / 9, atol=1e-5)
    ops, _, _ = _step(job)
    names = [o.name for o in ops]
    assert "dense1.backward_weight" not in names and "dense1.update" not in names
    assert "dense1.backward_input" in names and "dense0.backward_weight" in names
    assert not any(t.name.startswith("dense1.") for t in job.persistent_tensors() if t.kind == "optim")
    np.testing.assert_array_equal(clf.params[0], W0)
    assert job.trainable_bytes() == 64 * 32 * 4 + 32 * 4


def test_instance_filter_skips_backward_for_easy_samples():
    base = W.make_job("lenet-digits")
    xs, ys = _batch(base, 16)
    ops0, _, s0 = _step_given(base, xs, ys)
    skip_all = W.make_job("lenet-digits", techniques=Techniques(instance_filter=1e9))
    ops1, loss1, s1 = _step_given(skip_all, xs, ys)
    assert [o.name for o in ops1][-1] == "loss"
    assert s1.macs == _macs(ops0, ".forward")
    assert not any(o.kind == "update" for o in ops1)
    # a threshold between the per-sample losses keeps some samples: backward MACs scale with the kept count
    logits = base.model.forward(xs)   # (weights changed by one step; recompute on a fresh job)
    fresh = W.make_job("lenet-digits")
    logits = fresh.model.forward(xs).astype(np.float64)
    z = logits - logits.max(1, keepdims=True)
    losses = np.log(np.exp(z).sum(1)) - z[np.arange(16), ys]
    thr = float(np.median(losses))
    some = W.make_job("lenet-digits", techniques=Techniques(instance_filter=thr))
    ops2, _, s2 = _step_given(some, xs, ys)
    kept = int((losses >= thr).sum())
    assert some.last_step["kept"] == kept and 0 < kept < 16
    assert _macs(ops2, ".backward_input") * 16 == _macs(ops0, ".backward_input") * kept
    assert s2.macs < s0.macs
    zero = W.make_job("lenet-digits", techniques=Techniques(instance_filter=0.0))
    _, _, s3 = _step_given(zero, xs, ys)
    assert s3.macs == s0.macs


@pytest.mark.parametrize("tech", [Techniques(error_map_prune=0.1), Techniques(grad_prune=0.2)])
def test_pruning_cuts_backward_macs_counted_from_nonzeros(tech):
    base = W.make_job("lenet-digits")
    xs, ys = _batch(base, 16)
    ops0, _, _ = _step_given(base, xs, ys)
    job = W.make_job("lenet-digits", techniques=tech)
    ops, _, _ = _step_given(job, xs, ys)
    assert _macs(ops, ".forward") == _macs(ops0, ".forward")
    bw0 = _macs(ops0, ".backward_weight") + _macs(ops0, ".backward_input")
    bw = _macs(ops, ".backward_weight") + _macs(ops, ".backward_input")
    assert bw < bw0
    assert any(o.name.endswith(".prune_error") and o.kind == "eltwise" for o in ops)
    st = job.last_step
    assert st["error_kept"] < st["error_total"]


def test_grad_prune_is_unbiased():
    from workloads.transforms import prune_errors as _prune
    rng = np.random.default_rng(0)
    e = rng.standard_normal((50, 400)).astype(np.float32)
    pruned, kept = _prune(e, Techniques(grad_prune=0.5), rng)
    assert kept == np.count_nonzero(pruned) < e.size * 0.8
    assert abs(pruned.sum() - e.sum()) / np.abs(e).sum() < 0.02       # unbiased: the sum survives
    big = np.abs(e) >= 0.5 * np.abs(e).max(axis=1, keepdims=True)
    np.testing.assert_array_equal(pruned[big], e[big])                 # large entries untouched


def test_error_map_prune_is_relative_to_each_samples_max():
    from workloads.transforms import prune_errors as _prune
    e = np.array([[1.0, 0.05, -0.5], [0.01, 0.002, -0.0001]], np.float32)
    pruned, kept = _prune(e, Techniques(error_map_prune=0.1), np.random.default_rng(0))
    np.testing.assert_array_equal(pruned, e * np.array([[1, 0, 1], [1, 1, 0]], np.float32))
    assert kept == 4


def test_pruning_leaves_the_logit_gradient_alone():
    job = W.make_job("mlp-digits", techniques=Techniques(error_map_prune=0.5))
    ops, _, _ = _step(job)
    assert [o.name for o in ops if o.name.endswith("prune_error")] == ["dense0.prune_error"]


def test_bias_only_update():
    job = W.make_job("mlp-digits", techniques=Techniques(update="bias"))
    W0 = [ly.params[0].copy() for ly in job.model.param_layers()]
    ops, _, _ = _step(job)
    assert not any(t.kind == "wgrad" and t.name.endswith(".dW") for o in ops for t in o.alloc)
    assert _macs(ops, ".update") == 32 + 10
    assert _macs(ops, ".backward_weight") == 0 and any(o.name.endswith(".backward_bias") for o in ops)
    for w0, ly in zip(W0, job.model.param_layers(), strict=True):
        np.testing.assert_array_equal(w0, ly.params[0])
    assert job.trainable_bytes() == (32 + 10) * 4
    assert [t.name for t in job.persistent_tensors() if t.kind == "optim"] == ["dense0.b.state0", "dense1.b.state0"]


def test_last_k_stops_backward_early():
    job = W.make_job("lenet-digits", techniques=Techniques(update="last-k", last_k=1))
    base = W.make_job("lenet-digits")
    xs, ys = _batch(job, 8)
    ops, _, s = _step_given(job, xs, ys)
    ops0, _, s0 = _step_given(base, xs, ys)
    bnames = [o.name for o in ops if "backward" in o.name]
    assert bnames == ["dense6.backward_weight"]
    assert s.macs < s0.macs
    assert s.peak_live_bytes < s0.peak_live_bytes      # activations not needed by backward are freed early
    assert job.trainable_bytes() == (32 * 10 + 10) * 4


def test_sparse_update_touches_a_fraction_of_units():
    job = W.make_job("mlp-digits", techniques=Techniques(update="sparse", sparse_fraction=0.25))
    W0 = [p.copy() for p in job.model.parameters()]
    ops, _, _ = _step(job)
    k0, k1 = round(0.25 * 32), round(0.25 * 10)
    assert _macs(ops, ".update") == k0 * 65 + k1 * 33
    changed_cols = np.flatnonzero(np.any(job.model.parameters()[0] != W0[0], axis=0))
    assert 0 < len(changed_cols) <= k0
    dW = next(t for o in ops for t in o.alloc if t.name == "dense0.dW")
    assert dW.nbytes == 64 * k0 * 4


def test_recompute_adds_forward_macs_and_lowers_the_forward_peak():
    base = W.make_job("lenet-digits")
    job = W.make_job("lenet-digits", techniques=Techniques(recompute=True))
    xs, ys = _batch(job, 16)
    ops0, l0, s0 = _step_given(base, xs, ys)
    ops, l1, s = _step_given(job, xs, ys)
    rec = [o for o in ops if o.name.endswith(".recompute")]
    assert rec and all(o.macs >= 0 for o in rec)
    assert s.macs == s0.macs + sum(o.macs for o in rec)
    assert sum(o.macs for o in rec) > 0
    assert l0 == l1
    for p, q in zip(base.model.parameters(), job.model.parameters(), strict=True):
        np.testing.assert_allclose(p, q, rtol=1e-6, atol=1e-7)

    def live_act_at_loss(ops_):
        live = {}
        for o in ops_:
            for t in o.alloc:
                live[t.id] = t
            if o.name == "loss":
                return sum(t.nbytes for t in live.values() if t.kind in ("activation", "input"))
            for i in o.free:
                live.pop(i)
    assert live_act_at_loss(ops) < live_act_at_loss(ops0)
    assert s.peak_live_bytes < s0.peak_live_bytes


def test_conv_workspace_is_a_few_patches_not_the_whole_matrix():
    from workloads.steps import IM2COL_PATCHES
    job = W.make_job("lenet-digits")
    ops, _, _ = _step(job, 8)
    ws = {t.name: t.nbytes for o in ops for t in o.alloc if t.kind == "workspace"}
    assert ws["conv2.forward.cols"] == IM2COL_PATCHES * 3 * 3 * 6 * 4
    assert ws["conv2.dcols"] == 3 * 3 * 6 * 4
    fwd = next(o for o in ops if o.name == "conv2.forward")
    assert fwd.bytes_written >= 8 * 4 * 4 * 54 * 4          # every patch is still copied


def test_swap_writes_activations_to_flash_and_frees_them_in_between():
    base = W.make_job("lenet-digits")
    job = W.make_job("lenet-digits", techniques=Techniques(swap=True))
    xs, ys = _batch(job, 16)
    ops0, _, s0 = _step_given(base, xs, ys)
    ops, _, s = _step_given(job, xs, ys)
    outs = [o for o in ops if o.kind == "flash_write"]
    ins = [o for o in ops if o.kind == "flash_read"]
    assert outs and len(outs) == len(ins)
    assert s.flash_write_bytes == s.flash_read_bytes > 0
    assert all(o.macs == 0 for o in outs + ins)
    names = [o.name for o in ops]
    for o in outs:
        key = o.name.split(".", 1)[1]
        assert o.free, "a swapped activation is freed right after its flash write"
        assert names.index("swap_in." + key) > names.index("loss") > names.index(o.name)
    assert s.peak_live_bytes < s0.peak_live_bytes
    for p, q in zip(base.model.parameters(), job.model.parameters(), strict=True):
        np.testing.assert_allclose(p, q, rtol=1e-6, atol=1e-7)


def test_int8_trace_and_storage():
    job = W.make_job("lenet-digits", techniques=Techniques(int8=True))
    f32 = W.make_job("lenet-digits")
    ops, _, s = _step(job)
    assert all(o.dtype == "i8" for o in ops if o.name.endswith(".forward"))
    y = next(t for o in ops for t in o.alloc if t.name == "conv0.y")
    assert y.nbytes == 8 * 8 * 8 * 6
    nW = sum(ly.params[0].size for ly in job.model.param_layers())
    nb = sum(ly.params[1].size for ly in job.model.param_layers())
    assert job.flash_bytes() == nW + 4 * nb < f32.flash_bytes()
    for ly in job.model.param_layers():      # weights stay on their int8 grid after the update
        w = ly.params[0]
        sc = job._qscale[id(w)]
        np.testing.assert_allclose(w / sc, np.rint(w / sc), atol=1e-3)
        assert np.max(np.abs(w / sc)) <= 127 + 1e-3


def test_techniques_compose():
    t = Techniques(etf=True, instance_filter=0.05, error_map_prune=0.1, fused_update=True, recompute=True, swap=True)
    job = W.make_job("lenet-digits", techniques=t)
    for _ in range(3):
        _step(job, 8)


def test_bad_inputs_are_clear_errors():
    with pytest.raises(ValueError, match="story"):
        W.make_job("mlp-digits", story="nope")
    with pytest.raises(ValueError, match="optimizer"):
        W.make_job("mlp-digits", optimizer="rmsprop")
    with pytest.raises(ValueError, match="digits4.*16 values.*64"):
        W.make_job("mlp:64-32-10", dataset="digits4")
    with pytest.raises(ValueError, match="no default dataset.*5x5x1"):
        W.make_job("cnn:5x5x1-c2k3-d10")
    with pytest.raises(ValueError, match="10 classes.*outputs 5"):
        W.make_job("mlp:64-8-5")
    with pytest.raises(ValueError, match="etf"):
        W.make_job("mlp:64-4-10", techniques=Techniques(etf=True))
    with pytest.raises(ValueError, match="unknown technique 'fast'"):
        W.make_job("mlp-digits", techniques={"fast": True})
    assert W.make_job("mlp-digits", techniques={"fused_update": True}).techniques.fused_update
    job = W.make_job("mlp-digits")
    with pytest.raises(ValueError, match="3 samples but 2 labels"):
        collect(job.train_step(np.zeros((3, 64)), np.zeros(2, int)))


@pytest.mark.parametrize("name", ["lenet-digits", "mlp-microbit"])
def test_repeated_inference_replays_the_same_trace_with_fresh_ids(name):
    job = W.make_job(name, techniques=Techniques(int8=name == "mlp-microbit"))
    Xu, _ = job.split.user_test
    first, c0 = collect(job.infer(Xu[0]))
    ids0 = {t.id for o in first for t in o.alloc}
    preds = []
    for x in Xu[:20]:
        ops, c = collect(job.infer(x))
        check_trace(ops, job.persistent_tensors())
        assert [(o.name, o.macs, o.bytes_read, [t.nbytes for t in o.alloc]) for o in ops] == \
            [(o.name, o.macs, o.bytes_read, [t.nbytes for t in o.alloc]) for o in first]
        assert not {t.id for o in ops for t in o.alloc} & ids0
        preds.append(c)
    assert preds == list(job.model.predict(Xu[:20], job.techniques.int8))
    assert preds[0] == c0


COMBOS = [
    Techniques(update="sparse", sparse_fraction=0.3, int8=True),
    Techniques(recompute=True, swap=True, fused_update=True),
    Techniques(instance_filter=0.5, recompute=True, error_map_prune=0.3),
    Techniques(etf=True, update="last-k", last_k=2, swap=True),
    Techniques(update="bias", recompute=True, grad_prune=0.3),
    Techniques(int8=True, swap=True, instance_filter=0.1, fused_update=True),
]


@pytest.mark.parametrize("name", ["dscnn-digits", "cnn1d-accel", "mlp-microbit"])
@pytest.mark.parametrize("tech", COMBOS, ids=lambda t: "+".join(t.active()))
def test_technique_combinations_keep_the_trace_valid(name, tech):
    job = W.make_job(name, techniques=tech)
    for _ in range(2):
        ops, loss, _ = _step(job, 6)
        assert np.isfinite(loss)
    assert all(np.isfinite(p).all() for p in job.model.parameters())
    check_trace(collect(job.infer(_batch(job, 1)[0][0]))[0], job.persistent_tensors())
