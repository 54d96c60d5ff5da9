"""Long horizons (issue #13): recorded steps, repeated days charged as a whole, bounded timelines, and a
horizon the machine cannot hold refused before it starts."""
from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from test_sim_support import TinyJob, unit_profile

from simulator.horizon import check_horizon
from simulator.run import simulate
from simulator.scenario import load_scenario
from simulator.timeline import MemTimeline, SampleLog, StreamingMemTimeline

DAY = 86400.0


def _run(days: float, fidelity: str = "auto", capacity_j: float = 1e9, **over):
    d = {"name": "long", "device": "unit", "runtime": "native", "duration_s": days * DAY,
         "pipeline": {"sensor_rate_hz": 1 / 60, "window": 1, "label_every": 2},
         "schedule": {"every_n": 50, "batch": 4, "steps": 3, "checkpoint_every_steps": 7},
         "power": {"idle_timeout_s": 0.01}, "fidelity": {"mode": fidelity, "real_rounds": 2}}
    d.update(over)
    prof = unit_profile(clock_hz=2e4, capacity_j=capacity_j, sleep_w=0.001, idle_w=0.01)
    return simulate(load_scenario(d), job=TinyJob(in_dim=64), profile=prof)


def test_a_day_runs_every_step_real():
    r = _run(1.0)
    assert r["training_steps"] > 0 and r["training_steps_real"] == r["training_steps"]
    assert r["training_steps_replayed"] == 0 and r["horizon"] is None and r["fidelity"] == "auto"


def test_charged_days_agree_with_every_event_simulated():
    auto, full = _run(12.0), _run(12.0, "full")
    assert auto["training_steps_replayed"] > 0 and auto["horizon"]["days_charged"] > 0
    assert full["training_steps_replayed"] == 0 and full["horizon"]["days_charged"] == 0
    assert auto["training_steps_real"] < full["training_steps_real"] == full["training_steps"]
    # a trigger every 6000 s repeats with the day only every 5 days: the template is that 5-day period
    assert auto["horizon"]["template_days"] == 5
    for k in ("training_steps", "inferences", "labels", "checkpoints", "macs_total", "flash_writes_bytes"):
        assert auto[k] == full[k], k
    for k in ("energy_per_day_j", "battery_life_days", "flash_wear_fraction_per_year"):
        assert auto[k] == pytest.approx(full[k], rel=1e-4), k
    for k in ("active", "idle", "sleep"):
        assert auto["time_in_state_s"][k] == pytest.approx(full["time_in_state_s"][k], rel=0.01), k
    # the first day is simulated alike, and is what a one-day run says
    one = _run(1.0)
    first = auto["horizon"]["first_day"]
    assert first == full["horizon"]["first_day"]
    assert first["energy_per_day_j"] == pytest.approx(one["energy_per_day_j"], rel=1e-9)
    assert first["battery_charge_j"] == pytest.approx(one["timelines"]["battery"]["charge_j"][-1], rel=1e-9)
    assert first["flash_wear_per_year"] == pytest.approx(one["flash_wear_fraction_per_year"], rel=1e-9)
    # bounded timelines cover the horizon
    assert auto["timelines"]["battery"]["time_s"][-1] == pytest.approx(12 * DAY, rel=1e-3)
    assert len(auto["timelines"]["cpu_busy_by_hour"]) == pytest.approx(12 * 24, abs=1)


def test_the_battery_runs_empty_where_every_event_says():
    # about 9 days of charge: empties inside the charged days
    probe = _run(2.0, "full")
    cap = probe["energy_per_day_j"] * 9.3
    auto, full = _run(20.0, capacity_j=cap), _run(20.0, "full", capacity_j=cap)
    assert full["fatal"]["kind"] == auto["fatal"]["kind"] == "battery_empty"
    assert auto["horizon"]["days_charged"] > 0
    assert auto["fatal"]["time_s"] == pytest.approx(full["fatal"]["time_s"], rel=0.005)
    assert auto["battery_life_days"] == pytest.approx(full["battery_life_days"], rel=0.005)
    assert auto["timelines"]["battery"]["charge_j"][-1] == 0.0 and not auto["fits"]


@settings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(st.floats(0, 5000), st.sampled_from(["weight", "activation", "grad"]),
                          st.integers(1, 500)), min_size=1, max_size=300), st.integers(1, 4))
