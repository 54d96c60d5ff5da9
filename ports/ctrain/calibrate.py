"""``edgesim calibrate --runtime native``: per-kind instruction costs from C micro-benchmarks on a twin.

The micro-benchmarks are small generated training programs (``CALIBRATION_SPECS``: never a zoo model, never
a spec the accuracy checks use) timed op by op with the guest timer. Per op kind the fit is
``instructions = overhead + a x MACs + b x bytes read + c x bytes written`` (non-negative least squares,
each op weighted by 1/sqrt of its size so small ops count); cycles = instructions x the profile's
cycles-per-instruction, which stays an estimate with its source. RAM the runtime takes besides the arena
(.data + .bss + stack peak, less the input staging buffer) and flash besides the weights are measured too.
"""
from __future__ import annotations

import re
import sys
from pathlib import Path

import numpy as np

from . import build as B
from . import port as P
from . import run as R

CALIBRATION_SPECS = (
    "mlp:64-48-10", "mlp:16-24-12-10", "mlp:64-10",
    "cnn:8x8x1-c4k3-p2-d10", "cnn:8x8x1-c12k5same-a2-dw3same-c8k1-gap-d10", "cnn:4x4x1-c8k3same-d10",
    "cnn1d:64x3-c8k7s2-a2-dw3-c12k1-gap-d6", "cnn:8x8x1-c3k3-c6k3-gap-d10", "cnn:8x8x1-c16k3same-p2-c4k3same-p2-d10",
    "cnn:8x8x1-dw3same-c10k3-p2-d10", "cnn1d:64x3-c6k3-p2-c10k5s2-gap-d6", "cnn1d:64x3-c20k5-a2-d6",
    "cnn:4x4x1-c6k2-p2-d10", "cnn:8x8x1-c5k5-a2-d12-d10", "cnn1d:64x3-dw5s2-c8k1-p4-d6",
    "cnn1d:64x3-c16k3-p2-c24k3-gap-d6", "cnn:8x8x1-c8k3same-p2-c24k3same-gap-d10", "cnn1d:64x3-c12k5-p2-c16k5-p2-d6",
)
# specs the accuracy checks use and calibration never sees (besides the zoo)
HELD_OUT_SPECS = ("cnn:8x8x1-c8k3-p2-c12k3-d10", "mlp:64-40-20-10", "cnn1d:64x3-c12k3-p2-dw3same-gap-d6")
KINDS = ("matmul", "conv", "eltwise", "reduce", "update", "copy")   # the op kinds a C training step has


def _cost_key(op) -> str:
    """The most specific cost-model row for an op (simulator.cost.cost_keys with roles: the first layer's
    im2col convolution and the global average pool get rows of their own): what the fit gives a cost."""
    from simulator.cost import cost_keys

    return cost_keys(op, roles=True)[0]


STEPS = 2


def _features(keys: list[str], kind: str, macs: int, br: int, bw: int) -> np.ndarray:
    f = np.zeros(4 * len(keys))
    i = 4 * keys.index(kind)
    f[i:i + 4] = (1.0, macs, br, bw)
    return f


def measure(profile, machine: str | None = None, specs=CALIBRATION_SPECS, progress: bool = True,
            out_root: Path | None = None) -> dict:
    """Run each micro-benchmark on the twin: per-op rows and per-program memory figures."""
    import tempfile

    out_root = Path(out_root or tempfile.mkdtemp(prefix=f"edgesim-native-cal-{profile.name}-"))
    rows, programs = [], []
    for k, spec in enumerate(specs):
        if progress:
            print(f"\rcalibrating {profile.name} [native]: micro-benchmark {k + 1}/{len(specs)} {spec:48s}",
                  end="", file=sys.stderr, flush=True)
        prof, target, _, job, host, prog = P.prepare(profile, spec, steps=STEPS, batch=1, machine=machine)
        out = out_root / spec.replace(":", "_")
        built = B.build(prog, target, out)
        m = R.run(target, built.elf, host.batches[:STEPS], prog.inputs, len(host.ops), out)
        per_op = m.op_instructions.mean(axis=0)
        for op, v in zip(host.ops, per_op, strict=True):
            if op.kind in KINDS and op.dtype == "f32":
                rows.append({"spec": spec, "op": op.name, "kind": _cost_key(op), "macs": op.macs,
                             "bytes_read": op.bytes_read, "bytes_written": op.bytes_written, "instructions": float(v)})
        staging = 4 * prog.inputs + 4          # the input buffer the port fills (plus its label), batch 1
        programs.append({"spec": spec, "instructions_per_step": float(per_op.sum()),
                         "runtime_ram_bytes": built.static_ram_bytes + m.stack_used_bytes - staging,
                         "code_flash_bytes": built.flash_bytes - int(job.flash_bytes())})
    if progress:
        print(file=sys.stderr)
    return {"rows": rows, "programs": programs, "machine": target.machine.name, "compiler": built.compiler,
            "flags": " ".join(built.flags)}


