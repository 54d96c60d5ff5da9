"""A grid is checked whole before anything runs (issue #12): every [set] key, every schedule's keys and
values, every axis value, every spec, by the same validation as a scenario; a typo exits 2 with one line
naming the grid file, the table, the key and the value. Resume is keyed by the resolved scenario. The
sweep command's own input errors (--retry-errors without --resume, --out that is a file) exit 2 first."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from simulator.cli import main
from simulator.sweep import RESULTS_FILE, ResultsLog, load_grid, run_sweep

GOOD = """
name = "v"
base = "demo"
[set]
duration_s = 600.0
"workload.model" = "mlp:64-16-10"
[axes]
device = ["rpi-pico", "stm32f405-pyboard"]
[schedules.light]
"schedule.steps" = 1
[schedules.default]
"""


def _grid(tmp: Path, text: str) -> Path:
    g = tmp / "g.toml"
    g.write_text(text)
    return g


# (what is wrong, the grid text, what the one line must name)
TYPOS = [
    ("[set] key typo", GOOD.replace('duration_s = 600.0', 'duration_s = 600.0\n"schedule.batchh" = 4'),
     ["[set]", "schedule.batchh = 4", "not a known field"]),
    ("[set] bad value", GOOD.replace("duration_s = 600.0", "duration_s = -5.0"),
     ["[set]", "duration_s = -5.0", "a number > 0"]),
    ("[set] nan", GOOD.replace("duration_s = 600.0", "duration_s = nan"), ["[set]", "duration_s = nan"]),
    ("[set] inf", GOOD.replace("duration_s = 600.0", "duration_s = inf"), ["[set]", "duration_s = inf"]),
    ("schedule key typo", GOOD + '"schedule.bach" = 4\n', ["[schedules.default]", "schedule.bach = 4"]),
    ("schedule batch 0", GOOD + '"schedule.batch" = 0\n',
     ["[schedules.default]", "schedule.batch = 0", "an integer >= 1"]),
    ("schedule technique typo", GOOD + '"schedule.techniques.etff" = true\n',
     ["[schedules.default]", "schedule.techniques.etff = True"]),
    ("schedule bad choice", GOOD + '"schedule.trigger" = "sometimes"\n',
     ["[schedules.default]", "schedule.trigger = 'sometimes'", "one of"]),
    ("axis bad value", GOOD.replace("[axes]", '[axes]\n"schedule.memory_policy" = ["planned", "magic"]'),
     ["[axes]", "schedule.memory_policy = 'magic'"]),
    ("axis spec", GOOD.replace("[axes]", '[axes]\nworkload = ["mlp:64-x-10"]'),
     ["[axes]", "workload.model = 'mlp:64-x-10'"]),
    ("axis zoo name", GOOD.replace("[axes]", '[axes]\nworkload = ["no-such-model"]'),
     ["[axes]", "workload.model = 'no-such-model'"]),
    ("axis key typo", GOOD.replace("[axes]", '[axes]\n"schedule.bacth" = [1, 2]'), ["[axes]", "schedule.bacth = 1"]),
    ("dataset typo", GOOD.replace("duration_s = 600.0", 'duration_s = 600.0\n"workload.dataset" = "mnist"'),
     ["[set]", "workload.dataset = 'mnist'"]),
    ("range nan", GOOD.replace("[axes]", "[axes]\nseed = {from = 0, to = nan}"), ["axes.seed.to", "finite"]),
    ("name escapes", GOOD.replace('name = "v"', 'name = "../../escape"'), ["name must be a plain name"]),
    ("device typo", GOOD.replace('"rpi-pico"', '"rpi-picoo"'), ["axes.device = 'rpi-picoo'"]),
]


@pytest.mark.parametrize("what, text, needles", TYPOS, ids=[t[0] for t in TYPOS])
def test_a_bad_grid_exits_2_naming_file_table_key_value_before_anything_runs(tmp_path, capsys, what, text, needles):
    g = _grid(tmp_path, text)
    rc = main(["sweep", str(g), "--out", str(tmp_path / "out"), "--quiet"])
    err = capsys.readouterr().err.strip()
    assert rc == 2, err
    assert "\n" not in err and "Traceback" not in err, err
    assert str(g) in err, err
    for n in needles:
        assert n in err, (what, err)
    assert not (tmp_path / "out" / RESULTS_FILE).exists(), "nothing may run before the grid is valid"


def test_the_bundled_grids_pass_the_check():
    for g in sorted((Path(__file__).resolve().parent.parent / "simulator" / "sweeps").glob("*.toml")):
        assert load_grid(g).points()


def fake_runner(point, base, keep_timelines=False, inflight_dir=None):
    """A stand-in for the simulator: an ok row that records what it was given (fast, picklable)."""
    from simulator.scenario import apply_overrides

    sc = apply_overrides(base if isinstance(base, dict) else {"base": base}, point.overrides)
    return {"key": point.key, "index": point.index, "device": point.device, "schedule": point.schedule,
            "seed": point.seed, "overrides": point.overrides, "status": "ok", "elapsed_s": 0.0,
            "result": {"fits": True, "constraints": [], "duration_s": sc.get("duration_s")}}


def test_resume_is_keyed_by_the_resolved_scenario(tmp_path):
    g = _grid(tmp_path, GOOD)
    out = tmp_path / "out"
    first = run_sweep(load_grid(g), out, workers=1, progress=False, runner=fake_runner)
    assert first.ran == 4 and first.stale == 0
    same = run_sweep(load_grid(g), out, workers=1, progress=False, resume=True, runner=fake_runner)
    assert same.ran == 0 and same.skipped == 4
    # an edited [set] changes every point: all four are stale and run again with the new value
    g.write_text(GOOD.replace("duration_s = 600.0", "duration_s = 900.0"))
    edited = run_sweep(load_grid(g), out, workers=1, progress=False, resume=True, runner=fake_runner)
    assert edited.ran == 4 and edited.stale == 4 and edited.skipped == 0
    assert {r["result"]["duration_s"] for r in edited.rows} == {900.0}
    # an edited schedule changes only its own points
    g.write_text(GOOD.replace("duration_s = 600.0", "duration_s = 900.0").replace('"schedule.steps" = 1',
                                                                                 '"schedule.steps" = 2'))
    one = run_sweep(load_grid(g), out, workers=1, progress=False, resume=True, runner=fake_runner)
    assert one.ran == 2 and one.stale == 2 and {r["schedule"] for r in one.rows[:1]} == {"light"}
    rows = ResultsLog(out / RESULTS_FILE).read()
    assert len(rows) == 4 + 4 + 2, "rows are appended, never rewritten"
    assert all(len(r["scenario_sha256"]) == 64 for r in rows)


def test_retry_errors_needs_resume(tmp_path, capsys):
    g = _grid(tmp_path, GOOD)
    assert main(["sweep", str(g), "--retry-errors", "--out", str(tmp_path / "o"), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "--retry-errors" in err and "--resume" in err
    assert not (tmp_path / "o").exists()


def test_out_that_is_a_file_exits_2_before_any_work(tmp_path, capsys):
    g = _grid(tmp_path, GOOD)
    f = tmp_path / "file"
    f.write_text("keep me")
    assert main(["sweep", str(g), "--out", str(f), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert f"--out {f}" in err and "existing file" in err
    assert f.read_text() == "keep me"


def test_json_summary_alone_on_stdout_and_error_rows_named(tmp_path, capfd):
    """--json: stdout is one JSON object (progress stays on stderr); error rows carry their message."""
    g = _grid(tmp_path, GOOD.replace("[axes]", '[axes]\n"workload.dataset" = ["accel"]'))
    rc = main(["sweep", str(g), "--out", str(tmp_path / "o"), "--workers", "2", "--json"])
    out, err = capfd.readouterr()
    summary = json.loads(out)
    assert rc == 3 and summary["errors"] == 4
    assert all("dataset 'accel' gives 192 values" in e["error"] for e in summary["error_rows"])
    assert "sweep v" in err                      # the progress bar, on stderr
    rc = main(["sweep", str(g), "--out", str(tmp_path / "o"), "--resume", "--retry-errors", "--quiet"])
    out = capfd.readouterr().out
    assert rc == 3 and out.count("error: device=") == 4 and "dataset 'accel' gives 192 values" in out


def test_the_boards_grid_comments_say_what_its_schedules_do():
    """Each named schedule's comment ("N steps of B ... after every E labels") matches the scenario it
    resolves to (the demo's schedule with the schedule's overrides)."""
    import re

    from simulator.scenario import apply_overrides, load_scenario, scenario_dict

    path = Path(__file__).resolve().parent.parent / "simulator" / "sweeps" / "boards.toml"
    grid = load_grid(path)
    said = {}
    for m in re.finditer(r"^\[schedules\.([\w-]+)\][^\n]*?(\d+) steps? of (\d+)[^\n]*?after every (\d+) labels",
                         path.read_text(), re.M):
        said[m.group(1)] = tuple(int(x) for x in m.groups()[1:])
    assert {"light", "default", "heavy"} <= set(said)
    base = scenario_dict(grid.base)
    for name, (steps, batch, every) in said.items():
        sc = load_scenario(apply_overrides(base, {**grid.fixed, **grid.schedules[name]}))
        assert (sc.schedule.steps, sc.schedule.batch, sc.schedule.every_n) == (steps, batch, every), name
