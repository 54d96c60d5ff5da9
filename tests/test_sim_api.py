"""Cost model, verdict, determinism, predict_step, and the plan/demo commands on real workloads."""
from __future__ import annotations

import json

import pytest
from test_sim_support import TinyJob, unit_profile

from device_profiles.loader import load_profile
from simulator.cli import main
from simulator.cost import CostModel, op_cycles
from simulator.predict import predict_step
from simulator.result import RESULT_KEYS, RESULT_KEYS_ADDED
from simulator.run import run_scenario, simulate
from simulator.scenario import SCENARIO_DIR, load_scenario
from simulator.verdict import CONSTRAINT_NAMES, constraint, first_violation
from workloads.trace import Op

PICO_SMALL = {"name": "small", "device": "stm32f405-pyboard", "runtime": "native", "duration_s": 1800.0,
              "workload": {"model": "mlp-digits", "lr": 0.005},
              "pipeline": {"sensor_rate_hz": 8.0, "window": 8, "label_every": 2},
              "schedule": {"every_n": 8, "batch": 8, "steps": 2, "checkpoint_every_steps": 16}}


def test_op_cycles_follows_the_formula():
    rt = load_profile("bbc-microbit-v1").runtime_for("native")
    o, mac, mac8, elem, cp = (rt.op_overhead_cycles, rt.cycles_per_mac_f32, rt.cycles_per_mac_i8,
                              rt.cycles_per_elem_f32, rt.cycles_per_byte_copy)
    assert len({o, mac, mac8, elem}) == 4         # distinct coefficients: a mix-up cannot pass unnoticed
    assert op_cycles(Op("mm", "matmul", 1000, 0, 0), rt) == o + 1000 * mac
    assert op_cycles(Op("mm8", "conv", 1000, 0, 0, dtype="i8"), rt) == o + 1000 * mac8
    assert op_cycles(Op("relu", "eltwise", 0, 400, 400), rt) == o + 100 * elem
    assert op_cycles(Op("sum", "reduce", 0, 4000, 4), rt) == o + 1000 * elem
    assert op_cycles(Op("cp", "copy", 0, 64, 64), rt) == o + 128 * cp
    assert op_cycles(Op("up", "update", 50, 400, 200), rt) == o + 50 * mac
    with pytest.raises(ValueError, match="'x'.*unknown op kind 'teleport'"):
        op_cycles(Op("x", "teleport", 0, 0, 0), rt)


def test_cost_model_seconds_energy_and_flash():
    prof = unit_profile(flash_j_per_byte=1e-3)
    cm = CostModel(prof, "native")
    c, s, e = cm.cost(Op("mm", "matmul", 500_000, 0, 0))
    assert (c, s, e) == (500_000.0, 0.5, 0.5)
    c, s, e = cm.cost(Op("ckpt", "flash_write", 0, 0, 1000))
    bps = prof.flash.write_bytes_per_s
    assert c == 0.0 and s == pytest.approx(1000 / bps) and e == pytest.approx(1000 / bps + 1.0)


def test_constraint_margins_and_first_violation():
    assert constraint("peak_ram", 100, 80) == {"name": "peak_ram", "budget": 100, "observed": 80, "unit": "B",
                                               "margin": 20, "ok": True, "bound": "max"}
    low = constraint("battery_life", 7.0, 5.0)
    assert low["unit"] == "days" and low["bound"] == "min"
    assert low["margin"] == -2.0 and not low["ok"]
    assert constraint("battery_life", 7.0, None)["ok"]
    rows = [low, constraint("step_latency", 1.0, 2.0)]
    fv = first_violation(rows, {"battery_life": (86400.0, ""), "step_latency": (12.5, "train_step #3")}, None)
    assert fv["constraint"] == "step_latency" and fv["time_s"] == 12.5 and fv["op"] == "train_step #3"
    fatal = {"kind": "battery_empty", "time_s": 3.0, "op": "dense0.forward", "message": "battery empty"}
    fv = first_violation(rows, {"step_latency": (12.5, "")}, fatal)
    assert fv == {"constraint": "battery_life", "time_s": 3.0, "op": "dense0.forward", "message": "battery empty"}


def test_same_scenario_and_seed_give_byte_identical_json():
    def once(seed):
        sc = load_scenario({"name": "det", "device": "unit", "runtime": "native", "duration_s": 900.0, "seed": seed,
                            "schedule": {"every_n": 4, "memory_policy": "heap"}, "pipeline": {"label_every": 1}})
        return json.dumps(simulate(sc, job=TinyJob(in_dim=256, seed=seed), profile=unit_profile(clock_hz=1e4)), sort_keys=True)

    a, b = once(1), once(1)
    assert a == b
    r = json.loads(a)
    assert r["training_steps"] > 0 and r["preemptions"] > 0      # the run exercised preemption
    assert once(2) != a


