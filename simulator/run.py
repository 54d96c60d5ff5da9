"""Running scenarios: ``run_scenario`` (with its technique variants) and ``simulate`` (docs/architecture.md §3).

Both return plain JSON-able dicts (see ``simulator/result.py``), so they cross process pools and Dask
unchanged. No wall-clock value goes into a result: the same scenario and seed give byte-identical
``json.dumps(result, sort_keys=True)``.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from device_profiles.loader import DeviceProfile
from workloads.techniques import Techniques

from .horizon import check_horizon
from .inputs import job_for, profile_for
from .scenario import Scenario, load_scenario
from .simulation import Simulation
from .static_fit import check_static_fit

AS_SCHEDULED = "as scheduled"


def simulate(sc: Scenario, *, job: Any = None, profile: DeviceProfile | None = None,
             progress: bool = False) -> dict[str, Any]:
    """Run one validated scenario (optionally with a given job/profile, for tests) and build its result."""
    check_horizon(sc.duration_s, sc.where)
    profile = profile or profile_for(sc)
    probe = None
    if job is None:
        # the twin traces a worst-case first step for the memory plan: instance filtering off and the early
        # filter keeping every sample (its head still runs), so the static arena holds a full batch however
        # many samples later steps skip
        job = job_for(sc)
        keep_all = {"instance_filter": None}
        if sc.techniques.early_filter is not None:
            keep_all["early_filter"] = 0.0
        probe = job_for(dataclasses.replace(sc, techniques=dataclasses.replace(sc.techniques, **keep_all)))
    sim = Simulation(sc, profile, job, probe_job=probe)
    sim.run(progress=progress)
    return sim.result()


def variant_scenarios(sc: Scenario) -> list[tuple[str, Scenario]]:
    """The scenario as scheduled and once per ``[compare]`` technique variant, each without variants."""
    runs = [(AS_SCHEDULED, dataclasses.replace(sc, compare=()))]
    for v in sc.compare:
        runs.append((v.label, dataclasses.replace(sc, techniques=v.techniques, compare=(),
                                                  where=f"{sc.where} [compare {v.label!r}]")))
    return runs


def run_scenario(scenario: dict | str | Path, *, progress: bool = False, workers: int = 1,
                 where: str | None = None, compare: bool = True) -> dict[str, Any]:
    """Simulate a scenario (dict, TOML path or embedded name) and return the result dict.

    With ``[compare] variants`` the same scenario also runs once per technique variant and the
    figures land in ``result["comparison"]``; ``workers > 1`` runs them in a process pool (the
    result does not depend on it). ``compare=False`` skips the variants (sweeps). ``where`` names a
    dict scenario's origin in error messages.
    """
    sc = load_scenario(scenario, where=where)
    check_horizon(sc.duration_s, sc.where)
    check_static_fit(sc, profile_for(sc))      # fail fast, before any pre-training
    if not sc.compare or not compare:
        return simulate(sc, progress=progress)
    runs = variant_scenarios(sc)
    results: list[dict[str, Any] | None] = [None] * len(runs)
    bar = None
    if progress:
        from tqdm import tqdm
        bar = tqdm(total=len(runs), desc=f"{sc.name}: scenario + {len(sc.compare)} technique variants", unit="run",
                   leave=False)
    if workers > 1:
        from concurrent.futures import ProcessPoolExecutor, as_completed

        job_for(sc)   # warm the workloads' pre-training cache once; forked workers inherit it
        from .pools import stop_pool

        pool = ProcessPoolExecutor(max_workers=min(workers, len(runs)))
        try:
            futs = {pool.submit(simulate, s): i for i, (_, s) in enumerate(runs)}
            for f in as_completed(futs):
                results[futs[f]] = f.result()
                if bar:
                    bar.update(1)
        except BaseException:      # Ctrl-C or SIGTERM at any point, even inside submit: no worker left
            stop_pool(pool)
            raise
        pool.shutdown(wait=True)
    else:
        for i, (_, s) in enumerate(runs):
            results[i] = simulate(s)
            if bar:
                bar.update(1)
    if bar:
        bar.close()
    result = results[0]
    result["comparison"] = [comparison_row(label, s.techniques, r) for (label, s), r in zip(runs, results, strict=True)]
    return result


def comparison_row(label: str, tech: Techniques, r: dict[str, Any]) -> dict[str, Any]:
    """One technique variant's row of ``result["comparison"]``."""
    need = (r["fatal"] or {}).get("ram_needed_bytes")
    return {"label": label, "techniques": tech.active(), "macs_total": r["macs_total"],
            "peak_ram_bytes": max(r["peak_ram_bytes"], need or 0),   # out of memory: what it would have needed
            "lower_bound_ram_bytes": r["lower_bound_ram_bytes"],
            "accuracy_after": r["accuracy_after"], "retention_after": r["retention_after"],
            "energy_per_day_j": r["energy_per_day_j"], "training_steps": r["training_steps"],
            "step_latency_s": r["step_latency_s"], "fits": r["fits"],
            "fatal": None if not r["fatal"] else f"{r['fatal']['kind']} at op {r['fatal']['op']!r}",
            "ram_needed_bytes": (r["fatal"] or {}).get("ram_needed_bytes")}
