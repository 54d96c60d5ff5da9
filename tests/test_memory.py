"""The heap model: real offsets, block rounding, coalescing, and fragmentation told apart from OOM."""
from __future__ import annotations

from types import SimpleNamespace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from simulator.memory import Fragmentation, Heap, OutOfMemory


@pytest.mark.parametrize("kwargs, field", [
    (dict(capacity_bytes=0), "capacity_bytes"),
    (dict(capacity_bytes=-5), "capacity_bytes"),
    (dict(capacity_bytes=1.5), "capacity_bytes"),
    (dict(capacity_bytes=100, block_bytes=0), "block_bytes"),
    (dict(capacity_bytes=100, overhead_bytes=-1), "overhead_bytes"),
    (dict(capacity_bytes=100, policy="worst-fit"), "policy"),
    (dict(capacity_bytes=8, block_bytes=16), "capacity_bytes"),
    (dict(capacity_bytes=True), "capacity_bytes"),
])
def test_constructor_rejects_bad_input(kwargs, field):
    with pytest.raises(ValueError, match=field):
        Heap(**kwargs)


def test_rounding_to_blocks_with_overhead():
    h = Heap(1000, block_bytes=16, overhead_bytes=4)
    assert h.capacity_bytes == 992          # whole blocks only
    assert h.alloc(1, 12, "activation") == 0      # 12 + 4 = 16: one block
    assert h.alloc(2, 13, "activation") == 16     # 13 + 4 = 17: two blocks
    assert h.alloc(3, 0, "workspace") == 48       # even an empty object takes a block
    assert h.used_bytes == 64
    assert h.used_by_kind() == {"activation": 48, "workspace": 16}


def test_numpy_integers_are_accepted():
    import numpy as np

    h = Heap(np.int64(64), block_bytes=np.int32(8))
    assert h.alloc(1, np.int64(9), "activation") == 0 and h.used_bytes == 16
    assert type(h.used_bytes) is int


def test_for_runtime_uses_block_and_overhead():
    rt = SimpleNamespace(heap_block_bytes=16, alloc_overhead_bytes=8)
    h = Heap.for_runtime(256, rt, policy="best-fit")
    assert (h.block_bytes, h.overhead_bytes, h.policy) == (16, 8, "best-fit")
    h.alloc(1, 9, "weight")
    assert h.used_bytes == 32


def test_free_coalesces_both_sides():
    h = Heap(100)
    for i in range(5):
        h.alloc(i, 20, "activation")
    h.free(1)
    h.free(3)
    assert h.holes() == [(20, 20), (60, 20)]
    h.free(2)   # joins the holes before and after
    assert h.holes() == [(20, 60)]
    assert h.largest_free_block() == 60
    h.free(0)
    h.free(4)
    assert h.holes() == [(0, 100)]
    assert h.used_bytes == 0 and h.peak_bytes == 100


def test_first_fit_vs_best_fit():
    def setup(policy):
        h = Heap(100, policy=policy)
        for i, n in enumerate([30, 10, 10, 10, 40]):
            h.alloc(i, n, "activation")
        h.free(0)   # hole of 30 at 0
        h.free(2)   # hole of 10 at 40
        return h
    assert setup("first-fit").alloc(9, 10, "grad") == 0
    assert setup("best-fit").alloc(9, 10, "grad") == 40


def test_fragmentation_is_not_out_of_memory():
    h = Heap(100, block_bytes=10)
    for i in range(10):
        h.alloc(i, 10, "activation")
    for i in (1, 3, 5, 7):
        h.free(i)
    with pytest.raises(Fragmentation) as e:
        h.alloc(99, 20, "grad", op_name="dense1.backward")
    err = e.value
    assert (err.total_free, err.largest_free, err.need, err.op_name) == (40, 10, 20, "dense1.backward")
    assert err.kind == "fragmentation"
    assert "dense1.backward" in str(err) and "20 B" in str(err)
    with pytest.raises(OutOfMemory) as e2:
        h.alloc(98, 50, "grad", op_name="x")
    assert type(e2.value) is OutOfMemory and e2.value.kind == "out_of_memory"
    assert isinstance(e2.value, MemoryError)
    assert 99 not in h and 98 not in h and h.used_bytes == 60   # failed allocs leave no trace


