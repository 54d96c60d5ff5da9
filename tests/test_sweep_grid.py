"""Sweep machinery without the simulator: grid files, the JSONL log, the feasibility matrix logic."""
from __future__ import annotations

import json
import math

import pytest

from simulator.sweep import Point, ResultsLog, binding_constraint, feasibility, load_grid, parse_grid

BASE = {"name": "t", "duration_s": 60.0}


def test_grid_expands_in_fixed_order_with_labels_and_ranges(tmp_path):
    g = tmp_path / "g.toml"
    g.write_text("""
name = "small"
base = {name = "t", duration_s = 60.0}
[axes]
device = ["bbc-microbit-v1", "rpi-pico"]
workload = ["mlp:16-12-10"]
"schedule.batch" = {from = 2, to = 6, step = 2}
seed = [0, 1]
[schedules.plain]
[schedules.etf]
"schedule.techniques.etf" = true
""")
    grid = load_grid(g)
    pts = grid.points()
    assert len(pts) == 2 * 2 * 1 * 3 * 2
    assert [p.index for p in pts] == list(range(len(pts)))
    assert len({p.key for p in pts}) == len(pts)
    p = pts[0]
    assert p.device == "bbc-microbit-v1" and p.seed == 0
    assert p.schedule == "plain model=mlp:16-12-10 batch=2"
    assert p.overrides == {"device": "bbc-microbit-v1", "workload.model": "mlp:16-12-10", "schedule.batch": 2,
                           "seed": 0}
    etf = [q for q in pts if q.schedule.startswith("etf")][0]
    assert etf.overrides["schedule.techniques.etf"] is True
    assert {q.overrides["schedule.batch"] for q in pts} == {2, 4, 6}
    assert grid.name == "small"


def test_nested_tables_flatten_to_dotted_keys_and_float_ranges():
    grid = parse_grid({"base": BASE, "axes": {"schedule": {"period_s": {"from": 0.5, "to": 1.5, "step": 0.5}}}})
    assert grid.axes == {"schedule.period_s": [0.5, 1.0, 1.5]}
    assert [p.schedule for p in grid.points()] == ["period_s=0.5", "period_s=1.0", "period_s=1.5"]


def test_star_means_every_bundled_profile():
    from device_profiles import list_profiles

    grid = parse_grid({"base": BASE, "axes": {"device": "*"}})
    assert grid.axes["device"] == [p.name for p in list_profiles()]


@pytest.mark.parametrize("raw, needle", [
    ({"base": BASE, "axes": {"device": ["no-such-board"]}}, "axes.device = 'no-such-board'"),
    ({"base": BASE, "axes": {"seed": []}}, "axes.seed is empty"),
    ({"base": BASE, "axes": {"seed": [1, 1]}}, "axes.seed repeats a value"),
    ({"base": BASE, "axes": {"schedule.batch": {"from": 4, "to": 1}}}, "'to' (1) is below 'from' (4)"),
    ({"base": BASE, "axes": {"schedule.batch": {"from": 1, "to": 4, "step": 0}}}, "step must be > 0"),
    ({"base": BASE, "axes": {"schedule.batch": {"from": "a", "to": 4}}}, "from must be a finite number"),
    ({"base": BASE, "axes": {"schedule.batch": {"to": 4}}}, "a range needs 'from' and 'to'"),
    ({"base": BASE, "colour": "red"}, "unknown key 'colour'"),
    ({"axes": {}}, "'base' is missing"),
    ({"base": "nowhere.toml"}, "base = 'nowhere.toml'"),
    ({"base": BASE, "schedules": {"x": 3}}, "schedules.x must be a table"),
    ({"base": BASE, "keep_timelines": "yes"}, "keep_timelines must be true or false"),
])
def test_bad_grids_name_the_file_field_and_value(tmp_path, raw, needle):
    with pytest.raises(ValueError) as e:
        parse_grid(raw, str(tmp_path / "grid.toml"))
    assert needle in str(e.value)
    assert "grid.toml" in str(e.value)


def test_bad_toml_and_missing_file(tmp_path):
    p = tmp_path / "bad.toml"
    p.write_text("axes = [")
    with pytest.raises(ValueError, match="bad.toml: malformed TOML"):
        load_grid(p)
    with pytest.raises(FileNotFoundError, match="missing.toml"):
        load_grid(tmp_path / "missing.toml")


