"""Fail fast (issue #12): a model far too big for the board is refused by a static check in seconds,
before any pre-training; the check's bound is a true lower bound (it never refuses what fits)."""
from __future__ import annotations

import pytest

from simulator.static_fit import ModelTooBig, check_static_fit, layer_parameters, step_lower_bound_bytes

SPECS = ["mlp:64-32-10", "cnn:8x8x1-c8k3-p2-d10", "cnn:8x8x1-c8k3-p2-c16k3-gap-d10"]


@pytest.mark.parametrize("model", SPECS + ["zoo"])
def test_parameter_counts_from_shapes_match_the_built_model(model):
    from workloads.model import build_model, resolve, zoo

    for m in (list(zoo()) if model == "zoo" else [model]):
        spec, _ = resolve(m)
        built = sum(p.size for p in build_model(m).parameters())
        assert sum(layer_parameters(ls) for ls in spec.layers) == built, m


@pytest.mark.parametrize("model", ["mlp:64-10000-10", "mlp:64-100000-10"])
def test_a_model_far_too_big_is_refused_before_any_pre_training(tmp_path, capsys, forbid_work, model):
    """Fast because nothing slow runs: pre-training, the simulation and QEMU raise if they start (a
    command that reaches them exits 1). Without the static check ``mlp:64-100000-10`` pre-trained for
    over 300 s before it failed."""
    from simulator.cli import main

    rc = main(["plan", "--device", "bbc-microbit-v1", "--workload", model, "--out", str(tmp_path / "o")])
    out, err = capsys.readouterr()
    assert rc == 3, err
    assert f"workload {model!r} cannot fit bbc-microbit-v1" in out and "before any pre-training" in out
    assert "Traceback" not in err and not (tmp_path / "o" / "result.json").exists()


def test_the_bound_never_refuses_a_bundled_scenario():
    from simulator.inputs import profile_for
    from simulator.scenario import SCENARIO_DIR, load_scenario

    for f in sorted(SCENARIO_DIR.glob("*.toml")):
        sc = load_scenario(f)
        check_static_fit(sc, profile_for(sc))


def test_the_bound_is_below_what_a_run_really_uses():
    from simulator.run import run_scenario

    r = run_scenario({"name": "lb", "device": "stm32f405-pyboard", "duration_s": 600.0,
                      "workload": {"model": "mlp:64-16-10"}, "schedule": {"batch": 4}})
    assert r["training_steps"] > 0
    assert step_lower_bound_bytes("mlp:64-16-10", 4) <= r["peak_ram_bytes"] - r["ram_reserved_bytes"]


def test_model_too_big_is_a_value_error_naming_the_scenario():
    from simulator.inputs import profile_for
    from simulator.scenario import load_scenario

    sc = load_scenario({"device": "bbc-microbit-v1", "workload": {"model": "mlp:64-10000-10"}}, where="x.toml")
    with pytest.raises(ModelTooBig, match=r"^x\.toml: workload 'mlp:64-10000-10' cannot fit"):
        check_static_fit(sc, profile_for(sc))
    assert issubclass(ModelTooBig, ValueError)
