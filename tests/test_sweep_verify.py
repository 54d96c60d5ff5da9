"""``edgesim sweep --verify``: each fitting cell's training step on its device's twin, on the sweep's runner.

Without QEMU: a stand-in verifier (module-level, so it pickles to the pool's workers) checks the wiring
(fitting cells only, each cell's scenario), the cell without a twin, per-cell atomic matrix writes and
an interrupted pass that keeps what finished. With QEMU (``twin``, ``slow``): one real boot, the micro:bit
v2's twin running one step of mlp-microbit, beside a board without a twin.
"""
from __future__ import annotations

import json
from pathlib import Path

import pytest
from twin_support import built_board, kill_and_list_left, twin

from simulator.agreement import AGREEMENT_RELATIVE
from simulator.sweep import MATRIX_FILE, VERIFY_FILE, load_grid, read_matrix, run_sweep, run_verification, write_matrix

GRID = """
name = "verify-unit"
base = "demo"
[set]
duration_s = 600.0
"workload.model" = "mlp-microbit"
"eval.points" = 2
"pipeline.sensor_rate_hz" = 2.0
[axes]
device = {devices}
seed = [0, 1]
[schedules.light]
"schedule.batch" = 4
"schedule.steps" = 1
[schedules.heavy]
"schedule.batch" = 8
"schedule.steps" = 2
"""
NOT_FITTING = ("rpi-pico", "heavy")          # the stand-in sweep says this cell does not fit


def _grid(tmp: Path, devices: list[str]) -> Path:
    g = tmp / "grid.toml"
    g.write_text(GRID.format(devices=json.dumps(devices)))
    return g


def fake_runner(point, base, keep_timelines=False, inflight_dir=None):
    """The simulator's stand-in: every scenario fits but ``NOT_FITTING``'s (fast, picklable)."""
    fits = (point.device, point.schedule) != NOT_FITTING
    return {"key": point.key, "index": point.index, "device": point.device, "schedule": point.schedule,
            "seed": point.seed, "overrides": point.overrides, "status": "ok", "elapsed_s": 0.0,
            "result": {"fits": fits, "constraints": [], "peak_ram_bytes": 1000, "energy_per_day_j": 1.0}}


def fake_verify(scenario: dict, *, log_path: str | None = None) -> dict:
    """The twin's stand-in, run in a pool worker: records the scenario it got and how many cells of the
    matrix on disk already held a verification when it ran; while a file ``interrupt-<device>`` is in the
    output directory, that device's cell raises KeyboardInterrupt (a Ctrl-C mid-pass)."""
    out = Path(log_path).parent.parent
    fz = json.loads((out / MATRIX_FILE).read_text())          # parses: never half a file
    seen = sum("verification" in c for d in fz["cells"].values() for c in d.values())
    Path(log_path).with_suffix(".called").write_text(scenario["device"])
    if (out / f"interrupt-{scenario['device']}").exists():
        raise KeyboardInterrupt
    return {"verified": True, "device": scenario["device"], "batch": scenario["schedule"]["batch"],
            "seed": scenario["seed"], "seen_on_disk": seen, "machine": "fake", "agree": True,
            "measured": {"fits": True, "heap_peak_bytes": 1000, "instructions_per_step": 5000},
            "predicted": {"fits": True, "heap_peak_bytes": 1010, "instructions_per_step": 5100},
            "errors": {"heap_peak": 0.01, "instructions_per_step": 0.02}}


def _called(out: Path, forget: bool = False) -> list[str]:
    """The devices the stand-in verifier ran for (and forget them)."""
    paths = sorted((out / "verify-logs").glob("*.called"))
    names = sorted(p.read_text() for p in paths)
    if forget:
        for p in paths:
            p.unlink()
    return names


