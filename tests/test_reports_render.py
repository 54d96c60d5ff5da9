"""Report rendering on small hand-written inputs (unit tests of the renderer, not of a simulation:
the real demo report is checked in test_reports_demo.py)."""
from __future__ import annotations

import base64
import os
from html.parser import HTMLParser
from pathlib import Path

import pytest

from reports import render_emulation, render_run, render_sweep
from reports.document import Document, Section, Table, to_html, to_markdown

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


class Page(HTMLParser):
    """The parts of a report page the tests look at: section titles, tables, images, scripts, links."""

    def __init__(self, text: str):
        super().__init__()
        self.h2, self.tables, self.images, self.scripts, self.external = [], [], [], 0, []
        self._in_h2 = self._in_cell = False
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "h2":
            self._in_h2 = True
            self.h2.append("")
        elif tag == "table":
            self.tables.append([])
        elif tag == "tr" and self.tables:
            self.tables[-1].append([])
        elif tag in ("td", "th") and self.tables and self.tables[-1]:
            self._in_cell = True
            self.tables[-1][-1].append("")
        elif tag == "img":
            self.images.append(a.get("src", ""))
        elif tag == "script":
            self.scripts += 1
        for k in ("src", "href"):
            v = a.get(k) or ""
            if v and not v.startswith(("data:", "#")):
                self.external.append(v)

    def handle_endtag(self, tag):
        if tag == "h2":
            self._in_h2 = False
        elif tag in ("td", "th"):
            self._in_cell = False

    def handle_data(self, data):
        if self._in_h2:
            self.h2[-1] += data
        elif self._in_cell:
            self.tables[-1][-1][-1] += data


def check_report(page: Path, sections: list[str]) -> Page:
    """Structure every report must have: the sections in order, tables with rows, embedded non-empty
    PNGs, no scripts or external references, and a Markdown twin whose PNG files exist."""
    html = page.read_text(encoding="utf-8")
    p = Page(html)
    assert p.h2 == sections
    assert p.scripts == 0 and p.external == []
    assert p.tables and all(len(t) >= 2 for t in p.tables), "every table has a header and a row"
    assert p.images
    for src in p.images:
        assert src.startswith("data:image/png;base64,")
        png = base64.b64decode(src.split(",", 1)[1])
        assert png.startswith(PNG_MAGIC) and len(png) > 5000
    md = (page.parent / "report.md").read_text(encoding="utf-8")
    for s in sections:
        assert f"\n## {s}\n" in md
    import re

    pngs = re.findall(r"!\[[^\]]*\]\(([^)]+\.png)\)", md)
    assert len(pngs) == len(p.images)
    for name in pngs:
        f = page.parent / name
        assert f.is_file() and f.read_bytes().startswith(PNG_MAGIC)
    assert not [f for f in page.parent.iterdir() if f.name.endswith(".tmp")], "temp files left behind"
    return p


UNITLESS_AXES = {"training step", "technique variant", "task on CPU", "schedule", "device"}


def check_figures(figs: list[dict]) -> None:
    """Every plot: a legend, and on every panel a title and axis labels with their units."""
    import re

    assert figs
    for f in figs:
        assert f["legend"], f
        for label in f["colorbars"]:
            assert re.search(r"\(.+\)", label), f"colour bar without a unit: {label!r}"
        for p in f["panels"]:
            assert p["title"], p
            for label in (p["xlabel"], p["ylabel"]):
                assert label in UNITLESS_AXES or re.search(r"\(.+\)", label), f"no unit in axis label {label!r}: {p}"


