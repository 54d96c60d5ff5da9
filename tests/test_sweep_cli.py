"""``edgesim sweep`` on the command line: help, bad input (exit 2, one line naming file, field, value)."""
from __future__ import annotations

import pytest

from simulator.cli import main


def test_help_says_what_it_answers_and_shows_an_example(capsys):
    with pytest.raises(SystemExit) as e:
        main(["sweep", "--help"])
    assert e.value.code == 0
    out = capsys.readouterr().out
    assert "which devices can personalise this model" in out and "--resume" in out and "--scheduler" in out
    assert "edgesim sweep simulator/sweeps/boards.toml" in out


@pytest.mark.parametrize("grid, args, needle", [
    ('base = "demo"\n[axes]\ndevice = ["no-such-board"]\n', [], "axes.device = 'no-such-board' is not a bundled profile"),
    ('base = "demo"\n[axes]\n"schedule.batch" = {from = 8, to = 2}\n', [], "'to' (2) is below 'from' (8)"),
    ('base = "demo"\ncolour = 1\n', [], "unknown key 'colour'"),
    ('base = "demo"\n', ["--workers", "0"], "--workers must be >= 1 (got 0)"),
])
def test_bad_input_exits_2_with_one_line(tmp_path, capsys, grid, args, needle):
    g = tmp_path / "grid.toml"
    g.write_text(grid)
    rc = main(["sweep", str(g), "--out", str(tmp_path / "out"), "--quiet", *args])
    err = capsys.readouterr().err.strip()
    assert rc == 2
    assert needle in err and err.count("\n") == 0
    if not args:
        assert str(g) in err


def test_missing_grid_file_exits_2(tmp_path, capsys):
    assert main(["sweep", str(tmp_path / "nope.toml")]) == 2
    assert "nope.toml: no such sweep file" in capsys.readouterr().err


def test_existing_results_need_resume(tmp_path, capsys):
    g = tmp_path / "grid.toml"
    g.write_text('base = "demo"\n')
    out = tmp_path / "out"
    out.mkdir()
    (out / "results.jsonl").write_text('{"key": "x", "index": 0, "status": "ok"}\n')
    assert main(["sweep", str(g), "--out", str(out), "--quiet"]) == 2
    assert "pass --resume" in capsys.readouterr().err
