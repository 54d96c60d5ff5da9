"""Ports without QEMU: the device-side code run by CPython against numpy, the wire format, the board
table, the calibration fit and profile writer, the prediction glue, the CLI's input errors."""
from __future__ import annotations

import ast
import dataclasses
import math
import shutil
import struct
import types
from array import array
from pathlib import Path

import numpy as np
import pytest

from ports.boards import board_from_profile, load_board
from ports.calibrate import FITTED, bench_ops, fit
from ports.calibration_profile import write_runtime_table
from ports.emulate import hex_floats, make_mlp_job, mlp_sizes, parse_step
from ports.errors import GuestMemoryError, PortError, ReplTimeout
from ports.predict import PortFootprint, predict_trace
from ports.repl import RawRepl, checksum
from ports.session import DEVICE_DIR

PROFILE = Path(load_board("bbc-microbit-v1").profile.path)


def device_functions(filename: str, names: tuple[str, ...], **env) -> types.SimpleNamespace:
    """Functions of a device-side file, compiled by CPython from the file as it is (imports skipped)."""
    tree = ast.parse((DEVICE_DIR / filename).read_text())
    body = [n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name in names]
    ns = {"array": array, "exp": math.exp, "log": math.log, "ustruct": struct, **env}
    exec(compile(ast.Module(body=body, type_ignores=[]), filename, "exec"), ns)
    return types.SimpleNamespace(**{n: ns[n] for n in names})


K = device_functions("mlpk.py", ("fwd", "ce", "dact", "dw", "dx", "upd"))
SRV = device_functions("srv.py", ("ck", "hexf"))


def f32(a) -> array:
    return array("f", np.asarray(a, np.float32).ravel().tolist())


