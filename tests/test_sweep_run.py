"""Real sweeps through the simulator: 5 devices x 4 schedules on 2 worker processes, interrupted (Ctrl-C)
and resumed, a worker killed mid-sweep, a scenario that raises, and the same grid on a Dask LocalCluster."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from process_support import session_pids

from simulator.sweep import RESULTS_FILE, ResultsLog, load_grid, run_sweep

pytestmark = pytest.mark.slow

DEVICES = ["bbc-microbit-v2", "arduino-nano-33-ble", "rpi-pico", "stm32f405-pyboard", "stm32l476-nucleo"]
GRID = """
name = "test-5x4"
base = "demo"
[set]
duration_s = {duration}
"workload.model" = "mlp:64-16-10"
"eval.points" = 2
"pipeline.sensor_rate_hz" = 2.0       # an image every 4 s, a label every 16 s: training within minutes
[axes]
device = {devices}
[schedules.light]
"schedule.batch" = 4
"schedule.steps" = 1
[schedules.default]
[schedules.heavy]
"schedule.batch" = 16
"schedule.steps" = 4
"schedule.every_n" = 16
[schedules.etf-fused]
"schedule.techniques.etf" = true
"schedule.techniques.fused_update" = true
"""
N = len(DEVICES) * 4


def write_grid(tmp: Path, duration: float = 1800.0) -> Path:
    g = tmp / "grid.toml"
    g.write_text(GRID.format(duration=duration, devices=json.dumps(DEVICES)))
    return g


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "simulator.cli", "sweep", *args]


def _survivors(sid: int, timeout: float = 15.0) -> list[int]:
    """Wait until session ``sid`` has no live process (its workers may take a moment to be reaped after
    the sweep exits) and return whatever is still alive at the deadline: [] when all ended."""
    deadline = time.monotonic() + timeout
    while (alive := session_pids(sid)) and time.monotonic() < deadline:
        time.sleep(0.05)
    return alive


def _children(pid: int) -> list[int]:
    try:
        return [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


def _wait_lines(path: Path, n: int, proc: subprocess.Popen, timeout: float = 120.0) -> int:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists() and path.read_bytes().count(b"\n") >= n:
            return path.read_bytes().count(b"\n")
        assert proc.poll() is None, f"sweep ended early: {proc.communicate()}"
        time.sleep(0.05)
    raise TimeoutError(f"{path}: fewer than {n} lines after {timeout} s")


def _end_session(proc: subprocess.Popen) -> None:
    """Clean-up for a failed test: end the session we started, by its process group."""
    if proc.poll() is None or session_pids(proc.pid):
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait(timeout=10)


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """The 5 x 4 grid interrupted with Ctrl-C after a few scenarios, then resumed to the end."""
    tmp = tmp_path_factory.mktemp("sweep")
    grid, out = write_grid(tmp), tmp / "out"
    proc = subprocess.Popen(_cli(str(grid), "--workers", "2", "--out", str(out)), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        _wait_lines(out / RESULTS_FILE, 3, proc)
        os.killpg(proc.pid, signal.SIGINT)           # Ctrl-C reaches the whole foreground group
        stdout, stderr = proc.communicate(timeout=60)
        leftovers = _survivors(proc.pid)
    finally:
        _end_session(proc)
    first = (out / RESULTS_FILE).read_bytes()
    resumed = subprocess.run(_cli(str(grid), "--workers", "2", "--out", str(out), "--resume", "--json"),
                             capture_output=True, text=True, timeout=300)
    return {"grid": grid, "out": out, "rc": proc.returncode, "stderr": stderr, "leftovers": leftovers,
            "first": first, "resumed": resumed}


def test_interrupted_sweep_loses_nothing_and_resumes(finished):
    f = finished
    assert f["rc"] == 130, f["stderr"]
    assert f"to continue: edgesim sweep {f['grid']} --resume --out {f['out']}" in f["stderr"]
    assert "sweep test-5x4" in f["stderr"] and "scenario" in f["stderr"]      # the tqdm bar
    assert f["leftovers"] == [], "worker processes survived the interrupt"
    n_first = f["first"].count(b"\n")
    assert 3 <= n_first < N, "the sweep must be interrupted mid-way"
    r = f["resumed"]
    assert r.returncode in (0, 3), r.stderr
    summary = json.loads(r.stdout)
    assert summary["skipped"] == n_first and summary["ran"] == N - n_first
    data = (f["out"] / RESULTS_FILE).read_bytes()
    assert data.startswith(f["first"]), "finished rows were rewritten"
    rows = ResultsLog(f["out"] / RESULTS_FILE).read()
    assert len(rows) == N and len({row["key"] for row in rows}) == N


def test_sweep_rows_are_real_runs_and_the_matrix_is_written(finished):
    rows = ResultsLog(finished["out"] / RESULTS_FILE).read()
    ok = [r for r in rows if r["status"] == "ok"]
    assert len(ok) == N, [r.get("error") for r in rows if r["status"] != "ok"]
    for r in ok:
        res = r["result"]
        assert res["device"] == r["device"] and isinstance(res["fits"], bool) and res["constraints"]
        assert "timelines" not in res
    assert len({r["result"]["macs_total"] for r in ok}) > 1, "schedules differ, so must the work done"
    matrix = json.loads((finished["out"] / "matrix.json").read_text())
    assert matrix["devices"] == DEVICES and len(matrix["schedules"]) == 4
    for d in DEVICES:
        for s in matrix["schedules"]:
            c = matrix["cells"][d][s]
            assert c["fits"] in (True, False) and c["binding"]
        b = matrix["best"][d]
        if b is not None:
            assert matrix["cells"][d][b["schedule"]]["fits"] is True
    summary = json.loads(finished["resumed"].stdout)
    assert summary["best"] == matrix["best"]
    page = Path(summary["report"])
    assert page.is_file() and (page.parent / "feasibility.png").stat().st_size > 5000


def test_a_killed_worker_restarts_the_pool_and_loses_nothing(tmp_path):
    grid, out = write_grid(tmp_path), tmp_path / "out"
    proc = subprocess.Popen(_cli(str(grid), "--workers", "2", "--out", str(out), "--json", "--quiet"),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        _wait_lines(out / RESULTS_FILE, 2, proc)
        # the pool's workers are the forkserver's children (grandchildren of the sweep)
        workers = [w for c in _children(proc.pid) for w in _children(c)]
        assert workers, "no worker processes found"
        os.kill(workers[0], signal.SIGKILL)
        stdout, stderr = proc.communicate(timeout=300)
    finally:
        _end_session(proc)
    assert proc.returncode in (0, 3), stderr
    summary = json.loads(stdout)
    assert summary["pool_restarts"] >= 1 and len(summary["worker_deaths"]) == summary["pool_restarts"]
    assert "a worker process died (BrokenProcessPool)" in stderr
    rows = ResultsLog(out / RESULTS_FILE).read()
    assert len(rows) == N and len({r["key"] for r in rows}) == N
    assert all(r["status"] == "ok" for r in rows), [r.get("error") for r in rows]


def test_a_sweep_killed_outright_leaves_no_workers_and_resumes(tmp_path):
    """SIGKILL of the sweep itself (no clean-up runs): its workers notice and exit, the rows on disk
    are whole, and --resume finishes the grid."""
    grid, out = write_grid(tmp_path), tmp_path / "out"
    proc = subprocess.Popen(_cli(str(grid), "--workers", "2", "--out", str(out), "--quiet"),
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        _wait_lines(out / RESULTS_FILE, 2, proc)
        proc.kill()
        proc.wait(timeout=10)
        leftovers = _survivors(proc.pid)
    finally:
        _end_session(proc)
    assert leftovers == [], "pool workers outlived a killed sweep"
    n_first = len(ResultsLog(out / RESULTS_FILE).read())
    resumed = subprocess.run(_cli(str(grid), "--workers", "2", "--out", str(out), "--resume", "--json", "--quiet"),
                             capture_output=True, text=True, timeout=300)
    assert resumed.returncode in (0, 3), resumed.stderr
    assert json.loads(resumed.stdout)["skipped"] == n_first
    rows = ResultsLog(out / RESULTS_FILE).read()
    assert len(rows) == N and len({r["key"] for r in rows}) == N


def crash_on_batch_3(point, base, keep_timelines=False, inflight_dir=None):
    """A runner whose worker process dies (like a segfault or the host's OOM killer) on one scenario;
    every other scenario is a real run."""
    from simulator.sweep import run_point

    if point.overrides.get("schedule.batch") == 3:
        if inflight_dir:
            (Path(inflight_dir) / str(os.getpid())).write_text(point.key)
        os._exit(137)
    return run_point(point, base, keep_timelines, inflight_dir)


def test_a_scenario_that_kills_its_worker_becomes_an_error_row_and_the_rest_finish(tmp_path):
    g = tmp_path / "g.toml"
    g.write_text(GRID.format(duration=600.0, devices='["rpi-pico"]').split("[schedules.light]")[0]
                 + '"schedule.batch" = [2, 3, 4, 8]\n')
    outcome = run_sweep(load_grid(g), tmp_path / "out", workers=2, progress=False, runner=crash_on_batch_3)
    by_batch = {r["overrides"]["schedule.batch"]: r for r in outcome.rows}
    assert by_batch[3]["status"] == "error" and "worker process died" in by_batch[3]["error"]
    assert all(by_batch[b]["status"] == "ok" for b in (2, 4, 8))
    assert outcome.pool_restarts >= 1 and any(by_batch[3]["key"] in d for d in outcome.worker_deaths)
    rows = ResultsLog(tmp_path / "out" / RESULTS_FILE).read()
    assert len(rows) == 4 and len({r["key"] for r in rows}) == 4


def test_a_scenario_that_raises_becomes_an_error_row(tmp_path):
    """An error only the run finds (the grid check passed: a known data set, but of the wrong shape)."""
    g = tmp_path / "g.toml"
    g.write_text(GRID.format(duration=600.0, devices='["rpi-pico"]').split("[schedules.light]")[0]
                 + '"workload.dataset" = ["accel", "auto"]\n')
    grid = load_grid(g)
    outcome = run_sweep(grid, tmp_path / "out", workers=2, progress=False)
    assert [r["status"] for r in outcome.rows] == ["error", "ok"]
    assert "dataset 'accel' gives 192 values per sample but mlp:64-16-10 expects input 64" in outcome.rows[0]["error"]
    with pytest.raises(ValueError, match="pass --resume"):
        run_sweep(grid, tmp_path / "out", workers=1, progress=False)
    again = run_sweep(grid, tmp_path / "out", workers=1, progress=False, resume=True)
    assert again.ran == 0 and again.skipped == 2
    retried = run_sweep(grid, tmp_path / "out", workers=1, progress=False, resume=True, retry_errors=True)
    assert retried.ran == 1 and retried.skipped == 1 and [r["status"] for r in retried.rows] == ["error", "ok"]
    assert len(ResultsLog(tmp_path / "out" / RESULTS_FILE).read()) == 3   # appended, never rewritten


def test_same_grid_on_a_dask_local_cluster_gives_the_same_results(finished, tmp_path, capsys):
    distributed = pytest.importorskip("dask.distributed", reason="dask.distributed missing: pip install 'edgesim[dask]'")
    from simulator.cli import main

    out = tmp_path / "dask"
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cl:
        rc = main(["sweep", str(finished["grid"]), "--scheduler", cl.scheduler_address, "--out", str(out),
                   "--json", "--quiet"])
    summary = json.loads(capsys.readouterr().out)
    assert rc in (0, 3) and summary["ran"] == N and summary["errors"] == 0
    pool_rows = {r["key"]: r["result"] for r in ResultsLog(finished["out"] / RESULTS_FILE).read()}
    dask_rows = ResultsLog(out / RESULTS_FILE).read()
    assert len(dask_rows) == N
    for r in dask_rows:
        assert r["result"] == pool_rows[r["key"]], r["key"]
    assert (out / "matrix.json").read_bytes() == (finished["out"] / "matrix.json").read_bytes()


def test_unreachable_scheduler_is_a_clear_error(tmp_path):
    pytest.importorskip("dask.distributed")
    grid = load_grid(write_grid(tmp_path))
    with pytest.raises(ValueError, match="cannot reach the Dask scheduler"):
        run_sweep(grid, tmp_path / "x", scheduler="tcp://127.0.0.1:9", progress=False, connect_timeout_s=2)


def test_a_grid_point_runs_its_scenario_once_even_when_the_base_has_technique_variants():
    """The grid is the comparison: a base scenario's [compare] variants are not re-run per point."""
    from simulator.scenario import scenario_dict
    from simulator.sweep import Point, run_point

    base = scenario_dict("demo")
    assert base["compare"]["variants"], "the demo has technique variants"
    row = run_point(Point(key="k", index=0, device="stm32f405-pyboard", schedule="default", seed=0,
                          overrides={"duration_s": 600.0, "workload.model": "mlp:64-16-10"}), "demo")
    assert row["status"] == "ok", row.get("error")
    assert row["result"]["comparison"] is None


def test_sigterm_to_the_sweep_alone_exits_143_leaves_no_worker_and_names_the_resume_command(tmp_path):
    """What ``timeout`` and a CI cancel send: SIGTERM to the sweep process only (not its group)."""
    grid, out = write_grid(tmp_path), tmp_path / "out"
    proc = subprocess.Popen(_cli(str(grid), "--workers", "2", "--out", str(out), "--quiet"),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        _wait_lines(out / RESULTS_FILE, 2, proc)
        os.kill(proc.pid, signal.SIGTERM)
        _, stderr = proc.communicate(timeout=60)
        leftovers = _survivors(proc.pid)
    finally:
        _end_session(proc)
    assert proc.returncode == 143, stderr
    assert "terminated" in stderr and f"--resume --out {out}" in stderr
    assert leftovers == [], "pool workers outlived a terminated sweep"
    rows = ResultsLog(out / RESULTS_FILE).read()
    assert 2 <= len(rows) < N and all(r["status"] == "ok" for r in rows)
