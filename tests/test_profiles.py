"""Device profiles: every bundled board loads with a source for every figure; bad profiles fail in one line
that names the file, the field and the value; a user's own profile works when given by path."""
from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path

import pytest

from device_profiles import (
    Battery,
    Core,
    Flash,
    Memory,
    Power,
    ProfileError,
    Runtime,
    list_profiles,
    load_profile,
    profile_paths,
)

# the file names other parts of edgesim (demo, sweeps, reports) refer to
REQUIRED = {
    "bbc-microbit-v1", "bbc-microbit-v2", "arduino-nano-33-ble", "rpi-pico", "stm32f405-pyboard",
    "stm32f746-disco", "stm32l476-nucleo", "esp32-devkitc", "mps2-an385", "rpi-zero-2w",
}
SECTIONS = {"core": Core, "memory": Memory, "power": Power, "flash": Flash, "battery": Battery}


def numeric_fields(cls: type) -> list[str]:
    return [f.name for f in dataclasses.fields(cls) if str(f.type) in ("int", "float")]


# --- a small TOML writer, so each bad profile is one readable edit of a good one -------------------

def _toml_value(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float) and math.isnan(v):
        return "nan"
    if isinstance(v, (int, float)):
        return repr(v)
    if isinstance(v, str):
        return json.dumps(v)
    if isinstance(v, list):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    raise TypeError(type(v))


def dump_toml(d: dict, prefix: str = "") -> str:
    scalars = [f"{k} = {_toml_value(v)}" for k, v in d.items() if not isinstance(v, dict)]
    out = []
    if scalars:
        out.append((f"[{prefix}]\n" if prefix else "") + "\n".join(scalars) + "\n")
    for k, v in d.items():
        if isinstance(v, dict):
            out.append(dump_toml(v, f"{prefix}.{k}" if prefix else k))
    return "\n".join(out)


def sourced(**figures) -> dict:
    """A table whose every figure carries a (fake but well-formed) source."""
    t = {}
    for k, v in figures.items():
        t[k] = v
        if isinstance(v, (int, float)) and not isinstance(v, bool):
            t[f"{k}_source"] = f"test datasheet §1 ({k})"
    return t


def good_profile() -> dict:
    runtime = sourced(ram_reserved_bytes=4096, flash_reserved_bytes=65536, heap_block_bytes=8,
                      alloc_overhead_bytes=8, cycles_per_mac_f32=3.0, cycles_per_mac_i8=0.75,
                      cycles_per_elem_f32=4, cycles_per_byte_copy=0.5, op_overhead_cycles=150)
    return {
        "name": "my-board",
        "display_name": "My board",
        "core": sourced(cpu="Cortex-M4F", arch="armv7e-m", fpu="sp", clock_hz=64_000_000,
                        cycles_per_instruction=1.2),
        "memory": sourced(ram_bytes=16384, flash_bytes=262144),
        "runtime": {"native": runtime, "micropython": dict(runtime)},
        "power": sourced(supply_voltage_v=3.0, active_current_a=0.004, idle_current_a=0.0005,
                         sleep_current_a=0.000003, flash_write_energy_j_per_byte=1e-7),
        "flash": sourced(endurance_cycles=10000, erase_page_bytes=4096, write_bytes_per_s=97000),
        "battery": {**sourced(capacity_mah=1000, voltage_v=3.0), "chemistry": "2 x AAA alkaline"},
    }


def write(tmp_path: Path, d: dict, name: str = "my-board.toml") -> Path:
    p = tmp_path / name
    p.write_text(dump_toml(d), encoding="utf-8")
    return p


# --- the bundled profiles --------------------------------------------------------------------------

def test_at_least_ten_boards_with_the_agreed_file_names():
    names = {p.stem for p in profile_paths()}
    assert len(names) >= 10
    assert REQUIRED <= names, f"missing: {sorted(REQUIRED - names)}"


