"""The memory planner: lifetimes, liveness lower bound, and an arena whose offsets never collide."""
from __future__ import annotations

import itertools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from simulator.planner import INPLACE_OP_KINDS, plan_arena
from workloads.trace import OP_KINDS, TENSOR_KINDS, Op, Tensor


def op(name, kind="matmul", alloc=(), free=()):
    return Op(name, kind, 0, 0, 0, alloc=tuple(alloc), free=tuple(free))


def T(tid, nbytes, kind="activation"):
    return Tensor(tid, nbytes, kind)


def mlp_step(sizes=(256, 128, 64, 10), batch=4, first_id=1000):
    """A hand-built training step of an MLP: forward keeps activations, backward frees them in reverse."""
    ids = itertools.count(first_id)
    nb = [batch * s * 4 for s in sizes]
    x = next(ids)
    ops = [op("input", "copy", [T(x, nb[0], "input")])]
    acts = [x]                                   # acts[i]: input of layer i
    last = len(sizes) - 2
    for i in range(last + 1):
        z = next(ids)
        ops.append(op(f"dense{i}.forward", "matmul", [T(z, nb[i + 1])]))
        if i < last:
            a = next(ids)
            ops.append(op(f"relu{i}.forward", "eltwise", [T(a, nb[i + 1])], free=[z]))
            acts.append(a)
    g = next(ids)
    ops.append(op("loss", "reduce", [T(g, nb[-1], "grad")], free=[z]))
    for i in reversed(range(last + 1)):
        if i < last:
            gz = next(ids)
            ops.append(op(f"relu{i}.backward", "eltwise", [T(gz, nb[i + 1], "grad")], free=[g, acts[i + 1]]))
            g = gz
        gw = next(ids)
        ops.append(op(f"dense{i}.backward_weight", "matmul", [T(gw, sizes[i] * sizes[i + 1] * 4, "wgrad")],
                      free=[] if i else [acts[0]]))
        if i:
            gx = next(ids)
            ops.append(op(f"dense{i}.backward_input", "matmul", [T(gx, nb[i], "grad")], free=[g]))
            g = gx
        else:
            ops.append(op("dense0.done", "eltwise", free=[g]))
        ops.append(op(f"dense{i}.update", "update", free=[gw]))
    return ops


def check_plan(ops, persistent, p, inplace=True):
    """Independent oracle: recompute lifetimes and live bytes, and check every pair of tensors."""
    n = len(ops)
    life, size, in_place_ok = {}, {}, set()
    for t in persistent:
        life[t.id], size[t.id] = [0, max(n - 1, 0)], t.nbytes
    pers = {t.id for t in persistent}
    for i, o in enumerate(ops):
        for t in o.alloc:
            life[t.id], size[t.id] = [i, None], t.nbytes
        for tid in o.free:
            if tid not in pers:
                life[tid][1] = i
        if inplace and o.kind in INPLACE_OP_KINDS:
            for t in o.alloc:
                for tid in o.free:
                    if tid not in pers and life[tid][0] < i and t.nbytes <= size[tid]:
                        in_place_ok.add((t.id, tid))
    for v in life.values():
        if v[1] is None:
            v[1] = max(n - 1, 0)
    assert p.lifetimes == {t: tuple(v) for t, v in life.items()}
    assert p.naive_bytes == sum(size.values())
    strict = [sum(size[t] for t, (f, la) in life.items() if f <= i <= la) for i in range(n)]
    if n:
        assert p.lower_bound_bytes <= max(strict)
        if not inplace:
            assert p.lower_bound_bytes == max(strict)
        assert p.live_bytes[p.peak_op] == p.lower_bound_bytes == max(p.live_bytes)
        by_kind = list(p.live_by_kind.values()) or [[0] * n]
        assert [sum(col) for col in zip(*by_kind, strict=True)] == p.live_bytes
    assert p.lower_bound_bytes <= p.planned_bytes <= p.naive_bytes or p.naive_bytes == p.planned_bytes == 0
    for t, s in size.items():
        assert 0 <= p.offsets[t] and p.offsets[t] + s <= p.planned_bytes
    items = [(t, life[t][0], life[t][1], p.offsets[t], p.offsets[t] + s) for t, s in size.items() if s]
    for (a, fa, la, oa, ea), (b, fb, lb, ob, eb) in itertools.combinations(items, 2):
        if fa <= lb and fb <= la and oa < eb and ob < ea:   # live together and sharing bytes
            pair = (a, b) if (a, b) in in_place_ok else (b, a)
            assert pair in in_place_ok, f"tensors {a} and {b} overlap in time and memory"
            out, inp = pair
            assert p.offsets[out] == p.offsets[inp] and p.inplace.get(out) == inp
            assert life[out][0] == life[inp][1]   # they share exactly one op


