"""Timeline tests: tiny processes on the simulator's device model, asserted (name, env.now) logs."""
from __future__ import annotations

import pytest
import simpy
from hypothesis import given, settings
from hypothesis import strategies as st
from test_sim_support import TinyJob, unit_profile

from simulator.device import PRIO_INFERENCE, Device
from simulator.run import simulate
from simulator.run_end import BatteryEmpty, RunEnded
from simulator.scenario import load_scenario
from simulator.simulation import Simulation
from workloads.trace import Op, Tensor


def _sim(profile, policy="heap", **over):
    d = {"name": "t", "device": "unit", "runtime": "native", "duration_s": 100.0,
         "schedule": {"memory_policy": policy, "every_n": 10_000}, "power": {"idle_timeout_s": 0.0}}
    for k, v in over.items():
        d.setdefault(k, {}).update(v) if isinstance(v, dict) else d.__setitem__(k, v)
    sim = Simulation(load_scenario(d), profile, TinyJob())
    sim.setup()
    return sim


def _inference(sim, log, at, seconds, name="infer"):
    env, dev = sim.env, sim.device
    yield env.timeout(at)
    with dev.cpu.request(priority=PRIO_INFERENCE, preempt=True) as req:
        yield req
        start = env.now
        log.append((f"{name}.start", env.now))
        dev.begin(start)
        yield env.timeout(seconds)
        dev.end(start, env.now, "inference", seconds * dev.active_w)
        log.append((f"{name}.end", env.now))


def test_inference_preempts_training_and_memory_follows_the_ops():
    sim = _sim(unit_profile())
    env, log = sim.env, []
    x, y = Tensor(9001, 100, "activation", "x"), Tensor(9002, 40, "grad", "y")
    ops = [Op("step.a", "matmul", 2_000_000, 0, 0, alloc=(x,), free=(x.id,)),
           Op("step.b", "matmul", 3_000_000, 0, 0, alloc=(y,), free=(y.id,))]

    def training():
        log.append(("train.start", env.now))
        yield from sim.executor.run(ops, "training")
        log.append(("train.end", env.now))

    env.process(training())
    env.process(_inference(sim, log, at=1.0, seconds=0.5))
    env.run(until=20)
    assert log == [("train.start", 0.0), ("infer.start", 1.0), ("infer.end", 1.5), ("train.end", 5.5)]
    assert sim.device.cpu_log == [(0.0, 1.0, "training", True), (1.0, 1.5, "inference", False),
                                  (1.5, 5.5, "training", False)]
    assert sim.executor.preemptions == 1
    assert abs(sim.device.energy_active_j - 5.5) < 1e-9
    tl = sim.ram.timeline
    recs = [(k, t, d) for t, k, d in zip(tl.t, tl.k, tl.d, strict=True) if k in ("activation", "grad")]
    # step.a ran 0..1 and 1.5..2.5 (preempted in between): x is freed at 2.5, not at 2.0
    assert recs == [("activation", 0.0, 100), ("activation", 2.5, -100), ("grad", 2.5, 40), ("grad", 5.5, -40)]


def test_two_preemptions_in_one_op():
    sim = _sim(unit_profile())
    env, log = sim.env, []
    ops = [Op("long", "matmul", 4_000_000, 0, 0)]

    def training():
        yield from sim.executor.run(ops, "training")
        log.append(("train.end", env.now))

    env.process(training())
    env.process(_inference(sim, log, 1.0, 1.0, "i1"))
    env.process(_inference(sim, log, 3.0, 0.25, "i2"))
    env.run(until=20)
    assert log == [("i1.start", 1.0), ("i1.end", 2.0), ("i2.start", 3.0), ("i2.end", 3.25), ("train.end", 5.25)]
    assert sim.executor.preemptions == 2


def test_full_queue_drops_frames():
    # inference takes 3 s (24 MACs at 8 Hz), a window arrives every 1 s, the queue holds 2
    sim = _sim(unit_profile(clock_hz=8.0), policy="planned",
               pipeline={"sensor_rate_hz": 1.0, "window": 1, "queue_capacity": 2, "label_every": 1000},
               duration_s=13.0)
    sim.run()
    drops = [(stage, t) for stage, t in sim.pipeline_stats.drop_log]
    assert drops == [("window", 5.0), ("window", 6.0), ("window", 8.0), ("window", 9.0), ("window", 11.0),
                     ("window", 12.0)]
    assert sim.pipeline_stats.dropped_frames == 6 and sim.pipeline_stats.dropped_windows == 6
    assert sim.pipeline_stats.inferences == 4          # finished at 4, 7, 10, 13
    assert [s for s, e, task, _ in sim.device.cpu_log] == [1.0, 4.0, 7.0, 10.0]


