"""First use and bad input at the command line (issue #12), one case per row: --version, help without
"(default: None)", every flag with help, the --set keys and technique names in one place, per-command
exit-code footers, the runtime a plan assumed, --set errors naming the command line, --out that is a
file or holds an earlier run, --name / scenario names that would escape the output directory, a plan
never silently overwriting an earlier run, empty scenario files, NaN and infinities, ``plan --json``
(stdout the JSON alone, ``report`` a path, progress on stderr), and SIGTERM / SIGINT leaving nothing
running (exit 143 / 130)."""
from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from process_support import session_pids

from simulator.cli import build_parser, main

TINY = ["--device", "stm32f405-pyboard", "--workload", "mlp:64-16-10", "--duration-s", "60"]


def _subparsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for a in parser._actions:
        if isinstance(a, argparse._SubParsersAction):
            return dict(a.choices)
    return {}


def test_version(capsys):
    with pytest.raises(SystemExit) as e:
        main(["--version"])
    assert e.value.code == 0 and capsys.readouterr().out.startswith("edgesim ")


def test_every_flag_has_help_and_no_default_none_noise():
    parser = build_parser()
    for name, p in [("edgesim", parser), *_subparsers(parser).items()]:
        text = p.format_help()
        assert "(default: None)" not in text and "(default: False)" not in text, name
        for a in p._actions:
            if isinstance(a, argparse._SubParsersAction):
                continue
            assert a.help and a.help.strip(), f"edgesim {name}: {a.option_strings or a.dest} has no help"


def test_one_list_of_set_keys_and_technique_names():
    import dataclasses

    from simulator.scenario import DEFAULTS
    from workloads.techniques import Techniques

    text = _subparsers(build_parser())["plan"].format_help()
    for key in ("schedule.batch", "pipeline.sensor_rate_hz", "budgets.flash_wear_per_year", "workload.lr"):
        assert key in text
    for k in DEFAULTS:
        assert k in text
    for f in dataclasses.fields(Techniques):
        assert f.name in text


@pytest.mark.parametrize("command, footer", [
    ("plan", "0 the schedule fits, 3 it does not fit"),
    ("sweep", "3 no combination fits"),
    ("devices", "0 listed"),
    ("workloads", "0 listed or described"),
])
def test_per_command_exit_code_footers(command, footer):
    text = _subparsers(build_parser())[command].format_help()
    assert footer in text and "143 terminated (SIGTERM)" in text
    if command in ("devices", "workloads"):
        assert "does not fit" not in text.split("exit codes:")[-1]


def test_a_microbit_plan_says_which_runtime_it_assumed(tmp_path, capsys):
    rc = main(["plan", "--device", "bbc-microbit-v1", "--workload", "mlp:16-12-10", "--duration-s", "60",
               "--out", str(tmp_path)])
    out = capsys.readouterr().out
    assert rc in (0, 3) and "runtime: native (assumed: the default; --runtime micropython" in out