def fit(rows: list[dict]) -> dict[str, dict[str, float]]:
    """Per row: instructions = overhead + per MAC + per byte read + per byte written (NNLS)."""
    from scipy.optimize import nnls

    keys = sorted({r["kind"] for r in rows})
    A = np.array([_features(keys, r["kind"], r["macs"], r["bytes_read"], r["bytes_written"]) for r in rows])
    y = np.array([r["instructions"] for r in rows])
    w = 1.0 / np.sqrt(np.maximum(y, 100.0))
    x, _ = nnls(A * w[:, None], y * w)
    out = {}
    for i, kind in enumerate(keys):
        o, m, br, bw = x[4 * i:4 * i + 4]
        out[kind] = {"overhead": float(o), "per_mac": float(m), "per_byte_read": float(br),
                     "per_byte_written": float(bw)}
    return out


def predict_instructions(costs: dict, kind: str, macs: int, br: int, bw: int) -> float:
    c = costs[kind]
    return c["overhead"] + macs * c["per_mac"] + br * c["per_byte_read"] + bw * c["per_byte_written"]


def calibrate(board, machine: str | None = None, progress: bool = True) -> dict:
    """Measure, fit and report residuals (per op and per program step). Nothing is written."""
    from device_profiles.loader import DeviceProfile, load_profile

    from . import decodebench

    profile = board if isinstance(board, DeviceProfile) else load_profile(board)
    meas = measure(profile, machine, progress=progress)
    decode = decodebench.measure(profile, machine, progress=progress)
    costs = fit(meas["rows"])
    res_op = [(predict_instructions(costs, r["kind"], r["macs"], r["bytes_read"], r["bytes_written"])
               - r["instructions"]) / r["instructions"] for r in meas["rows"] if r["instructions"] > 0]
    prog_res = []
    for p in meas["programs"]:
        pred = sum(predict_instructions(costs, r["kind"], r["macs"], r["bytes_read"], r["bytes_written"])
                   for r in meas["rows"] if r["spec"] == p["spec"])
        prog_res.append({"spec": p["spec"], "measured": p["instructions_per_step"], "fitted": pred,
                         "residual": (pred - p["instructions_per_step"]) / p["instructions_per_step"]})
    ram = int(round(max(p["runtime_ram_bytes"] for p in meas["programs"])))
    code = [p["code_flash_bytes"] for p in meas["programs"]]
    return {"board": profile.name, "profile_path": profile.path, "machine": meas["machine"],
            "compiler": meas["compiler"], "flags": meas["flags"], "specs": list(CALIBRATION_SPECS),
            "cycles_per_instruction": profile.core.cycles_per_instruction,
            "instruction_costs": costs, "op_residual_rms": float(np.sqrt(np.mean(np.square(res_op)))),
            "op_residual_max": float(np.max(np.abs(res_op))), "programs": prog_res,
            "step_residual_max": float(max(abs(p["residual"]) for p in prog_res)),
            "ram_reserved_bytes": ram, "flash_reserved_bytes": int(round(float(np.mean(code)))),
            "decode": {"fit": decode["fit"], "ops": decode["ops"], "formats": decodebench.describe()},
            "code_flash_bytes_range": [int(min(code)), int(max(code))], "rows": meas["rows"]}


