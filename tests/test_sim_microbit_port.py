"""The simulated micro:bit port and the emulator agree on what fits (simulator side; the emulator side
is tests/test_emulator_training.py). The RAM the plan reports is the step prediction the emulator is
checked against, plus what lies outside MicroPython's heap."""
from __future__ import annotations

import pytest

from device_profiles import load_profile
from simulator.predict import predict_step
from simulator.run import run_scenario
from simulator.scenario import apply_overrides, scenario_dict
from workloads.techniques import Techniques


def _plan(model: str) -> dict:
    return run_scenario(apply_overrides(scenario_dict("microbit-port"), {"workload.model": model}))


def test_port_that_fits_the_board_fits_the_plan_and_matches_the_step_prediction():
    r = _plan("mlp:16-12-10")
    assert r["fits"], r["first_violation"]
    assert r["fatal"] is None
    step = predict_step("bbc-microbit-v1", "mlp:16-12-10", runtime="micropython", dataset="digits4",
                        momentum=0.0, lr=0.05, techniques=Techniques(fused_update=True))
    rt = load_profile("bbc-microbit-v1").runtime["micropython"]
    extra = r["peak_ram_bytes"] - step["heap_peak_bytes"] - rt.ram_reserved_bytes
    # beyond the step and the runtime's reserve the plan holds at most the sensor window being filled:
    # one 16-float sample in its own heap object (64 B + header, rounded to GC blocks)
    window = -(-(16 * 4 + rt.alloc_overhead_bytes) // rt.heap_block_bytes) * rt.heap_block_bytes
    assert 0 <= extra <= window
    flash = next(c for c in r["constraints"] if c["name"] == "flash")
    assert flash["ok"], "the model must fit the flash the firmware leaves"


@pytest.mark.parametrize("model", ["mlp:16-24-10", "mlp:16-64-32-10"])
def test_port_too_big_for_the_board_does_not_fit(model):
    r = _plan(model)
    assert not r["fits"]
    assert r["fatal"]["kind"] in ("out_of_memory", "fragmentation")
    ram = next(c for c in r["constraints"] if c["name"] == "peak_ram")
    assert not ram["ok"] and ram["observed"] > ram["budget"]
