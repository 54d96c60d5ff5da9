"""Native calibration without a twin: the fit recovers known per-row costs, and the written profile keeps
everything but [runtime.native]'s reserves and its kind_costs table, which the loader and cost model read."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from device_profiles.loader import load_profile
from ports.ctrain import calibrate as C
from simulator.cost import op_cycles
from workloads.trace import Op, Tensor

PROFILE = Path(__file__).resolve().parents[1] / "device_profiles" / "stm32l476-nucleo.toml"
TRUE = {"conv": (900.0, 5.0, 0.25, 1.5), "matmul": (60.0, 4.0, 0.5, 0.0), "eltwise": (12.0, 0.0, 1.0, 0.0)}


def _rows(seed=0):
    rng = np.random.default_rng(seed)
    rows = []
    for kind, (o, m, br, bw) in TRUE.items():
        for _ in range(12):
            macs = int(rng.integers(100, 50_000)) if m else 0
            r, w = int(rng.integers(64, 20_000)), int(rng.integers(64, 20_000))
            rows.append({"spec": "s", "op": "x", "kind": kind, "macs": macs, "bytes_read": r, "bytes_written": w,
                         "instructions": o + m * macs + br * r + bw * w})
    return rows


def test_fit_recovers_known_costs():
    got = C.fit(_rows())
    for kind, (o, m, br, bw) in TRUE.items():
        c = got[kind]
        np.testing.assert_allclose([c["overhead"], c["per_mac"], c["per_byte_read"], c["per_byte_written"]],
                                   [o, m, br, bw], rtol=1e-4, atol=1e-3)


def _result(costs):
    prof = load_profile(PROFILE)
    return {"profile_path": str(PROFILE), "machine": "mps2-an386", "compiler": "gcc test", "flags": "-O2",
            "specs": ["a", "b"], "cycles_per_instruction": prof.core.cycles_per_instruction,
            "instruction_costs": costs, "op_residual_rms": 0.1, "ram_reserved_bytes": 600,
            "flash_reserved_bytes": 12000, "code_flash_bytes_range": [11000, 13000]}


def test_written_profile_prices_ops_with_the_fit(tmp_path):
    costs = C.fit(_rows())
    costs["conv.backward_weight"] = {"overhead": 1.0, "per_mac": 9.0, "per_byte_read": 0.0, "per_byte_written": 0.0}
    res = _result(costs)
    dst = C.write_profile(res, tmp_path / "l476.toml")
    before, after = load_profile(PROFILE), load_profile(dst)
    rt = after.runtime["native"]
    assert rt.ram_reserved_bytes == 600 and rt.flash_reserved_bytes == 12000
    assert after.sources["runtime.native.ram_reserved_bytes"].startswith("measured: edgesim calibrate")
    assert after.runtime["micropython"] == before.runtime["micropython"]     # the other runtime is untouched
    assert after.emulator == before.emulator and after.power == before.power
    cpi = after.core.cycles_per_instruction
    ws = (Tensor(1, 72, "workspace"),)     # an im2col convolution (a direct one has no workspace)
    fwd = Op("conv0.forward", "conv", 1000, 400, 800, alloc=ws)
    want = (costs["conv"]["overhead"] + 1000 * costs["conv"]["per_mac"] + 400 * costs["conv"]["per_byte_read"]
            + 800 * costs["conv"]["per_byte_written"]) * cpi
    assert op_cycles(fwd, rt) == pytest.approx(want, rel=1e-5)
    bwd = Op("conv0.backward_weight", "conv", 1000, 400, 800, alloc=ws)    # its own row wins over the kind's
    assert op_cycles(bwd, rt) == pytest.approx((1.0 + 9000.0) * cpi, rel=1e-5)
    # calibrating a calibrated profile replaces its table instead of adding a second one
    again = C.write_profile(res | {"profile_path": str(dst)}, tmp_path / "again.toml")
    assert Path(again).read_text().count("[runtime.native.kind_costs]") == 1
    assert load_profile(again).runtime["native"] == rt


@pytest.mark.parametrize("bad,match", [
    ({"conv": {"overhead_cycles": -1, "cycles_per_mac": 1, "cycles_per_byte_read": 0,
               "cycles_per_byte_written": 0}}, "finite number >= 0"),
    ({"conv": {"overhead_cycles": 1}}, "exactly"),
])
def test_bad_kind_costs_name_the_field(tmp_path, bad, match):
    from device_profiles.loader import ProfileError
    lines = ["[runtime.native.kind_costs]", 'source = "measured: test"']
    for k, row in bad.items():
        lines.append(f"{k} = {{ " + ", ".join(f"{a} = {b}" for a, b in row.items()) + " }")
    import re
    text = re.sub(r"\n\[runtime\.native\.kind_costs\]\n(?:(?!\[)[^\n]*\n)*", "\n", PROFILE.read_text())
    text = text.replace("[runtime.micropython]", "\n".join(lines) + "\n\n[runtime.micropython]", 1)
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(ProfileError, match=match):
        load_profile(path)


def test_role_rows_price_the_first_convolution_and_gap_where_a_profile_has_them(tmp_path):
    """The soft-float role rows: the first layer's im2col convolution (raw samples, not post-ReLU
    activations) and the global average pool get rows of their own; a profile without them prices the op
    with the next row (a MicroPython fit never sees them: cost_keys without roles)."""
    from simulator.cost import cost_keys

    ws = (Tensor(1, 72, "workspace"),)
    first, later = Op("conv0.forward", "conv", 1000, 400, 800, alloc=ws), Op("conv3.forward", "conv", 1000, 400, 800,
                                                                               alloc=ws)
    assert cost_keys(first, roles=True)[0] == "conv.input" and cost_keys(first)[0] == "conv"
    assert cost_keys(Op("conv0.backward_weight", "conv", 9, 9, 9, alloc=ws), roles=True)[:2] == (
        "conv.input.backward_weight", "conv.backward_weight")
    assert cost_keys(later, roles=True)[0] == "conv" and cost_keys(Op("conv10.forward", "conv", 9, 9, 9, alloc=ws),
                                                                   roles=True)[0] == "conv"
    assert cost_keys(Op("dwconv0.forward", "conv", 9, 9, 9), roles=True)[0] == "conv_direct"   # no role row
    assert cost_keys(Op("gap4.backward_input", "reduce", 0, 9, 9), roles=True)[0] == "reduce.gap.backward_input"
    assert cost_keys(Op("maxpool1.forward", "reduce", 0, 9, 9), roles=True)[0] == "reduce"
    costs = C.fit(_rows())
    plain = load_profile(C.write_profile(_result(costs), tmp_path / "plain.toml")).runtime["native"]
    assert op_cycles(first, plain) == pytest.approx(op_cycles(later, plain))      # no role row: the kind's
    costs["conv.input"] = {"overhead": 0.0, "per_mac": 50.0, "per_byte_read": 0.0, "per_byte_written": 0.0}
    prof = load_profile(C.write_profile(_result(costs), tmp_path / "roles.toml"))
    rt = prof.runtime["native"]
    assert op_cycles(first, rt) == pytest.approx(50_000 * prof.core.cycles_per_instruction, rel=1e-5)
    assert op_cycles(later, rt) == pytest.approx(op_cycles(later, plain))