def _sweep(tmp: Path, devices: list[str]):
    grid = load_grid(_grid(tmp, devices))
    out = tmp / "out"
    outcome = run_sweep(grid, out, workers=1, progress=False, runner=fake_runner)
    return grid, out, outcome.rows, write_matrix(out, outcome.rows)


def test_fitting_cells_get_their_verification_and_a_cell_without_twin_says_why(tmp_path):
    grid, out, rows, fz = _sweep(tmp_path, ["bbc-microbit-v2", "esp32-devkitc", "rpi-pico"])
    fz = run_verification(grid, fz, rows, out, fake_verify, workers=1, progress=False)
    cells = fz["cells"]
    for sched, batch in (("light", 4), ("heavy", 8)):
        v = cells["bbc-microbit-v2"][sched]["verification"]
        assert (v["verified"], v["device"], v["batch"], v["seed"]) == (True, "bbc-microbit-v2", batch, 0)
    assert "verification" not in cells["rpi-pico"]["heavy"]                 # does not fit: not verified
    assert cells["rpi-pico"]["light"]["verification"]["verified"] is True   # the Pico's twin is an armv6m mps2
    for sched in ("light", "heavy"):
        nt = cells["esp32-devkitc"][sched]["verification"]
        assert nt["verified"] is False and nt["no_twin"] is True and "has no virtual twin" in nt["reason"]
    assert _called(out) == ["bbc-microbit-v2", "bbc-microbit-v2", "rpi-pico"]     # no worker for the ESP32
    # the cells without a twin were on disk (a whole matrix, read in the worker) before any twin ran
    assert min(cells[d][s]["verification"]["seen_on_disk"] for d, s in
               (("bbc-microbit-v2", "light"), ("bbc-microbit-v2", "heavy"), ("rpi-pico", "light"))) >= 2
    assert read_matrix(out)["cells"] == json.loads(json.dumps(cells))      # what was returned is on disk
    assert not [p.name for p in out.iterdir() if p.name.startswith(".") or p.suffix == ".tmp"]
    assert len((out / VERIFY_FILE).read_text().splitlines()) == 5


def test_an_interrupted_pass_keeps_what_finished_and_resumes(tmp_path):
    grid, out, rows, fz = _sweep(tmp_path, ["bbc-microbit-v2", "rpi-pico"])
    (out / "interrupt-rpi-pico").touch()
    with pytest.raises(KeyboardInterrupt):
        run_verification(grid, fz, rows, out, fake_verify, workers=1, progress=False)
    on_disk = read_matrix(out)["cells"]
    assert on_disk["bbc-microbit-v2"]["light"]["verification"]["verified"] is True
    assert on_disk["bbc-microbit-v2"]["heavy"]["verification"]["verified"] is True
    assert "verification" not in on_disk["rpi-pico"]["light"]
    assert _called(out, forget=True) == ["bbc-microbit-v2", "bbc-microbit-v2", "rpi-pico"]
    # the next pass (the Ctrl-C gone) runs only the cell that did not finish
    (out / "interrupt-rpi-pico").unlink()
    fz = run_verification(grid, write_matrix(out, rows), rows, out, fake_verify, workers=1, progress=False)
    assert _called(out) == ["rpi-pico"]
    assert all(fz["cells"][d][s]["verification"]["verified"] for d, s in
               (("bbc-microbit-v2", "light"), ("bbc-microbit-v2", "heavy"), ("rpi-pico", "light")))
    assert read_matrix(out)["cells"] == json.loads(json.dumps(fz["cells"]))