def _battery(capacity_j, harvest=None, init=1.0, sleep_w=1.0):
    env = simpy.Environment()
    prof = unit_profile(sleep_w=sleep_w, idle_w=sleep_w)
    dev = Device(env, prof, capacity_j=capacity_j, initial_fraction=init, harvest_w_by_hour=harvest)
    log = []

    def watch():
        try:
            yield from dev.monitor(1.0)
        except BatteryEmpty as b:
            log.append(("empty", b.time_s))
            log.append(("noticed", env.now))

    env.process(watch())
    env.run(until=100)
    return dev, log


def test_battery_drains_while_sleeping():
    dev, log = _battery(10.0)
    assert log == [("empty", 10.0), ("noticed", 11.0)]
    assert dev.battery_log[:3] == [(0.0, 10.0), (1.0, 9.0), (2.0, 8.0)]


def test_harvesting_slows_the_drain_and_caps_at_capacity():
    dev, log = _battery(10.0, harvest=[0.5] * 24)
    assert log == [("empty", 20.0), ("noticed", 21.0)]
    dev, log = _battery(10.0, harvest=[1.5] * 24, init=0.5)
    assert log == []
    assert dev.battery.level == 10.0                  # full after 10 s, then the surplus is wasted
    assert abs(dev.wasted_harvest_j - (99 * 0.5 - 5.0)) < 1e-9   # sampled up to t=99


def test_battery_empties_during_an_op_and_names_it():
    sim = _sim(unit_profile(capacity_j=3.0, sleep_w=0.0, idle_w=0.0))
    env, log = sim.env, []
    ops = [Op("warm", "matmul", 1_000_000, 0, 0), Op("heavy", "matmul", 4_000_000, 0, 0)]

    def training():
        try:
            yield from sim.executor.run(ops, "training")
        except BatteryEmpty as b:
            log.append((f"empty:{b.op}", b.time_s))
            log.append(("noticed", env.now))

    env.process(training())
    env.run(until=20)
    assert log == [("empty:heavy", 3.0), ("noticed", 5.0)]


def test_fragmentation_fails_an_allocation_that_total_free_would_fit():
    # heap of 10 000 B: W (persistent, 2304 B for the tiny job's 8x3 f32... see below) then A, B, C, free A
    sim = _sim(unit_profile(ram_bytes=10_000))
    env, log = sim.env, []
    used = sim.ram.heap.used_bytes
    free = 10_000 - used
    a, b, c = Tensor(1, 4000, "activation"), Tensor(2, 2000, "activation"), Tensor(3, free - 6500, "activation")
    d = Tensor(4, 4400, "workspace")
    ops = [Op("fill", "matmul", 1_000_000, 0, 0, alloc=(a, b, c), free=(a.id,)),
           Op("big", "matmul", 1_000_000, 0, 0, alloc=(d,))]

    def training():
        try:
            yield from sim.executor.run(ops, "training")
        except RunEnded as f:
            log.append((f"{f.kind}:{f.op}", f.time_s))
            log.append(("noticed", env.now))

    env.process(training())
    env.run(until=20)
    assert log == [("fragmentation:big", 1.0), ("noticed", 2.0)]
    assert sim.ram.heap.free_bytes == 4500 and sim.ram.heap.largest_free_block() == 4000


def test_out_of_memory_stops_the_run_and_names_the_op():
    job = TinyJob(extra_bytes=50_000)
    sc = load_scenario({"name": "oom", "device": "unit", "runtime": "native", "duration_s": 600.0,
                        "schedule": {"memory_policy": "heap", "every_n": 4, "batch": 4},
                        "pipeline": {"label_every": 1}})
    r = simulate(sc, job=job, profile=unit_profile(ram_bytes=40_000))
    assert r["fits"] is False
    assert r["fatal"]["kind"] == "out_of_memory" and r["fatal"]["op"] == "loss.softmax_xent"
    assert r["first_violation"]["constraint"] == "peak_ram"
    assert r["first_violation"]["op"] == "loss.softmax_xent"
    assert 0 < r["fatal"]["time_s"] < 600


