"""Native decode calibration (issue #14): the C decoders for int8 per-channel, 1-bit binary and CSR weights, the
decode micro-benchmark's generated program, the fitted cycles_per_decode_op and per-format rows written into a
profile, and (on a twin) the decoders checked against the host's decode and the rows written from them."""
from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from device_profiles.loader import load_profile
from ports.ctrain import calibrate as C
from ports.ctrain import decodebench as D
from simulator.cost import op_cycles
from workloads.trace import Op

needs_twin = pytest.mark.skipif(shutil.which("arm-none-eabi-gcc") is None or shutil.which("qemu-system-arm") is None,
                                reason="needs arm-none-eabi-gcc and qemu-system-arm (make test installs them: "
                                       "apt-get install gcc-arm-none-eabi libnewlib-arm-none-eabi qemu-system-arm)")
PROFILE = Path(__file__).resolve().parents[1] / "device_profiles" / "stm32l476-nucleo.toml"


def test_program_decodes_every_layer_in_every_format_into_its_own_arena_part():
    mats = D.layers(("mlp:16-24-12-10",))
    prog, ops, checksum = D.program(mats)
    n = sum(w.size for _, w in mats)
    assert len(ops) == len(D.variants()) * len(mats) == len(prog.op_names)
    assert prog.arena_bytes == 4 * n * len(D.variants())
    for o in ops:   # int8 and 1-bit binary unpruned: one decode op per weight (the codecs' own count)
        if o["format"] in ("int8", "binary"):
            assert o["decode_ops"] == o["weights"] > 0
        else:       # CSR: a zero fill per weight, 3 (float32) or 4 (int8) per kept weight, a pointer per row
            assert o["format"] == "csr" and o["weights"] < o["decode_ops"] < 5 * o["weights"]
    src = prog.files["model.c"]
    assert src.count("et_decode_int8(") == len(mats) and src.count("et_decode_binary1(") == len(mats)
    assert src.count("et_decode_csr_f32(") == src.count("et_decode_csr_int8(") == 2 * len(mats)   # 50 and 90 %
    assert f"et_marks[{len(ops)}] = ET_TIMER_READ();" in src and np.isfinite(checksum) and checksum != 0.0
    # the twin runs the variants two per program: a small board holds two dense copies of every layer
    assert [v for g in D.groups() for v in g] == D.variants() and max(len(g) for g in D.groups()) == 2


def test_fit_recovers_a_known_decode_cost():
    ops = [{"format": f, "bits": b, "decode_ops": n, "weights": n, "compressed_bytes": n * b // 8,
            "instructions": 200.0 + k * n} for (f, b), k in (((("int8", 8), 7.0), (("binary", 1), 12.0)))
           for n in (100, 400, 1600)]
    fit = D.fit(ops)
    assert fit["int88"]["per_decode_op"] == pytest.approx(7.0) and fit["binary1"]["per_decode_op"] == pytest.approx(12.0)
    assert fit["all"]["ops"] == 6 and 7.0 < fit["all"]["per_decode_op"] < 12.0 and fit["all"]["residual_max"] > 0.05
    # the kind_costs row (non-negative costs per decode op, compressed byte and dense byte) on a soft-float-like
    # case, where int8's bytes are the expensive part: recovered exactly
    soft = [dict(o, instructions=100.0 + 2.0 * o["decode_ops"] + 50.0 * o["compressed_bytes"]) for o in ops]
    row = D.fit(soft)["row"]
    assert row["residual_max"] < 1e-6 and row["per_byte_read"] == pytest.approx(50.0, rel=1e-4)
    # the per-format rows: one shared overhead and one k per measured format and width,
    # the fallback (cycles_per_decode_op) from int8 and binary only
    k = {"int8-8": 7.0, "binary-1": 12.0, "csr-32": 2.0, "csr-8": 3.0}
    csr = [{"format": "csr", "bits": b, "decode_ops": n, "weights": n // 2, "compressed_bytes": n,
            "instructions": 150.0 + k[f"csr-{b}"] * n} for b in (32, 8) for n in (300, 900, 2000)]
    both = [dict(o, instructions=150.0 + k[f"{o['format']}-{o['bits']}"] * o["decode_ops"]) for o in ops] + csr
    rows = D.fit(both)
    assert rows["formats"]["overhead"] == pytest.approx(150.0, rel=1e-6)
    assert {r: v["per_decode_op"] for r, v in rows["formats"]["per_format"].items()} == pytest.approx(k, rel=1e-6)
    assert rows["all"]["ops"] == 6


