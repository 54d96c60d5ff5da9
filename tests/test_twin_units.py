"""Twin platform without booting anything: the machine table against the compiler, the profiles'
[emulator] validation, the QEMU command line, the firmware cache's key and lock, the mirror lookup."""
from __future__ import annotations

import re
import subprocess
import threading
import time
from dataclasses import replace
from pathlib import Path

import pytest

from device_profiles import list_profiles, load_profile
from device_profiles.loader import TWINS, ProfileError
from ports.boards import board_from_profile, load_board, twin_boards
from ports.errors import FirmwareBuildError, TwinUnavailable
from ports.twin import MACHINES, get_machine
from ports.twin import firmware as fw
from ports.twin.source import source_ready, source_root, system_mirror, toolchain_missing

PROFILES = Path(__file__).resolve().parent.parent / "device_profiles"
HAVE_GCC = not toolchain_missing()
needs_gcc = pytest.mark.skipif(not HAVE_GCC, reason="arm-none-eabi-gcc/newlib missing: sh .ci/install-system-deps "
                                                    "(`make test` runs it) installs gcc-arm-none-eabi")


# --- the machine table ----------------------------------------------------------------------------

def test_the_table_defines_exactly_the_twins_profiles_may_name():
    assert tuple(MACHINES) == TWINS
    with pytest.raises(KeyError, match="unknown twin 'mps2-an999'.*known: mps2-an385"):
        get_machine("mps2-an999")


@pytest.mark.parametrize("name", sorted(MACHINES))
def test_each_machine_is_self_consistent(name):
    m = MACHINES[name]
    assert (m.gcc_fpu is None) == (m.fpu == "none") == (m.gcc_float_abi == "soft")
    assert 0 < m.timer_period_ticks <= 1 << 30 and m.instructions_per_timer_tick >= 1
    assert m.timer_start_count < m.timer_period_ticks
    assert m.ram_size_bytes > 0 and m.code_size_bytes > 0
    args = m.qemu_args("fw.elf")
    assert args[:2] == ["-M", m.qemu_machine] and "shift=0,sleep=off" in args


def test_elapsed_ticks_wrap_both_ways():
    down, up = MACHINES["mps2-an386"], MACHINES["netduinoplus2"]
    p = down.timer_period_ticks
    assert down.elapsed_ticks(100, 40) == 60
    assert down.elapsed_ticks(5, p - 3) == 8                # wrapped through zero
    assert up.elapsed_ticks(40, 100) == 60 and up.elapsed_ticks(p - 3, 5) == 8
    assert down.elapsed_instructions(100, 40) == 60 * 40 and up.elapsed_instructions(40, 100) == 60


_ARCH_TAG = {"armv6-m": "v6S-M", "armv7-m": "v7", "armv7e-m": "v7E-M"}
_FP_TAG = {"fpv4-sp-d16": "VFPv4-D16", "fpv5-sp-d16": "FPv5/FP-D16 for ARMv8"}


@needs_gcc
@pytest.mark.parametrize("name", sorted(MACHINES))
def test_gcc_flags_build_for_the_tables_isa_and_float_abi(name, tmp_path):
    """The compiler agrees with the table: architecture, FPU and float ABI attributes of an object."""
    m = MACHINES[name]
    c = tmp_path / "x.c"
    c.write_text("float f(float a, float b) { return a * b + 1.0f; }\n")
    subprocess.run(["arm-none-eabi-gcc", *m.gcc_flags(), "-O2", "-c", str(c), "-o", str(tmp_path / "x.o")],
                   check=True)
    attrs = subprocess.run(["arm-none-eabi-readelf", "-A", str(tmp_path / "x.o")], capture_output=True, text=True,
                           check=True).stdout
    arch = re.search(r"Tag_CPU_arch: (\S+)", attrs).group(1)
    assert arch == _ARCH_TAG[m.arch], attrs
    if m.has_fpu:
        assert _FP_TAG[m.gcc_fpu] in attrs and "Tag_ABI_VFP_args: VFP registers" in attrs, attrs
        assert ("Tag_ABI_HardFP_use: SP only" in attrs) == (m.fpu == "sp"), attrs
    else:
        assert "Tag_FP_arch" not in attrs and "Tag_ABI_VFP_args" not in attrs, attrs


# --- profiles' [emulator] ---------------------------------------------------------------------------

def test_five_arm_profiles_have_twins_on_at_least_three_machines():
    boards = twin_boards()
    assert len(boards) >= 5 and len({b.twin.qemu_machine for b in boards}) >= 3
    for b in boards:     # a twin is the profile's memory size: its heap fits in the profile's RAM
        assert 0 < b.heap_bytes < b.profile.memory.ram_bytes
    pico = load_profile("rpi-pico")
    assert pico.emulator.twin == "mps2-an385-armv6m" and "Armv6-M" in pico.emulator.twin_note


def _profile_with(tmp_path: Path, emulator_toml: str, base: str = "stm32f405-pyboard") -> Path:
    text = (PROFILES / f"{base}.toml").read_text()
    text = text[:text.index("\n[emulator]")] + "\n\n[emulator]\n" + emulator_toml
    p = tmp_path / f"{base}.toml"
    p.write_text(text)
    return p


