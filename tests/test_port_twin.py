"""edgesim port: generated C on the twins (issue #11) — agreement with the host, pinned baselines, the arena
plan really exercised (a planted overlap diverges), and the faults (toolchain, compile error, hard fault,
hang, does not fit), none leaving a QEMU running."""
from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from ports.ctrain import build as B
from ports.ctrain import port as P
from ports.ctrain import run as R
from ports.ctrain.errors import CompileError, DoesNotFit, GuestFault, GuestHang, ToolchainMissing

BASELINES = Path(__file__).resolve().parent / "baselines"
HINT = "the README set-up installs it (make test: gcc-arm-none-eabi, libnewlib-arm-none-eabi, qemu-system-arm)"
needs_twin = pytest.mark.skipif(shutil.which("arm-none-eabi-gcc") is None or shutil.which("qemu-system-arm") is None,
                                reason=f"arm-none-eabi-gcc or qemu-system-arm missing: {HINT}")
pytestmark = pytest.mark.twin

# CI: two models on two twins against pinned baselines (small and quick: a few seconds each)
CI_CASES = [("stm32f405-pyboard", "lenet-digits"), ("mps2-an385", "mlp-microbit"),
            ("stm32f405-pyboard", "mlp-microbit"), ("mps2-an385", "lenet-digits")]
STEPS = 5


def _no_qemu_of_ours():
    assert not R._live, "a QEMU process of this test run is still running"


@pytest.fixture(autouse=True)
def no_qemu_left():
    yield
    _no_qemu_of_ours()


def test_codegen_is_byte_identical_and_follows_the_plan():
    """Same spec and seed -> the same C; another seed -> other weights; every tensor at its planned offset."""
    a = P.prepare("stm32f405-pyboard", "cnn:8x8x1-c4k3-p2-d10", steps=2, seed=3)[-1]
    b = P.prepare("stm32f405-pyboard", "cnn:8x8x1-c4k3-p2-d10", steps=2, seed=3)[-1]
    c = P.prepare("stm32f405-pyboard", "cnn:8x8x1-c4k3-p2-d10", steps=2, seed=4)[-1]
    assert a.files == b.files and a.arena_json() == b.arena_json()
    assert a.files["model.c"] != c.files["model.c"]
    _, _, _, _, host, prog = P.prepare("stm32f405-pyboard", "cnn:8x8x1-c4k3-p2-d10", steps=2, seed=3)
    assert prog.arena_bytes == host.plan.planned_bytes
    for t in prog.tensors:
        assert f"A + {t.offset_bytes // 4}" in prog.files["model.c"], t.name


@pytest.mark.parametrize("tech,bad", [({"int8": True}, "int8"), ({"recompute": True}, "recompute"),
                                      ({"update": "sparse"}, "update=sparse")])
def test_unsupported_technique_is_named(tech, bad):
    with pytest.raises(ValueError, match=bad):
        P.prepare("stm32f405-pyboard", "mlp-microbit", steps=1, techniques=tech)


def test_toolchain_missing_says_how_to_install(monkeypatch):
    monkeypatch.setattr(B.shutil, "which", lambda name: None)
    with pytest.raises(ToolchainMissing, match="apt-get install gcc-arm-none-eabi"):
        B.compiler_version()


@needs_twin
@pytest.mark.parametrize("board,workload", CI_CASES)
def test_port_against_pinned_baseline(board, workload, tmp_path):
    """Losses equal the host's; instructions per step, arena, flash and stack equal the pinned figures
    (-icount makes them exact; a change to the kernels or the planner shows here)."""
    res = P.port(board, workload, steps=STEPS, out=tmp_path)
    assert res["losses_match_host"], (res["losses"], res["host_losses"])
    np.testing.assert_allclose(res["losses"], res["host_losses"], rtol=1e-3, atol=1e-4)
    name = f"port_{board}_{workload}.json"
    base = json.loads((BASELINES / name).read_text())
    for key in ("instructions_by_step", "arena_bytes", "flash_bytes", "stack_peak_bytes", "static_ram_bytes",
                "machine", "float_abi"):
        assert res[key] == base[key], f"{key}: {res[key]} != pinned {base[key]} ({name})"
    assert res["arena_bytes"] == res["planned_arena_bytes"]
    for f in ("sources", "elf", "arena_map"):
        assert Path(res["files"][f]).exists()


def _live_pair(prog):
    """Two tensors live at the same time that the plan keeps apart (transient: activations, grads)."""
    ts = [t for t in prog.tensors if t.kind in ("activation", "grad", "wgrad") and t.nbytes >= 16]
    for a in ts:
        for b in ts:
            if a.name < b.name and a.first_op <= b.last_op and b.first_op <= a.last_op and a.first_op != b.first_op:
                if a.offset_bytes + a.nbytes <= b.offset_bytes or b.offset_bytes + b.nbytes <= a.offset_bytes:
                    return a, b
    raise AssertionError("no two live tensors to overlap")


