"""Imperfect-data stories and techniques in scenarios (issue #15): validated keys, and each technique's
cost where the simulator charges it (MACs, RAM, energy)."""
import pytest

from simulator.inputs import job_for
from simulator.run import run_scenario
from simulator.scenario import apply_overrides, load_scenario, scenario_dict


@pytest.mark.parametrize("override, words", [
    ({"workload.story": "noisy-labels", "workload.label_noise": 1.5}, ["workload.label_noise", "1.5"]),
    ({"workload.label_fraction": -0.2}, ["workload.label_fraction", "-0.2"]),
    ({"workload.noise_level": "loud"}, ["workload.noise_level", "'loud'"]),
    ({"workload.label_noise_kind": "random"}, ["workload.label_noise_kind", "'random'"]),
    ({"schedule.batch": 8, "schedule.techniques.buffer": "fifo", "schedule.techniques.buffer_size": 4},
     ["schedule.techniques.buffer_size", "4", "schedule.batch 8"]),
    ({"schedule.techniques.sinkhorn": 0}, ["sinkhorn", "0"]),
    ({"schedule.techniques.self_adaptiv": 0.9}, ["unknown technique 'self_adaptiv'"]),
])
def test_bad_imperfect_data_keys_name_field_and_value(override, words):
    with pytest.raises(ValueError) as e:
        load_scenario(apply_overrides(scenario_dict("demo"), override))
    for w in words:
        assert w in str(e.value)


def test_story_options_reach_the_job():
    sc = load_scenario(apply_overrides(scenario_dict("noisy-labels"), {"workload.label_noise": 0.2}))
    job = job_for(sc)
    y, y_true = job.split.user_train[1], job.split.user_train_clean
    assert int((y != y_true).sum()) == round(0.2 * len(y))
    names = {t.name: t.nbytes for t in job.persistent_tensors()}
    assert names["self_adaptive.targets"] == len(y) * 10 * 4


@pytest.mark.parametrize("name, state, without_it", [("noisy-labels", "self_adaptive.targets", {}),
                                                    ("unlabelled", "buffer.representative", {}),
                                                    ("input-noise", "noise_bias.table", {"update": "bias"})])
def test_each_technique_costs_ram_in_the_plan(name, state, without_it):
    """The scenario's technique state is RAM the run holds: the same scenario without the technique
    (input-noise: one bias set trained bias-only) peaks lower by at least that state's bytes."""
    # input-noise: a new noise level first calibrates (16 forward-only batches): an hour reaches its bias steps
    d = apply_overrides(scenario_dict(name), {"duration_s": 3600.0 if name == "input-noise" else 1200.0})
    state_bytes = next(t.nbytes for t in job_for(load_scenario(d)).persistent_tensors() if t.name == state)
    with_t = run_scenario(d, compare=False)
    without = run_scenario({**d, "schedule": {**d["schedule"], "techniques": without_it}}, compare=False)
    assert with_t["training_steps"] > 0 and without["training_steps"] > 0
    assert with_t["peak_ram_bytes"] - without["peak_ram_bytes"] >= state_bytes - 64


def test_sinkhorn_and_buffer_work_is_charged():
    d = apply_overrides(scenario_dict("unlabelled"), {"duration_s": 1200.0})
    sk = run_scenario(d, compare=False)
    same_buffer = {"buffer": "representative", "buffer_size": 64}          # the labelled alone
    alone = run_scenario({**d, "schedule": {**d["schedule"], "techniques": same_buffer}}, compare=False)
    assert sk["training_steps"] == alone["training_steps"]
    assert sk["macs_total"] > alone["macs_total"] and sk["energy_per_day_j"] > alone["energy_per_day_j"]