@pytest.mark.parametrize("path", profile_paths(), ids=lambda p: p.stem)
def test_bundled_profile_loads_with_a_source_for_every_figure(path):
    prof = load_profile(path.stem)
    assert prof.name == path.stem, "load_profile(name) finds the file by name, so they must agree"
    assert prof.memory.ram_bytes > 0 and prof.memory.flash_bytes > 0 and prof.core.clock_hz > 0
    expected = {f"{sec}.{f}" for sec, cls in SECTIONS.items() for f in numeric_fields(cls)}
    expected |= {f"runtime.{rt}.{f}" for rt in prof.runtime for f in numeric_fields(Runtime)}
    assert expected <= set(prof.sources), f"figures without a source: {sorted(expected - set(prof.sources))}"
    for key, src in prof.sources.items():
        assert len(src.strip()) >= 10, f"{key}: a source names a datasheet and section, or says why it estimates"
        if src.lower().startswith("estimate"):
            assert key in prof.estimates
            assert ":" in src, f"{key}: an estimate gives its one-line reason after 'estimate:'"
        else:
            assert key not in prof.estimates
    assert "native" in prof.runtime
    for rt in prof.runtime.values():
        assert rt.ram_reserved_bytes < prof.memory.ram_bytes
        assert rt.flash_reserved_bytes <= prof.memory.flash_bytes
    assert prof.power.sleep_current_a <= prof.power.idle_current_a <= prof.power.active_current_a
    assert prof.battery.capacity_j > 0


def test_compute_coefficients_are_all_marked_as_estimates():
    # first cuts, until calibration fits them: none may pose as a datasheet figure
    coeff = ("cycles_per_mac_f32", "cycles_per_mac_i8", "cycles_per_elem_f32", "cycles_per_byte_copy")
    for prof in list_profiles():
        for rt in prof.runtime:
            for f in coeff:
                src = prof.sources[f"runtime.{rt}.{f}"]
                if src.startswith("measured: edgesim calibrate"):
                    continue    # fitted on the emulated board or twin by `edgesim calibrate`
                assert f"runtime.{rt}.{f}" in prof.estimates, f"{prof.name}: runtime.{rt}.{f}: {src}"


def test_coefficients_follow_the_hardware():
    """Sanity of the first cuts: an FPU makes float MACs cheap, MicroPython is far slower than C."""
    for prof in list_profiles():
        nat = prof.runtime["native"]
        if prof.core.fpu == "none":
            assert nat.cycles_per_mac_f32 >= 20, prof.name      # soft-float
        else:
            assert nat.cycles_per_mac_f32 <= 5, prof.name
        if "micropython" in prof.runtime:
            assert prof.runtime["micropython"].cycles_per_mac_f32 > 2 * nat.cycles_per_mac_f32, prof.name


def test_emulator_tables_name_a_twin_a_fixed_machine_or_why_not():
    profiles = {p.name: p for p in list_profiles()}
    emu = profiles["bbc-microbit-v1"].emulator
    assert (emu.qemu_machine, emu.twin) == ("microbit", "")
    assert emu.firmware_path == "/usr/share/firmware-microbit-micropython/firmware.hex"
    twins = {n: p.emulator.twin for n, p in profiles.items() if p.emulator and p.emulator.twin}
    assert twins["stm32f405-pyboard"] == "netduinoplus2" and twins["stm32f746-disco"] == "mps2-an500"
    assert len(twins) >= 5 and len(set(twins.values())) >= 3
    for n in ("esp32-devkitc", "rpi-zero-2w"):
        assert profiles[n].emulator is None and profiles[n].no_twin_reason, n


def test_the_demo_board_is_a_mid_range_cortex_m4f():
    p = load_profile("stm32f405-pyboard")
    assert (p.core.cpu, p.core.fpu, p.core.clock_hz) == ("Cortex-M4F", "sp", 168_000_000)
    assert p.memory.ram_bytes == 192 * 1024 and p.memory.flash_bytes == 1024 * 1024


def test_microbit_v1_idle_is_between_sleep_and_active():
    # its idle figure once mixed up uA and mA (2.6 uA System ON vs "2.6 mA")
    p = load_profile("bbc-microbit-v1")
    assert p.power.sleep_current_a == pytest.approx(2.6e-6)
    assert 1e-4 < p.power.idle_current_a < p.power.active_current_a
    assert "estimate" in p.sources["power.idle_current_a"]