def test_planned_arena_too_big_fails_at_setup_naming_the_op():
    job = TinyJob(extra_bytes=50_000)
    sc = load_scenario({"name": "oom", "device": "unit", "runtime": "native", "duration_s": 60.0,
                        "schedule": {"memory_policy": "planned"}})
    r = simulate(sc, job=job, profile=unit_profile(ram_bytes=40_000))
    assert r["fatal"]["kind"] == "out_of_memory"
    assert r["fatal"]["op"] == "loss.softmax_xent" and r["fatal"]["time_s"] == 0.0
    assert r["training_steps"] == 0


def _train_starts(sim):
    starts, prev_pre = [], False
    for s, _, task, pre in sim.device.cpu_log:
        if task == "training" and not prev_pre:
            starts.append(s)
        prev_pre = pre if task == "training" else prev_pre
    return starts


def test_periodic_trigger_trains_on_the_period():
    sim = _sim(unit_profile(clock_hz=1e5), policy="planned", duration_s=350.0,
               pipeline={"sensor_rate_hz": 0.5, "window": 1, "label_every": 1},
               schedule={"trigger": "periodic", "period_s": 100.0, "steps": 1})
    sim.run()
    log = [("train_step", round(t - lat, 9)) for (_, t, _), lat in zip(sim.training.stats.losses, sim.training.stats.step_latencies, strict=True)]
    assert log == [("train_step", 100.0), ("train_step", 200.0), ("train_step", 300.0)]
    assert sim.training.stats.steps == 3


def test_charging_trigger_trains_only_while_harvesting():
    harvest = [0.0] * 24
    harvest[1] = 0.001                      # the panel delivers power from 01:00 to 02:00 only
    sim = _sim(unit_profile(clock_hz=1e5), policy="planned", duration_s=3 * 3600.0,
               pipeline={"sensor_rate_hz": 0.1, "window": 1, "label_every": 1},
               schedule={"trigger": "charging", "every_n": 4, "steps": 2}, battery={"harvest_w_by_hour": harvest})
    sim.run()
    starts = [t for _, t, _ in sim.training.stats.losses]
    assert sim.training.stats.steps > 10
    assert all(3600.0 <= t < 7200.0 + 1.0 for t in starts), (min(starts), max(starts))
    assert sim.device.harvested_j > 0


def test_an_empty_battery_stops_the_run_with_its_time():
    sc = load_scenario({"name": "flat", "device": "unit", "runtime": "native", "duration_s": 86400.0,
                        "power": {"idle_timeout_s": 0.0}, "schedule": {"every_n": 8}})
    r = simulate(sc, job=TinyJob(), profile=unit_profile(capacity_j=50.0, sleep_w=0.01))
    f = r["fatal"]
    assert f["kind"] == "battery_empty" and f["op"] in ("sleep", "idle", "fc.forward", "fc.update")
    active = r["energy_j"]["active"]
    assert f["time_s"] == pytest.approx((50.0 - active) / 0.01, rel=1e-3)    # sleep drain + the work done
    assert r["battery_life_days"] == pytest.approx(f["time_s"] / 86400)
    assert r["first_violation"]["constraint"] == "battery_life" and not r["fits"]
    assert r["timelines"]["battery"]["charge_j"][-1] < 1.0
    from simulator.verdict import summarise
    assert f"The run stopped at t={f['time_s']:.1f} s: battery empty" in summarise(r)


@settings(max_examples=40, deadline=None)
@given(durs=st.lists(st.integers(1, 50), min_size=1, max_size=6),
       arrivals=st.lists(st.tuples(st.integers(0, 300), st.integers(1, 30)), max_size=5))
