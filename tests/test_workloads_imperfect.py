"""Learning from imperfect data (issue #15): the stories, the techniques' math, and what each technique
adds to the op trace (so the simulator charges it)."""
import itertools

import numpy as np
import pytest

import workloads as W
from workloads import Techniques, check_trace, collect, datasets
from workloads import noise_bias as NB
from workloads import sinkhorn as SK
from workloads.buffers import ReplayBuffer
from workloads.imperfect import STATE_NAMES
from workloads.self_adaptive import SelfAdaptiveTargets

MODEL = "mlp-digits"     # small and quick; the traces have the same structure as the CNNs'


def _step(job, batch=8, stream=None):
    stream = stream or job.labelled_stream()
    xs, ys = zip(*itertools.islice(stream, batch), strict=True)
    ops, loss = collect(job.train_step(np.stack(xs), np.array(ys)))
    check_trace(ops, job.persistent_tensors())
    return ops, loss


def _names(ops):
    return [op.name for op in ops]


def _state(job):
    return {t.name: t.nbytes for t in job.persistent_tensors() if t.name.startswith(STATE_NAMES)}


# ------------------------------------------------------------------------------------------ stories

def test_noisy_labels_flip_the_given_fraction_of_training_labels_only():
    ds = datasets.load("digits8")
    base = datasets.personalisation_split(ds, "shift", 0)
    sp = datasets.personalisation_split(ds, "noisy-labels", 0, datasets.StoryOptions(label_noise=0.3))
    y_noisy, y_true = sp.user_train[1], sp.user_train_clean
    np.testing.assert_array_equal(y_true, base.user_train[1])
    assert int((y_noisy != y_true).sum()) == round(0.3 * len(y_true))
    np.testing.assert_array_equal(sp.user_test[1], base.user_test[1])      # the test labels stay right


def test_confusable_noise_goes_to_the_nearest_class_mean():
    ds = datasets.load("digits8")
    sp = datasets.personalisation_split(ds, "noisy-labels", 0,
                                        datasets.StoryOptions(label_noise=0.4, label_noise_kind="confusable"))
    conf = datasets.confusable_classes(*sp.pop_train)
    flipped = sp.user_train[1] != sp.user_train_clean
    assert flipped.any()
    np.testing.assert_array_equal(sp.user_train[1][flipped], conf[sp.user_train_clean[flipped]])
    assert (conf != np.arange(10)).all()


def test_unlabelled_stream_arrives_class_by_class_with_the_given_fraction_labelled():
    job = W.make_job(MODEL, story="unlabelled", story_options={"label_fraction": 0.2})
    y, y_true = job.split.user_train[1], job.split.user_train_clean
    assert (np.diff(y_true) >= 0).all()                      # ordered by class
    assert int((y != datasets.UNLABELLED).sum()) == round(0.2 * len(y))
    lab = y != datasets.UNLABELLED
    np.testing.assert_array_equal(y[lab], y_true[lab])
    first = [lbl for _, lbl in itertools.islice(job.labelled_stream(), len(y))]
    assert first == [int(v) for v in y]                      # arrival order is the split's order