SRC = 'micropython_heap_bytes_source = "estimate: test"\n'
BAD_EMULATORS = [
    ("unknown twin", 'twin = "mps2-an999"\nmicropython_heap_bytes = 4096\n' + SRC, "emulator.twin", "'mps2-an999'"),
    ("twin without heap", 'twin = "netduinoplus2"\n', "emulator.micropython_heap_bytes is missing", ""),
    ("heap not below RAM", 'twin = "netduinoplus2"\nmicropython_heap_bytes = 196608\n' + SRC,
     "emulator.micropython_heap_bytes must be < memory.ram_bytes", "196608"),
    ("heap without source", 'twin = "netduinoplus2"\nmicropython_heap_bytes = 4096\n',
     "emulator.micropython_heap_bytes_source is missing", "4096"),
    ("heap not an integer", 'twin = "netduinoplus2"\nmicropython_heap_bytes = 4096.5\n' + SRC,
     "emulator.micropython_heap_bytes must be an integer", "4096.5"),
    ("twin and firmware", 'twin = "netduinoplus2"\nmicropython_heap_bytes = 4096\n' + SRC + 'firmware_path = "/x.elf"\n',
     "emulator.firmware_path does not go with a twin", "'/x.elf'"),
    ("two kinds", 'twin = "netduinoplus2"\nqemu_machine = "microbit"\n', "exactly one of twin, qemu_machine",
     "'microbit'"),
    ("empty table", 'qemu_args = []\n', "exactly one of twin, qemu_machine, no_twin_reason", "none of them"),
    ("reason with heap", 'no_twin_reason = "no"\nmicropython_heap_bytes = 4096\n' + SRC,
     "emulator.micropython_heap_bytes does not go with no_twin_reason", "4096"),
    ("machine without firmware", 'qemu_machine = "microbit"\n', "emulator.firmware_path is missing", ""),
    ("unknown key", 'twin = "netduinoplus2"\nheap_kb = 96\n', "emulator.heap_kb is not a known field", "96"),
]


@pytest.mark.parametrize("case,toml,field,value", BAD_EMULATORS, ids=[c[0] for c in BAD_EMULATORS])
def test_bad_emulator_tables_name_file_field_and_value(tmp_path, case, toml, field, value):
    p = _profile_with(tmp_path, toml)
    with pytest.raises(ProfileError) as e:
        load_profile(p)
    msg = str(e.value)
    assert msg.startswith(str(p)) and field in msg and value in msg and "\n" not in msg, msg


def test_a_twin_must_not_run_more_isa_or_fpu_than_the_board_has(tmp_path):
    p = _profile_with(tmp_path, 'twin = "mps2-an386"\nmicropython_heap_bytes = 65536\n' + SRC, base="rpi-pico")
    with pytest.raises(ValueError, match=r"rpi-pico.toml: emulator.twin 'mps2-an386' runs armv7e-m code, which "
                                         r"core.arch 'armv6-m' does not run"):
        board_from_profile(load_profile(p))
    p = _profile_with(tmp_path, 'twin = "mps2-an386"\nmicropython_heap_bytes = 65536\n' + SRC, base="mps2-an385")
    with pytest.raises(ValueError, match="emulator.twin 'mps2-an386' runs armv7e-m code"):
        board_from_profile(load_profile(p))


def test_boards_without_a_twin_say_why():
    for p in list_profiles():
        if p.core.arch in ("xtensa-lx6", "armv8-a"):
            assert p.emulator is None and len(p.no_twin_reason) > 20, p.name
            assert p.emulator_summary.startswith("none: ")
            with pytest.raises(ValueError, match=re.escape(p.no_twin_reason)):
                board_from_profile(p)


# --- the QEMU command line --------------------------------------------------------------------------

def test_twin_command_line_is_binary_safe_deterministic_and_has_qmp():
    b = load_board("stm32f405-pyboard")
    cmd = b.qemu_command("qemu-system-arm", 0, qmp_socket="/tmp/q.sock")
    s = " ".join(cmd)
    assert "-M netduinoplus2" in s and f"-kernel {b.firmware}" in s
    assert "-display none" in s and "-monitor none" in s and "-chardev stdio,id=s0,signal=off -serial chardev:s0" in s
    assert "-nographic" not in s
    assert "-icount shift=0,sleep=off" in s and "-semihosting-config enable=on,target=native" in s
    assert "-qmp unix:/tmp/q.sock,server=on,wait=off" in s


def test_microbit_keeps_its_loader_command():
    b = load_board("bbc-microbit-v1")
    cmd = b.qemu_command("qemu-system-arm", 0)
    assert b.twin is None and f"loader,file={b.firmware}" in cmd and "-kernel" not in cmd and "-qmp" not in cmd


# --- firmware cache ---------------------------------------------------------------------------------

def test_gc_pool_is_the_heap_less_its_tables():
    for heap in (4096, 65536, 98304, 192512):
        pool = fw.gc_pool_bytes(heap)
        assert pool % 16 == 0 and 0.96 * heap < pool < heap
    assert fw.gc_pool_bytes(65536) < fw.gc_pool_bytes(65536 + 1024)