@pytest.mark.slow
def test_real_workload_run_is_deterministic_and_complete():
    a = run_scenario(PICO_SMALL)
    b = run_scenario(PICO_SMALL)
    assert json.dumps(a, sort_keys=True) == json.dumps(b, sort_keys=True)
    assert set(RESULT_KEYS) <= set(a) and set(RESULT_KEYS_ADDED) <= set(a)
    assert a["training_steps"] > 0 and a["inferences"] > 0 and a["checkpoints"] >= 1
    assert a["macs_total"] > 0 and a["accuracy_after"] is not None
    names = [c["name"] for c in a["constraints"]]
    assert names == ["peak_ram", "flash", "step_latency", "deadline_miss_rate", "energy_per_day", "battery_life",
                     "flash_wear"]
    assert tuple(names) == CONSTRAINT_NAMES                    # the rows come from the one table, in its order
    mem = a["timelines"]["memory"]
    peak = max(sum(v[i] for v in mem["by_kind"].values()) for i in range(len(mem["time_s"])))
    assert peak == a["peak_ram_bytes"]          # the timeline reaches the reported peak
    assert a["lower_bound_ram_bytes"] <= a["planned_ram_bytes"] <= a["naive_ram_bytes"]


def test_predict_step_agrees_with_the_cost_model_and_heap():
    prof = unit_profile(overhead=4, block=8)
    p = predict_step(prof, "tiny", batch=4, job=TinyJob())
    # forward 4*24 + backward 4*24 MACs + update 24 MACs, one cycle each; softmax 12 elements
    assert p["macs"] == 4 * 24 * 2 + 24
    assert p["cycles"] == p["macs"] + 48 / 4
    assert p["instructions"] == p["cycles"] and p["seconds"] == p["cycles"] / 1e6
    # W (96 B) stays; then logits 48 + dlogits 48 (+4 B header each, 8-B blocks) then dW 96 ...
    assert p["heap_peak_bytes"] == 104 + 56 + 104 and p["lower_bound_bytes"] <= p["heap_peak_bytes"]
    assert p["fits_heap"]


def test_predict_step_on_a_real_workload():
    p = predict_step("stm32f405-pyboard", "mlp-digits", batch=2, runtime="micropython")
    prof = load_profile("stm32f405-pyboard")
    assert p["macs"] > 2 * (64 * 32 + 32 * 10) and p["cycles"] > p["macs"]   # MicroPython: many cycles per MAC
    assert p["seconds"] == pytest.approx(p["cycles"] / prof.core.clock_hz)
    assert p["heap_peak_bytes"] >= p["lower_bound_bytes"] > 0


def test_plan_fits_and_writes_the_result(tmp_path, capsys):
    rc = main(["plan", "--device", "stm32f405-pyboard", "--workload", "mlp-digits", "--batch", "4",
               "--duration-s", "600", "--technique", "fused_update", "--set", "workload.lr=0.005",
               "--out", str(tmp_path), "--json"])
    out = json.loads(capsys.readouterr().out)
    assert rc == 0 and out["fits"] is True
    for k in ("fits", "constraints", "first_violation", "peak_ram_bytes", "lower_bound_ram_bytes", "step_latency_s",
              "deadline_miss_rate", "energy_per_day_j", "battery_life_days", "macs_total", "accuracy_before",
              "accuracy_after", "dropped_frames"):
        assert k in out
    assert out["techniques"] == ["fused_update"]
    saved = json.loads((tmp_path / "result.json").read_text())
    assert saved["macs_total"] == out["macs_total"] and "timelines" in saved


def test_plan_that_runs_out_of_ram_exits_3_and_names_the_op(tmp_path, capsys):
    rc = main(["plan", "simulator/scenarios/microbit-oom.toml", "--out", str(tmp_path)])
    out = capsys.readouterr().out
    assert rc == 3
    assert "out of memory at op 'dense0.forward'" in out and "FAIL" in out
    r = json.loads((tmp_path / "result.json").read_text())
    assert r["fatal"]["kind"] == "out_of_memory" and r["fatal"]["op"] == "dense0.forward"


def test_plan_bad_input_exits_2_naming_the_field(tmp_path, capsys):
    bad = tmp_path / "bad.toml"
    bad.write_text('device = "stm32f405-pyboard"\n[schedule]\nbatch = -3\n')
    assert main(["plan", str(bad)]) == 2
    err = capsys.readouterr().err
    assert f"{bad}: schedule.batch must be an integer >= 1 (got -3)" in err
    assert main(["plan", "--device", "stm32f405-pyboard"]) == 2
    assert "--device and --workload" in capsys.readouterr().err
    assert main(["plan", "--device", "no-such-board", "--workload", "mlp-digits"]) == 2
    assert "no-such-board" in capsys.readouterr().err