def test_input_noise_ramps_up_over_the_first_pass_and_stays():
    job = W.make_job(MODEL, story="input-noise", story_options={"noise_level": 0.4})
    n = len(job.split.user_train[1])
    xs = np.stack([x for x, _ in itertools.islice(job.labelled_stream(), 2 * n)])
    assert xs.min() >= 0 and xs.max() <= 1                  # the ADC clips the pixels
    clean = float(NB.dark_floor(job.split.pop_train[0]).mean())
    sigma = NB.measure(xs, clean)
    early, mid, late = np.median(sigma[: n // 10]), np.median(sigma[n // 2 - 10: n // 2 + 10]), np.median(sigma[n:])
    assert early < 0.1 and abs(mid - 0.2) < 0.06 and abs(late - 0.4) < 0.06
    Xt = job.split.user_test[0]
    clean = datasets.personalisation_split(datasets.load("digits8"), "input-noise", 0,
                                           datasets.StoryOptions(noise_level=0.0)).user_test[0]
    assert len(Xt) == len(clean) and len(Xt) % datasets.NOISE_TEST_DRAWS == 0
    d = Xt - clean
    assert d.min() >= -1e-6                                   # a dark signal only adds
    bg = clean < 0.01                                         # unclipped background: |N(0, 0.4^2)|, mean 0.8 * 0.4
    assert abs(d[bg].mean() - 0.4 * np.sqrt(2 / np.pi)) < 0.02


@pytest.mark.parametrize("field,value", [("label_noise", -0.1), ("label_noise", 1.0), ("label_fraction", 1.5),
                                         ("noise_level", "high"), ("label_noise_kind", "random")])
def test_story_options_reject_bad_values_naming_the_field(field, value):
    with pytest.raises(ValueError, match=f"{field}.*{value}"):
        datasets.StoryOptions(**{field: value}).check()
    with pytest.raises(ValueError, match=f"--flag.*{value}"):
        datasets.StoryOptions(**{field: value}).check({field: "--flag"})


@pytest.mark.parametrize("kw,msg", [({"self_adaptive": 1.0}, "self_adaptive"), ({"sinkhorn": 0}, "sinkhorn"),
                                    ({"buffer": "lifo"}, "buffer.*lifo"), ({"buffer_size": 0}, "buffer_size"),
                                    ({"noise_bias_steps": 0}, "noise_bias_steps"),
                                    ({"self_adaptive_start": -1}, "self_adaptive_start")])
def test_techniques_reject_bad_values(kw, msg):
    with pytest.raises(ValueError, match=msg):
        Techniques(**kw)


def test_unknown_technique_is_named():
    with pytest.raises(ValueError, match="unknown technique 'self_adaptiv'"):
        Techniques.from_dict({"self_adaptiv": 0.9})


# -------------------------------------------------------------------------------- self-adaptive

def test_self_adaptive_targets_mix_labels_and_predictions_as_the_paper_defines():
    sat = SelfAdaptiveTargets(5, 3, momentum=0.8)
    p = np.array([[0.2, 0.7, 0.1], [0.6, 0.3, 0.1]], np.float32)
    T, w = sat.update(np.array([0, 3]), np.array([0, 0]), p)
    np.testing.assert_allclose(T, 0.8 * np.eye(3)[[0, 0]] + 0.2 * p, rtol=1e-6)
    np.testing.assert_allclose(w.sum(), 2.0, rtol=1e-6)                  # weights rescaled to the batch size
    assert w[1] > w[0]                                                     # the more confident target weighs more
    T2, _ = sat.update(np.array([0]), np.array([0]), p[:1])               # the running mix continues
    np.testing.assert_allclose(T2[0], 0.8 * T[0] + 0.2 * p[0], rtol=1e-6)


def test_self_adaptive_adds_its_op_and_per_sample_state_to_the_trace():
    plain = W.make_job(MODEL, story="noisy-labels")
    sat = W.make_job(MODEL, story="noisy-labels", techniques=Techniques(self_adaptive=0.9, self_adaptive_start=0))
    n, k = len(sat.split.user_train[1]), sat.num_classes
    assert _state(sat) == {"self_adaptive.targets": n * k * 4} and _state(plain) == {}
    ops_p, _ = _step(plain)
    ops_s, _ = _step(sat)
    names = _names(ops_s)
    assert "self_adaptive.targets" not in _names(ops_p)
    assert names.index("self_adaptive.targets") == names.index("loss") - 1
    op = ops_s[names.index("self_adaptive.targets")]
    assert op.bytes_written > 0 and op.alloc and op.alloc[0].kind == "workspace"
    # no extra MACs: the paper's "no extra computational cost" (elements are charged through its bytes)
    assert sum(o.macs for o in ops_s) == sum(o.macs for o in ops_p)
    assert sat._data.sat.seen.sum() == 8 and not np.allclose(sat._data.sat.t[sat._data.sat.seen].max(axis=1), 1.0)


# ------------------------------------------------------------------------------------- sinkhorn

def test_sinkhorn_allocation_respects_rows_class_bounds_and_the_allocation_fraction():
    rng = np.random.default_rng(0)
    log_p = np.log(rng.dirichlet(np.ones(5) * 0.5, 40))
    upper = np.full(5, 0.3)
    Q = SK.allocate(log_p, upper, rho=0.6, iters=200)
    assert (Q >= 0).all() and (Q.sum(axis=1) <= 1 + 1e-6).all()
    assert (Q.sum(axis=0) <= upper * 40 * 1.02).all()
    assert abs(Q.sum() - 0.6 * 40) < 0.5
    # a confident sample gets its own class
    log_p[0] = np.log(np.array([0.96, 0.01, 0.01, 0.01, 0.01]))
    assert SK.allocate(log_p, upper, 0.6, 200)[0].argmax() == 0


def test_sinkhorn_pseudo_labels_unlabelled_samples_and_its_cost_is_counted():
    opts = {"label_fraction": 0.1}
    base = W.make_job(MODEL, story="unlabelled", story_options=opts, techniques=Techniques(buffer="reservoir"))
    sk = W.make_job(MODEL, story="unlabelled", story_options=opts,
                    techniques=Techniques(buffer="reservoir", sinkhorn=7))
    for job in (base, sk):              # fill the buffers with the same samples
        stream = job.labelled_stream()
        for _ in range(4):
            ops, _ = _step(job, stream=stream)
    lab = base.last_step["labelled"]
    assert base.last_step["kept"] == lab and base.last_step["pseudo_labelled"] == 0   # labelled alone
    assert sk.last_step["pseudo_labelled"] > 0
    op = next(o for o in ops if o.name == "sinkhorn.allocate")
    n_u = 8 - sk.last_step["labelled"]
    assert op.macs == SK.elements(n_u, 10, 7) and op.alloc[0].nbytes == (n_u + 1) * 11 * 4


# --------------------------------------------------------------------------------------- buffers

def test_buffer_policies_keep_what_they_say():
    rng = np.random.default_rng(0)
    xs = np.arange(40, dtype=np.float32).reshape(40, 1)
    ys = np.repeat(np.arange(10), 4)                                     # class by class
    fifo = ReplayBuffer("fifo", 8, (1,), 2, rng)
    fifo.offer(xs, ys)
    assert sorted(fifo.x[:, 0]) == list(range(32, 40))
    res = ReplayBuffer("reservoir", 8, (1,), 2, np.random.default_rng(1))
    res.offer(xs, ys)
    assert res.n == 8 and res.x[:, 0].min() < 32                         # older samples survive
    rep = ReplayBuffer("representative", 8, (1,), 2, rng)
    emb = np.stack([ys * 10.0, rng.normal(0, 0.1, 40)], axis=1)           # classes far apart in embedding space
    calls = []

    def classify(e):                                                       # the classifier reads the first axis
        calls.append(len(e))
        return np.rint(e[:, 0] / 10).astype(int)

    unl = np.full(40, datasets.UNLABELLED)
    assert rep.offer(xs, unl, emb, classify) == 40 and calls == [40]      # one pass: the new samples (none kept yet)
    assert len(set(np.rint(rep.emb[:, 0] / 10).tolist())) == 8 > len(set(fifo.y.tolist()))   # it covers the stream
    assert max(np.bincount(np.rint(rep.emb[:, 0] / 10).astype(int))) == 1
    rep.offer(xs[:8], unl[:8], emb[:8], classify)
    assert calls[-2:] == [8, 8]                                            # the new ones, then the kept ones again
    with pytest.raises(ValueError, match="embeddings and a classifier"):
        rep.offer(xs[:2], unl[:2])


def test_representative_buffer_evicts_unlabelled_samples_of_the_most_kept_class_first():
    rep = ReplayBuffer("representative", 4, (1,), 1, np.random.default_rng(0))
    U = datasets.UNLABELLED

    def by_emb(e):
        return e[:, 0].astype(int)

    rep.offer(np.arange(4, dtype=np.float32)[:, None], np.array([0, U, U, 1]), np.array([[0.], [0.], [0.], [1.]]), by_emb)
    rep.offer(np.array([[9.]], np.float32), np.array([U]), np.array([[2.]]), by_emb)      # class 2 arrives
    assert sorted(rep.x[:, 0].tolist()) in ([0, 1, 3, 9], [0, 2, 3, 9])                 # an unlabelled 0 went
    rep.offer(np.array([[7.]], np.float32), np.array([U]), np.array([[1.]]), by_emb)      # kept: 0 is still the most
    assert sorted(rep.x[:, 0].tolist()) == [0, 3, 7, 9]                                 # the last unlabelled 0 went
    rep.offer(np.array([[8.]], np.float32), np.array([U]), np.array([[1.]]), by_emb)      # 1 is now the most kept
    assert sorted(rep.x[:, 0].tolist()) == [0, 3, 7, 9]                                 # so this one is dropped


def test_buffer_state_and_ops_are_in_the_trace():
    jobs = {p: W.make_job(MODEL, story="unlabelled", techniques=Techniques(buffer=p, buffer_size=16))
            for p in ("fifo", "representative")}
    st = _state(jobs["fifo"])
    assert st == {"buffer.fifo": 16 * (64 * 4 + 4)}
    rep_state = _state(jobs["representative"])["buffer.representative"]
    assert rep_state == 16 * (64 * 4 + 4) + 16 * 32 * 4                   # + embeddings (32 wide)
    ops_f, _ = _step(jobs["fifo"])
    ops_r, _ = _step(jobs["representative"])
    assert _names(ops_f)[:2] == ["buffer.offer", "buffer.draw"]
    embed = next(o for o in ops_r if o.name == "buffer.embed")
    assert embed.macs == 8 * 64 * 32                                     # the new samples up to the classifier
    assert next(o for o in ops_r if o.name == "buffer.select").macs == 8 * 32 * 10   # the classifier, new samples


def test_buffer_smaller_than_the_batch_is_refused():
    job = W.make_job(MODEL, story="unlabelled", techniques=Techniques(buffer="fifo", buffer_size=4))
    with pytest.raises(ValueError, match=r"buffer_size \(4\) must be >= the batch \(8\)"):
        _step(job)


# ----------------------------------------------------------------------------------- noise bias

def test_noise_measurement_reads_the_added_std():
    X = datasets.load("digits8").X[:300]
    clean = float(NB.dark_floor(datasets.load("digits8").X[300:]).mean())
    for sigma in (0.0, 0.1, 0.2, 0.3, 0.4):
        noisy = datasets.sensor_noise(X, sigma, np.random.default_rng(0))
        assert abs(float(np.median(NB.measure(noisy, clean))) - sigma) < 0.05


def test_noise_bias_trains_only_biases_per_level_and_skips_clean_and_finished_levels():
    job = W.make_job(MODEL, story="input-noise", story_options={"noise_level": 0.2},
                     techniques=Techniques(noise_bias=True, noise_bias_steps=2))
    assert set(_state(job)) == {"noise_bias.table", "noise_bias.reference"}
    X, y = job.split.user_train
    clean_ops, _ = collect(job.train_step(X[:8], y[:8]))
    assert _names(clean_ops) == ["noise.measure"] and job.last_step["noise_level"] == 0   # clean: nothing to learn
    noisy = datasets.sensor_noise(X[:8], 0.2, np.random.default_rng(0))
    W0 = [ly.params[0].copy() for ly in job.model.param_layers()]
    b0 = [ly.params[1].copy() for ly in job.model.param_layers()]
    for _ in range(NB.CALIB_BATCHES):           # first the unlabelled statistics correction: forward only
        ops, _ = collect(job.train_step(noisy, y[:8]))
        names = _names(ops)
        assert names[0] == "noise.measure" and "noise_bias.calibrate" in names and "noise_bias.correct" in names
        assert not any("backward" in n for n in names) and job.last_step["bias_calibrated"]
        cal = next(op for op in ops if op.name == "noise_bias.calibrate")
        assert cal.macs == job.model.macs_forward(8)
        assert check_trace(ops, job.persistent_tensors()).peak_live_bytes >= 8 * (64 + 32) * 4   # the activations
    moved = [not np.array_equal(b, ly.params[1]) for b, ly in zip(b0, job.model.param_layers(), strict=True)]
    assert moved == [True, False]               # the ReLU layer's biases; the linear classifier's stay
    for _ in range(2):
        ops, _ = collect(job.train_step(noisy, y[:8]))
        names = _names(ops)
        assert names[0] == "noise.measure" and not any(n.endswith("backward_weight") for n in names)
        assert any(n.endswith("backward_bias") for n in names)
    assert job.last_step["noise_level"] == 2
    for w0, ly in zip(W0, job.model.param_layers(), strict=True):
        np.testing.assert_array_equal(w0, ly.params[0])                    # weights untouched
    done, _ = collect(job.train_step(noisy, y[:8]))                       # the level's budget is spent
    assert _names(done) == ["noise.measure"]
    table, fresh = job._data.bias_table, W.make_job(MODEL, story="input-noise").model.param_layers()
    assert table.current == 2 and table.steps[2] == 2
    for b, ly in zip(table.sets[0], fresh, strict=True):
        np.testing.assert_array_equal(b, ly.params[1])                    # the clean level keeps the pre-training
    assert not np.array_equal(job.model.param_layers()[0].params[1], fresh[0].params[1])   # level 2 adapted


def test_noise_bias_moves_noisy_accuracy_toward_clean_on_a_fixed_seed():
    """The technique's point: on the CNN it was made for, the adapted biases win back a good part of the
    accuracy the sensor noise costs (calibration alone, then with the bias-only steps)."""
    kw = {"story": "input-noise", "seed": 0}
    clean = W.make_job("lenet-digits", story_options={"noise_level": 0.0}, **kw).evaluate()["user_accuracy"]
    job = W.make_job("lenet-digits", story_options={"noise_level": 0.3}, lr=0.003,
                     techniques=Techniques(noise_bias=True, noise_bias_steps=20), **kw)
    noisy = job.evaluate()["user_accuracy"]
    assert clean - noisy > 0.1                                  # the noise costs accuracy
    stream = job.labelled_stream()
    table = job._data.bias_table
    for _ in range(60):                                         # the ramp, until the top level is calibrated
        _step(job, stream=stream)
        if table.ready(3):
            break
    assert table.ready(3) and table.steps[3] <= 2               # (at most a step or two of SGD so far)
    calibrated = job.evaluate()["user_accuracy"]
    for _ in range(30):
        _step(job, stream=stream)
    adapted = job.evaluate()["user_accuracy"]
    lost = clean - noisy
    assert calibrated - noisy >= 0.2 * lost, (clean, noisy, calibrated)           # seed 0: 35 %
    assert adapted - noisy >= 0.25 * lost, (clean, noisy, calibrated, adapted)   # seed 0: 35 % (full FT: 4 %)


def test_calibration_offset_matches_clean_firing_rates():
    z = np.random.default_rng(0).normal(size=(400, 4)).astype(np.float32)
    rate = np.array([0.2, 0.5, 0.0, 1.0], np.float32)
    d = NB._offset(z, rate)
    fired = ((z + d) > 0).mean(axis=0)
    np.testing.assert_allclose(fired[:2], rate[:2], atol=1 / 400)
    assert d[2] == 0 and d[3] == 0                 # a channel that never / always fired on clean data is left alone


def test_calibration_brings_noisy_firing_rates_back_to_the_clean_ones():
    """The statistics correction's point: after the calibration batches at a noise level, each ReLU
    channel fires about as often on noisy inputs as it did on clean ones (without it, much more often)."""
    job = W.make_job("lenet-digits", story="input-noise", seed=0)
    model, X = job.model, job.split.pop_train[0]
    ref = NB.reference(model, X)
    assert all(((r >= 0) & (r <= 1)).all() for r in ref) and len(ref) == 3    # two convs and the hidden dense
    rng = np.random.default_rng(1)
    test = datasets.sensor_noise(X[:256], 0.3, rng)
    before = NB.reference(model, test)
    for i in range(NB.CALIB_BATCHES):
        NB.calibrate(model, ref, datasets.sensor_noise(X[256 + 8 * i: 264 + 8 * i], 0.3, rng), 1.0 / (i + 1))
    after = NB.reference(model, test)
    gap_before = max(float(np.abs(b - r).mean()) for b, r in zip(before, ref, strict=True))
    gap_after = max(float(np.abs(a - r).mean()) for a, r in zip(after, ref, strict=True))
    assert gap_before > 0.1 and gap_after < gap_before / 2, (gap_before, gap_after)


def test_input_noise_and_unlabelled_test_on_every_held_out_digit():
    ds = datasets.load("digits8")
    noisy = datasets.personalisation_split(ds, "input-noise", 1)
    clean = datasets.personalisation_split(ds, "input-noise", 1, datasets.StoryOptions(noise_level=0.0))
    held = np.concatenate([datasets.personalisation_split(ds, "shift", 1).user_test[1], noisy.pop_test[1]])
    assert len(noisy.user_test[1]) == datasets.NOISE_TEST_DRAWS * len(held) and len(held) > 500
    np.testing.assert_array_equal(noisy.user_test[1], np.tile(held, datasets.NOISE_TEST_DRAWS))
    np.testing.assert_array_equal(clean.user_test[0][len(held) - len(noisy.pop_test[1]):len(held)], noisy.pop_test[0])
    unl = datasets.personalisation_split(ds, "unlabelled", 1)
    n_user, n_pop = len(unl.user_train[1]), len(unl.pop_test[1])
    assert len(unl.user_test[1]) == len(held) and len(unl.user_test[1]) - n_pop in (n_user, n_user + 1)
    Xh, yh = unl.user_test[0][-n_pop:], unl.user_test[1][-n_pop:]
    np.testing.assert_array_equal(yh, unl.pop_test[1])                      # the population's held-out digits ...
    assert float(np.abs(Xh - unl.pop_test[0]).mean()) > 0.05                # ... in the user's (rotated) hand
    assert not set(map(bytes, Xh)) & set(map(bytes, unl.user_train[0]))


def _bench():
    from bench_support import load_benchmark

    return load_benchmark("imperfect_data")


def test_benchmark_beats_line_needs_the_mean_and_more_wins_than_losses():
    B = _bench()
    seeds = range(3, 6)
    assert B.beats("x", np.array([0.9, 0.8, 0.7]), np.array([0.8, 0.7, 0.6]), seeds).endswith(": MET")
    lucky = B.beats("x", np.array([0.99, 0.70, 0.70]), np.array([0.70, 0.71, 0.71]), seeds)   # one big win
    assert "wins 1, losses 2" in lucky and lucky.endswith("NOT MET") and "seeds 3-5" in lucky
    assert B.beats("x", np.array([0.82, 0.82]), np.array([0.8, 0.8]), range(2), 3.0).endswith("NOT MET")


def test_benchmark_runs_held_out_seeds_and_says_so(capsys):
    B = _bench()
    with pytest.raises(SystemExit):
        B.main(["--seed-offset", "-1"])
    assert B.main(["--seeds", "1", "--seed-offset", "3", "--only", "unlabelled"]) == 0
    out = capsys.readouterr().out
    assert "seeds 3-3 (held-out" in out and "noisy-labels" not in out and "input-noise" not in out
    assert out.count("Done-when:") == 2 and "per seed" in out