def test_lifetimes_and_figures_small_trace():
    ops = [op("a", "matmul", [T(1, 100)]),
           op("relu", "eltwise", [T(2, 100)], free=[1]),
           op("b", "matmul", [T(3, 50)]),
           op("c", "matmul", [T(4, 50, "grad")], free=[3]),
           op("d", "matmul", free=[2, 4])]
    w = T(10, 40, "weight")
    p = plan_arena(ops, [w])
    assert p.lifetimes == {10: (0, 4), 1: (0, 1), 2: (1, 4), 3: (2, 3), 4: (3, 4)}
    assert p.naive_bytes == 340
    # relu writes over its input, so op 1 holds 100 B of activation, not 200 B
    assert p.live_bytes == [140, 140, 190, 240, 190]
    assert p.live_by_kind["grad"] == [0, 0, 0, 50, 50]
    assert p.lower_bound_bytes == 240 and p.peak_op_name == "c"
    assert p.planned_bytes == 240
    assert p.inplace == {2: 1} and p.offsets[2] == p.offsets[1]
    assert p.offsets[10] == 0     # persistent at the bottom
    check_plan(ops, [w], p)
    q = plan_arena(ops, [w], inplace=False)
    assert q.inplace == {} and q.live_bytes[1] == 240 and q.lower_bound_bytes == 240
    check_plan(ops, [w], q, inplace=False)


def test_no_in_place_for_matmul_or_larger_output():
    ops = [op("a", "matmul", [T(1, 100)]),
           op("mm", "matmul", [T(2, 50)], free=[1]),           # matmul: output needs all of its input
           op("grow", "eltwise", [T(3, 80)], free=[2]),        # larger than the input
           op("end", "eltwise", free=[3])]
    p = plan_arena(ops)
    assert p.inplace == {}
    assert p.live_bytes == [100, 150, 130, 80]
    check_plan(ops, (), p)


def test_chained_in_place_reuses_one_buffer():
    ops = [op("x", "copy", [T(1, 64, "input")]),
           op("relu", "eltwise", [T(2, 64)], free=[1]),
           op("scale", "eltwise", [T(3, 32)], free=[2]),
           op("end", "reduce", free=[3])]
    p = plan_arena(ops)
    assert p.inplace == {2: 1, 3: 2}
    assert p.planned_bytes == p.lower_bound_bytes == 64
    check_plan(ops, (), p)


def test_mlp_step_is_planned_tightly():
    ops = mlp_step()
    pers = [T(1, 256 * 128 * 4, "weight"), T(2, 128 * 64 * 4, "weight"), T(3, 64 * 10 * 4, "weight")]
    p = plan_arena(ops, pers)
    check_plan(ops, pers, p)
    assert p.planned_bytes <= 1.05 * p.lower_bound_bytes
    assert p.naive_bytes > p.planned_bytes


def test_concatenated_steps_plan_like_one_step():
    one = plan_arena(mlp_step(first_id=1))
    many_ops = [o for s in range(20) for o in mlp_step(first_id=1000 * (s + 1))]
    many = plan_arena(many_ops)
    assert len(many.op_names) == 20 * len(one.op_names)
    assert many.planned_bytes == one.planned_bytes and many.lower_bound_bytes == one.lower_bound_bytes
    assert many.naive_bytes == 20 * one.naive_bytes


def test_alignment_rounds_sizes():
    p = plan_arena([op("a", "matmul", [T(1, 3)], free=[1]), op("b", "matmul", [T(2, 17)], free=[2])], align_bytes=16)
    assert p.sizes == {1: 16, 2: 32} and p.naive_bytes == 48 and p.planned_bytes == 32


def test_empty_trace():
    p = plan_arena([], [T(1, 10, "weight")])
    assert (p.naive_bytes, p.lower_bound_bytes, p.planned_bytes, p.peak_op) == (10, 10, 10, -1)
    assert plan_arena([]).planned_bytes == 0


@pytest.mark.parametrize("ops, msg", [
    ([op("a", alloc=[T(1, 4)]), op("b", alloc=[T(1, 4)])], "already allocated"),
    ([op("a", free=[7])], "never allocated"),
    ([op("a", alloc=[T(1, 4)], free=[1]), op("b", free=[1])], "second time"),
    ([op("a", alloc=[T(1, -4)])], "nbytes"),
])
def test_malformed_trace_is_a_clear_error(ops, msg):
    with pytest.raises(ValueError, match=msg) as e:
        plan_arena(ops)
    assert "op " in str(e.value)