def _row(key: str, index: int = 0, **kw) -> dict:
    return {"key": key, "index": index, "status": "ok", **kw}


def test_results_log_ignores_and_repairs_a_torn_last_line(tmp_path):
    log = ResultsLog(tmp_path / "results.jsonl")
    log.append(_row("a", 0))
    log.append(_row("b", 1))
    with open(log.path, "ab") as f:
        f.write(b'{"key": "c", "ind')          # a crash mid-write
    assert [r["key"] for r in log.read()] == ["a", "b"]
    assert log.path.read_bytes().endswith(b'"ind')      # read() alone does not change the file
    assert [r["key"] for r in log.read(repair=True)] == ["a", "b"]
    log.append(_row("c", 2))
    assert [r["key"] for r in log.read()] == ["a", "b", "c"]
    assert all(json.loads(line) for line in log.path.read_text().splitlines())


def test_results_log_refuses_a_corrupt_middle_line(tmp_path):
    log = ResultsLog(tmp_path / "results.jsonl")
    log.append(_row("a"))
    with open(log.path, "ab") as f:
        f.write(b"garbage\n")
    log.append(_row("b"))
    with pytest.raises(ValueError, match="line 2 is not a result row"):
        log.read()


def _c(name, budget, observed, ok=None, unit="B"):
    margin = budget - observed
    return {"name": name, "budget": budget, "observed": observed, "unit": unit, "margin": margin,
            "ok": margin >= 0 if ok is None else ok}


def test_binding_constraint_is_first_violation_else_least_relative_margin():
    r = {"constraints": [_c("ram", 1000, 900), _c("energy_per_day", 100.0, 20.0, unit="J")]}
    b = binding_constraint(r)
    assert b["name"] == "ram" and math.isclose(b["rel_margin"], 0.1)
    r["constraints"].append(_c("step_latency", 1.0, 2.0, unit="s"))
    r["first_violation"] = {"constraint": "step_latency", "time_s": 3.0, "op": "x", "message": "slow"}
    assert binding_constraint(r)["name"] == "step_latency"
    r["fatal"] = {"kind": "out_of_memory", "time_s": 1.0, "op": "y", "message": "oom"}
    assert binding_constraint(r)["name"] == "out_of_memory"     # no peak_ram row: the event itself
    r["constraints"].append(_c("peak_ram", 16384, 16640))
    b = binding_constraint(r)
    assert b["name"] == "peak_ram" and b["fatal"] == "out_of_memory" and b["margin"] == -256


def _res(fits, ram_obs, gain, energy):
    cons = [_c("ram", 1000, ram_obs), _c("energy_per_day", 500.0, energy, unit="J")]
    return {"fits": fits, "constraints": cons, "accuracy_before": 0.1, "accuracy_after": 0.1 + gain,
            "energy_per_day_j": energy, "peak_ram_bytes": ram_obs, "ram_budget_bytes": 1000,
            "first_violation": None if fits else {"constraint": "ram", "time_s": 0, "op": "o", "message": "m"}}


def test_feasibility_matrix_and_best_schedule_by_gain_then_energy():
    rows, i = [], 0
    table = {("dev-a", "s1"): _res(True, 500, 0.30, 200.0),
             ("dev-a", "s2"): _res(True, 600, 0.30, 150.0),     # same gain, less energy: best
             ("dev-a", "s3"): _res(True, 400, 0.20, 50.0),
             ("dev-b", "s1"): _res(False, 1200, 0.40, 100.0),
             ("dev-b", "s2"): _res(True, 990, 0.10, 100.0)}
    for (d, s), res in table.items():
        for seed in (0, 1):
            rows.append({**_row(f"{d}|{s}|{seed}", i), "device": d, "schedule": s, "seed": seed, "result": res})
            i += 1
    rows.append({"key": "dev-b|s3|0", "index": i, "device": "dev-b", "schedule": "s3", "seed": 0,
                 "status": "error", "error": "ValueError: bad"})
    fz = feasibility(reversed(rows))                           # completion order does not matter
    assert fz["devices"] == ["dev-a", "dev-b"] and fz["schedules"] == ["s1", "s2", "s3"]
    assert fz["best"]["dev-a"]["schedule"] == "s2"
    assert fz["best"]["dev-b"]["schedule"] == "s2"
    b1 = fz["cells"]["dev-b"]["s1"]
    assert b1["fits"] is False and b1["binding"] == "ram" and b1["margin"] == -200
    assert fz["cells"]["dev-b"]["s2"]["binding"] == "ram"
    assert math.isclose(fz["cells"]["dev-b"]["s2"]["rel_margin"], 0.01)
    assert fz["cells"]["dev-b"]["s3"]["fits"] is None and "bad" in fz["cells"]["dev-b"]["s3"]["error"]
    assert fz["cells"]["dev-a"]["s1"]["runs"] == 2


