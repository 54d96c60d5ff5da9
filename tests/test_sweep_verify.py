"""``edgesim sweep --verify``: each fitting cell's training step on its device's twin, on the sweep's runner.

Without QEMU: a stand-in verifier (module-level, so it pickles to the pool's workers) checks the wiring
(fitting cells only, each cell's scenario), the cell without a twin, per-cell atomic matrix writes and
an interrupted pass that keeps what finished, and one verifier call per distinct training step (cells that
differ only in fields the step does not use share its record, on the pool and on Dask). With QEMU (``twin``, ``slow``): one real boot, the micro:bit
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


def test_a_changed_step_is_verified_again_a_changed_schedule_is_not(tmp_path):
    grid, out, rows, fz = _sweep(tmp_path, ["bbc-microbit-v2"])
    run_verification(grid, fz, rows, out, fake_verify, workers=1, progress=False)
    assert _called(out, forget=True) == ["bbc-microbit-v2", "bbc-microbit-v2"]
    run_verification(grid, write_matrix(out, rows), rows, out, fake_verify, workers=1, progress=False)
    assert _called(out) == []                                           # same scenarios: nothing boots again
    grid.fixed["schedule.every_n"] = 8               # an edited grid: new scenarios, but the same steps
    rows = run_sweep(grid, out, workers=1, progress=False, resume=True, runner=fake_runner).rows
    fz = run_verification(grid, write_matrix(out, rows), rows, out, fake_verify, workers=1, progress=False)
    assert _called(out) == []
    assert fz["verification"] | {"cells": 2, "verified_earlier": 2, "twin_runs": 0} == fz["verification"]
    grid.fixed["workload.lr"] = 0.05                                    # the steps change: both boot again
    rows = run_sweep(grid, out, workers=1, progress=False, resume=True, runner=fake_runner).rows
    fz = run_verification(grid, write_matrix(out, rows), rows, out, fake_verify, workers=1, progress=False)
    assert _called(out) == ["bbc-microbit-v2", "bbc-microbit-v2"]
    assert fz["cells"]["bbc-microbit-v2"]["light"]["verification"]["verified"] is True


# --- one twin run per distinct training step -------------------------------------------------------------

STEP_BASE = {"workload": {"model": "mlp-microbit"}, "device": "bbc-microbit-v2", "runtime": "micropython"}
NOT_IN_STEP = {"schedule.every_n": 8, "schedule.trigger": "periodic", "schedule.period_s": 60.0,
               "schedule.steps": 9, "schedule.replay": 16, "schedule.memory_policy": "heap", "duration_s": 60.0,
               "pipeline.sensor_rate_hz": 3.0, "pipeline.window": 4, "budgets.step_latency_s": 9.0,
               "battery.initial_fraction": 0.5, "eval.points": 3, "name": "other"}
IN_STEP = {"schedule.batch": 3, "schedule.techniques.etf": True, "schedule.techniques.instance_filter": 0.1,
           "workload.model": "mlp:16-8-10", "workload.lr": 0.05, "workload.momentum": 0.0,
           "workload.optimizer": "adam", "workload.story": "shift", "device": "rpi-pico", "runtime": "native",
           "seed": 3}


def test_step_key_holds_what_the_twin_step_depends_on_and_nothing_else():
    from simulator.scenario import apply_overrides
    from simulator.sweep.verify import step_key

    base = step_key(STEP_BASE)
    for field, value in NOT_IN_STEP.items():
        assert step_key(apply_overrides(STEP_BASE, {field: value})) == base, field
    keys = {field: step_key(apply_overrides(STEP_BASE, {field: value})) for field, value in IN_STEP.items()}
    assert base not in keys.values() and len(set(keys.values())) == len(IN_STEP), keys


SHARED_GRID = """
name = "verify-shared"
base = "demo"
[set]
duration_s = 600.0
"workload.model" = "mlp-microbit"
[axes]
device = ["bbc-microbit-v2", "rpi-pico"]
[schedules.a]
[schedules.b]
"schedule.every_n" = 8
"schedule.trigger" = "periodic"
"schedule.steps" = 2
duration_s = 1200.0
[schedules.c]
"pipeline.sensor_rate_hz" = 4.0
"budgets.step_latency_s" = 9.0
"battery.initial_fraction" = 0.5
[schedules.batch]
"schedule.batch" = 8
[schedules.tech]
"schedule.techniques.instance_filter" = 0.1
[schedules.lr]
"workload.lr" = 0.05
[schedules.seed]
seed = 3
"""
RAN = {"a", "batch", "tech", "lr", "seed"}          # b and c differ from a only in fields the step does not use


def _ran_cells(out: Path) -> list[str]:
    """The cells the stand-in verifier ran for (device--schedule, from their serial log names)."""
    return sorted(p.name.removesuffix(".serial.called") for p in (out / "verify-logs").glob("*.called"))


def test_cells_with_the_same_step_share_one_twin_run_and_its_record(tmp_path):
    g = tmp_path / "grid.toml"
    g.write_text(SHARED_GRID)
    grid = load_grid(g)
    out = tmp_path / "out"
    rows = run_sweep(grid, out, workers=1, progress=False, runner=fake_runner).rows
    fz = run_verification(grid, write_matrix(out, rows), rows, out, fake_verify, workers=2, progress=False)
    devices = ["bbc-microbit-v2", "rpi-pico"]
    assert _ran_cells(out) == sorted(f"{d}--{s}" for d in devices for s in RAN)      # 10 runs for 14 cells
    assert fz["verification"] == {"cells": 14, "twin_runs": 10, "refused": 0, "shared": 4, "verified_earlier": 0,
                                  "no_twin": 0}
    for d in devices:
        cells = fz["cells"][d]
        assert "shared_with" not in cells["a"]["verification"]
        for s in ("b", "c"):
            v = cells[s]["verification"]
            assert v["shared_with"] == f"{d} / a"
            assert {k: x for k, x in v.items() if k != "shared_with"} == cells["a"]["verification"]
        assert {cells[s]["verification"]["batch"] for s in ("a", "batch")} == {4, 8}
        assert cells["seed"]["verification"]["seed"] == 3
        assert not any("shared_with" in cells[s]["verification"] for s in RAN)
    lines = [json.loads(x) for x in (out / VERIFY_FILE).read_text().splitlines()]
    assert len(lines) == 14 and sum("shared_with" in x["verification"] for x in lines) == 4
    assert read_matrix(out)["cells"] == json.loads(json.dumps(fz["cells"]))
    # resumed: every cell keeps its record (shared ones too) and nothing runs again
    for p in (out / "verify-logs").glob("*.called"):
        p.unlink()
    again = run_verification(grid, write_matrix(out, rows), rows, out, fake_verify, workers=2, progress=False)
    assert _ran_cells(out) == []
    assert again["cells"] == fz["cells"]
    assert again["verification"] | {"verified_earlier": 14, "twin_runs": 0} == again["verification"]
    assert len((out / VERIFY_FILE).read_text().splitlines()) == 14          # nothing new to log


def test_an_interrupted_shared_run_leaves_its_sharers_for_the_resume(tmp_path):
    g = tmp_path / "grid.toml"
    g.write_text(SHARED_GRID.replace('"rpi-pico"', '"esp32-devkitc"'))
    grid = load_grid(g)
    out = tmp_path / "out"
    rows = run_sweep(grid, out, workers=1, progress=False, runner=fake_runner).rows
    (out / "interrupt-bbc-microbit-v2").touch()
    with pytest.raises(KeyboardInterrupt):
        run_verification(grid, write_matrix(out, rows), rows, out, fake_verify, workers=1, progress=False)
    on_disk = read_matrix(out)["cells"]
    assert not any("verification" in on_disk["bbc-microbit-v2"][s] for s in ("a", "b", "c"))
    assert all(on_disk["esp32-devkitc"][s]["verification"]["no_twin"] for s in ("a", "b", "c"))
    (out / "interrupt-bbc-microbit-v2").unlink()
    for p in (out / "verify-logs").glob("*.called"):
        p.unlink()
    fz = run_verification(grid, write_matrix(out, rows), rows, out, fake_verify, workers=1, progress=False)
    assert _ran_cells(out) == sorted(f"bbc-microbit-v2--{s}" for s in RAN)
    assert fz["cells"]["bbc-microbit-v2"]["c"]["verification"]["shared_with"] == "bbc-microbit-v2 / a"
    assert fz["verification"]["no_twin"] == 7 and fz["verification"]["twin_runs"] == 5


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
    assert "\n2 cells, 1 twin run (1 without a twin)" in text
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


def token_verify(scenario: dict, *, log_path: str | None = None) -> dict:
    """A stand-in for a Dask worker (no serial log there): each call's record carries a token of its own."""
    import uuid

    return {"verified": True, "device": scenario["device"], "batch": scenario["schedule"]["batch"],
            "call": uuid.uuid4().hex, "machine": "fake", "agree": True,
            "measured": {"fits": True, "heap_peak_bytes": 1000, "instructions_per_step": 5000},
            "predicted": {"fits": True, "heap_peak_bytes": 1000, "instructions_per_step": 5000},
            "errors": {"heap_peak": 0.0, "instructions_per_step": 0.0}}


@pytest.mark.slow
def test_on_dask_cells_with_the_same_step_share_one_run(tmp_path):
    distributed = pytest.importorskip("dask.distributed", reason="dask.distributed missing: pip install 'edgesim[dask]'")
    g = tmp_path / "grid.toml"
    g.write_text(SHARED_GRID)
    grid = load_grid(g)
    out = tmp_path / "out"
    rows = run_sweep(grid, out, workers=1, progress=False, runner=fake_runner).rows
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cl:
        fz = run_verification(grid, write_matrix(out, rows), rows, out, token_verify,
                              scheduler=cl.scheduler_address, progress=False)
    calls = {fz["cells"][d][s]["verification"]["call"] for d in fz["devices"] for s in fz["schedules"]}
    assert len(calls) == 10 and fz["verification"]["twin_runs"] == 10
    for d in fz["devices"]:
        a = fz["cells"][d]["a"]["verification"]
        assert [fz["cells"][d][s]["verification"]["call"] for s in ("b", "c")] == [a["call"]] * 2
        assert fz["cells"][d]["b"]["verification"]["shared_with"] == f"{d} / a"