def test_profiles_are_frozen_and_serialise():
    p = load_profile("rpi-pico")
    with pytest.raises(dataclasses.FrozenInstanceError):
        p.memory.ram_bytes = 1  # type: ignore[misc]
    d = json.loads(json.dumps(p.to_dict()))
    assert d["memory"]["ram_bytes"] == 270336
    assert d["estimates"] == sorted(d["estimates"]) and "core.cycles_per_instruction" in d["estimates"]


# --- a user's own profile ------------------------------------------------------------------------

def test_a_user_profile_by_path_loads(tmp_path):
    path = write(tmp_path, good_profile())
    for arg in (path, str(path)):
        p = load_profile(arg)
        assert p.name == "my-board" and p.path == str(path)
        assert p.memory.ram_bytes == 16384 and p.runtime_for("native").heap_block_bytes == 8
        assert p.battery.capacity_j == pytest.approx(1000 * 3.6 * 3.0)
    assert p.estimates == frozenset()


def test_name_defaults_to_the_file_stem(tmp_path):
    d = good_profile()
    del d["name"], d["display_name"]
    p = load_profile(write(tmp_path, d, "board-x.toml"))
    assert p.name == p.display_name == "board-x"


def test_an_estimate_is_recognised_by_its_source(tmp_path):
    d = good_profile()
    d["power"]["idle_current_a_source"] = "estimate: WFI with HFCLK running"
    p = load_profile(write(tmp_path, d))
    assert p.estimates == {"power.idle_current_a"}


def test_unknown_runtime_request_names_what_the_profile_has(tmp_path):
    d = good_profile()
    del d["runtime"]["micropython"]
    p = load_profile(write(tmp_path, d))
    with pytest.raises(ProfileError, match=r"runtime\.micropython is not in this profile \(has \['native'\]\)"):
        p.runtime_for("micropython")


def test_unknown_device_name_lists_the_bundled_ones():
    with pytest.raises(ProfileError) as e:
        load_profile("no-such-board")
    assert "'no-such-board'" in str(e.value) and "rpi-pico" in str(e.value)


# --- bad profiles: one line naming the file, the field and the value -------------------------------

def _set(section: str, key: str, value):
    def edit(d):
        t = d
        for part in section.split("."):
            t = t[part]
        t[key] = value
    return edit


def _del(section: str, key: str):
    def edit(d):
        t = d
        for part in section.split(".") if section else []:
            t = t[part]
        del t[key]
    return edit


def _rename(section: str, old: str, new: str):
    def edit(d):
        t = d[section]
        t[new] = t.pop(old)
        t[f"{new}_source"] = t.pop(f"{old}_source")
    return edit


