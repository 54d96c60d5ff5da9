"""Property tests (issue #12): scenario and grid files mutated at random, key by key and byte by byte,
never make the command line print a traceback or exit 1; they run (0 / 3) or are refused as bad input (2)
with one line."""
from __future__ import annotations

import math

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from simulator.cli import main

SCENARIO = """\
name = "fuzz"
device = "stm32f405-pyboard"
duration_s = 30.0
[workload]
model = "mlp:64-16-10"
[pipeline]
sensor_rate_hz = 8.0
[schedule]
batch = 4
steps = 1
every_n = 4
[eval]
points = 1
"""

GRID = """\
name = "fuzz"
base = "demo"
[set]
duration_s = 30.0
"workload.model" = "mlp:64-16-10"
[axes]
device = ["rpi-pico"]
"schedule.batch" = [2, 4]
[schedules.a]
"schedule.steps" = 1
"""

KEYS = ["name", "seed", "duration_s", "device", "runtime", "workload.model", "workload.dataset", "workload.story",
        "workload.optimizer", "workload.lr", "workload.momentum", "pipeline.sensor_rate_hz", "pipeline.window",
        "pipeline.deadline_s", "pipeline.queue_capacity", "pipeline.label_every", "schedule.trigger",
        "schedule.every_n", "schedule.period_s", "schedule.batch", "schedule.steps", "schedule.memory_policy",
        "schedule.heap_policy", "schedule.replay", "schedule.max_steps", "schedule.techniques.etf",
        "schedule.techniques.instance_filter", "schedule.techniques.nope", "battery.initial_fraction",
        "battery.harvest_w_by_hour", "budgets.step_latency_s", "budgets.energy_per_day_j", "eval.points",
        "compare.variants", "bogus", "workload.bogus"]

# values a person might type, and worse; numbers small enough that a run that is valid stays short
VALUES = st.one_of(
    st.integers(min_value=-3, max_value=16),
    st.sampled_from([math.nan, math.inf, -math.inf, -1.0, 0.0, 1e-9, 0.5, 2.0, 30.0]),
    st.booleans(),
    st.sampled_from(["", "x", "../../up", "native", "micropython", "periodic", "charging", "heap", "best-fit",
                     "mlp:64-x-10", "mlp:16-12-10", "digits4", "accel", "adam", "plain", "shift", "rpi-pico",
                     "no-such-board", "bbc-microbit-v1"]),
    st.lists(st.integers(min_value=-1, max_value=3), max_size=3),
    st.just({}),
)


def _toml_value(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float):
        return "nan" if math.isnan(v) else ("inf" if v > 0 else "-inf") if math.isinf(v) else repr(v)
    if isinstance(v, str):
        return '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(v, dict):
        return "{}"
    if isinstance(v, list):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    return str(v)


MUTATION = st.one_of(
    st.tuples(st.just("set"), st.sampled_from(KEYS), VALUES),
    st.tuples(st.just("drop_line"), st.integers(min_value=0, max_value=40), st.none()),
    st.tuples(st.just("truncate"), st.integers(min_value=0, max_value=400), st.none()),
    st.tuples(st.just("garbage"), st.integers(min_value=0, max_value=400), st.binary(min_size=1, max_size=3)),
)


def _mutate(text: str, muts, table_for_set: str = "") -> bytes:
    data = text.encode()
    for kind, a, b in muts:
        if kind == "set":
            line = f'"{a}" = {_toml_value(b)}\n'
            if table_for_set:        # a grid: overrides go into a table
                data = data.replace(f"[{table_for_set}]\n".encode(), f"[{table_for_set}]\n{line}".encode(), 1)
            else:                    # a scenario: dotted keys at the top
                data = line.encode() + data
        elif kind == "drop_line":
            lines = data.split(b"\n")
            if lines:
                del lines[a % len(lines)]
            data = b"\n".join(lines)
        elif kind == "truncate":
            data = data[:a]
        else:
            i = a % (len(data) + 1)
            data = data[:i] + b + data[i:]
    return data


def _run(argv, capsys) -> tuple[int, str]:
    try:
        rc = main(argv)
    except SystemExit as e:          # argparse usage errors
        rc = e.code
    cap = capsys.readouterr()
    return rc, cap.err


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(muts=st.lists(MUTATION, min_size=1, max_size=3))
def test_mutated_scenarios_load_or_are_refused_in_one_line(tmp_path, muts):
    """The scenario check alone (fast): a mutated file loads, or raises what the command line turns into
    exit 2, with one line."""
    from simulator.inputs import profile_for
    from simulator.scenario import load_scenario, scenario_dict

    f = tmp_path / "s.toml"
    f.write_bytes(_mutate(SCENARIO, muts))
    try:
        sc = load_scenario(scenario_dict(f), where=str(f))
        profile_for(sc)
    except (ValueError, FileNotFoundError, NotADirectoryError, IsADirectoryError) as e:
        assert "\n" not in str(e), (muts, str(e))


@pytest.mark.slow
@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(muts=st.lists(MUTATION, min_size=1, max_size=3))
def test_mutated_scenarios_never_crash(tmp_path, capsys, muts):
    """The whole plan command, run to the end when the mutated scenario is valid."""
    f = tmp_path / "s.toml"
    f.write_bytes(_mutate(SCENARIO, muts))
    out = tmp_path / "out"
    if out.exists():
        import shutil

        shutil.rmtree(out)
    rc, err = _run(["plan", str(f), "--out", str(out), "--json"], capsys)
    assert rc in (0, 2, 3), (muts, err[-2000:])
    assert "Traceback" not in err, (muts, err[-2000:])
    if rc == 2:
        assert len(err.strip().splitlines()) == 1, (muts, err)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(muts=st.lists(MUTATION, min_size=1, max_size=3), table=st.sampled_from(["set", "axes", "schedules.a"]))
def test_mutated_grids_are_run_or_refused_in_one_line(tmp_path, muts, table):
    """The grid check (what runs before any scenario): a mutated grid loads, or it raises one of the
    errors the command line turns into exit 2 (never another exception: exit 1)."""
    from simulator.sweep import load_grid

    muts = [(k, a, ([b] if table == "axes" and k == "set" and not isinstance(b, list) else b)) for k, a, b in muts]
    g = tmp_path / "g.toml"
    g.write_bytes(_mutate(GRID, muts, table_for_set=table))
    try:
        grid = load_grid(g)
    except (ValueError, FileNotFoundError, NotADirectoryError, IsADirectoryError) as e:
        assert "\n" not in str(e), (muts, str(e))
        return
    assert grid.points()


@pytest.mark.parametrize("text", ["", "\x00\x01", "name = ", "[schedule]\nbatch = nan\n"])
def test_fixed_bad_scenarios_exit_2(tmp_path, capsys, text):
    f = tmp_path / "s.toml"
    f.write_text(text)
    rc, err = _run(["plan", str(f), "--out", str(tmp_path / "o")], capsys)
    assert rc == 2 and "Traceback" not in err and len(err.strip().splitlines()) == 1, err