def tiny_result(fits: bool = True) -> dict:
    """A small hand-written result in the schema of simulator/result.py."""
    mem_t, w, a = [], [], []
    for k in range(5):
        for j, act in enumerate((0, 600, 1200, 300, 0)):
            mem_t.append(k * 600.0 + j * 0.01)
            w.append(1500)
            a.append(act)
    cpu = [{"start_s": float(s), "end_s": s + 0.004, "task": "inference", "preempted": False} for s in range(0, 3600, 2)]
    cpu += [{"start_s": k * 600.0 + 0.001, "end_s": k * 600.0 + 0.05, "task": "training", "preempted": k == 2}
            for k in range(5)]
    return {
        "scenario": "tiny", "device": "bbc-microbit-v1", "workload": "mlp:16-12-10", "runtime": "native", "seed": 3,
        "duration_s": 3600.0, "fits": fits,
        "constraints": [{"name": "ram", "budget": 16384, "observed": 11000, "unit": "B", "margin": 5384, "ok": True},
                        {"name": "step_latency", "budget": 1.0, "observed": 0.05 if fits else 1.5, "unit": "s",
                         "margin": 0.95 if fits else -0.5, "ok": fits}],
        "first_violation": None if fits else {"constraint": "step_latency", "time_s": 1200.0, "op": "dense1.backward",
                                              "message": "step took 1.5 s > 1 s"},
        "fatal": None, "peak_ram_bytes": 11000, "ram_budget_bytes": 16384, "naive_ram_bytes": 3600,
        "lower_bound_ram_bytes": 2700, "planned_ram_bytes": 2800, "flash_bytes": 2000, "flash_budget_bytes": 172032,
        "step_latency_s": 0.05, "deadline_miss_rate": 0.0, "inferences": 1800, "dropped_frames": 0,
        "training_steps": 5, "energy_per_day_j": 812.5, "battery_life_days": 13.3, "flash_writes_bytes": 0,
        "flash_wear_fraction_per_year": 0.0, "macs_total": 1234567, "accuracy_before": 0.12, "accuracy_after": 0.64,
        "retention_before": 0.93, "retention_after": 0.9, "techniques": ["etf"],
        "timelines": {
            "memory": {"time_s": mem_t, "by_kind": {"weight": w, "activation": a}},
            "cpu": cpu,
            "battery": {"time_s": [0.0, 1800.0, 3600.0], "charge_j": [10800.0, 10790.0, 10780.0], "capacity_j": 10800.0},
            "learning": {"step": [1, 2, 3, 4, 5], "loss": [2.3, 1.9, 1.5, 1.2, 1.0],
                         "eval": [{"step": 0, "user_accuracy": 0.12, "retention_accuracy": 0.93},
                                  {"step": 5, "user_accuracy": 0.64, "retention_accuracy": 0.9}]},
        },
        "comparison": [{"label": "plain", "macs_total": 2000000, "peak_ram_bytes": 12000, "accuracy_after": 0.66,
                        "fits": True},
                       {"label": "etf", "macs_total": 1234567, "peak_ram_bytes": 11000, "accuracy_after": 0.64,
                        "fits": True}],
    }


EMU = {"heap_peak_bytes": 5200, "predicted_heap_peak_bytes": 5000, "instructions_per_step": 100000,
       "predicted_instructions_per_step": 125000, "losses": [2.30, 2.05, 1.83], "host_losses": [2.30, 2.05, 1.84],
       "board": "bbc-microbit-v1", "firmware": "/usr/share/firmware-microbit-micropython/firmware.hex"}

RUN_SECTIONS = ["Verdict", "Memory", "CPU timeline", "Battery", "Learning", "Technique comparison"]


def test_run_report_structure(tmp_path):
    page = render_run(tiny_result(), tmp_path, emulation=EMU)
    assert page == tmp_path / "report.html"
    p = check_report(page, RUN_SECTIONS + ["Simulator vs emulator"])
    assert len(p.images) == 6
    text = page.read_text()
    assert "FITS" in text and "16.0 KiB" in text and "+52.0 pp" in text
    # the sim-vs-emulator table: heap within 10 %, instructions 25 % off
    assert "-3.8 %" in text and "+25.0 %" in text


def test_verdict_comes_first_and_names_the_first_violation(tmp_path):
    page = render_run(tiny_result(fits=False), tmp_path)
    html = page.read_text()
    assert html.index("DOES NOT FIT") < html.index("<h2>Memory</h2>")
    assert "First violation: step_latency" in html and "dense1.backward" in html
    assert "VIOLATED" in html


