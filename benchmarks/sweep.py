"""Sweep throughput: scenarios per second with 1 and 2 local worker processes and on a Dask LocalCluster
(2 worker processes), side by side in one run, same grid, start-up included. Also checks that the three
give identical results (the simulator is deterministic).

    .venv/bin/python benchmarks/sweep.py [--duration-s 3600] [--devices 4]
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from simulator.sweep import parse_grid, run_sweep  # noqa: E402

DEVICES = ["bbc-microbit-v2", "arduino-nano-33-ble", "rpi-pico", "stm32f405-pyboard", "stm32l476-nucleo",
           "stm32f746-disco"]


def make_grid(duration_s: float, n_devices: int) -> dict:
    return {
        "name": "bench",
        "base": "demo",
        "set": {"duration_s": duration_s, "workload.model": "mlp:64-16-10",
                "eval.points": 2},
        "axes": {"device": DEVICES[:n_devices]},
        "schedules": {"light": {"schedule.batch": 4, "schedule.steps": 1}, "default": {},
                      "heavy": {"schedule.batch": 16, "schedule.steps": 4, "schedule.every_n": 16}},
    }


def _burn(n: int) -> int:
    s = 0
    for i in range(n):
        s += i * i
    return s


def free_cores_control(n: int = 3_000_000) -> float:
    """Speed-up of 2 processes over 1 on pure-Python work: what the host can give a 2-worker sweep
    right now (other load on the machine shows up here, not only in the sweep rows)."""
    from concurrent.futures import ProcessPoolExecutor

    t0 = time.perf_counter()
    for _ in range(4):
        _burn(n)
    serial = time.perf_counter() - t0
    with ProcessPoolExecutor(2) as ex:
        ex.submit(int).result()
        t0 = time.perf_counter()
        list(ex.map(_burn, [n] * 4))
        par = time.perf_counter() - t0
    return serial / par


def timed(label: str, fn) -> tuple[str, float, list[dict]]:
    t0 = time.perf_counter()
    outcome = fn()
    return label, time.perf_counter() - t0, outcome.rows


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--duration-s", type=float, default=21600.0, help="simulated time per scenario (s)")
    ap.add_argument("--devices", type=int, default=6, help=f"devices in the grid (max {len(DEVICES)})")
    args = ap.parse_args()
    grid = parse_grid(make_grid(args.duration_s, args.devices))
    n = len(grid.points())
    print(f"grid: {args.devices} devices x 3 schedules = {n} scenarios of {args.duration_s:g} s simulated; "
          f"host CPUs: {os.cpu_count()}")
    # start the pool's fork server once, untimed (it imports the simulator and scikit-learn once for
    # every later pool in this process): both pool rows then measure the same thing
    from simulator.sweep.pool import new_pool

    t0 = time.perf_counter()
    ex = new_pool(1)
    ex.submit(int).result()
    ex.shutdown()
    print(f"fork server start-up (excluded below): {time.perf_counter() - t0:.2f} s")
    runs = []
    with tempfile.TemporaryDirectory() as tmp:
        for w in (1, 2):
            runs.append(timed(f"process pool, {w} worker{'s' if w > 1 else ''}",
                              lambda w=w: run_sweep(grid, Path(tmp) / f"pool{w}", workers=w, progress=False)))
        try:
            from dask.distributed import LocalCluster
        except ImportError:
            print("dask.distributed missing: pip install 'edgesim[dask]' to add the Dask column")
        else:
            t0 = time.perf_counter()
            with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cl:
                print(f"Dask LocalCluster start-up (excluded below): {time.perf_counter() - t0:.2f} s")
                runs.append(timed("Dask LocalCluster, 2 workers",
                                  lambda: run_sweep(grid, Path(tmp) / "dask", scheduler=cl.scheduler_address,
                                                    progress=False)))
    base = runs[0][1]
    print(f"{'runner':32s} {'wall (s)':>9s} {'scenarios/s':>12s} {'speed-up vs 1 worker':>21s} {'errors':>7s}")
    for label, wall, rows in runs:
        errs = sum(r["status"] != "ok" for r in rows)
        print(f"{label:32s} {wall:9.2f} {n / wall:12.2f} {base / wall:20.2f}x {errs:7d}")
    ref = {r["key"]: json.dumps(r.get("result"), sort_keys=True) for r in runs[0][2]}
    same = all({r["key"]: json.dumps(r.get("result"), sort_keys=True) for r in rows} == ref for _, _, rows in runs)
    print(f"identical results across runners: {'yes' if same else 'NO'}")
    print(f"control: 2 processes of pure-Python work run {free_cores_control():.2f}x as fast as 1 on this host now "
          "(about 2x on two idle cores; lower means other load, and caps the sweep's speed-up too)")
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