# --- the device kernels, run by CPython, against numpy -----------------------------------------------
def test_device_kernels_match_numpy():
    rng = np.random.default_rng(0)
    n, m = 7, 5
    x, W, b = rng.standard_normal(n), rng.standard_normal((n, m)), rng.standard_normal(m)
    z = np.asarray(K.fwd(f32(x), f32(W), f32(b), n, m, True))
    np.testing.assert_allclose(z, np.maximum(x @ W + b, 0), rtol=1e-5, atol=1e-6)
    logits = rng.standard_normal(m)
    g, loss = K.ce(f32(logits), 2, m)
    p = np.exp(logits - logits.max()) / np.exp(logits - logits.max()).sum()
    assert loss == pytest.approx(-np.log(p[2]), rel=1e-5)
    onehot = np.eye(m)[2]
    np.testing.assert_allclose(np.asarray(g), p - onehot, rtol=1e-5, atol=1e-6)
    gz = np.array([0.5, 0.0, -1.0, 0.0, 2.0])
    dW, db = K.dw(f32(x), f32(gz), n, m)
    np.testing.assert_allclose(np.asarray(dW).reshape(n, m), np.outer(x, gz), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(np.asarray(db), gz, rtol=1e-6)
    dx = K.dx(f32(gz), f32(W), n, m)
    np.testing.assert_allclose(np.asarray(dx), W @ gz, rtol=1e-5, atol=1e-5)
    d = f32(gz)
    K.dact(d, f32([1.0, 2.0, 0.0, -1.0, 3.0]), m)
    np.testing.assert_array_equal(np.asarray(d), np.asarray(f32([0.5, 0.0, 0.0, 0.0, 2.0])))
    w, bb = f32(W), f32(b)
    K.upd(w, bb, dW, db, 0.1, n * m)
    np.testing.assert_allclose(np.asarray(w).reshape(n, m), W - 0.1 * np.outer(x, gz), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(np.asarray(bb), b - 0.1 * gz, rtol=1e-5, atol=1e-6)


def test_device_step_matches_host_training_step():
    """The device kernels, in mlp.step's order, reproduce the host job's loss and weight update."""
    job = make_mlp_job("mlp:16-12-10")
    W0, b0, W1, b1 = (p.copy() for p in job.model.parameters())
    x, y = next(iter(job.labelled_stream()))
    gen = job.train_step(x[None], np.array([y]))
    while True:
        try:
            next(gen)
        except StopIteration as stop:
            host_loss = stop.value
            break
    w0, B0, w1, B1 = f32(W0), f32(b0), f32(W1), f32(b1)
    a1 = K.fwd(f32(x), w0, B0, 16, 12, True)
    z = K.fwd(a1, w1, B1, 12, 10, False)
    g, loss = K.ce(z, int(y), 10)
    d, e = K.dw(a1, g, 12, 10)
    h = K.dx(g, w1, 12, 10)
    K.upd(w1, B1, d, e, 0.05, 120)
    K.dact(h, a1, 12)
    d, e = K.dw(f32(x), h, 16, 12)
    K.upd(w0, B0, d, e, 0.05, 192)
    assert loss == pytest.approx(host_loss, rel=1e-4, abs=1e-5)
    for dev, host in zip((w0, B0, w1, B1), job.model.parameters(), strict=True):
        np.testing.assert_allclose(np.asarray(dev), host.ravel(), rtol=1e-4, atol=1e-5)


# --- the wire format ---------------------------------------------------------------------------------
def test_hex_floats_round_trip_through_the_device_decoder():
    v = np.array([0.0, -1.5, 3.1415927, 1e-30, -7.25e12, np.float32(1) / 3], np.float32)
    h = hex_floats(v)
    assert len(h) == 8 * len(v)
    out = array("f", [0.0] * len(v))
    SRV.hexf(out, 0, h)
    np.testing.assert_array_equal(np.asarray(out, np.float32), v)     # exact: bits travel, not decimals


@pytest.mark.parametrize("text", ["", "a", "s 3 7 1234 00ff", "@ready 1 2 3"])
def test_checksum_is_the_devices(text):
    assert checksum(text.encode()) == SRV.ck(text)


def test_parse_step_reads_the_answer_and_rejects_garbage():
    bits = struct.unpack("<I", struct.pack("<f", 0.25))[0]
    st = parse_step(f"3 {bits:08x} 6000 7,300 6100,6200", 3)
    assert st.loss == 0.25 and st.op_us == [7, 300] and st.instructions == 307000 and st.heap_peak_bytes == 6200
    for bad in ("3 zz 1 2 3", "4 3e800000 1 2 3", "3 3e800000 1 2", "3 3e800000 1 a,b 1"):
        with pytest.raises(ValueError, match="step 3"):
            parse_step(bad, 3)


class _FakeQemu:
    """A serial line that plays back scripted answers (no QEMU): for the transport's parsing paths."""

    log_path = "/tmp/fake.log"

    def __init__(self, answers: list[bytes]) -> None:
        self.answers = list(answers)
        self.sent: list[bytes] = []

    def write(self, data: bytes) -> None:
        self.sent.append(data)

    def read(self, timeout_s: float) -> bytes:
        # the guest answers only once the code was sent (Ctrl-D)
        if self.answers and any(b"\x04" in d for d in self.sent):
            return self.answers.pop(0)
        return b""

    def tail(self) -> str:
        return ""

    def timeout(self, what, seconds, pending=b""):
        return ReplTimeout(f"{what}: timeout", log_path=self.log_path)


def test_exec_types_guest_errors_and_reports_the_failed_allocation():
    tb = (b"OK\x04Traceback (most recent call last):\r\n  File \"<stdin>\", line 1, in <module>\r\n"
          b"MemoryError: memory allocation failed, allocating 20000 bytes\r\n\x04>")
    r = RawRepl(_FakeQemu([tb]), chunk_pause_s=0.0)
    with pytest.raises(GuestMemoryError) as e:
        r.exec("x = bytearray(20000)", retry_syntax=False)
    assert e.value.failed_alloc_bytes == 20000
    assert "allocating 20000 bytes" in str(e.value) and "/tmp/fake.log" in str(e.value)
    r = RawRepl(_FakeQemu([b"OK42\r\n\x04\x04>"]), chunk_pause_s=0.0)
    assert r.exec("print(42)").strip() == "42"


def test_port_errors_carry_tail_and_log():
    e = PortError("it broke", serial_tail="line 1\nline 2", log_path="/x/serial.log")
    s = str(e)
    assert "it broke" in s and "| line 2" in s and "/x/serial.log" in s


# --- the board table ----------------------------------------------------------------------------------
def test_board_table_comes_from_the_profile():
    b = load_board("bbc-microbit-v1")
    assert (b.machine, b.ram_bytes) == ("microbit", 16384)
    cmd = b.qemu_command("qemu-system-arm")
    assert cmd[:3] == ["qemu-system-arm", "-M", "microbit"]
    assert "-nographic" not in cmd and "stdio,id=s0,signal=off" in cmd
    assert cmd[cmd.index("-icount") + 1] == "shift=0,sleep=off"
    assert f"loader,file={b.firmware}" in cmd


def test_board_without_emulator_table_is_a_clear_error():
    prof = dataclasses.replace(load_board("bbc-microbit-v1").profile, emulator=None)
    with pytest.raises(ValueError, match=r"\[emulator\] is missing"):
        board_from_profile(prof)


def test_only_mlps_are_ported():
    job = make_mlp_job("mlp:16-8-10")
    assert mlp_sizes(job) == [16, 8, 10]
    with pytest.raises(ValueError, match="MLPs only"):
        mlp_sizes(types.SimpleNamespace(name="cnn:x", model=types.SimpleNamespace(layers=[object()])))


# --- calibration --------------------------------------------------------------------------------------
def test_fit_recovers_known_coefficients_and_reports_residuals():
    from simulator.cost import op_cycles

    truth = dict(zip(FITTED, (2500.0, 2200.0, 600.0, 30.0), strict=True))
    rt = types.SimpleNamespace(cycles_per_mac_i8=1.0, **truth)
    rows = [{"label": lab, "op": op, "instructions": op_cycles(op, rt) / 1.2} for lab, _, _, _, op in bench_ops()]
    got = fit(rows, 1.2)
    for k, v in truth.items():
        assert got[k] == pytest.approx(v, rel=1e-6)
    assert max(abs(r["residual"]) for r in rows) < 1e-9


def test_write_runtime_table_changes_only_that_table(tmp_path):
    dst = tmp_path / "cal.toml"
    write_runtime_table(PROFILE, dst, {"cycles_per_mac_f32": (1234.5, "measured: test"),
                                       "ram_reserved_bytes": (12000, "measured: test")})
    from device_profiles import load_profile

    new, old = load_profile(dst), load_profile(PROFILE)
    assert new.runtime["micropython"].cycles_per_mac_f32 == 1234.5
    assert new.runtime["micropython"].ram_reserved_bytes == 12000
    assert new.sources["runtime.micropython.cycles_per_mac_f32"] == "measured: test"
    assert new.runtime["native"] == old.runtime["native"] and new.core == old.core
    assert PROFILE.read_text() != dst.read_text()


def test_write_runtime_table_rejects_a_profile_without_the_table(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text("\n".join(ln for ln in PROFILE.read_text().splitlines() if "runtime.micropython" not in ln))
    with pytest.raises(ValueError, match=r"runtime\.micropython\] is missing"):
        write_runtime_table(bad, tmp_path / "out.toml", {"cycles_per_mac_f32": (1.0, "x")})
    assert not (tmp_path / "out.toml").exists()


# --- the prediction is the simulator's ------------------------------------------------------------------
def test_prediction_equals_simulator_predict_step():
    from simulator import predict_step

    board = load_board("bbc-microbit-v1")
    job = make_mlp_job("mlp:16-12-10")
    samples = [next(iter(job.labelled_stream()))]
    mine = predict_trace(board.profile, job, samples)
    sim = predict_step(board.profile, "mlp:16-12-10", runtime="micropython", job=make_mlp_job("mlp:16-12-10"))
    assert mine["heap_peak_bytes"] == sim["heap_peak_bytes"]
    assert mine["instructions_per_step"] == pytest.approx(sim["instructions"], rel=1e-12)
    assert mine["losses"][0] == pytest.approx(sim["loss"], rel=1e-6)


def test_port_footprint_comes_from_the_calibrated_profile():
    prof = load_board("bbc-microbit-v1").profile
    foot = PortFootprint.from_profile(prof, heap_total_bytes=10048, n_inputs=16)
    rt = prof.runtime_for("micropython")
    assert foot.code_bytes == rt.ram_reserved_bytes - (16384 - 10048)
    assert foot.staging_bytes == 80            # 64 B of floats + the 16-byte array header, in 16-byte blocks


# --- CLI input errors -----------------------------------------------------------------------------------
def test_cli_emulate_without_qemu_says_how_to_install(monkeypatch, capsys, tmp_path):
    from simulator.cli import main

    monkeypatch.setenv("PATH", str(tmp_path))          # no qemu-system-arm here
    assert shutil.which("qemu-system-arm") is None
    assert main(["emulate", "--workload", "mlp:16-12-10", "--steps", "2"]) == 2
    err = capsys.readouterr().err
    assert "qemu-system-arm" in err and "make test" in err


def test_cli_unknown_board_is_exit_2(capsys):
    from simulator.cli import main

    assert main(["emulate", "--board", "no-such-board"]) == 2
    assert "no-such-board" in capsys.readouterr().err


# --- the protocol module, the micro:bit's limits and its step guard ----------------------------------
def test_micro_bit_files_use_the_protocol_limits():
    """mlp.py and srv.py write protocol.py's sizes out (its names would not fit the 10 KB heap): same values."""
    from ports.micropython import protocol as P

    mlp, srv = (DEVICE_DIR / "mlp.py").read_text(), (DEVICE_DIR / "srv.py").read_text()
    assert f"TK = array('H', range({P.MLP_MAX_OPS}))" in mlp and f"MA = array('H', range({P.MLP_MAX_OPS}))" in mlp
    assert f"L = bytearray({P.LINE_BYTES})" in srv and f"n < {P.LINE_BYTES} and" in srv
    assert f"print('@{P.STEP_FAILED}')" in srv
    assert P.MLP_MAX_OPS == P.MLP_OPS_PER_LAYER * P.MLP_MAX_LAYERS


def test_micro_bit_limits_are_checked_before_boot():
    from ports.emulate import mlp_op_count

    assert mlp_sizes(make_mlp_job("mlp:16-8-8-8-8-10")) == [16, 8, 8, 8, 8, 10]   # 5 layers, 25 ops: fits
    assert mlp_op_count(5) == 25
    with pytest.raises(ValueError, match="MLP_MAX_LAYERS"):
        mlp_sizes(make_mlp_job("mlp:16-8-8-8-8-8-10"))


def test_micro_bit_step_that_failed_half_way_is_not_run_again():
    """srv.serve: a step whose first run raised is answered X on the retry, and step() ran once."""
    calls = []

    def step(y):
        calls.append(y)
        raise IndexError("op table overrun")

    fake_mlp = types.SimpleNamespace(step=step, TK=[], MA=[], N=0)
    out: list[str] = []
    srv = device_functions("srv.py", ("serve", "ck"), mlp=fake_mlp, R="", Q=-1, T=-1,
                           gc=types.SimpleNamespace(collect=lambda: None, mem_alloc=lambda: 0),
                           print=lambda *a: out.append(" ".join(map(str, a))))
    assert srv.serve(["s", "0", "3"]) and out[-1] == "@E"
    assert srv.serve(["s", "0", "3"]) and out[-1] == "@X"
    assert calls == [3]


# --- the twin network port (net.py + netk.py), run by CPython against the host -----------------------
TWIN_WORKLOADS = ["mlp-digits", "lenet-digits", "dscnn-digits", "cnn1d-accel", "mlp-microbit",
                  "cnn:8x8x1-c4k3s2same-a2-d10", "cnn:8x8x1-dw3-c5k2-p3-gap-d10", "mlp:64-16-16-10"]


def _twin_job(workload: str):
    from workloads import make_job
    from workloads.techniques import Techniques

    return make_job(workload, optimizer="sgd", momentum=0.9, techniques=Techniques(fused_update=True))


def _twin(job, steps: int, mem=None, batch: int = 1):
    """(host losses, host traces, device namespace, device steps) for ``steps`` steps of ``job``."""
    import itertools

    from emulator_support import device_namespace

    from ports.netrun import TwinPort
    from ports.program import build_program
    from workloads.trace import collect

    params = [p.copy() for p in job.model.parameters()]
    drawn = list(itertools.islice(iter(job.labelled_stream()), steps * batch))
    samples = [(np.stack([x for x, _ in drawn[i:i + batch]]), np.array([y for _, y in drawn[i:i + batch]]))
               for i in range(0, len(drawn), batch)]
    losses, traces = [], []
    for x, y in samples:
        ops, loss = collect(job.train_step(x, y))
        losses.append(loss)
        traces.append(ops)
    ns, printed = device_namespace()
    if mem is not None:
        ns["mem"] = lambda: mem(ns)

    def run(cmd: str) -> str:
        n = len(printed)
        exec(cmd, ns)
        return "\n".join(printed[n:])

    port = TwinPort(run)
    prog = build_program(job, traces[0], batch)
    port.setup(prog, job.lr, 0.9, (0, 0, 1 << 30, [(0, 0)]))
    port.send_params(job.model.layers, params)
    dev = [port.step(q, x, y) for q, (x, y) in enumerate(samples)]
    return losses, traces, ns, dev, port, samples


@pytest.mark.parametrize("workload", TWIN_WORKLOADS)
def test_twin_port_trains_like_the_host(workload):
    """Three SGD-momentum steps of the device code: the host's losses and weights, float32 tolerance."""
    job = _twin_job(workload)
    losses, _, ns, dev, _, _ = _twin(job, 3)
    np.testing.assert_allclose([d.loss for d in dev], losses, rtol=1e-4, atol=1e-5)
    it = iter(job.model.parameters())
    for i, ly in enumerate(job.model.layers):
        if ly.params:
            W, b = next(it), next(it)
            np.testing.assert_allclose(np.asarray(ns["WT"][i]), W.ravel(), rtol=1e-4, atol=1e-5)
            np.testing.assert_allclose(np.asarray(ns["BS"][i]), b.ravel(), rtol=1e-4, atol=1e-5)
            np.testing.assert_allclose(np.asarray(ns["VW"][i]), job._state[id(ly.params[0])][0].ravel(),
                                       rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("workload", ["lenet-digits", "dscnn-digits", "cnn:8x8x1-c4k3s2same-a2-d10"])
def test_twin_port_trains_a_batch_like_the_host(workload):
    """A batch of 3 per step: the gradients sum over the samples, the loss is their mean."""
    job = _twin_job(workload)
    losses, _, ns, dev, _, _ = _twin(job, 2, batch=3)
    np.testing.assert_allclose([d.loss for d in dev], losses, rtol=1e-4, atol=1e-5)
    it = iter(job.model.parameters())
    for i, ly in enumerate(job.model.layers):
        if ly.params:
            W, b = next(it), next(it)
            np.testing.assert_allclose(np.asarray(ns["WT"][i]), W.ravel(), rtol=1e-4, atol=1e-5)
            np.testing.assert_allclose(np.asarray(ns["BS"][i]), b.ravel(), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("workload", ["lenet-digits", "dscnn-digits", "cnn1d-accel", "mlp:64-16-16-10"])
def test_twin_port_holds_the_buffers_the_trace_holds(workload):
    """After each op (before its frees) the board's step buffers are the trace's live tensors, byte for byte."""
    def slot_bytes(ns) -> int:
        return sum(4 * len(a) for a in ns["NS"] if a is not None)

    job = _twin_job(workload)
    _, traces, _, dev, _, _ = _twin(job, 1, mem=slot_bytes)
    live, want = {}, []
    for op in traces[0]:
        for t in op.alloc:
            live[t.id] = t.nbytes
        want.append(sum(live.values()))
        for i in op.free:
            live.pop(i)
    assert dev[0].op_heap_bytes == want
    assert max(want) > 0


def test_twin_repeated_step_is_answered_from_memory_and_a_failed_step_never_reruns():
    job = _twin_job("mlp-microbit")
    _, _, ns, dev, port, samples = _twin(job, 1)
    W0 = np.asarray(ns["WT"][0]).copy()
    again = port.step(0, *samples[0])                       # the same step: the stored answer, no update
    assert again == dev[0]
    np.testing.assert_array_equal(np.asarray(ns["WT"][0]), W0)
    ns["dense_wg"] = lambda *a: (_ for _ in ()).throw(MemoryError("memory allocation failed"))
    with pytest.raises(MemoryError):
        port.step(1, *samples[0])
    half = np.asarray(ns["WT"][1]).copy()                    # the last layer was updated before the failure
    from ports.netrun import StepFailed

    with pytest.raises(StepFailed, match="not run again"):
        port.step(1, *samples[0])
    np.testing.assert_array_equal(np.asarray(ns["WT"][1]), half)


def test_twin_limits_and_techniques_are_checked_before_boot():
    from ports.program import build_program
    from workloads import make_job
    from workloads.techniques import Techniques
    from workloads.trace import collect

    def trace(job):
        x, y = next(iter(job.labelled_stream()))
        return collect(job.train_step(np.asarray(x)[None], np.array([y])))[0]

    deep = _twin_job("mlp:16-" + "-".join(["4"] * 30) + "-10")
    with pytest.raises(ValueError, match="NET_MAX_LAYERS"):
        build_program(deep, trace(deep))
    pruned = make_job("lenet-digits", optimizer="sgd", techniques=Techniques(fused_update=True, error_map_prune=0.5))
    with pytest.raises(ValueError, match="error_map_prune"):
        build_program(pruned, trace(pruned))
    adam = make_job("mlp-digits", optimizer="adam", techniques=Techniques(fused_update=True))
    with pytest.raises(ValueError, match="SGD"):
        build_program(adam, trace(adam))


# --- per-kind calibration, the collector, verification records (no QEMU) ------------------------------
def test_kind_cost_fit_recovers_known_costs_per_row():
    from ports.calibrate import KIND_COST_FIELDS, fit_kind_costs
    from workloads.trace import Op, Tensor

    truth = {"matmul": (9000.0, 1500.0, 80.0, 0.0), "loss": (14000.0, 0.0, 1100.0, 0.0),
             "conv": (200000.0, 2400.0, 0.0, 40.0), "conv.backward_input": (130000.0, 1900.0, 0.0, 480.0)}
    ws = (Tensor(1, 72, "workspace", "c.cols"),)
    rows = []
    for n in range(1, 9):
        for op, key in ((Op(f"dense{n}.forward", "matmul", 40 * n, 100 * n * n + 7, 3 * n ** 3), "matmul"),
                        (Op("loss", "reduce", 0, 8 * n, 8 * n), "loss"),
                        (Op(f"conv{n}.forward", "conv", 300 * n, 90 * n * n + 7, 30 * n ** 3, "f32", ws), "conv"),
                        (Op(f"conv{n}.backward_input", "conv", 300 * n, 50 * n * n, 60 * n ** 3 + 3, "f32", ws),
                         "conv.backward_input")):
            c = truth[key]
            cycles = c[0] + op.macs * c[1] + op.bytes_read * c[2] + op.bytes_written * c[3]
            rows.append({"label": op.name, "op": op, "instructions": cycles / 1.2})
    got = fit_kind_costs(rows, 1.2)
    for key, c in truth.items():
        assert got[key] == pytest.approx(c, rel=1e-3, abs=1e-3), key
    assert max(abs(r["residual"]) for r in rows) < 1e-6
    assert {r["row"] for r in rows} == set(truth) and len(KIND_COST_FIELDS) == 4


def test_collector_costs_collections_of_the_garbage_over_the_free_heap():
    from simulator.cost import gc_cycles

    rt = types.SimpleNamespace(gc_garbage_bytes_per_cycle=0.02, gc_collection_cycles=1000.0,
                               gc_cycles_per_live_byte=5.0)
    # 1e6 cycles -> 20 kB of garbage; 8 kB free -> 2 collections, each 1000 + 5 x 56 kB
    assert gc_cycles(1e6, 56_000, 64_000, rt) == 2 * (1000 + 5 * 56_000)
    assert gc_cycles(1e5, 56_000, 64_000, rt) == 0               # 2 kB of garbage fits the free heap
    assert gc_cycles(1e6, 56_000, None, rt) == 0                 # no heap size: no collector term
    assert gc_cycles(1e6, 56_000, 64_000, types.SimpleNamespace()) == 0


PYBOARD = types.SimpleNamespace(name="stm32f405-pyboard", clock_hz=168e6, cycles_per_instruction=1.2)
# an emulation result as ports.emulate returns it: the twin's step beside the simulator's prediction
EMULATION = {"machine": "netduinoplus2", "firmware": "MicroPython v1.25.0; x", "heap_bytes": 98304,
             "serial_log": "/tmp/s.log", "steps": 1, "fits": True, "predicted_fits": True,
             "heap_peak_bytes": 60000, "predicted_heap_peak_bytes": 63000, "instructions_per_step": 1.0e8,
             "predicted_instructions_per_step": 1.08e8, "heap_error": 0.05, "instructions_error": 0.08,
             "losses": [0.5], "host_losses": [0.5], "losses_match_host": True}


def test_verification_record_and_rows_from_an_emulation():
    from ports.verify import verification_record, verification_rows

    board, res = PYBOARD, EMULATION
    v = verification_record(res, board)
    assert v["agree"] and v["measured"]["step_s"] == pytest.approx(1e8 * 1.2 / 168e6)
    rows = verification_rows(v | {"batch": 1})
    assert [r[0] for r in rows][:2] == ["heap peak", "instructions per step"]
    assert rows[0][1].startswith("60,000 B") and rows[1][3] == "+8.0 %" and rows[2][1].endswith(" ms")
    v2 = verification_record(res | {"instructions_error": 0.2}, board)
    assert not v2["agree"]
    oom = verification_record(res | {"fits": False, "guest_memory_error": "MemoryError", "predicted_fits": False},
                              board)
    assert oom["agree"] and "out of memory" in verification_rows(oom)[0][1]


def test_the_verify_text_says_why_the_plans_step_time_differs_from_the_twins():
    from ports.verify import verification_record
    from simulator.cli.plan import verification_text

    v = verification_record(EMULATION | {"port_footprint_bytes": 22376}, PYBOARD) | {
        "batch": 4, "board": "stm32f405-pyboard", "tolerance_relative": 0.1}
    assert v["port_footprint_bytes"] == 22376
    text = verification_text(v, plan_step_s=0.625)
    assert "22,376 B of the GC heap" in text and "0.625 s" in text
    assert "frozen into flash" not in verification_text(v)              # no plan figure: nothing to explain


def test_verify_says_why_when_there_is_no_twin_to_run():
    from ports.verify import verify_scenario

    base = {"name": "v", "device": "stm32f405-pyboard", "runtime": "native",
            "workload": {"model": "mlp:16-8-10"}}
    v = verify_scenario(base)
    assert v["verified"] is False and "native" in v["reason"]
    v = verify_scenario(base | {"device": "esp32-devkitc", "runtime": "micropython"})
    assert v["verified"] is False and "no virtual twin" in v["reason"]


@pytest.mark.parametrize("workload", ["mlp:64-48-24-10", "lenet-digits"])
def test_twin_tables_hold_no_word_that_points_into_a_heap(workload):
    """MicroPython's collector takes every word of a live array for a possible pointer: the port's int
    tables (program, frees, ticks) must hold none in 64 KB .. 1 GB (the twins' RAM), or garbage that lands where
    one points stays alive (on the L476 twin an (0, 4) row pair, 0x40000, kept a float that split the
    largest hole: mlp:64-48-24-10 ran out of memory with 16 KB free)."""
    job = _twin_job(workload)
    _, traces, ns, dev, _, _ = _twin(job, 1)
    for name in ("NP", "NF", "NL", "TK"):
        raw = bytes(ns[name])
        words = array("I", raw[:len(raw) // 4 * 4])
        bad = [hex(w) for w in words if 0x10000 <= w < 0x40000000]   # the twins' heaps: above 64 KB of code
        assert not bad, f"{name} holds heap-like words {bad[:4]}"
    assert all(t >= 0 for t in dev[0].op_ticks) and len(dev[0].op_ticks) == len(traces[0])


def test_gc_block_model_first_fit_realloc_and_fragmentation():
    from ports.predict import GcBlocks, fits_in_heap_map

    h = GcBlocks([False, True, False, False, True, False, False, False])
    assert h.alloc(2) == 2 and h.alloc(1) == 0 and h.alloc(2) == 5
    h.free(5)
    assert h.grow(2, 3) == 5                      # no room after it: moved to the first fit, old run freed
    assert h.used[2:4] == [False, False] and h.runs == {0: 1, 5: 3}
    assert h.grow(5, 3) == 5
    with pytest.raises(MemoryError):
        h.alloc(3)
    board = load_board("stm32l476-nucleo")
    job = _twin_job("mlp:16-8-10")
    from workloads.trace import collect

    x, y = next(iter(job.labelled_stream()))
    ops, _ = collect(job.train_step(np.asarray(x)[None], np.array([y])))
    need = 8192 // 16
    free = [False] * need
    assert fits_in_heap_map(board.profile, job, ops, free, 16, (600, 2000))
    comb = [bool(i % 8 == 0) for i in range(2 * need)]     # twice the blocks free, in 7-block holes
    assert sum(not u for u in comb) > need
    assert not fits_in_heap_map(board.profile, job, ops, comb, 16, (600, 2000))


def test_gc_fit_leaves_out_ops_a_collection_ran_in():
    """Garbage per cycle from the ops that cannot have filled the heap: a long op the collector swept
    mid-way shows only what it allocated after the last collection, and would pull the rate down."""
    from ports.calibrate import fit_gc

    rt = load_board("stm32l476-nucleo").profile.runtime_for("micropython")
    heap, live, rate = 64_000, 40_000, 0.03
    op = types.SimpleNamespace(alloc=())
    rows = [{"op": op, "instructions": c, "live_bytes": live, "alloc_bytes": int(rate * c)}
            for c in (100_000, 150_000, 200_000)]                                   # no collection in them
    rows += [{"op": op, "instructions": c, "live_bytes": live,
              "alloc_bytes": int(rate * c) % (heap - live)} for c in (5_000_000, 6_000_000, 7_000_000, 8_100_000)]
    m = {"rows": rows, "heap_total_bytes": heap,
         "gc_rows": [{"live_bytes": 10_000, "instructions": 90_000}, {"live_bytes": 50_000, "instructions": 330_000}]}
    assert np.median([r["alloc_bytes"] / r["instructions"] for r in rows]) < rate / 2   # what all ops would say
    g = fit_gc(m, rt, 1.0)["gc_garbage_bytes_per_cycle"]
    assert g == pytest.approx(rate, rel=0.01)