def test_reports_are_byte_identical_for_equal_input(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    render_run(tiny_result(), a, emulation=EMU)
    render_run(tiny_result(), b, emulation=EMU)
    names = sorted(f.name for f in a.iterdir())
    assert names == sorted(f.name for f in b.iterdir())
    for n in names:
        assert (a / n).read_bytes() == (b / n).read_bytes(), n
    render_run(tiny_result(fits=False), b)
    assert (a / "report.html").read_bytes() != (b / "report.html").read_bytes()


def test_a_failed_write_leaves_the_previous_report_whole(tmp_path, monkeypatch):
    page = render_run(tiny_result(), tmp_path)
    before = page.read_bytes()
    calls = []

    def boom(src, dst):
        calls.append(dst)
        if str(dst).endswith("report.html"):
            raise OSError("disk full")
        return real(src, dst)

    real = os.replace
    monkeypatch.setattr(os, "replace", boom)
    with pytest.raises(OSError, match="disk full"):
        render_run(tiny_result(fits=False), tmp_path)
    assert page.read_bytes() == before
    assert not [f for f in tmp_path.iterdir() if f.name.startswith(".")], "temp file left behind"


def test_run_report_without_timelines_or_comparison_still_renders(tmp_path):
    r = tiny_result()
    r["timelines"] = {"memory": {"time_s": [], "by_kind": {}}, "cpu": [], "battery": {},
                      "learning": {"step": [], "loss": [], "eval": []}}
    r["comparison"] = None
    r["fatal"] = {"kind": "out_of_memory", "time_s": 0.5, "op": "dense1.forward", "message": "needs 20 KiB."}
    page = render_run(r, tmp_path)
    check_report(page, RUN_SECTIONS[:-1])
    assert "Fatal: out_of_memory" in page.read_text()


def test_render_run_rejects_what_is_not_a_result(tmp_path):
    with pytest.raises(ValueError, match="render_run: result must be a run result dict"):
        render_run({"device": "x"}, tmp_path)


def test_emulation_report(tmp_path):
    page = render_emulation(EMU, tmp_path)
    p = check_report(page, ["Verdict", "Simulator vs emulator"])
    text = page.read_text()
    assert "DISAGREES" in text          # instructions per step are 25 % off
    assert any("heap peak" in "".join(row) for t in p.tables for row in t)
    good = dict(EMU, predicted_instructions_per_step=105000)
    assert "AGREES" in render_emulation(good, tmp_path / "good").read_text()


def test_emulation_report_when_the_board_runs_out_of_memory(tmp_path):
    oom = {"board": "bbc-microbit-v1", "firmware": "fw", "workload": "mlp:16-12-10", "steps": 3, "fits": False,
           "guest_memory_error": "guest MemoryError: allocating 768 bytes failed", "heap_peak_bytes": None,
           "instructions_per_step": None, "predicted_heap_peak_bytes": 3024, "predicted_instructions_per_step": 4e5,
           "predicted_fits": True, "heap_total_bytes": 10048, "losses": [], "host_losses": [0.1, 0.2, 0.3]}
    text = render_emulation(oom, tmp_path).read_text()
    assert "DISAGREES" in text and "ran out of memory" in text and "allocating 768 bytes failed" in text
    assert "9.8 KiB" in text
    assert "AGREES</strong>" in render_emulation(dict(oom, predicted_fits=False), tmp_path / "b").read_text()


def _sweep_report(rows: list[dict], out: Path, title: str = "sweep") -> Path:
    """As the sweep does it: write the matrix of ``rows`` into ``out``, then render from it."""
    from simulator.sweep import write_matrix

    write_matrix(out, rows)
    return render_sweep(rows, out, title=title)


def test_sweep_report_from_rows(tmp_path):
    def row(i, dev, sched, fits, status="ok"):
        res = tiny_result(fits)
        res.pop("timelines")
        return {"key": f"{dev}|{sched}", "index": i, "device": dev, "schedule": sched, "seed": 0,
                "status": status, "result": res, "error": None if status == "ok" else "ValueError: nope"}

    rows = [row(0, "a", "s1", True), row(1, "a", "s2", False), row(2, "b", "s1", False),
            row(3, "b", "s2", True, status="error")]
    page = _sweep_report(rows, tmp_path, title="unit")
    p = check_report(page, ["Verdict", "Feasibility matrix", "Errors"])
    text = page.read_text()
    assert "1 of 4" in text and "none fits" in text and "ValueError: nope" in text
    matrix = p.tables[1]
    assert matrix[0] == ["device", "s1", "s2"] and matrix[1][0] == "a"
    assert (tmp_path / "feasibility.png").stat().st_size > 5000
    again = _sweep_report(list(reversed(rows)), tmp_path / "again", title="unit")   # completion order
    for name in ("report.html", "report.md", "feasibility.png"):
        assert (again.parent / name).read_bytes() == (tmp_path / name).read_bytes(), name
    with pytest.raises(ValueError, match="no finished scenarios"):
        render_sweep([], tmp_path)


def test_sweep_report_reads_the_matrix_the_sweep_wrote(tmp_path):
    """The report shows matrix.json as written (it does not compute its own), and says when it is missing."""
    import json

    from simulator.sweep import MATRIX_FILE, write_matrix

    res = tiny_result(True)
    res.pop("timelines")
    rows = [{"key": "a|s1", "index": 0, "device": "a", "schedule": "s1", "seed": 0, "status": "ok", "result": res}]
    with pytest.raises(ValueError, match=MATRIX_FILE):
        render_sweep(rows, tmp_path / "none")
    fz = write_matrix(tmp_path, rows)
    assert fz["best"]["a"]["schedule"] == "s1"
    fz["best"]["a"]["schedule"] = "planted-in-the-matrix"
    (tmp_path / MATRIX_FILE).write_text(json.dumps(fz))
    assert "planted-in-the-matrix" in render_sweep(rows, tmp_path).read_text()


def test_document_escapes_text_and_renders_markdown_tables():
    doc = Document("T <1>", "sub", [Section("A & B", ["x < y **bold**", Table(["h|1", "h2"], [["a|b", "1.0 s"]])])])
    html = to_html(doc)
    assert "T &lt;1&gt;" in html and "<strong>bold</strong>" in html and 'id="a-b"' in html
    assert '<td class="num">1.0 s</td>' in html
    md = to_markdown(doc)
    assert "| h\\|1 | h2 |" in md and "| a\\|b | 1.0 s |" in md


def test_every_plot_is_labelled(tmp_path):
    from reports.plots import inspect_figures

    with inspect_figures() as figs:
        render_run(tiny_result(), tmp_path / "run", emulation=EMU)
        render_emulation(EMU, tmp_path / "emu")
        res = tiny_result()
        _sweep_report([{"key": "k", "index": 0, "device": "d", "schedule": "s", "seed": 0, "status": "ok",
                        "result": res}], tmp_path / "sweep")
    assert len(figs) == 6 + 1 + 2
    check_figures(figs)