def test_bad_alignment():
    with pytest.raises(ValueError, match="align_bytes"):
        plan_arena([], align_bytes=0)


# --- property tests on random traces --------------------------------------------------------------

@st.composite
def traces(draw):
    n_ops = draw(st.integers(0, 40))
    ids = itertools.count(1)
    live: list[int] = []
    ops = []
    for i in range(n_ops):
        alloc = [T(next(ids), draw(st.integers(0, 512)), draw(st.sampled_from(TENSOR_KINDS)))
                 for _ in range(draw(st.integers(0, 3)))]
        free = [t for t in live if draw(st.booleans())]
        free += [t.id for t in alloc if draw(st.integers(0, 3)) == 0]   # temporaries
        live = [t for t in live if t not in free] + [t.id for t in alloc if t.id not in free]
        ops.append(op(f"op{i}", draw(st.sampled_from(OP_KINDS)), alloc, free))
    persistent = [T(next(ids), draw(st.integers(0, 300)), "weight") for _ in range(draw(st.integers(0, 3)))]
    return ops, persistent


@settings(max_examples=300, deadline=None)
@given(traces(), st.booleans())
def test_plan_properties(trace, inplace):
    ops, persistent = trace
    p = plan_arena(ops, persistent, inplace=inplace)
    check_plan(ops, persistent, p, inplace=inplace)


@settings(max_examples=100, deadline=None)
@given(traces())
def test_in_place_never_costs_more_lower_bound(trace):
    ops, persistent = trace
    with_inplace = plan_arena(ops, persistent, restarts=0).lower_bound_bytes
    assert with_inplace <= plan_arena(ops, persistent, inplace=False, restarts=0).lower_bound_bytes


def test_reuse_of_identical_pieces_changes_nothing():
    ops = [o for s in range(5) for o in mlp_step(first_id=1000 * (s + 1))]
    a, b = plan_arena(ops), plan_arena(ops, reuse=False)
    assert a.offsets == b.offsets and a.planned_bytes == b.planned_bytes


# --- real traces from the workloads zoo --------------------------------------------------------

def zoo_step(name, batch, **tech):
    import numpy as np

    import workloads

    job = workloads.make_job(name, pretrain=False, techniques=workloads.Techniques(**tech))
    stream = job.labelled_stream()
    xs, ys = zip(*(next(stream) for _ in range(batch)), strict=True)
    ops, _ = workloads.collect(job.train_step(np.stack(xs), np.asarray(ys)))
    return ops, job.persistent_tensors()


@pytest.mark.parametrize("name", ["mlp-digits", "lenet-digits", "dscnn-digits", "cnn1d-accel", "mlp-microbit"])
def test_zoo_step_plans_within_target(name):
    ops, pers = zoo_step(name, 8)
    p = plan_arena(ops, pers)
    check_plan(ops, pers, p)
    assert p.planned_bytes <= 1.05 * p.lower_bound_bytes
    assert p.naive_bytes > p.planned_bytes


@pytest.mark.parametrize("tech", [dict(), dict(fused_update=True), dict(recompute=True), dict(swap=True),
                                  dict(etf=True, update="last-k", last_k=2)])
def test_lenet_batch32_with_techniques(tech):
    ops, pers = zoo_step("lenet-digits", 32, **tech)
    p = plan_arena(ops, pers)
    check_plan(ops, pers, p)
    assert p.planned_bytes <= 1.05 * p.lower_bound_bytes


def test_numpy_sizes_give_plain_ints():
    import numpy as np

    p = plan_arena([op("a", "matmul", [T(1, np.int64(12))], free=[1])], [T(2, np.int32(8), "weight")])
    assert all(type(v) is int for v in [*p.offsets.values(), *p.sizes.values(), p.planned_bytes, p.naive_bytes])


def test_tensor_held_over_the_whole_trace_is_stacked_once():
    steps = [o for s in range(10) for o in mlp_step(first_id=1000 * (s + 1))]
    held = [op("hold", "copy", [T(1, 40, "input")])] + steps + [op("release", "copy", free=[1])]
    one = plan_arena(mlp_step(first_id=1))
    p = plan_arena(held)
    check_plan(held, (), p)
    assert p.offsets[1] == 0
    assert p.planned_bytes == one.planned_bytes + 40 == p.lower_bound_bytes
