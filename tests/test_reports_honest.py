"""Reports tell the truth about a run that died (issue #12): plots mark where it stopped and stop there,
no empty battery or learning plots, no "first training burst" when nothing trained, constraints that were
never observed say so, one peak-RAM figure, energy per day in J/day, a technique variant that did not fit
is marked, step ticks are integers, the instructions line is not hidden on the frame, and no "AGREES"
sits above a red row."""
from __future__ import annotations

import functools
import re

import pytest

from reports import render_emulation, render_run
from reports.plots import inspect_figures

try:
    from test_reports_render import EMU, Page, tiny_result
except ImportError:  # tests/ imported as a package
    from tests.test_reports_render import EMU, Page, tiny_result


@functools.cache
def dead_result() -> dict:
    """A real run that dies at t = 0: a 64-24-10 MLP's weights fit the micro:bit's heap (the static check
    passes), its weights and SGD momentum buffers together do not."""
    from simulator.run import run_scenario

    return run_scenario({"name": "dead", "device": "bbc-microbit-v1", "duration_s": 3600.0,
                         "workload": {"model": "mlp:64-24-10"}, "schedule": {"batch": 1}})


@pytest.fixture(scope="module")
def dead(tmp_path_factory):
    out = tmp_path_factory.mktemp("dead")
    with inspect_figures() as figs:
        page = render_run(dead_result(), out)
    return dead_result(), page, Page(page.read_text()), figs, out


def test_the_run_really_died_at_t0(dead):
    r = dead[0]
    assert r["fatal"]["kind"] == "out_of_memory" and r["fatal"]["time_s"] == 0.0 and r["training_steps"] == 0


def test_a_dead_run_has_no_empty_battery_or_learning_plot(dead):
    _, page, _, _, out = dead
    assert not (out / "battery.png").exists() and not (out / "learning.png").exists()
    text = page.read_text()
    assert "No battery plot" in text and "No learning plot: no training step ran" in text


def test_dead_run_plots_mark_where_it_stopped_and_no_training_zoom(dead):
    figs = dead[3]
    titles = [p["title"] for f in figs for p in f["panels"]]
    assert not any("first training burst" in t for t in titles), titles
    marked = [f for f in figs if any(t.startswith("run stopped: out of memory at t = 0 s") for t in f["legend_texts"])]
    assert len(marked) == 2, [f["legend_texts"] for f in figs]            # the memory and the CPU plot
    assert any("in use + the allocation that failed" in t for f in figs for t in f["legend_texts"])


def test_constraints_never_observed_say_not_observed(dead):
    r, _, p, _, _ = dead
    table = next(t for t in p.tables if t[0][:2] == ["constraint", "budget"])
    status = {row[0]: row[5] for row in table[1:]}
    never = [c["name"] for c in r["constraints"] if c["observed"] is None]
    assert never, "the dead run leaves some constraints unobserved"
    for name in never:
        assert status[name] == "not observed", (name, status)
    assert status["peak_ram"] == "VIOLATED"


def test_one_peak_ram_figure_per_run(dead):
    r, page, p, _, _ = dead
    observed = next(c["observed"] for c in r["constraints"] if c["name"] == "peak_ram")
    from reports.fmt import nbytes

    shown = nbytes(observed)
    figures = {row[0]: row[1] for t in p.tables for row in t[1:] if len(row) >= 2}
    assert figures["peak RAM (workload + runtime)"].startswith(shown)
    assert "the allocation that failed" in figures["peak RAM (workload + runtime)"]
    assert figures["peak observed (workload + runtime)"] == figures["peak RAM (workload + runtime)"]


def test_energy_per_day_is_in_j_per_day(tmp_path):
    text = render_run(tiny_result(), tmp_path).read_text()
    assert "812.5 J/day" in text and not re.search(r"812\.5 J(?!/day)", text)


def test_a_variant_that_did_not_fit_is_marked_on_the_technique_chart(tmp_path):
    r = tiny_result()
    r["comparison"].append({"label": "huge", "macs_total": 0, "peak_ram_bytes": 40000, "accuracy_after": 0.12,
                            "fits": False})
    with inspect_figures() as figs:
        render_run(r, tmp_path)
    chart = next(f for f in figs if any(p["title"] == "Training compute" for p in f["panels"]))
    assert "variant does not fit" in chart["legend_texts"]


def test_step_ticks_are_integers_and_the_instructions_line_clears_the_frame(tmp_path):
    with inspect_figures() as figs:
        render_run(tiny_result(), tmp_path / "run")
        render_emulation(dict(EMU, instructions_by_step=[100000] * 3, predicted_instructions_by_step=[100000] * 3),
                         tmp_path / "emu")
    step_panels = [p for f in figs for p in f["panels"] if p["xlabel"] == "training step"]
    assert len(step_panels) >= 3
    for p in step_panels:
        assert p["xticks"] and all(x == int(x) for x in p["xticks"]), p
    ins = next(p for f in figs for p in f["panels"] if p["title"].startswith("Instructions per training step"))
    assert max(ins["lines_y"]) < ins["ylim"][1] * 0.95, ins


def test_no_agrees_above_a_red_row(tmp_path):
    bad_time = dict(EMU, predicted_instructions_per_step=101000, device_seconds_per_step=1.0,
                    predicted_device_seconds_per_step=2.0)
    text = render_emulation(bad_time, tmp_path).read_text()
    assert "<strong>DISAGREES</strong>" in text and "<strong>AGREES</strong>" not in text
    good = dict(EMU, predicted_instructions_per_step=101000)
    assert "<strong>AGREES</strong>" in render_emulation(good, tmp_path / "good").read_text()


def test_a_run_that_stopped_early_extrapolates_no_battery_life():
    """microbit-oom runs out of memory after 256 s: its battery life is not observed (no 3111 days)."""
    from simulator.run import run_scenario
    from simulator.verdict import summarise

    r = run_scenario("microbit-oom")
    assert r["fatal"]["kind"] == "out_of_memory" and r["fatal"]["time_s"] > 1.0
    life = next(c for c in r["constraints"] if c["name"] == "battery_life")
    assert r["battery_life_days"] is None and life["observed"] is None and life["ok"]
    assert life["note"].startswith("not observed: the run stopped at t = ")
    assert "battery life not observed" in summarise(r)


def test_a_run_dead_at_t0_observes_no_deadline_miss_rate(dead):
    r = dead[0]
    miss = next(c for c in r["constraints"] if c["name"] == "deadline_miss_rate")
    assert r["inferences"] == 0 and miss["observed"] is None and miss["note"] == "no inference ran"
    wear = next(c for c in r["constraints"] if c["name"] == "flash_wear")
    assert wear["observed"] is None and wear["ok"]