@needs_twin
def test_planted_overlap_diverges_from_host(tmp_path):
    """The arena plan is really exercised: moving one live tensor onto another makes the twin's losses
    differ from the host's, while the planner's own map matches."""
    board, wl = "stm32f405-pyboard", "mlp:64-40-20-10"
    prog = P.prepare(board, wl, steps=STEPS)[-1]
    a, b = _live_pair(prog)
    good = P.port(board, wl, steps=STEPS, out=tmp_path / "plan")
    bad = P.port(board, wl, steps=STEPS, out=tmp_path / "planted", offsets={b.name: a.offset_bytes})
    assert good["losses_match_host"]
    assert not bad["losses_match_host"], f"{b.name} over {a.name} did not change the losses"
    assert json.loads((tmp_path / "planted" / "arena.json").read_text())["offsets_overridden"] is True


def _built(tmp_path, edit=None, board="mps2-an385", wl="mlp-microbit"):
    profile, target, _, _, host, prog = P.prepare(board, wl, steps=2)
    if edit:
        prog.files["model.c"] = edit(prog.files["model.c"])
    return target, host, prog


@needs_twin
def test_compile_error_is_one_line_naming_the_file(tmp_path):
    target, host, prog = _built(tmp_path, lambda c: c.replace("float loss = 0.0f;", "float loss = 0.0f oops;"))
    with pytest.raises(CompileError) as e:
        B.build(prog, target, tmp_path)
    msg = str(e.value)
    assert "model.c" in msg and "error" in msg and "\n" not in msg


@needs_twin
def test_hard_fault_names_the_pc(tmp_path):
    target, host, prog = _built(tmp_path, lambda c: c.replace(
        "float loss = 0.0f;", "float loss = 0.0f;\n    ((void (*)(void))0xFFFFFFF1u)();"))
    built = B.build(prog, target, tmp_path)
    with pytest.raises(GuestFault) as e:
        R.run(target, built.elf, host.batches[:2], prog.inputs, len(host.ops), tmp_path)
    assert e.value.pc is not None and "pc=0x" in str(e.value)


@needs_twin
def test_hang_times_out_and_ends_qemu(tmp_path):
    target, host, prog = _built(tmp_path, lambda c: c.replace(
        "float loss = 0.0f;", "float loss = 0.0f;\n    for (volatile int spin = 1; spin;) {}"))
    built = B.build(prog, target, tmp_path)
    with pytest.raises(GuestHang, match="did not finish"):
        R.run(target, built.elf, host.batches[:2], prog.inputs, len(host.ops), tmp_path, timeout_s=2)
    _no_qemu_of_ours()
    out = subprocess.run(["pgrep", "-f", str(built.elf)], capture_output=True, text=True)
    assert out.stdout.strip() == "", "QEMU still running"


@needs_twin
def test_does_not_fit_names_the_region(tmp_path):
    """A profile with 16 KB of RAM cannot hold LeNet's arena: the linker says so, exit 3 from the CLI."""
    import re
    text = (Path(__file__).resolve().parents[1] / "device_profiles" / "mps2-an385.toml").read_text()
    small = re.sub(r"^ram_bytes = .*$", "ram_bytes = 16384", text, count=1, flags=re.M)
    small = re.sub(r"^(ram_reserved_bytes = )\d+", r"\g<1>1024", small, flags=re.M)
    small = re.sub(r"^(micropython_heap_bytes = )\d+", r"\g<1>8192", small, flags=re.M)
    path = tmp_path / "tiny.toml"
    path.write_text(small)
    with pytest.raises(DoesNotFit) as e:
        P.port(str(path), "lenet-digits", steps=1, out=tmp_path / "o")
    assert e.value.region == "RAM" and "overflowed" in str(e.value)
    from simulator.cli import main
    assert main(["port", "--board", str(path), "--workload", "lenet-digits", "--steps", "1",
                 "--out", str(tmp_path / "cli")]) == 3


@needs_twin
def test_cli_port_json(tmp_path, capsys):
    from simulator.cli import main
    rc = main(["port", "--board", "stm32f405-pyboard", "--workload", "mlp-microbit", "--steps", "3", "--json",
               "--out", str(tmp_path)])
    assert rc == 0
    res = json.loads(capsys.readouterr().out)
    for key in ("instructions_per_step", "predicted_instructions_per_step", "ram_peak_bytes",
                "predicted_ram_peak_bytes", "flash_bytes", "predicted_flash_bytes", "stack_peak_bytes",
                "arena_bytes", "losses", "host_losses", "board", "machine", "compiler"):
        assert key in res, key
    assert res["machine"] == "netduinoplus2" and len(res["losses"]) == 3
    assert (tmp_path / "port.json").is_file()


def test_cli_bad_steps_exit_2(capsys):
    from simulator.cli import main
    assert main(["port", "--board", "stm32f405-pyboard", "--workload", "mlp-microbit", "--steps", "0"]) == 2
    assert "--steps" in capsys.readouterr().err
