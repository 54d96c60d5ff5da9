"""Per-format decode costs (issue #14): a decode op names its format and bit width, the cost model prices it
with the runtime's row for that format (``[runtime.X.decode_cycles_per_op]``), falls back to
cycles_per_decode_op for a format without one, and the loader refuses a bad row in one line."""
from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest

import workloads as W
from device_profiles.loader import DECODE_FORMATS, ProfileError, load_profile
from simulator.cost import CostModel, op_cycles
from workloads.compression import FORMATS, decode_format, decode_op_name, encode
from workloads.trace import Op

PROFILES = Path(__file__).resolve().parents[1] / "device_profiles"
BASE = PROFILES / "stm32l476-nucleo.toml"        # no decode table of its own


def runtime(**kw):
    """A round-number native runtime: overhead 100 cycles, 10 cycles per decode op, no kind_costs."""
    rt = load_profile(BASE).runtime["native"]
    return dataclasses.replace(rt, op_overhead_cycles=100.0, cycles_per_decode_op=10.0, kind_costs=None, **kw)


def decode_op(fmt: str, bits: int, ops: int = 1000) -> Op:
    return Op(f"dense1.decode.{fmt}-{bits}", "decode", ops, 500, 4000)


def test_profile_formats_are_the_codecs_less_f32():
    assert DECODE_FORMATS == tuple(f for f in FORMATS if f != "f32")


def test_the_decode_op_name_carries_format_and_bits_and_reads_back():
    W_ = np.random.default_rng(0).normal(size=(12, 5)).astype(np.float32)
    for fmt, bits in (("int8", 4), ("csr", 8), ("binary", 2)):
        name = decode_op_name("conv2", "decode_backward", encode(W_, fmt, bits=bits, prune=0.5))
        assert name == f"conv2.decode_backward.{fmt}-{bits}" and decode_format(name) == (fmt, bits)
    assert decode_format("conv2.decode") is None and decode_format("conv2.decode.zip-8") is None


def test_each_format_is_priced_with_its_own_row_and_the_rest_fall_back():
    rt = runtime(decode_cycles_per_op={"int8": 3.0, "csr-8": 5.0, "csr": 7.0})
    assert op_cycles(decode_op("int8", 8), rt) == 100 + 1000 * 3.0
    assert op_cycles(decode_op("int8", 4), rt) == 100 + 1000 * 3.0       # a format's row serves every width
    assert op_cycles(decode_op("csr", 8), rt) == 100 + 1000 * 5.0        # format-bits before the format
    assert op_cycles(decode_op("csr", 32), rt) == 100 + 1000 * 7.0
    assert op_cycles(decode_op("xor", 2), rt) == 100 + 1000 * 10.0       # no row: cycles_per_decode_op
    assert op_cycles(Op("dense1.decode", "decode", 1000, 500, 4000), rt) == 100 + 1000 * 10.0   # no format named
    # the measured overhead of a decode call replaces op_overhead_cycles for every decode op
    rt2 = runtime(decode_cycles_per_op={"int8": 3.0}, decode_overhead_cycles=40.0)
    assert op_cycles(decode_op("int8", 8), rt2) == 40 + 1000 * 3.0
    assert op_cycles(decode_op("lowrank", 1), rt2) == 40 + 1000 * 10.0
    assert op_cycles(Op("x.forward", "matmul", 10, 0, 0), rt2) == 100 + 10 * rt2.cycles_per_mac_f32


def test_the_cost_cache_tells_formats_apart():
    prof = load_profile(BASE)
    prof = dataclasses.replace(prof, runtime={"native": runtime(decode_cycles_per_op={"int8": 3.0, "binary": 9.0})})
    cost = CostModel(prof, "native")
    a, b = cost.cost(decode_op("int8", 8))[0], cost.cost(decode_op("binary", 8))[0]   # same numbers, other format
    assert (a, b) == (100 + 3000.0, 100 + 9000.0)


