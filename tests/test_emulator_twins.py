"""Training in MicroPython 1.25 on every virtual twin against pinned baselines and the simulator.

One small zoo model per twin profile (2 steps, batch 1), LeNet on the pyboard's twin, a model too big
for a twin's heap, determinism (two identical emulations: identical instruction counts), a calibration
that writes a loadable profile, and ``plan --verify`` on the demo. Baselines: tests/baselines/
emulator_<profile>_<workload>.json (regenerate with EDGESIM_UPDATE_BASELINES=1). Tolerances: heap peak
+-64 B (four 16-byte GC blocks), instructions per step +-1 % (guest time is deterministic under
-icount shift=0,sleep=off; a rebuilt firmware may move a few instructions), losses rtol 1e-4.
Prediction vs twin: the project's agreement (simulator/agreement.py).
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from twin_support import built_board, kill_and_list_left, twin

from ports.emulate import emulate
from simulator.agreement import AGREEMENT_RELATIVE

pytestmark = twin

BASELINES = Path(__file__).parent / "baselines"
UPDATE = os.environ.get("EDGESIM_UPDATE_BASELINES") == "1"
# every ARM profile with a twin: the machine it runs on
TWINS = ("stm32f405-pyboard", "stm32f746-disco", "stm32l476-nucleo", "arduino-nano-33-ble", "bbc-microbit-v2",
         "mps2-an385", "rpi-pico")


@pytest.fixture(scope="module", autouse=True)
def no_qemu_left():
    yield
    left = kill_and_list_left()
    assert not left, f"QEMU processes left running after the twin tests: {left}"


def check_baseline(name: str, res: dict) -> None:
    path = BASELINES / f"emulator_{name.replace(':', '_')}.json"
    keep = {k: res[k] for k in ("board", "machine", "workload", "steps", "firmware", "heap_peak_bytes",
                                "instructions_by_step", "losses", "fits")}
    if UPDATE:
        path.write_text(json.dumps(keep, indent=2, sort_keys=True) + "\n")
    if not path.exists():
        pytest.fail(f"baseline {path} is missing: run with EDGESIM_UPDATE_BASELINES=1 to pin it")
    base = json.loads(path.read_text())
    assert res["fits"] == base["fits"] and res["machine"] == base["machine"]
    assert res["firmware"].split(";")[0] == base["firmware"].split(";")[0]
    assert abs(res["heap_peak_bytes"] - base["heap_peak_bytes"]) <= 64
    assert res["instructions_by_step"] == pytest.approx(base["instructions_by_step"], rel=0.01)
    assert res["losses"] == pytest.approx(base["losses"], rel=1e-4, abs=1e-6)


def agrees(res: dict) -> None:
    assert res["fits"] and res["predicted_fits"], res.get("guest_memory_error")
    assert res["losses_match_host"], (res["losses"], res["host_losses"])
    assert abs(res["heap_error"]) <= AGREEMENT_RELATIVE, (res["heap_peak_bytes"], res["predicted_heap_peak_bytes"])
    assert abs(res["instructions_error"]) <= AGREEMENT_RELATIVE, (res["instructions_per_step"],
                                                                  res["predicted_instructions_per_step"])


@pytest.mark.parametrize("profile", TWINS)
def test_every_twin_trains_like_the_host_and_the_simulator(profile, tmp_path):
    board = built_board(profile)
    res = emulate(board, "mlp-microbit", 2, log_path=tmp_path / "serial.log")
    assert res["machine"] == board.twin.name and res["board"] == profile
    assert res["firmware"].startswith("MicroPython v1.25")
    agrees(res)
    check_baseline(f"{profile}_mlp-microbit", res)


def test_lenet_on_the_pyboard_twin(tmp_path):
    """The issue's command: edgesim emulate --board stm32f405-pyboard --workload lenet-digits --json."""
    import contextlib
    import io

    from simulator.cli import main

    built_board("stm32f405-pyboard")
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        rc = main(["emulate", "--board", "stm32f405-pyboard", "--workload", "lenet-digits", "--steps", "2",
                   "--json", "--out", str(tmp_path)])
    res = json.loads(buf.getvalue())
    assert rc == 0
    for key in ("heap_peak_bytes", "predicted_heap_peak_bytes", "instructions_per_step",
                "predicted_instructions_per_step", "instructions_by_step", "losses", "host_losses", "board",
                "firmware", "machine"):
        assert key in res, key
    agrees(res)
    check_baseline("stm32f405-pyboard_lenet-digits", res)