def test_set_errors_name_the_command_line_not_the_file(tmp_path, capsys):
    sc = tmp_path / "ok.toml"
    sc.write_text('device = "stm32f405-pyboard"\nduration_s = 60.0\n[workload]\nmodel = "mlp:64-16-10"\n')
    assert main(["plan", str(sc), "--set", "schedule.batchh=3", "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip()
    assert "command line" in err and "schedule.batchh" in err and "\n" not in err
    assert main(["plan", str(sc), "--set", "schedule.batch=0", "--out", str(tmp_path / "o")]) == 2
    assert "command line" in capsys.readouterr().err


# (case, argv after "plan", what the one line must say); every one exits 2 before any work
BAD = [
    ("duration nan", [*TINY[:4], "--duration-s", "nan"], "must be a finite number"),
    ("duration inf", [*TINY[:4], "--duration-s", "inf"], "must be a finite number"),
    ("period -inf", [*TINY, "--period-s=-inf"], "must be a finite number"),
    ("--set nan", [*TINY, "--set", "workload.lr=nan"], "workload.lr must be a finite number"),
    ("--set inf", [*TINY, "--set", "pipeline.sensor_rate_hz=inf"], "pipeline.sensor_rate_hz must be a finite number"),
    ("--technique nan", [*TINY, "--technique", "instance_filter=nan"], "schedule.techniques.instance_filter must be a finite"),
    ("--name escapes", [*TINY, "--name", "../../escape"], "must be a plain name"),
    ("--name slash", [*TINY, "--name", "a/b"], "must be a plain name"),
]


@pytest.mark.parametrize("case, argv, needle", BAD, ids=[b[0] for b in BAD])
def test_bad_flags_exit_2_before_any_work(tmp_path, capsys, monkeypatch, forbid_work, case, argv, needle):
    monkeypatch.chdir(tmp_path)
    try:
        rc = main(["plan", *argv])
    except SystemExit as e:              # argparse refuses a bad flag value itself (exit 2)
        rc = e.code
    err = capsys.readouterr().err
    assert rc == 2 and needle in err, (case, err)
    assert not (tmp_path / "edgesim-out").exists() and not (tmp_path.parent / "escape").exists()


def test_a_scenario_name_that_escapes_exits_2(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    sc = tmp_path / "s.toml"
    sc.write_text('name = "../../../escaped"\ndevice = "stm32f405-pyboard"\nduration_s = 60.0\n'
                  '[workload]\nmodel = "mlp:64-16-10"\n')
    assert main(["plan", str(sc)]) == 2
    assert "must be a plain name" in capsys.readouterr().err


def test_an_empty_scenario_file_exits_2(tmp_path, capsys):
    for text in ("", "# only a comment\n"):
        sc = tmp_path / "empty.toml"
        sc.write_text(text)
        assert main(["plan", str(sc), "--out", str(tmp_path / "o")]) == 2
        assert f"{sc}: the scenario file is empty" in capsys.readouterr().err


def test_out_that_is_a_file_or_holds_a_run_exits_2_before_any_work(tmp_path, capsys, monkeypatch):
    f = tmp_path / "file"
    f.write_text("keep me")
    with monkeypatch.context() as m:
        import simulator.run

        m.setattr(simulator.run, "simulate", lambda *a, **k: pytest.fail("the simulation started"))
        assert main(["plan", *TINY, "--out", str(f)]) == 2
    assert f.read_text() == "keep me"
    assert f"--out {f}: is an existing file" in capsys.readouterr().err
    run = tmp_path / "run"
    assert main(["plan", *TINY, "--out", str(run)]) in (0, 3)
    before = (run / "result.json").read_bytes()
    capsys.readouterr()
    assert main(["plan", *TINY, "--out", str(run)]) == 2
    assert "already holds a run" in capsys.readouterr().err
    assert (run / "result.json").read_bytes() == before


def test_plan_never_silently_overwrites_an_earlier_run(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(["plan", *TINY, "--name", "twice"]) in (0, 3)
    first = (tmp_path / "edgesim-out" / "twice" / "result.json").read_bytes()
    capsys.readouterr()
    assert main(["plan", *TINY, "--name", "twice"]) in (0, 3)
    cap = capsys.readouterr()
    assert "writing this one to edgesim-out/twice-2" in cap.err
    assert (tmp_path / "edgesim-out" / "twice-2" / "result.json").is_file()
    assert (tmp_path / "edgesim-out" / "twice" / "result.json").read_bytes() == first


def test_plan_json_is_alone_on_stdout_with_report_a_path_and_progress_on_stderr(tmp_path, capfd):
    rc = main(["plan", *TINY, "--out", str(tmp_path), "--json"])
    out, err = capfd.readouterr()
    assert rc in (0, 3), err
    obj = json.loads(out)
    assert Path(obj["report"]).is_file() and obj["report"].endswith("report.html")
    assert "simulating" in err, "progress belongs on stderr"


def _children(pid: int) -> list[int]:
    try:
        return [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


@pytest.mark.slow
@pytest.mark.parametrize("sig, code", [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_a_signal_to_plan_leaves_no_pool_worker_running(tmp_path, sig, code):
    """The demo's technique variants run on a process pool; a signal to the plan alone (as ``timeout`` or
    a CI cancel sends it) ends the plan and its workers, and says so."""
    proc = subprocess.Popen([sys.executable, "-m", "simulator.cli", "demo", "--out", str(tmp_path)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        deadline = time.monotonic() + 120
        while len(_children(proc.pid)) < 2 and time.monotonic() < deadline:
            assert proc.poll() is None, proc.communicate()
            time.sleep(0.05)
        assert len(_children(proc.pid)) >= 2, "the demo's pool did not start"
        os.kill(proc.pid, sig)
        _, err = proc.communicate(timeout=30)
        deadline = time.monotonic() + 10
        while session_pids(proc.pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        left = session_pids(proc.pid)
    finally:
        if proc.poll() is None or session_pids(proc.pid):
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)
    assert proc.returncode == code, err
    assert ("terminated" if sig == signal.SIGTERM else "interrupted") in err
    assert left == [], "pool workers outlived the plan"


@pytest.mark.parametrize("argv, needle", [
    (["emulate", "--lr", "nan"], "must be a finite number"),
    (["emulate", "--momentum", "inf"], "must be a finite number"),
    (["emulate", "--out", "{file}"], "is an existing file"),
    (["calibrate", "--write", "{file}"], "already exists"),
    (["calibrate", "--write", "{dir}"], "is a directory"),
    (["calibrate", "--write", "{file}/x.toml"], "is a file, not a directory"),
], ids=["emulate-lr-nan", "emulate-momentum-inf", "emulate-out-file", "calibrate-write-exists",
        "calibrate-write-dir", "calibrate-write-under-a-file"])
def test_emulator_commands_refuse_bad_flags_before_booting(tmp_path, capsys, forbid_work, argv, needle):
    f = tmp_path / "file"
    f.write_text("keep me")
    argv = [a.format(file=f, dir=tmp_path) for a in argv]
    try:
        rc = main(argv)
    except SystemExit as e:
        rc = e.code
    err = capsys.readouterr().err
    assert rc == 2 and needle in err, err
    assert f.read_text() == "keep me"


@pytest.mark.parametrize("command, footer", [("emulate", "3 the board ran out of memory"),
                                             ("calibrate", "0 calibrated and written")])
def test_emulator_commands_have_their_own_exit_code_footers(command, footer):
    assert footer in _subparsers(build_parser())[command].format_help()


def test_workloads_techniques_refuse_nan(capsys):
    assert main(["workloads", "mlp:64-16-10", "--train", "2", "--techniques", "instance_filter=inf"]) == 2
    assert "--techniques: instance_filter must be a finite number" in capsys.readouterr().err