BAD = [
    # id, edit, field named in the message, value named in the message
    ("missing-field", _del("memory", "ram_bytes"), "memory.ram_bytes", "is missing"),
    ("missing-table", _del("", "power"), "[power]", "is missing"),
    ("missing-native-runtime", _del("runtime", "native"), "[runtime.native]", "is missing"),
    ("wrong-type-string", _set("memory", "ram_bytes", "16 KB"), "memory.ram_bytes", "'16 KB'"),
    ("wrong-type-float-for-int", _set("memory", "flash_bytes", 1024.5), "memory.flash_bytes", "1024.5"),
    ("wrong-type-bool", _set("core", "clock_hz", True), "core.clock_hz", "True"),
    ("wrong-type-cpu", _set("core", "cpu", 4), "core.cpu", "4"),
    ("negative-size", _set("memory", "flash_bytes", -1), "memory.flash_bytes", "-1"),
    ("zero-size", _set("memory", "ram_bytes", 0), "memory.ram_bytes", "0"),
    ("zero-clock", _set("core", "clock_hz", 0), "core.clock_hz", "0"),
    ("negative-current", _set("power", "active_current_a", -0.1), "power.active_current_a", "-0.1"),
    ("zero-page", _set("flash", "erase_page_bytes", 0), "flash.erase_page_bytes", "0"),
    ("nan", _set("power", "idle_current_a", math.nan), "power.idle_current_a", "nan"),
    ("unknown-unit-key-ram_kb", _rename("memory", "ram_bytes", "ram_kb"), "memory.ram_kb", "16384"),
    ("unknown-unit-key-clock_mhz", _rename("core", "clock_hz", "clock_mhz"), "core.clock_mhz", "64000000"),
    ("unknown-top-level-key", lambda d: d.update(colour="red"), "colour", "'red'"),
    ("missing-source", _del("memory", "ram_bytes_source"), "memory.ram_bytes_source", "16384"),
    ("empty-source", _set("power", "sleep_current_a_source", "  "), "power.sleep_current_a_source", "'  '"),
    ("source-not-a-string", _set("flash", "endurance_cycles_source", 5), "flash.endurance_cycles_source", "5"),
    ("unknown-runtime", _set("runtime", "circuitpython", good_profile()["runtime"]["native"]),
     "runtime.circuitpython", "circuitpython"),
    ("fpu-value", _set("core", "fpu", "yes"), "core.fpu", "'yes'"),
    ("reserved-exceeds-ram", _set("runtime.native", "ram_reserved_bytes", 16384),
     "runtime.native.ram_reserved_bytes", "16384"),
    ("reserved-exceeds-flash", _set("runtime.micropython", "flash_reserved_bytes", 300000),
     "runtime.micropython.flash_reserved_bytes", "300000"),
    ("sleep-above-idle", _set("power", "sleep_current_a", 0.001), "power.sleep_current_a", "0.001"),
    ("idle-above-active", _set("power", "idle_current_a", 0.01), "power.idle_current_a", "0.01"),
    ("runtime-not-a-table", _set("runtime", "native", 3), "[runtime.native]", "3"),
    ("emulator-args-not-strings", lambda d: d.update(emulator={"qemu_machine": "microbit", "firmware_path": "/x.hex",
                                                              "qemu_args": ["-icount", 0]}),
     "emulator.qemu_args", "['-icount', 0]"),
    ("emulator-unknown-key", lambda d: d.update(emulator={"qemu_machine": "microbit", "firmware_path": "/x.hex",
                                                         "kernel": "/y.elf"}), "emulator.kernel", "'/y.elf'"),
]


@pytest.mark.parametrize("edit,field,value", [b[1:] for b in BAD], ids=[b[0] for b in BAD])
def test_bad_profile_is_one_line_naming_file_field_and_value(tmp_path, edit, field, value):
    d = good_profile()
    edit(d)
    path = write(tmp_path, d)
    with pytest.raises(ProfileError) as e:
        load_profile(path)
    msg = str(e.value)
    assert "\n" not in msg, msg
    assert msg.startswith(str(path)), msg
    assert field in msg, msg
    assert value in msg, msg


@pytest.mark.parametrize("key,hint", [("ram_kb", "ram_bytes"), ("flash_mb", "flash_bytes")])
def test_a_wrong_unit_key_suggests_the_right_one(tmp_path, key, hint):
    d = good_profile()
    d["memory"][key] = 16
    with pytest.raises(ProfileError, match=f"did you mean {hint}"):
        load_profile(write(tmp_path, d))


def test_malformed_toml_names_file_and_line(tmp_path):
    path = tmp_path / "broken.toml"
    path.write_text('[core]\ncpu = "Cortex-M0"\nclock_hz = = 16\n', encoding="utf-8")
    with pytest.raises(ProfileError) as e:
        load_profile(path)
    msg = str(e.value)
    assert "\n" not in msg and msg.startswith(str(path)) and "malformed TOML" in msg and "line 3" in msg


@pytest.mark.parametrize("make,expect", [
    (lambda p: p, "no such profile file"),
    (lambda p: (p.mkdir(), p)[1], "is a directory"),
    (lambda p: (p.write_bytes(b"\xff\xfe\x00bad"), p)[1], "not a UTF-8 text file"),
], ids=["missing", "directory", "binary"])
def test_unreadable_profile_files(tmp_path, make, expect):
    path = make(tmp_path / "x.toml")
    with pytest.raises(ProfileError) as e:
        load_profile(path)
    assert str(e.value).startswith(str(path)) and expect in str(e.value) and "\n" not in str(e.value)


def test_profile_error_is_a_value_error():
    # the CLI dispatcher maps ValueError to exit 2 with one line
    assert issubclass(ProfileError, ValueError)