def test_double_alloc_and_bad_free_are_errors():
    h = Heap(64)
    h.alloc(1, 8, "weight")
    with pytest.raises(ValueError, match="already allocated"):
        h.alloc(1, 8, "weight")
    with pytest.raises(ValueError, match="not allocated"):
        h.free(2)
    with pytest.raises(ValueError, match="nbytes"):
        h.alloc(3, -1, "weight")


# --- property test against a byte-map reference -------------------------------------------------

def _holes(occupied: list[bool]) -> list[tuple[int, int]]:
    out, i, n = [], 0, len(occupied)
    while i < n:
        if occupied[i]:
            i += 1
            continue
        j = i
        while j < n and not occupied[j]:
            j += 1
        out.append((i, j - i))
        i = j
    return out


actions = st.lists(st.tuples(st.booleans(), st.integers(0, 60), st.integers(0, 10_000)), max_size=80)


@settings(max_examples=150, deadline=None)
@given(actions=actions, block=st.sampled_from([1, 4, 16]), overhead=st.sampled_from([0, 4]),
       policy=st.sampled_from(["first-fit", "best-fit"]))
def test_heap_matches_reference(actions, block, overhead, policy):
    cap = 256
    h = Heap(cap, block_bytes=block, overhead_bytes=overhead, policy=policy)
    occupied = [False] * h.capacity_bytes
    live: dict[int, tuple[int, int]] = {}
    next_id = high_water = 0
    for is_alloc, nbytes, pick in actions:
        if is_alloc or not live:
            need = max(-(-(nbytes + overhead) // block) * block, block)
            holes = _holes(occupied)
            fits = [hl for hl in holes if hl[1] >= need]
            if not fits:
                exc = Fragmentation if need <= sum(s for _, s in holes) else OutOfMemory
                with pytest.raises(exc):
                    h.alloc(next_id, nbytes, "activation")
            else:
                want = fits[0][0] if policy == "first-fit" else min(fits, key=lambda hl: (hl[1], hl[0]))[0]
                off = h.alloc(next_id, nbytes, "activation")
                assert off == want and off % block == 0
                assert not any(occupied[off:off + need])
                for b in range(off, off + need):
                    occupied[b] = True
                live[next_id] = (off, need)
                high_water = max(high_water, off + need)
            next_id += 1
        else:
            tid = sorted(live)[pick % len(live)]
            off, need = live.pop(tid)
            h.free(tid)
            for b in range(off, off + need):
                occupied[b] = False
        assert h.used_bytes == sum(n for _, n in live.values()) == sum(occupied)
        assert h.holes() == _holes(occupied)     # coalesced: no two holes touch
        assert h.largest_free_block() == max((s for _, s in _holes(occupied)), default=0)
        assert h.peak_bytes >= h.used_bytes
        assert h.high_water_bytes == high_water


def test_place_trace_names_the_op_and_tracks_high_water():
    from simulator.memory import place_trace
    from workloads.trace import Op, Tensor

    ops = [Op("a", "matmul", 0, 0, 0, alloc=(Tensor(1, 40, "activation"), Tensor(2, 10, "activation"))),
           Op("b", "eltwise", 0, 0, 0, free=(1,)),
           Op("c", "matmul", 0, 0, 0, alloc=(Tensor(3, 20, "grad"),), free=(2, 3))]
    h = place_trace(Heap(100), ops, [Tensor(9, 30, "weight")])
    assert (h.used_bytes, h.peak_bytes, h.high_water_bytes) == (30, 80, 80)
    h2 = Heap(100)
    h2.alloc(0, 45, "weight")
    with pytest.raises(OutOfMemory) as e:
        place_trace(h2, ops[:1] + [Op("big", "conv", 0, 0, 0, alloc=(Tensor(4, 50, "workspace"),))])
    assert e.value.op_name == "big" and e.value.need == 50 and e.value.total_free == 5
