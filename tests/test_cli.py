"""The command line as a user meets it: every subcommand teaches in --help, exit codes are kept."""
from __future__ import annotations

import json
import shutil
import subprocess
import sys

import pytest

from simulator.cli import COMMAND_MODULES, build_parser, main

COMMANDS = ["devices", "workloads", "plan", "sweep", "emulate", "calibrate", "demo", "port", "compress"]


def test_every_command_is_registered():
    sub = next(a for a in build_parser()._actions if a.dest == "command")
    assert sorted(sub.choices) == sorted(COMMANDS)
    assert len(COMMAND_MODULES) == len(set(COMMAND_MODULES))


@pytest.mark.parametrize("cmd", COMMANDS)
def test_help_teaches_with_an_example(cmd, capsys):
    with pytest.raises(SystemExit) as e:
        main([cmd, "--help"])
    assert e.value.code == 0
    out = capsys.readouterr().out
    assert f"edgesim {cmd}" in out.split("example:")[1], "each --help ends with a runnable example"
    assert "exit codes" in out


def test_no_command_prints_help_and_exits_2(capsys):
    assert main([]) == 2
    assert "start here" in capsys.readouterr().out


def test_unknown_command_is_a_usage_error():
    with pytest.raises(SystemExit) as e:
        main(["no-such-command"])
    assert e.value.code == 2


def test_unknown_device_is_exit_2_with_one_line(capsys):
    assert main(["devices", "no-such-board"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no-such-board" in err[0]


def test_installed_console_script_runs():
    exe = shutil.which("edgesim") or str(__import__("pathlib").Path(sys.executable).with_name("edgesim"))
    out = subprocess.run([exe, "devices", "--json"], capture_output=True, text=True, check=True).stdout
    devices = json.loads(out)["devices"]
    assert {"bbc-microbit-v1"} <= {d["name"] for d in devices}


def test_closed_pipe_is_not_an_internal_error(monkeypatch, tmp_path, capsys):
    """`edgesim devices --json | head -c 10`: the reader goes away mid-write."""
    sink = open(tmp_path / "stdout", "w")  # noqa: SIM115 - its fd is what main redirects to devnull

    class ClosedPipe:
        def write(self, _s):
            raise BrokenPipeError(32, "Broken pipe")

        def flush(self):
            pass

        def fileno(self):
            return sink.fileno()

    monkeypatch.setattr(sys, "stdout", ClosedPipe())
    assert main(["devices", "--json"]) == 0
    assert "internal error" not in capsys.readouterr().err
    sink.close()


def test_write_atomic_keeps_the_old_file_when_validation_fails(tmp_path):
    from simulator.files import write_atomic

    target = tmp_path / "profile.toml"
    write_atomic(target, "old = 1\n")

    def reject(p):
        raise ValueError(f"{p}: does not load")

    with pytest.raises(ValueError):
        write_atomic(target, "new = 2\n", validate=reject)
    assert target.read_text() == "old = 1\n"
    assert [p.name for p in tmp_path.iterdir()] == ["profile.toml"], "no temp file is left behind"


def test_write_atomic_makes_ordinary_files_in_new_directories(tmp_path):
    import os

    from simulator.files import write_atomic

    old = os.umask(0o022)
    try:
        path = write_atomic(tmp_path / "a" / "b" / "result.json", b"{}\n")
    finally:
        os.umask(old)
    assert path.read_bytes() == b"{}\n"
    assert path.stat().st_mode & 0o777 == 0o644
