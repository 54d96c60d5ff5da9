"""Native decode calibration (issue #14): the C decoders for int8 per-channel and 1-bit binary weights, the
decode micro-benchmark's generated program, the fitted cycles_per_decode_op written into a profile, and (on
a twin) the decoders checked against the host's decode."""
from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from device_profiles.loader import load_profile
from ports.ctrain import calibrate as C
from ports.ctrain import decodebench as D

needs_twin = pytest.mark.skipif(shutil.which("arm-none-eabi-gcc") is None or shutil.which("qemu-system-arm") is None,
                                reason="needs arm-none-eabi-gcc and qemu-system-arm (make test installs them: "
                                       "apt-get install gcc-arm-none-eabi libnewlib-arm-none-eabi qemu-system-arm)")
PROFILE = Path(__file__).resolve().parents[1] / "device_profiles" / "stm32l476-nucleo.toml"


def test_program_decodes_every_layer_in_every_format_into_its_own_arena_part():
    mats = D.layers(("mlp:16-24-12-10",))
    prog, ops, checksum = D.program(mats)
    n = sum(w.size for _, w in mats)
    assert len(ops) == len(D.FORMATS) * len(mats) == len(prog.op_names)
    assert prog.arena_bytes == 4 * n * len(D.FORMATS)
    for o in ops:   # int8 and 1-bit binary unpruned: one decode op per weight (the codecs' own count)
        assert o["decode_ops"] == o["weights"] > 0
    src = prog.files["model.c"]
    assert src.count("et_decode_int8(") == len(mats) and src.count("et_decode_binary1(") == len(mats)
    assert f"et_marks[{len(ops)}] = ET_TIMER_READ();" in src and np.isfinite(checksum) and checksum != 0.0


def test_fit_recovers_a_known_decode_cost():
    ops = [{"format": f, "bits": b, "decode_ops": n, "weights": n, "compressed_bytes": n * b // 8,
            "instructions": 200.0 + k * n} for (f, b), k in zip(D.FORMATS, (7.0, 12.0), strict=True)
           for n in (100, 400, 1600)]
    fit = D.fit(ops)
    assert fit["int88"]["per_decode_op"] == pytest.approx(7.0) and fit["binary1"]["per_decode_op"] == pytest.approx(12.0)
    assert fit["all"]["ops"] == 6 and 7.0 < fit["all"]["per_decode_op"] < 12.0 and fit["all"]["residual_max"] > 0.05
    # the kind_costs row (non-negative costs per decode op, compressed byte and dense byte) on a soft-float-like
    # case, where int8's bytes are the expensive part: recovered exactly
    soft = [dict(o, instructions=100.0 + 2.0 * o["decode_ops"] + 50.0 * o["compressed_bytes"]) for o in ops]
    row = D.fit(soft)["row"]
    assert row["residual_max"] < 1e-6 and row["per_byte_read"] == pytest.approx(50.0, rel=1e-4)


def test_written_profile_carries_the_measured_decode_cost(tmp_path):
    prof = load_profile(PROFILE)
    fit = {"all": {"overhead": 200.0, "per_decode_op": 10.0, "residual_max": 0.3, "ops": 6},
           "int88": {"overhead": 200.0, "per_decode_op": 7.0, "residual_max": 0.0, "ops": 3},
           "binary1": {"overhead": 200.0, "per_decode_op": 12.0, "residual_max": 0.0, "ops": 3}}
    res = {"profile_path": str(PROFILE), "machine": "mps2-an386", "compiler": "gcc test", "flags": "-O2",
           "specs": ["a"], "cycles_per_instruction": prof.core.cycles_per_instruction,
           "instruction_costs": {"matmul": {"overhead": 1.0, "per_mac": 2.0, "per_byte_read": 0.0,
                                            "per_byte_written": 0.0}},
           "op_residual_rms": 0.1, "ram_reserved_bytes": 600, "flash_reserved_bytes": 12000,
           "code_flash_bytes_range": [11000, 13000], "decode": {"fit": fit, "formats": ["int8 8-bit", "binary 1-bit"]}}
    after = load_profile(C.write_profile(res, tmp_path / "p.toml"))
    rt = after.runtime["native"]
    assert rt.cycles_per_decode_op == pytest.approx(10.0 * prof.core.cycles_per_instruction, rel=1e-3)
    src = after.sources["runtime.native.cycles_per_decode_op"]
    assert src.startswith("measured:") and "mps2-an386" in src and "int88 7.00" in src and "not measured" in src
    assert after.runtime["micropython"].cycles_per_decode_op == prof.runtime["micropython"].cycles_per_decode_op


@needs_twin
@pytest.mark.twin
def test_c_decoders_agree_with_the_host_on_the_twin(tmp_path, monkeypatch):
    """The twin's checksum equals the host's decode (int8 and 1-bit); a wrong expectation is caught."""
    prof = load_profile("stm32f405-pyboard")
    specs = ("mlp:16-24-12-10",)
    res = D.measure(prof, out=tmp_path / "ok", progress=False, specs=specs)
    for key in ("int88", "binary1"):
        f = res["fit"][key]
        assert f["ops"] == 3 and 1.0 < f["per_decode_op"] < 100.0, f
    assert all(o["instructions"] > o["decode_ops"] for o in res["ops"])
    real = D._checksum
    monkeypatch.setattr(D, "_checksum", lambda bufs: real(bufs) + 1.0)
    with pytest.raises(AssertionError, match="checksum"):
        D.measure(prof, out=tmp_path / "planted", progress=False, specs=specs)