def test_firmware_key_depends_on_machine_and_heap():
    m = MACHINES["mps2-an386"]
    keys = {fw.firmware_key(m, 65536), fw.firmware_key(m, 98304), fw.firmware_key(MACHINES["mps2-an500"], 65536)}
    assert len(keys) == 3 and all(k.startswith(("MPS2_AN386-heap", "MPS2_AN500-heap")) for k in keys)
    assert fw.firmware_key(m, 65536) == fw.firmware_key(m, 65536)


def test_two_builders_of_one_firmware_build_it_once(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    monkeypatch.setattr(fw, "PROGRESS_INTERVAL_S", 0.2)
    calls = []

    def slow_build(machine, heap_bytes, out, jobs, progress):
        calls.append(heap_bytes)
        time.sleep(1.0)
        (out / "firmware.elf").write_bytes(b"\x7fELF")
        return out / "firmware.elf"

    monkeypatch.setattr(fw, "_build", slow_build)
    m = MACHINES["mps2-an386"]
    results = []
    threads = [threading.Thread(target=lambda: results.append(fw.firmware_for(m, 65536))) for _ in range(2)]
    for t in threads:
        t.start()
        time.sleep(0.1)
    for t in threads:
        t.join()
    assert calls == [65536] and len(set(results)) == 1 and results[0].is_file()
    assert str(tmp_path) in str(results[0])
    assert "waiting for another process building MPS2_AN386-heap65536" in capsys.readouterr().err


def test_bad_heap_size_is_refused():
    with pytest.raises(ValueError, match=r"heap_bytes must be an integer >= 4096 \(got 100\)"):
        fw.firmware_for(MACHINES["mps2-an386"], 100)


@needs_gcc
@pytest.mark.skipif(not source_ready(), reason="MicroPython source not fetched: sh .ci/install-system-deps")
def test_a_failing_build_says_what_failed_with_the_log(tmp_path, monkeypatch, capsys):
    src = source_root()                       # the real tree, found before the cache moves to tmp_path
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    monkeypatch.setattr(fw, "require_source", lambda: src)
    bogus = replace(MACHINES["mps2-an386"], name="bogus", micropython_board="NO_SUCH_BOARD")
    with pytest.raises(FirmwareBuildError) as e:
        fw.firmware_for(bogus, 65536)
    assert "building MicroPython 1.25.0+ds-1 for bogus (heap 65,536 B) failed" in str(e.value)
    assert Path(e.value.log_path).is_file() and "Invalid BOARD" in e.value.serial_tail
    assert "edgesim: building MicroPython 1.25.0+ds-1 for bogus" in capsys.readouterr().err


def test_missing_toolchain_is_a_twin_unavailable_naming_the_install_command(monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))          # no gcc, no make
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    with pytest.raises(TwinUnavailable, match=r"arm-none-eabi-gcc .*missing: run sh .ci/install-system-deps"):
        fw.firmware_for(MACHINES["netduinoplus2"], 65536)


# --- the mirror the private apt configuration copies ------------------------------------------------------

def test_system_mirror_takes_the_main_archive_not_security(tmp_path):
    d = tmp_path / "sources.list.d"
    d.mkdir()
    (d / "debian.sources").write_text(
        "Types: deb\nURIs: http://mirror.example/debian-security\nSuites: bookworm-security\nComponents: main\n"
        "Signed-By: /k1.gpg\n\nTypes: deb\nURIs: http://mirror.example/debian\nSuites: bookworm bookworm-updates\n"
        "Components: main\nSigned-By: /k2.gpg\n")
    assert system_mirror(str(tmp_path)) == ("http://mirror.example/debian", "/k2.gpg")
    (d / "debian.sources").unlink()
    (tmp_path / "sources.list").write_text("# x\ndeb [arch=amd64] http://other.example/debian bookworm main\n")
    assert system_mirror(str(tmp_path))[0] == "http://other.example/debian"
    (tmp_path / "sources.list").unlink()
    assert system_mirror(str(tmp_path))[0] == "http://deb.debian.org/debian"


def test_install_script_is_posix_sh():
    script = Path(__file__).resolve().parent.parent / ".ci" / "install-system-deps"
    assert subprocess.run(["sh", "-n", str(script)]).returncode == 0
    text = script.read_text()
    assert "micropython=$MP_VERSION" in text and 'MP_VERSION="1.25.0+ds-1"' in text
    assert "/etc/apt/sources.list.d/" in text and "Dir::Etc::SourceParts=/nonexistent" in text


def test_a_new_build_drops_older_builds_of_the_same_board_and_heap(tmp_path):
    root = tmp_path / "firmware"
    current, stale, other_heap = (root / "MPS2_AN386-heap65536-aaaa", root / "MPS2_AN386-heap65536-bbbb",
                                  root / "MPS2_AN386-heap98304-cccc")
    for d in (current, stale, other_heap):
        d.mkdir(parents=True)
        (d / "firmware.elf").write_bytes(b"x")
    fw._drop_stale(current)
    assert current.is_dir() and other_heap.is_dir() and not stale.exists()