def test_a_cell_fits_only_if_every_seed_fits():
    rows = [{**_row("a|s|0", 0), "device": "a", "schedule": "s", "seed": 0, "result": _res(True, 500, 0.1, 10.0)},
            {**_row("a|s|1", 1), "device": "a", "schedule": "s", "seed": 1, "result": _res(False, 1100, 0.1, 10.0)}]
    fz = feasibility(rows)
    assert fz["cells"]["a"]["s"]["fits"] is False
    assert fz["best"]["a"] is None


def test_point_is_picklable_for_process_pools():
    import pickle

    p = Point(key="k", index=0, device="d", schedule="s", seed=0, overrides={"seed": 0})
    assert pickle.loads(pickle.dumps(p)) == p


def test_results_are_made_plain_json_without_touching_strings():
    import numpy as np

    from simulator.sweep.worker import plain as _plain

    out = _plain({"a": np.float32(1.5), "b": [float("nan"), float("inf"), -float("inf")], "c": np.arange(2),
                  "msg": "NaN and Infinity stay words"})
    assert out == {"a": 1.5, "b": [None, "inf", "-inf"], "c": [0, 1], "msg": "NaN and Infinity stay words"}


def test_binary_grid_and_directory_name_the_file(tmp_path):
    p = tmp_path / "grid.toml"
    p.write_bytes(b"\xff\xfe\x00axes")
    with pytest.raises(ValueError, match=r"grid.toml: not a UTF-8 text file"):
        load_grid(p)
    with pytest.raises(ValueError, match=r"sub.toml: is a directory, not a sweep .toml file"):
        (tmp_path / "sub.toml").mkdir()
        load_grid(tmp_path / "sub.toml")


def test_a_model_refused_by_the_static_check_is_a_non_fitting_cell_not_an_error():
    ok = {"fits": True, "constraints": [{"name": "peak_ram", "budget": 100, "margin": 50, "ok": True}],
          "accuracy_before": 0.1, "accuracy_after": 0.5, "energy_per_day_j": 1.0, "peak_ram_bytes": 50,
          "ram_budget_bytes": 100}
    rows = [{"key": "a", "index": 0, "device": "d", "schedule": "small", "status": "ok", "result": ok},
            {"key": "b", "index": 1, "device": "d", "schedule": "huge", "status": "error",
             "error": "ModelTooBig: x.toml: workload 'mlp:64-100000-10' cannot fit d: ..."}]
    fz = feasibility(rows)
    huge = fz["cells"]["d"]["huge"]
    assert huge["fits"] is False and huge["binding"] == "peak_ram" and huge["fatal"] == "too_big"
    assert fz["best"]["d"]["schedule"] == "small"


def test_the_matrix_peak_ram_is_the_verdicts_figure():
    """Out of memory: the cell shows in use + the allocation that failed, as the verdict and the report do."""
    dead = {"fits": False, "peak_ram_bytes": 12_000, "ram_budget_bytes": 16_384,
            "fatal": {"kind": "out_of_memory", "ram_needed_bytes": 16_600, "message": "oom"},
            "constraints": [{"name": "peak_ram", "budget": 16_384, "observed": 16_600, "margin": -216, "ok": False}]}
    fz = feasibility([{"key": "k", "index": 0, "device": "d", "schedule": "s", "status": "ok", "result": dead}])
    assert fz["cells"]["d"]["s"]["peak_ram_bytes"] == 16_600