def test_a_changed_scenario_is_verified_again(tmp_path):
    grid, out, rows, fz = _sweep(tmp_path, ["bbc-microbit-v2"])
    run_verification(grid, fz, rows, out, fake_verify, workers=1, progress=False)
    assert _called(out, forget=True) == ["bbc-microbit-v2", "bbc-microbit-v2"]
    run_verification(grid, write_matrix(out, rows), rows, out, fake_verify, workers=1, progress=False)
    assert _called(out) == []                                           # same scenarios: nothing boots again
    grid.fixed["schedule.every_n"] = 8                                  # an edited grid: new scenarios
    rows = run_sweep(grid, out, workers=1, progress=False, resume=True, runner=fake_runner).rows
    fz = run_verification(grid, write_matrix(out, rows), rows, out, fake_verify, workers=1, progress=False)
    assert _called(out) == ["bbc-microbit-v2", "bbc-microbit-v2"]
    assert fz["cells"]["bbc-microbit-v2"]["light"]["verification"]["verified"] is True


def test_cli_verify_writes_matrix_summary_and_report(tmp_path, capsys, monkeypatch):
    """The command line hands its verifier to the sweep's runner (here the stand-in, a real sweep)."""
    import ports.verify
    from simulator.cli import main

    monkeypatch.setattr(ports.verify, "verify_scenario", fake_verify)
    g = _grid(tmp_path, ["bbc-microbit-v2", "esp32-devkitc"])
    g.write_text(g.read_text().replace("seed = [0, 1]\n", "").split("[schedules.heavy]")[0])
    out = tmp_path / "out"
    rc = main(["sweep", str(g), "--verify", "--workers", "1", "--quiet", "--out", str(out)])
    text = capsys.readouterr().out
    assert rc == 0
    cells = read_matrix(out)["cells"]
    assert cells["bbc-microbit-v2"]["light"]["verification"]["machine"] == "fake"
    assert cells["esp32-devkitc"]["light"]["verification"]["no_twin"] is True
    assert "verification on the twins" in text and "not run: no twin [1]" in text
    assert "1,000 B / 1,010 B (+1.0 %)" in text and "5,000 / 5,100 (+2.0 %)" in text
    md = (out / "report.md").read_text()
    assert "## Verification on the virtual twins" in md and "| bbc-microbit-v2 | light | fake |" in md
    assert "not run: esp32-devkitc has no virtual twin" in md


# --- one real boot --------------------------------------------------------------------------------------

@pytest.mark.twin
@twin[0]
@twin[1]
@twin[2]
def test_sweep_verify_on_a_real_twin(tmp_path, capsys):
    from simulator.cli import main

    built_board("bbc-microbit-v2")          # the firmware once per session; skips with how to install it
    g = _grid(tmp_path, ["bbc-microbit-v2", "esp32-devkitc"])
    g.write_text(g.read_text().replace("seed = [0, 1]\n", "").split("[schedules.heavy]")[0])
    out = tmp_path / "out"
    try:
        rc = main(["sweep", str(g), "--verify", "--workers", "2", "--quiet", "--out", str(out)])
    finally:
        assert kill_and_list_left() == []
    text = capsys.readouterr().out
    assert rc == 0, text
    cells = read_matrix(out)["cells"]
    assert cells["bbc-microbit-v2"]["light"]["fits"] is True
    v = cells["bbc-microbit-v2"]["light"]["verification"]
    assert {"verified", "agree", "machine", "board", "firmware", "measured", "predicted", "errors",
            "tolerance_relative", "serial_log", "batch", "workload"} <= set(v)
    assert v["verified"] is True and v["machine"] == "mps2-an386" and v["batch"] == 4
    m, p = v["measured"], v["predicted"]
    assert m["fits"] is True and m["losses_match_host"] is True
    assert abs(p["heap_peak_bytes"] - m["heap_peak_bytes"]) <= AGREEMENT_RELATIVE * m["heap_peak_bytes"]
    assert abs(p["instructions_per_step"] - m["instructions_per_step"]) <= (
        AGREEMENT_RELATIVE * m["instructions_per_step"])
    assert v["agree"] is True and Path(v["serial_log"]).exists()
    nt = cells["esp32-devkitc"]["light"]["verification"]
    assert nt["verified"] is False and "no virtual twin" in nt["reason"]
    assert "mps2-an386" in text and "agrees" in text
