"""MicroPython's garbage collector in the plan's own step time (docs/architecture.md §3): every op pays the
collections its garbage causes at the live bytes the trace holds there -- the term `edgesim emulate` and
`--verify` already predicted, now in the verdict's step latency and energy too."""
from __future__ import annotations

import dataclasses

import pytest
from test_sim_support import unit_profile

from device_profiles.loader import load_profile
from simulator.cost import CostModel
from simulator.predict import predict_step
from simulator.run import run_scenario
from workloads.trace import Op, Tensor

GC = {"gc_garbage_bytes_per_cycle": 1.0, "gc_collection_cycles": 1000.0, "gc_cycles_per_live_byte": 2.0}


def _with_gc(profile, **figures):
    rt = dataclasses.replace(profile.runtime["native"], **figures)
    return dataclasses.replace(profile, runtime={"native": rt})


def test_each_op_pays_the_collections_its_garbage_causes_at_its_live_bytes():
    cm = CostModel(_with_gc(unit_profile(), **GC), "native")
    ops = [Op("a", "matmul", 100, 0, 0, alloc=(Tensor(1, 40, "activation"),)),
           Op("b", "matmul", 100, 0, 0, alloc=(Tensor(2, 40, "activation"),), free=(1,)),
           Op("c", "matmul", 50, 0, 0, free=(2,))]
    assert cm.gc_cycles_by_op(ops) == [0.0, 0.0, 0.0]           # no heap named yet: nothing charged
    assert cm.collect_garbage(200, 60, lambda n: n)
    # a: live 60 + 40 = 100, free 100, garbage 100 B -> 1 collection marking 100 B: 1000 + 2 x 100
    # b: live 60 + 40 + 40 = 140 (tensor 1 is freed after b), free 60, garbage 100 -> 1 x (1000 + 2 x 140)
    # c: live 60 + 40 = 100, free 100, garbage 50 -> none
    assert cm.gc_cycles_by_op(ops) == [1200.0, 1280.0, 0.0]
    cum_t, cum_e = cm.cumulative(ops)
    assert cum_t[-1] == pytest.approx((250 + 1200 + 1280) / 1e6)
    assert cum_e[-1] == pytest.approx(cum_t[-1] * 1.0)          # 1 W active


def test_a_runtime_without_gc_figures_charges_none():
    cm = CostModel(unit_profile(), "native")
    assert not cm.collect_garbage(200, 60, lambda n: n)
    ops = [Op("a", "matmul", 100, 0, 0, alloc=(Tensor(1, 40, "activation"),))]
    assert cm.gc_cycles_by_op(ops) == [0.0] and cm.cumulative(ops)[0][-1] == pytest.approx(100 / 1e6)


def test_predict_step_counts_the_collections_in_its_cycles():
    p = predict_step("stm32f405-pyboard", "lenet-digits", batch=4, runtime="micropython")
    assert 0 < p["gc_cycles"] < p["cycles"]
    prof = load_profile("stm32f405-pyboard")
    assert p["seconds"] == pytest.approx(p["cycles"] / prof.core.clock_hz)


def test_the_plans_micropython_step_time_includes_the_collections(monkeypatch):
    """The same scenario with the profile's GC figures removed steps faster by the share predict_step gives."""
    sc = {"name": "gc", "device": "stm32f405-pyboard", "runtime": "micropython", "duration_s": 900.0,
          "workload": {"model": "lenet-digits"}, "schedule": {"batch": 4, "every_n": 16, "steps": 1}}
    with_gc = run_scenario(sc, compare=False)
    share = (lambda p: p["gc_cycles"] / p["cycles"])(predict_step("stm32f405-pyboard", "lenet-digits", batch=4,
                                                                  runtime="micropython"))
    real = load_profile("stm32f405-pyboard")
    rt = dataclasses.replace(real.runtime["micropython"], gc_garbage_bytes_per_cycle=None)
    import simulator.inputs

    monkeypatch.setattr(simulator.inputs, "load_profile",
                        lambda name: dataclasses.replace(real, runtime={**real.runtime, "micropython": rt}))
    without = run_scenario(sc, compare=False)
    assert with_gc["training_steps"] > 0 and share > 0.02
    assert with_gc["step_latency_s"] > without["step_latency_s"]
    ratio = without["mean_step_latency_s"] / with_gc["mean_step_latency_s"]
    assert ratio == pytest.approx(1 - share, rel=0.05)
    assert with_gc["energy_per_day_j"] > without["energy_per_day_j"]