def test_a_compressed_trace_is_priced_per_format():
    job = W.make_job("lenet-digits", techniques=W.Techniques(update="last-k", last_k=1),
                     compression={"format": "xor", "prune": 0.5, "bits": 2, "layer": {"conv0": {"format": "int8"}}})
    ops, _ = W.collect(job.infer(np.zeros(64, np.float32)))
    dec = [o for o in ops if o.kind == "decode"]
    assert {decode_format(o.name) for o in dec} == {("int8", 8), ("xor", 2)}
    rt = runtime(decode_cycles_per_op={"int8": 2.0})
    for o in dec:
        assert op_cycles(o, rt) == 100 + o.macs * (2.0 if o.name.startswith("conv0.") else 10.0)


TABLE = "\n[runtime.native.decode_cycles_per_op]\n"


@pytest.mark.parametrize("rows,needle", [
    ('int8 = -2\nint8_source = "measured: x"', "runtime.native.decode_cycles_per_op.int8 must be a finite number > 0 (got -2)"),
    ('int8 = "fast"\nint8_source = "measured: x"', "decode_cycles_per_op.int8 must be a finite number > 0 (got 'fast')"),
    ('int8 = nan\nint8_source = "measured: x"', "decode_cycles_per_op.int8 must be a finite number > 0 (got nan)"),
    ("int8 = 3.5", "decode_cycles_per_op.int8_source must be a non-empty string"),
    ('zip = 3\nzip_source = "estimate: x"', "decode_cycles_per_op.zip is not a format or format-bits (value 3)"),
    ('csr-x = 3\ncsr-x_source = "estimate: x"', "decode_cycles_per_op.csr-x is not a format or format-bits"),
    ('int8_source = "measured: x"', "decode_cycles_per_op.int8_source has no figure beside it"),
])
def test_a_bad_decode_row_is_one_line_naming_file_field_and_value(tmp_path, rows, needle):
    p = tmp_path / "board.toml"
    p.write_text(BASE.read_text() + TABLE + rows + "\n")
    with pytest.raises(ProfileError) as e:
        load_profile(p)
    msg = str(e.value)
    assert "\n" not in msg and msg.startswith(str(p)) and needle in msg, msg


def test_a_good_decode_table_loads_with_its_sources(tmp_path):
    p = tmp_path / "board.toml"
    p.write_text(BASE.read_text().replace("[runtime.native]\n", "[runtime.native]\ndecode_overhead_cycles = 80\n"
                                          'decode_overhead_cycles_source = "measured: a twin"\n')
                 + TABLE + 'int8 = 9\nint8_source = "measured: a twin"\ncsr-8 = 2.5\ncsr-8_source = "estimate: x"\n')
    prof = load_profile(p)
    rt = prof.runtime["native"]
    assert rt.decode_cycles_per_op == {"int8": 9.0, "csr-8": 2.5} and rt.decode_overhead_cycles == 80
    assert prof.sources["runtime.native.decode_cycles_per_op.int8"] == "measured: a twin"
    assert "runtime.native.decode_cycles_per_op.csr-8" in prof.estimates
    assert "runtime.native.decode_cycles_per_op.int8" not in prof.estimates
    assert load_profile(BASE).runtime["native"].decode_cycles_per_op is None


@pytest.mark.parametrize("board", ["stm32f405-pyboard", "mps2-an385", "rpi-pico"])
def test_calibrated_profiles_carry_measured_rows(board):
    prof = load_profile(board)
    rt = prof.runtime["native"]
    assert set(rt.decode_cycles_per_op) == {"int8-8", "binary-1", "csr-32", "csr-8"}
    assert rt.decode_overhead_cycles is not None and (rt.kind_costs is None or "decode" not in rt.kind_costs)
    for key in rt.decode_cycles_per_op:
        assert prof.sources[f"runtime.native.decode_cycles_per_op.{key}"].startswith("measured: edgesim calibrate")