def runtime_toml(res: dict) -> tuple[dict[str, tuple[int, str]], str]:
    """The [runtime.native] figures and the kind_costs table, as TOML text, from a calibration."""
    cpi = res["cycles_per_instruction"]
    how = (f"measured: edgesim calibrate --runtime native on twin {res['machine']} ({res['compiler']}; "
           f"{res['flags']}), {len(res['specs'])} C micro-benchmarks")
    figures = {
        "ram_reserved_bytes": (res["ram_reserved_bytes"], f"{how}: .data + .bss + painted-stack peak, less the "
                                                          f"input staging buffer (the largest of them)"),
        "flash_reserved_bytes": (res["flash_reserved_bytes"], f"{how}: text + rodata + data less the weights "
                                                              f"(mean; range {res['code_flash_bytes_range']} B)"),
    }
    if res.get("decode"):
        d = res["decode"]["fit"]
        per = "; ".join(f"{k} {v['per_decode_op']:.2f}" for k, v in d.items() if k not in ("all", "row", "formats"))
        figures["cycles_per_decode_op"] = (
            round(d["all"]["per_decode_op"] * cpi, 3),
            f"{how}, plus a decode micro-benchmark (ports/ctrain/decodebench.py: C decoders for "
            f"{', '.join(res['decode']['formats'])}: {len(res['decode'].get('ops') or ())} decodes of real weight "
            f"matrices, checked against the host's decode): instructions = overhead {d['all']['overhead']:.0f} + k x decode_ops fitted over "
            f"{' and '.join(_fallback())} (k = {d['all']['per_decode_op']:.2f} instructions; per format: {per}; largest op "
            f"residual {100 * d['all']['residual_max']:.0f} %), times core.cycles_per_instruction {cpi:g} (an "
            f"estimate): what a format without a decode_cycles_per_op row costs; not measured: "
            f"{', '.join(_unmeasured(res))}")
    rows = res["decode"]["fit"].get("formats") if res.get("decode") else None
    if rows:
        figures["decode_overhead_cycles"] = (
            round(rows["overhead"] * cpi, 3),
            f"{how}, plus the decode micro-benchmark (ports/ctrain/decodebench.py): instructions = overhead + "
            f"k[format] x decode_ops, one overhead {rows['overhead']:.1f} instructions shared by "
            f"{', '.join(res['decode']['formats'])} (largest op residual {100 * rows['residual_max']:.1f} %), "
            f"times core.cycles_per_instruction {cpi:g} (an estimate)")
    lines = ["[runtime.native.kind_costs]",
             f'source = "{how}: instructions per op kind fitted (op residual rms '
             f'{100 * res["op_residual_rms"]:.0f} %), times core.cycles_per_instruction {cpi:g} (an estimate)"']
    for kind, c in res["instruction_costs"].items():
        name = f'"{kind}"' if "." in kind else kind
        lines.append(f"{name} = {{ overhead_cycles = {c['overhead'] * cpi:.6g}, cycles_per_mac = "
                     f"{c['per_mac'] * cpi:.6g}, cycles_per_byte_read = {c['per_byte_read'] * cpi:.6g}, "
                     f"cycles_per_byte_written = {c['per_byte_written'] * cpi:.6g} }}")
    if rows:
        lines += ["", "[runtime.native.decode_cycles_per_op]"]
        for key, r in rows["per_format"].items():
            lines += [f"{key} = {r['per_decode_op'] * cpi:.6g}",
                      f"{key}_source = " + _toml_str(
                          f"{how}, plus the decode micro-benchmark (ports/ctrain/decodebench.py: the C decoder for "
                          f"{key.partition('-')[0]} at {'/'.join(map(str, r['bits']))} bit, {r['ops']} decodes of "
                          f"real weight matrices, checked "
                          f"against the host's decode): k = {r['per_decode_op']:.3f} instructions per decode "
                          f"operation beside the shared decode_overhead_cycles (largest op residual "
                          f"{100 * r['residual_max']:.1f} %), times core.cycles_per_instruction {cpi:g} (an "
                          f"estimate)")]
    return figures, "\n".join(lines) + "\n"


def _fallback() -> tuple[str, ...]:
    from .decodebench import FALLBACK_FORMATS

    return FALLBACK_FORMATS


def _unmeasured(res: dict) -> list[str]:
    """The compression formats (and bit widths) the decode micro-benchmark did not run."""
    from workloads.compression import CODECS

    done: dict[str, set] = {}
    for o in res["decode"].get("ops") or ():
        done.setdefault(o["format"], set()).add(o["bits"])
    return [f if f not in done else f"{f} at {b} bit" for f, c in CODECS.items() if f != "f32"
            for b in ((None,) if f not in done else [b for b in c.BITS if b not in done[f]])]


def updated_profile_text(text: str, res: dict) -> str:
    """The profile's TOML with [runtime.native]'s reserves and its kind_costs table replaced."""
    figures, table = runtime_toml(res)
    # drop an old kind_costs table (up to the next table header)
    for table_name in ("kind_costs", "decode_cycles_per_op"):
        text = re.sub(rf"\n\[runtime\.native\.{table_name}\]\n(?:(?!\[)[^\n]*\n)*", "\n", text)
    m = re.search(r"^\[runtime\.native\]\n((?:(?!\[)[^\n]*\n)*)", text, flags=re.M)
    if not m:
        raise ValueError(f"{res['profile_path']}: no [runtime.native] table to calibrate")
    body = m.group(1)
    for key, (value, source) in figures.items():
        if not re.search(rf"^{key} = ", body, flags=re.M):     # a figure the profile did not have yet
            body = body.rstrip("\n") + f"\n{key} = {value}\n{key}_source = {_toml_str(source)}\n"
        body = re.sub(rf"^{key} = .*$", f"{key} = {value}", body, flags=re.M)
        body = re.sub(rf"^{key}_source = .*$", f"{key}_source = {_toml_str(source)}", body, flags=re.M)
    body = body.rstrip("\n") + "\n\n" + table + "\n"
    return text[:m.start(1)] + body + text[m.end(1):]


def _toml_str(s: str) -> str:
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'


def write_profile(res: dict, dest: str | Path) -> Path:
    """Write the calibrated profile (validated by loading it before it replaces ``dest``)."""
    from device_profiles.loader import load_profile
    from simulator.files import write_atomic

    text = updated_profile_text(Path(res["profile_path"]).read_text(), res)

    def check(tmp: Path) -> None:
        load_profile(str(tmp.resolve()))   # a path: parsed and validated as a profile file

    return write_atomic(dest, text, validate=check)