def test_streaming_memory_timeline_keeps_the_peak_in_bounded_points(allocs, folds):
    exact, stream = MemTimeline(), StreamingMemTimeline(horizon_s=6000.0)
    for tl in (exact, stream):
        for t, kind, size in allocs:
            tl.add(t, kind, size)
            tl.add(t + 10, kind, -size)
    for k in range(1, folds):              # folding in pieces gives the same as folding once
        stream.fold(5000.0 * k / folds)
    full, small = exact.series(10_000.0, max_points=10**9), stream.series(10_000.0)
    total = lambda s: [sum(v[i] for v in s["by_kind"].values()) for i in range(len(s["time_s"]))]  # noqa: E731
    assert max(total(small)) == max(total(full)) and min(total(small)) == min(total(full))
    assert total(small)[-1] == 0 and small["time_s"] == sorted(small["time_s"])
    assert len(small["time_s"]) <= 3 * (6000.0 // stream.bucket_s + 1)


def test_sample_log_is_exact_for_short_horizons_and_bounded_for_long_ones():
    short = SampleLog(horizon_s=DAY, sample_s=300.0)
    for i in range(289):
        short.append((i * 300.0, 100.0 - i))
    assert len(short) == 289 and list(short)[5] == (1500.0, 95.0) and short[-1] == (86400.0, -188.0)
    long = SampleLog(horizon_s=365 * DAY, sample_s=300.0)
    for i in range(105_121):
        long.append((i * 300.0, float((i * 7919) % 1000)))
    pts = list(long)
    assert len(pts) <= 4000 and min(v for _, v in pts) == 0.0 and long[-1] == (105_120 * 300.0, pts[-1][1])


def test_a_horizon_the_machine_cannot_hold_is_refused_before_it_starts():
    check_horizon(365 * DAY, "demo.toml", available=1 << 33)          # a year fits in 8 GB
    with pytest.raises(ValueError, match=r"demo.toml: duration_s = 1e\+12 s .* cannot be held here"):
        check_horizon(1e12, "demo.toml", available=1 << 33)


def test_plan_refuses_an_impossible_horizon_with_exit_2(tmp_path, capsys):
    from simulator.cli import main

    rc = main(["plan", "simulator/scenarios/demo.toml", "--set", "duration_s=1e12", "--out", str(tmp_path / "o")])
    assert rc == 2 and "duration_s = 1e+12 s" in capsys.readouterr().err
    assert not (tmp_path / "o" / "result.json").exists()


def test_heap_policy_charged_days_keep_the_peak_and_agree():
    over = {"schedule": {"every_n": 50, "batch": 4, "steps": 3, "checkpoint_every_steps": 7,
                         "memory_policy": "heap"}}
    auto, full = _run(8.0, **over), _run(8.0, "full", **over)
    assert auto["horizon"]["days_charged"] > 0 and auto["training_steps_replayed"] > 0
    assert auto["peak_ram_bytes"] == full["peak_ram_bytes"]
    mem = auto["timelines"]["memory"]
    top = max(sum(v[i] for v in mem["by_kind"].values()) for i in range(len(mem["time_s"])))
    assert top == auto["peak_ram_bytes"] and mem["time_s"][-1] > 7 * DAY   # the charged days are drawn too
    for k in ("training_steps", "inferences", "energy_per_day_j"):
        assert auto[k] == pytest.approx(full[k], rel=0.01), k


def test_fidelity_flag_sets_the_scenario_field():
    import argparse

    from simulator.cli.plan import overrides_from_args

    args = argparse.Namespace(technique=None, set=None, fidelity="full")
    assert overrides_from_args(args) == {"fidelity.mode": "full"}
    with pytest.raises(ValueError, match="fidelity.mode must be one of auto, full"):
        load_scenario({"fidelity": {"mode": "fast"}})


def test_replay_starts_after_the_first_day_once_the_loss_curve_is_flat():
    from simulator.config import FidelityConfig
    from simulator.fidelity import DAY_S, FLAT_ROUNDS, Fidelity
    from workloads.trace import Op, Tensor

    t = Tensor(1, 8, "activation")
    ops = [Op("a", "matmul", 4, 0, 0, alloc=(t,)), Op("b", "eltwise", 0, 8, 8, free=(1,))]
    f = Fidelity(FidelityConfig("auto", 0), seed=0)
    f.record_inference(ops)
    for loss in [2.0, 1.0, 0.5, 0.3] + [0.2] * (2 * FLAT_ROUNDS):
        f.record_step(ops, loss)
        f.end_round(0.5 * DAY_S)              # the first day: always real
    assert not f.replaying
    f.record_step(ops, 0.2)
    f.end_round(1.2 * DAY_S)                  # after it, a flat curve starts replay
    assert f.replaying and f.replay_from_s == 1.2 * DAY_S and f.step_trace() is ops
    moving = Fidelity(FidelityConfig("auto", 0), seed=0)
    moving.record_inference(ops)
    for k in range(3 * FLAT_ROUNDS):
        moving.record_step(ops, 2.0 / (k + 1))
        moving.end_round(1.5 * DAY_S)
    assert not moving.replaying               # still learning
    leaky = Fidelity(FidelityConfig("auto", 1), seed=0)
    leaky.record_inference(ops)
    leaky.record_step([Op("a", "matmul", 4, 0, 0, alloc=(Tensor(2, 8, "activation"),))], 0.1)
    leaky.end_round(2 * DAY_S)
    assert not leaky.replaying                # a step that keeps memory cannot be charged again
    full = Fidelity(FidelityConfig("full", 0), seed=0)
    full.record_inference(ops)
    full.record_step(ops, 0.1)
    full.end_round(5 * DAY_S)
    assert not full.replaying