@pytest.mark.slow
def test_demo_says_what_it_found(tmp_path, capsys):
    rc = main(["demo", "--duration-s", "3600", "--out", str(tmp_path)])
    out = capsys.readouterr().out
    assert rc == 0
    assert "Personalising lenet-digits on stm32f405-pyboard" in out and "variant plain backprop" in out
    r = json.loads((tmp_path / "result.json").read_text())
    labels = [c["label"] for c in r["comparison"]]
    assert labels[:2] == ["as scheduled", "plain backprop"] and len(labels) == 4
    plain, fused = r["comparison"][1], r["comparison"][0]
    assert plain["peak_ram_bytes"] > fused["peak_ram_bytes"]     # separate gradient buffers cost RAM
    # at the demo's batch both fit the pyboard and train the same steps with the same MACs: fused update only
    # saves the gradient buffers
    assert fused["fits"] and plain["fits"] and plain["macs_total"] == fused["macs_total"]
    assert r["fits"] and r["training_steps"] > 0 and r["accuracy_after"] > r["accuracy_before"]


def test_swap_to_flash_wears_the_flash_and_names_the_first_write():
    d = {"name": "swap", "device": "stm32f405-pyboard", "runtime": "native", "duration_s": 1800.0,
         "workload": {"model": "lenet-digits"}, "pipeline": {"label_every": 1},
         "schedule": {"every_n": 8, "techniques": {"swap": True, "fused_update": True}}}
    r = run_scenario(d)
    flash = load_profile("stm32f405-pyboard").flash
    wear = next(c for c in r["constraints"] if c["name"] == "flash_wear")
    steps_per_year = r["training_steps"] / 1800.0 * 365 * 86400
    assert r["swap_steps"] == r["training_steps"] > 0 and r["swap_region_bytes"] % flash.erase_page_bytes == 0
    assert wear["observed"] == pytest.approx(steps_per_year / flash.endurance_cycles, rel=1e-6) and not wear["ok"]
    assert r["first_violation"]["constraint"] == "flash_wear"
    assert r["first_violation"]["op"].startswith("swap_out.")
    no_swap = run_scenario({**d, "schedule": {"every_n": 8, "techniques": {"fused_update": True}}})
    assert no_swap["flash_wear_fraction_per_year"] == 0 and no_swap["fits"]


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(p.stem for p in SCENARIO_DIR.glob("*.toml")))
def test_every_bundled_scenario_runs(name):
    """Each example scenario, shortened to 15 simulated minutes, runs to a verdict."""
    from simulator.scenario import apply_overrides, scenario_dict

    r = run_scenario(apply_overrides(scenario_dict(name), {"duration_s": 900.0}), compare=False)
    assert r["scenario"] == name and isinstance(r["fits"], bool) and len(r["constraints"]) == 7
    assert r["inferences"] > 0 or r["fatal"] is not None


@pytest.mark.parametrize("case", ["tiny-preempted", "tiny-oom", "real-filtered"])
def test_heap_step_replay_changes_nothing(case):
    """The heap policy's replay of repeated steps gives byte-identical results to placing every tensor."""
    from simulator.inputs import job_for
    from simulator.simulation import Simulation

    def run(memo):
        if case.startswith("tiny"):
            sc = load_scenario({"name": "memo", "device": "unit", "runtime": "native", "duration_s": 900.0,
                                "schedule": {"every_n": 4, "memory_policy": "heap"}, "pipeline": {"label_every": 1}})
            job = TinyJob(in_dim=64, extra_bytes=0 if case == "tiny-preempted" else 3000)
            prof = unit_profile(clock_hz=1e4, ram_bytes=40_000 if case == "tiny-preempted" else 4_000)
            sim = Simulation(sc, prof, job, memo=memo)
        else:
            sc = load_scenario({**PICO_SMALL, "schedule": {**PICO_SMALL["schedule"], "memory_policy": "heap",
                                                           "techniques": {"instance_filter": 0.3}}})
            sim = Simulation(sc, load_profile(sc.device), job_for(sc), probe_job=job_for(sc), memo=memo)
        sim.run()
        return json.dumps(sim.result(), sort_keys=True), sim

    a, sim_a = run(True)
    b, _ = run(False)
    assert a == b
    assert sim_a.ram.memo.entries or case == "tiny-oom"      # the fast path was taken
    if case == "tiny-preempted":
        assert sim_a.executor.preemptions > 0                  # ... and the slow path, under preemption
    assert (json.loads(a)["fatal"] is not None) is (case == "tiny-oom")
