"""Sweeps on a real Dask LocalCluster (worker processes): workers are warmed once (the simulator imported
before the first task, as the pool's fork server does), and a thousand-scenario sweep streams its rows to
results.jsonl as they finish, on the Dask runner and on the local pool alike."""
from __future__ import annotations

import sys
import time

import pytest

from simulator.sweep import RESULTS_FILE, ResultsLog, parse_grid, run_sweep
from simulator.sweep.worker import PRELOAD_MODULES

distributed = pytest.importorskip("dask.distributed", reason="dask.distributed missing: pip install 'edgesim[dask]'")

pytestmark = pytest.mark.slow


def quick_runner(point, base, keep_timelines=False, inflight_dir=None):
    """A stand-in for the simulator (imports nothing of it): a few ms of work, and the wall-clock time
    the row was finished, so the test can tell when it reached the file."""
    time.sleep(0.002)
    return {"key": point.key, "index": point.index, "device": point.device, "schedule": point.schedule,
            "seed": point.seed, "overrides": point.overrides, "status": "ok", "elapsed_s": 0.002,
            "result": {"fits": True, "constraints": [], "finished_at": time.time(),
                       "base_name": base.get("name") if isinstance(base, dict) else base}}


def _modules_loaded(names):
    return [m for m in names if m in sys.modules]


@pytest.fixture(scope="module")
def cluster():
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  dashboard_address=None) as cl:
        yield cl


def _grid(n: int):
    return parse_grid({"name": "many", "base": "demo", "axes": {"seed": {"from": 0, "to": n - 1}}}, check=False)


def test_every_dask_worker_imports_the_simulator_before_its_first_task(cluster, tmp_path):
    with distributed.Client(cluster) as client:
        before = client.run(_modules_loaded, list(PRELOAD_MODULES))
    assert all(set(v) < set(PRELOAD_MODULES) for v in before.values()), before   # fresh workers: not yet
    # one task only: at most one worker runs it, and quick_runner imports none of the preload list itself
    out = run_sweep(_grid(1), tmp_path / "one", scheduler=cluster.scheduler_address, progress=False,
                    runner=quick_runner)
    assert out.ran == 1 and out.rows[0]["status"] == "ok"
    assert out.rows[0]["result"]["base_name"] == "demo"          # the scattered base scenario arrived
    with distributed.Client(cluster) as client:
        after = client.run(_modules_loaded, list(PRELOAD_MODULES))
        plugins = client.run(lambda dask_worker: sorted(dask_worker.plugins))
    assert len(after) == 2
    for addr, mods in after.items():
        assert set(mods) == set(PRELOAD_MODULES), (addr, mods)
    assert all("edgesim-sweep-warm" in p for p in plugins.values()), plugins


@pytest.mark.parametrize("runner_kind", ["dask", "pool"])
def test_a_thousand_scenarios_stream_to_the_results_file_as_they_finish(cluster, tmp_path, runner_kind):
    n = 1000
    out = tmp_path / runner_kind
    log = ResultsLog(out / RESULTS_FILE)
    seen: list[tuple[float, int]] = []        # (time recorded, rows on disk at that moment)

    def on_row(row):
        seen.append((time.time(), len(log.read())))

    kw = {"scheduler": cluster.scheduler_address} if runner_kind == "dask" else {"workers": 2}
    outcome = run_sweep(_grid(n), out, progress=False, runner=quick_runner, on_row=on_row, **kw)
    assert outcome.ran == n and outcome.errors == 0 and len(outcome.rows) == n
    rows = log.read()
    assert len(rows) == n and len({r["key"] for r in rows}) == n
    # each row is on disk when it is reported, one more each time
    assert [c for _, c in seen] == list(range(1, n + 1))
    # streamed: the first row reached the file long before the last scenario had finished
    last_finished = max(r["result"]["finished_at"] for r in rows)
    assert seen[0][0] < last_finished - 0.1, (seen[0][0], last_finished)
