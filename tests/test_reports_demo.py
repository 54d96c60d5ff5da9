"""The demo report from a real simulation of the embedded demo scenario (simulator/scenarios/demo.toml):
every section present, with real figures, tables and non-empty images; the same result renders to the
same bytes."""
from __future__ import annotations

import functools
import json
import re
from pathlib import Path

import pytest

from reports import render_run

try:
    from test_reports_render import RUN_SECTIONS, check_figures, check_report
except ImportError:  # tests/ imported as a package
    from tests.test_reports_render import RUN_SECTIONS, check_figures, check_report

pytestmark = pytest.mark.slow


@functools.cache
def demo_result() -> dict:
    """One real run of the embedded demo scenario, shared by the report tests of this session."""
    from simulator import run_scenario

    return run_scenario("demo")


@pytest.fixture(scope="session")
def demo_report(tmp_path_factory) -> Path:
    return render_run(demo_result(), tmp_path_factory.mktemp("demo-report"))


def test_demo_report_has_every_section_with_real_figures(demo_report):
    r = demo_result()
    p = check_report(demo_report, RUN_SECTIONS)
    assert len(p.images) == 5 + 0                # memory, cpu, battery, learning, techniques
    html = demo_report.read_text()
    assert ("FITS" if r["fits"] else "DOES NOT FIT") in html
    verdict = p.tables[0]
    assert [row[0] for row in verdict[1:]] == [c["name"] for c in r["constraints"]]
    # the figures in the tables are the run's own
    assert f"{r['training_steps']:,}" in html
    assert f"{100 * r['accuracy_after']:.1f} %" in html
    assert f"{100 * (r['accuracy_after'] - r['accuracy_before']):+.1f} pp" in html
    comparison = next(t for t in p.tables if t[0][:2] == ["variant", "training MACs"])
    assert [row[0] for row in comparison[1:]] == [v["label"] for v in r["comparison"]]
    assert [row[1] for row in comparison[1:]] == [f"{v['macs_total']:,}" for v in r["comparison"]]
    assert r["training_steps"] > 0 and r["timelines"]["memory"]["time_s"], "the demo trains and samples memory"


def test_demo_report_markdown_mirrors_the_html(demo_report):
    md = (demo_report.parent / "report.md").read_text()
    html = demo_report.read_text()
    for fig in re.findall(r"<td class=\"num\">([^<]+)</td>", html)[:40]:
        assert fig in md


def test_demo_report_is_deterministic(demo_report, tmp_path):
    again = render_run(json.loads(json.dumps(demo_result())), tmp_path)   # as read back from JSON
    for f in sorted(demo_report.parent.iterdir()):
        assert (again.parent / f.name).read_bytes() == f.read_bytes(), f.name


def test_every_demo_plot_has_a_title_axis_labels_with_units_and_a_legend(tmp_path):
    from reports.plots import inspect_figures

    with inspect_figures() as figs:
        render_run(demo_result(), tmp_path)
    assert len(figs) == 5
    check_figures(figs)