def test_preemption_keeps_time_energy_and_memory_consistent(durs, arrivals):
    """Any pattern of inference arrivals: segments never overlap, training gets exactly its op time,
    energy follows busy time, and every tensor the step allocated is freed at a time inside the run."""
    sim = _sim(unit_profile())
    env, log = sim.env, []
    ops = [Op(f"op{i}", "matmul", d * 10_000, 0, 0, alloc=(Tensor(5000 + i, 10 * (i + 1), "activation"),),
              free=(5000 + i,)) for i, d in enumerate(durs)]

    def training():
        yield from sim.executor.run(ops, "training")
        log.append(("train.end", env.now))

    env.process(training())
    for k, (at, d) in enumerate(arrivals):
        env.process(_inference(sim, [], at / 100, d / 100, f"i{k}"))
    env.run(until=100)
    cpu = sorted(sim.device.cpu_log)
    assert all(a[1] <= b[0] + 1e-12 for a, b in zip(cpu, cpu[1:], strict=False))
    train_time = sum(e - s for s, e, task, _ in cpu if task == "training")
    assert train_time == pytest.approx(sum(durs) / 100)
    busy = sum(e - s for s, e, _, _ in cpu)
    assert sim.device.energy_active_j == pytest.approx(busy)          # 1 W while busy
    recs = [(t, d) for t, k, d in sim.ram.timeline.recs if k == "activation"]
    assert sum(d for _, d in recs) == 0 and len(recs) == 2 * len(durs)
    assert max(t for t, _ in recs) == pytest.approx(log[0][1])
    assert sim.executor.preemptions == sum(1 for s, e, task, pre in cpu if task == "training" and pre)


@pytest.mark.parametrize("trigger, preempted", [("every-n", True), ("idle", False)])
def test_idle_trigger_trains_in_gaps_and_is_never_preempted(trigger, preempted):
    # a window every 1 s, inference 0.24 s (24 MACs at 100 Hz); a batch-1 step 0.75 s (72 MACs + 3 elements)
    sim = _sim(unit_profile(clock_hz=100.0), policy="planned", duration_s=60.0,
               pipeline={"sensor_rate_hz": 1.0, "window": 1, "label_every": 1, "deadline_s": 5.0},
               schedule={"trigger": trigger, "every_n": 2, "batch": 1, "steps": 2})
    sim.run()
    assert sim.training.stats.steps > 10
    assert (sim.executor.preemptions > 0) is preempted
    if trigger == "idle":
        starts = [round(t - lat, 9) for (_, t, _), lat in zip(sim.training.stats.losses, sim.training.stats.step_latencies, strict=True)]
        assert all(round(s % 1.0, 9) == 0.24 for s in starts)   # right after an inference, with 0.76 s free


def test_idle_trigger_gives_up_when_no_gap_holds_a_step():
    sim = _sim(unit_profile(clock_hz=48.0), policy="planned", duration_s=30.0,
               pipeline={"sensor_rate_hz": 1.0, "window": 1, "label_every": 1, "deadline_s": 5.0},
               schedule={"trigger": "idle", "every_n": 2, "batch": 1, "steps": 1})
    sim.run()                                # a step takes 1.5 s, a window comes every 1 s
    assert sim.training.stats.steps == 0 and sim.training.stats.idle_skips > 5


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 1000), st.sampled_from(["weight", "activation", "grad"]),
                          st.integers(1, 500)), min_size=1, max_size=300),
       st.integers(2, 40))
def test_memory_series_keeps_the_peak_when_down_sampled(allocs, max_points):
    from simulator.timeline import MemTimeline

    tl = MemTimeline()
    for t, kind, size in allocs:             # each tensor lives for 10 s
        tl.add(float(t), kind, size)
        tl.add(float(t + 10), kind, -size)
    full = tl.series(until_s=2000.0, max_points=10**9)
    small = tl.series(until_s=2000.0, max_points=max_points)
    total = lambda s: [sum(v[i] for v in s["by_kind"].values()) for i in range(len(s["time_s"]))]  # noqa: E731
    assert len(small["time_s"]) <= max_points
    assert max(total(small)) == max(total(full))
    assert total(full)[-1] == 0 and small["time_s"] == sorted(small["time_s"])
    # the exact peak: sweep the events in time order, frees before allocs at equal times
    events = sorted([(t, s) for t, _, s in allocs] + [(t + 10, -s) for t, _, s in allocs], key=lambda e: (e[0], e[1]))
    live, peak = 0, 0
    for _, d in events:
        live += d
        peak = max(peak, live)
    assert max(total(full)) <= peak