def measured_fit() -> dict:
    return {"all": {"overhead": 200.0, "per_decode_op": 10.0, "residual_max": 0.3, "ops": 6},
            "int88": {"overhead": 200.0, "per_decode_op": 7.0, "residual_max": 0.0, "ops": 3},
            "binary1": {"overhead": 200.0, "per_decode_op": 12.0, "residual_max": 0.0, "ops": 3},
            "formats": {"overhead": 150.0, "residual_max": 0.05, "per_format": {
                "int8-8": {"per_decode_op": 7.0, "residual_max": 0.04, "bits": [8], "ops": 3},
                "csr-8": {"per_decode_op": 2.5, "residual_max": 0.05, "bits": [8], "ops": 3}}}}


def calibration(prof, fit: dict, ops: list[dict]) -> dict:
    return {"profile_path": str(PROFILE), "machine": "mps2-an386", "compiler": "gcc test", "flags": "-O2",
            "specs": ["a"], "cycles_per_instruction": prof.core.cycles_per_instruction,
            "instruction_costs": {"matmul": {"overhead": 1.0, "per_mac": 2.0, "per_byte_read": 0.0,
                                             "per_byte_written": 0.0}},
            "op_residual_rms": 0.1, "ram_reserved_bytes": 600, "flash_reserved_bytes": 12000,
            "code_flash_bytes_range": [11000, 13000],
            "decode": {"fit": fit, "ops": ops, "formats": ["int8 8-bit", "binary 1-bit"]}}


def test_written_profile_carries_the_measured_decode_cost(tmp_path):
    prof = load_profile(PROFILE)
    ops = [{"format": "int8", "bits": 8}, {"format": "binary", "bits": 1}, {"format": "csr", "bits": 8}]
    after = load_profile(C.write_profile(calibration(prof, measured_fit(), ops), tmp_path / "p.toml"))
    rt, cpi = after.runtime["native"], prof.core.cycles_per_instruction
    assert rt.cycles_per_decode_op == pytest.approx(10.0 * cpi, rel=1e-3)
    src = after.sources["runtime.native.cycles_per_decode_op"]
    assert src.startswith("measured:") and "mps2-an386" in src and "int88 7.00" in src and "not measured" in src
    assert "xor" in src and "csr at 32 bit" in src and "int8 at 4 bit" in src    # what it did not measure
    assert rt.decode_overhead_cycles == pytest.approx(150.0 * cpi, rel=1e-3)
    assert rt.decode_cycles_per_op == pytest.approx({"int8-8": 7.0 * cpi, "csr-8": 2.5 * cpi}, rel=1e-5)
    assert after.sources["runtime.native.decode_cycles_per_op.csr-8"].startswith("measured:")
    assert "decode" not in rt.kind_costs                                    # the per-format rows replace it
    assert after.runtime["micropython"].cycles_per_decode_op == prof.runtime["micropython"].cycles_per_decode_op
    again = load_profile(C.write_profile(dict(calibration(prof, measured_fit(), ops), profile_path=str(tmp_path / "p.toml")),
                                         tmp_path / "q.toml"))                 # recalibrating replaces, never duplicates
    assert again.runtime["native"] == rt


@needs_twin
@pytest.mark.twin
def test_c_decoders_agree_with_the_host_on_the_twin(tmp_path, monkeypatch):
    """The twin's checksum equals the host's decode (int8, 1-bit, CSR float32 and int8); a wrong expectation is
    caught; the measured rows, written into a profile, price each decode within 25 % of the twin."""
    prof = load_profile("stm32f405-pyboard")
    specs = ("mlp:16-24-12-10",)
    res = D.measure(prof, out=tmp_path / "ok", progress=False, specs=specs)
    for key in ("int88", "binary1"):
        f = res["fit"][key]
        assert f["ops"] == 3 and 1.0 < f["per_decode_op"] < 100.0, f
    assert {"csr32", "csr8"} <= set(res["fit"]) and len(res["checksum"]) == len(D.groups())
    assert all(o["instructions"] > o["decode_ops"] for o in res["ops"])
    after = load_profile(C.write_profile(calibration(prof, res["fit"], res["ops"]), tmp_path / "p.toml"))
    rt, cpi = after.runtime["native"], after.core.cycles_per_instruction
    assert set(rt.decode_cycles_per_op) == {"int8-8", "binary-1", "csr-32", "csr-8"}
    for o in res["ops"]:
        op = Op(f"l.decode.{o['format']}-{o['bits']}", "decode", o["decode_ops"], o["compressed_bytes"], 4 * o["weights"])
        assert op_cycles(op, rt) == pytest.approx(o["instructions"] * cpi, rel=0.25), o
    real = D._checksum
    monkeypatch.setattr(D, "_checksum", lambda bufs: real(bufs) + 1.0)
    with pytest.raises(AssertionError, match="checksum"):
        D.measure(prof, out=tmp_path / "planted", progress=False, specs=specs)