def test_two_identical_emulations_count_identical_instructions(tmp_path):
    board = built_board("mps2-an385")
    a = emulate(board, "cnn:8x8x1-c4k3s2same-a2-d10", 2, log_path=tmp_path / "a.log")
    b = emulate(board, "cnn:8x8x1-c4k3s2same-a2-d10", 2, log_path=tmp_path / "b.log")
    assert a["instructions_by_step"] == b["instructions_by_step"]
    assert a["op_instructions_step0"] == b["op_instructions_step0"]
    assert a["heap_peak_bytes"] == b["heap_peak_bytes"] and a["losses"] == b["losses"]


def test_a_model_that_does_not_fit_is_predicted_not_to_and_runs_out_of_memory(tmp_path):
    board = built_board("bbc-microbit-v2")                 # the smallest twin heap (64 KiB)
    res = emulate(board, "mlp:64-192-10", 1, log_path=tmp_path / "serial.log")
    assert res["predicted_fits"] is False
    assert res["fits"] is False and "MemoryError" in res["guest_memory_error"]


@pytest.mark.parametrize("profile, fits, fails", [("stm32l476-nucleo", "mlp:64-49-24-10", "mlp:64-50-24-10"),
                                                   ("bbc-microbit-v2", "mlp:64-27-16-10", "mlp:64-28-16-10")])
def test_the_fit_edge_is_predicted_on_both_sides(profile, fits, fails, tmp_path):
    """The largest MLP that fits and one a little bigger: each heap's total would hold both (the peak is
    below the GC heap); only the block map, as the port leaves it, tells them apart, and the board agrees.
    The edge moves when the port's device code changes (its objects land elsewhere in the heap): re-find
    it with ``edgesim emulate --board B --workload mlp:64-H-...`` over H (both sides must still agree)."""
    board = built_board(profile)
    ok = emulate(board, fits, 1, log_path=tmp_path / "fits.log")
    assert ok["fits"] and ok["predicted_fits"], ok.get("guest_memory_error")
    bad = emulate(board, fails, 1, log_path=tmp_path / "fails.log")
    assert bad["predicted_fits_heap_total"] and bad["predicted_heap_peak_bytes"] < bad["heap_total_bytes"]
    assert bad["predicted_fits"] is False
    assert bad["fits"] is False and "MemoryError" in bad["guest_memory_error"]


def test_calibration_on_a_twin_writes_per_kind_costs(tmp_path, capsys):
    from device_profiles import load_profile
    from simulator.cli import main

    built_board("mps2-an385")
    dst = tmp_path / "an385.toml"
    assert main(["calibrate", "--board", "mps2-an385", "--write", str(dst), "--json"]) == 0
    res = json.loads(capsys.readouterr().out)
    assert res["acceptable"] and res["residual_rms"] <= 0.25
    rt = load_profile(dst).runtime_for("micropython")
    assert set(rt.kind_costs) >= {"matmul", "conv", "conv_direct", "reduce", "eltwise", "loss", "update", "copy"}
    assert rt.port_heap_bytes == res["footprint"]["port_bytes"] > 0
    assert rt.gc_garbage_bytes_per_cycle > 0 and rt.gc_cycles_per_live_byte > 0
    prof = load_profile(dst)
    assert "mps2-an385" in prof.sources["runtime.micropython.port_heap_bytes"]
    assert prof.runtime["native"] == load_profile("mps2-an385").runtime["native"]   # only its own table


def test_plan_verify_shows_the_demo_step_on_its_twin(tmp_path):
    from ports.verify import verify_scenario
    from simulator.scenario import SCENARIO_DIR, load_scenario

    built_board("stm32f405-pyboard")
    v = verify_scenario(SCENARIO_DIR / "demo.toml", log_path=tmp_path / "serial.log")
    demo_batch = load_scenario(SCENARIO_DIR / "demo.toml").schedule.batch
    assert v["verified"] and v["machine"] == "netduinoplus2" and v["batch"] == demo_batch
    assert set(v["predicted"]) >= {"fits", "heap_peak_bytes", "instructions_per_step", "step_s"}
    if v["measured"]["fits"]:
        assert v["agree"], v["errors"]                # the demo's step: measured and predicted agree
        assert v["errors"]["instructions_per_step"] == pytest.approx(
            (v["predicted"]["instructions_per_step"] - v["measured"]["instructions_per_step"])
            / v["measured"]["instructions_per_step"])
    else:                                             # the twin ran out of memory: the prediction must say so
        assert v["agree"] == (v["predicted"]["fits"] is False)
