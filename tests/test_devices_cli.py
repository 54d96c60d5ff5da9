"""``edgesim devices``: a readable table, the full profiles as JSON, user profiles by path, exit 2 on bad ones."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from test_profiles import good_profile, write  # the same good profile and TOML writer

from device_profiles import profile_paths
from simulator.cli import main

EDGESIM = Path(sys.executable).with_name("edgesim")


def run_json(capsys, *args: str) -> list[dict]:
    assert main(["devices", "--json", *args]) == 0
    return json.loads(capsys.readouterr().out)["devices"]


def test_json_lists_every_bundled_profile_with_sizes_clock_and_sources(capsys):
    devices = run_json(capsys)
    assert len(devices) >= 10
    assert [d["name"] for d in devices] == [p.stem for p in profile_paths()]
    for d in devices:
        assert d["memory"]["ram_bytes"] > 0 and d["memory"]["flash_bytes"] > 0 and d["core"]["clock_hz"] > 0
        for key in ("memory.ram_bytes", "memory.flash_bytes", "core.clock_hz", "power.active_current_a",
                    "runtime.native.cycles_per_mac_f32", "battery.capacity_mah"):
            assert d["sources"][key].strip(), f"{d['name']}: {key} has no source"
        assert set(d["estimates"]) <= set(d["sources"])
        assert all(d["sources"][k].lower().startswith("estimate") for k in d["estimates"])


def test_json_is_one_object_and_byte_identical_between_runs(capsys):
    assert main(["devices", "--json"]) == 0
    first = capsys.readouterr().out
    assert main(["devices", "--json"]) == 0
    assert capsys.readouterr().out == first
    assert set(json.loads(first)) == {"devices"}


def test_table_shows_every_board_with_units(capsys):
    assert main(["devices"]) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert lines[0].split()[:4] == ["name", "core", "clock", "RAM"]
    for p in profile_paths():
        row = next(ln for ln in lines if ln.startswith(p.stem + " "))
        assert "MHz" in row and "mW" in row and "est.)" in row
    assert "stm32f405-pyboard" in out and "168 MHz" in out and "192.0 KiB" in out
    micro = next(ln for ln in lines if ln.startswith("bbc-microbit-v1 "))
    assert micro.rstrip().endswith("QEMU microbit"), "the micro:bit v1 runs under QEMU's own micro:bit machine"
    pyboard = next(ln for ln in lines if ln.startswith("stm32f405-pyboard "))
    assert "twin netduinoplus2, heap " in pyboard and "KiB" in pyboard
    for board in ("esp32-devkitc", "rpi-zero-2w"):  # no twin, and the table says why
        row = next(ln for ln in lines if ln.startswith(board + " "))
        assert " none: " in row and len(row.split(" none: ")[1]) > 20


def test_named_devices_only(capsys):
    devices = run_json(capsys, "rpi-pico", "esp32-devkitc")
    assert [d["name"] for d in devices] == ["rpi-pico", "esp32-devkitc"]


def test_user_profile_by_path(tmp_path, capsys):
    path = write(tmp_path, good_profile())
    assert main(["devices", str(path)]) == 0
    out = capsys.readouterr().out
    assert "my-board" in out and "64 MHz" in out and "16.0 KiB" in out
    (d,) = run_json(capsys, str(path))
    assert d["name"] == "my-board" and d["path"] == str(path) and d["memory"]["ram_bytes"] == 16384


@pytest.mark.parametrize("edit,field,value", [
    (lambda d: d["memory"].update(ram_kb=16), "memory.ram_kb", "16"),
    (lambda d: d["memory"].update(ram_bytes=-5), "memory.ram_bytes", "-5"),
    (lambda d: d["core"].update(fpu="double"), "core.fpu", "'double'"),
], ids=["unit-key", "negative", "fpu"])
def test_bad_profile_path_exits_2_with_one_line(tmp_path, capsys, edit, field, value):
    d = good_profile()
    edit(d)
    path = write(tmp_path, d, "bad.toml")
    assert main(["devices", str(path)]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    err = captured.err.strip().splitlines()
    assert len(err) == 1, err
    assert str(path) in err[0] and field in err[0] and value in err[0]
    assert err[0].startswith("edgesim devices: error: ")


def test_missing_profile_path_exits_2(tmp_path, capsys):
    assert main(["devices", str(tmp_path / "nope.toml")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "nope.toml" in err[0] and "no such profile file" in err[0]


@pytest.mark.skipif(not EDGESIM.exists(), reason="the edgesim console script is not installed in this venv: "
                                                 "run `make setup` (pip install -e '.[all]')")
def test_console_script_json_and_bad_path(tmp_path):
    ok = subprocess.run([str(EDGESIM), "devices", "--json"], capture_output=True, text=True, timeout=120)
    assert ok.returncode == 0, ok.stderr
    devices = json.loads(ok.stdout)["devices"]
    assert len(devices) >= 10 and all({"ram_bytes", "flash_bytes"} <= set(d["memory"]) for d in devices)
    d = good_profile()
    del d["power"]["active_current_a_source"]
    bad = write(tmp_path, d, "bad.toml")
    r = subprocess.run([str(EDGESIM), "devices", str(bad)], capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and r.stdout == ""
    err = r.stderr.strip().splitlines()
    assert len(err) == 1 and str(bad) in err[0] and "power.active_current_a_source" in err[0] and "0.004" in err[0]
