"""Decode micro-benchmarks: compressed weights (workloads/compression) expanded by the C decoders on a twin.

Real weight matrices (the initial weights of the calibration networks, ``DECODE_SPECS``: never a zoo model)
are encoded on the host in each calibrated format (``FORMATS``: int8 per output channel, 1-bit binary, CSR
with float32 or int8 values at the ``PRUNE`` rates), put in the program's flash as constants, and decoded one
layer per op into the arena, each op timed with the guest timer; two variants per program (``groups``). A
program's return value is a checksum of every decoded buffer, which the host compares with its own decode of
the same encoding (a wrong decoder cannot be calibrated). The fit over the FALLBACK_FORMATS' ops is
``instructions = overhead + k x decode_ops`` (the codecs' own count of decode operations); the profile's
single ``cycles_per_decode_op`` is k x core.cycles_per_instruction, what a format without a row of its own
costs. ``format_rows`` fits one overhead shared by the rows and one k per measured format and bit width (the
profile's ``decode_overhead_cycles`` and ``[runtime.native.decode_cycles_per_op]``). XOR, the low-rank index
and the widths not listed (int4, multi-bit binary, 1-bit CSR) are not calibrated by this.
"""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

from . import build as B
from . import run as R
from .codegen import Program

DECODE_SPECS = ("mlp:64-48-10", "mlp:16-24-12-10", "cnn:8x8x1-c16k3same-p2-c4k3same-p2-d10",
                "cnn1d:64x3-c16k3-p2-c24k3-gap-d6")
FORMATS = (("int8", 8), ("binary", 1), ("csr", 32), ("csr", 8))
PRUNE = {"csr": (0.5, 0.9)}      # pruning rates a format is measured at (else unpruned)
# the fit behind cycles_per_decode_op (what a format without its own row costs: XOR, low-rank index) runs over
# the value-decoding formats only: each of their decode operations yields a weight value, as the last stage of
# an XOR or low-rank decoder does; CSR's are mostly zero fills and index loads (a third of their cost here)
FALLBACK_FORMATS = ("int8", "binary")
STEPS = 2


def layers(specs=DECODE_SPECS) -> list[tuple[str, np.ndarray]]:
    """(name, weight tensor) of every multi-dimensional weight of the specs' initial models (seed 0)."""
    from workloads import make_job

    out = []
    for spec in specs:
        job = make_job(spec, seed=0)
        for k, w in enumerate(job.model.state()):
            w = np.asarray(w, np.float32)
            if w.ndim >= 2:
                out.append((f"{spec}#{k}", w))
    return out


def _half_bits(x: np.ndarray) -> np.ndarray:
    return np.asarray(x, np.float32).astype(np.float16).view(np.uint16)


def _c_array(ctype: str, name: str, values) -> str:
    body = ", ".join(str(int(v)) for v in np.ravel(values))
    return f"static const {ctype} {name}[] = {{{body}}};"


def _checksum(bufs: list[np.ndarray]) -> float:
    """The C step's checksum: a float32 running sum over the decoded buffers in order."""
    acc = np.float32(0)
    for b in bufs:
        for v in np.ravel(b).astype(np.float32):
            acc = np.float32(acc + v)
    return float(acc)


def describe() -> list[str]:
    """The measured encodings in words: ``int8 8-bit``, ``csr 32-bit (50/90 % pruned)``."""
    return [f"{f} {b}-bit" + (f" ({'/'.join(f'{100 * p:g}' for p in PRUNE[f])} % pruned)" if f in PRUNE else "")
            for f, b in FORMATS]


def variants() -> list[tuple[str, int, float]]:
    """(format, bits, pruning rate) of every measured encoding, in order."""
    return [(f, b, p) for f, b in FORMATS for p in PRUNE.get(f, (0.0,))]


def groups(per_program: int = 2) -> list[list[tuple[str, int, float]]]:
    """The variants split into programs of ``per_program`` each: every layer of a program decodes into an
    arena part of its own (checked at the end), and a small board's RAM holds two dense copies, not six."""
    v = variants()
    return [v[i:i + per_program] for i in range(0, len(v), per_program)]


def program(mats: list[tuple[str, np.ndarray]], which: list[tuple[str, int, float]] | None = None
            ) -> tuple[Program, list[dict], float]:
    """The C decode benchmark over ``mats`` in the ``which`` variants (default all): the program, one record
    per op and the checksum the host expects."""
    from workloads.compression import base, encode

    consts, body, ops, decoded = [], [], [], []
    offset = 0   # each layer decodes into its own part of the arena (the checksum runs after the timed ops)
    for fmt, bits, prune, (name, W) in ((f, b, p, m) for f, b, p in (which or variants()) for m in mats):
        enc = encode(W, fmt, bits=bits, prune=prune)
        rows, cols = base.as_rows(W).shape
        k = len(ops)
        if fmt == "csr":
            call, dense, more = _csr(enc, k, rows, cols, offset)
            consts += more
        elif fmt == "int8":
            q = np.asarray(enc.data["q"], np.int8).reshape(rows, cols)
            s = _half_bits(enc.data["scales"])
            consts += [_c_array("int8_t", f"q{k}", q), _c_array("uint16_t", f"s{k}", s)]
            call = f"et_decode_int8(q{k}, s{k}, {rows}, {cols}, A + {offset});"
            dense = q.astype(np.float32) * np.asarray(s.view(np.float16), np.float32)[:, None]
        else:
            planes = np.asarray(enc.data["planes"], np.uint8).reshape(1, -1)[0]
            a = _half_bits(np.asarray(enc.data["alphas"]).reshape(-1)[:rows])
            consts += [_c_array("uint8_t", f"b{k}", planes), _c_array("uint16_t", f"a{k}", a)]
            call = f"et_decode_binary1(b{k}, a{k}, {rows}, {cols}, A + {offset});"
            bitv = np.unpackbits(planes, count=rows * cols).reshape(rows, cols).astype(bool)
            av = np.asarray(a.view(np.float16), np.float32)[:, None]
            dense = np.where(bitv, av, -av).astype(np.float32)
        np.testing.assert_array_equal(dense, base.as_rows(np.asarray(enc_decode(enc), np.float32)))
        decoded.append(dense)
        body += [f"    {call}", f"    et_marks[{k + 1}] = ET_TIMER_READ();"]
        offset += rows * cols
        ops.append({"op": f"{fmt}{bits}:{name}" + (f"@{prune:g}" if prune else ""), "format": fmt, "bits": bits,
                    "prune": prune, "weights": rows * cols, "decode_ops": int(enc.decode_ops),
                    "compressed_bytes": int(enc.flash_bytes)})
    arena = 4 * offset
    n = len(ops)
    model_h = "\n".join(["#ifndef MODEL_H", "#define MODEL_H", "", "#include <stdint.h>", "",
                         "#define MODEL_BATCH 1", "#define MODEL_INPUTS 1", "#define MODEL_CLASSES 1",
                         f"#define MODEL_OPS {n}", f"#define MODEL_ARENA_BYTES {arena}", "",
                         "extern uint32_t et_marks[MODEL_OPS + 1];", "void model_init(void);",
                         "float model_step(const float *x, const int32_t *y);", "", "#endif", ""])
    model_c = "\n".join([
        "/* Decode micro-benchmark: generated by edgesim (ports/ctrain/decodebench.py); do not edit. */",
        '#include "decode.h"', '#include "model.h"', '#include "twin.h"', "",
        "float et_arena[MODEL_ARENA_BYTES / 4] __attribute__((section(\".arena\"), aligned(8)));", "",
        *consts, "", "void model_init(void)", "{", "}", "",
        "float model_step(const float *x, const int32_t *y)", "{", "    (void)x;", "    (void)y;",
        "    float *A = et_arena;", "    float sum = 0.0f;", "    et_marks[0] = ET_TIMER_READ();", *body,
        "    for (int i = 0; i < MODEL_ARENA_BYTES / 4; i++)   /* untimed: after the last mark */",
        "        sum += A[i];", "    return sum;", "}", ""])
    prog = Program({"model.h": model_h, "model.c": model_c}, arena, [], [o["op"] for o in ops],
                   ["decode"] * n, 1, 1, meta={"benchmark": "decode"})
    return prog, ops, _checksum(decoded)


def _csr(enc, k: int, rows: int, cols: int, offset: int) -> tuple[str, np.ndarray, list[str]]:
    """The C call, the dense matrix it must give and its constants for a CSR layer (float32 or int8 values;
    column indices and row pointers as uint16)."""
    d = enc.data
    col, ptr = np.asarray(d["col"], np.uint16), np.asarray(d["rowptr"], np.uint16)
    assert int(ptr[-1]) == len(col) == enc.kept and cols <= 65535 and enc.kept <= 65535
    row = np.repeat(np.arange(rows), np.diff(d["rowptr"]))
    consts = [_c_array("uint16_t", f"c{k}", col), _c_array("uint16_t", f"p{k}", ptr)]
    dense = np.zeros((rows, cols), np.float32)
    if enc.params["value_bits"] == 32:
        v = np.asarray(d["values"], np.float32)
        consts.append(f"static const float v{k}[] = {{{', '.join(float(x).hex() + 'f' for x in v)}}};")
        call = f"et_decode_csr_f32(v{k}, c{k}, p{k}, {rows}, {cols}, A + {offset});"
        dense[row, col] = v
    else:
        s = _half_bits(d["scales"])
        sv = np.asarray(s.view(np.float16), np.float32)
        q = np.rint(np.asarray(d["values"], np.float32) / sv[row]).astype(np.int8)
        consts += [_c_array("int8_t", f"q{k}", q), _c_array("uint16_t", f"s{k}", s)]
        call = f"et_decode_csr_int8(q{k}, s{k}, c{k}, p{k}, {rows}, {cols}, A + {offset});"
        dense[row, col] = q.astype(np.float32) * sv[row]
    return call, dense, consts


def enc_decode(enc):
    from workloads.compression import decode

    return decode(enc)



def measure(profile, machine: str | None = None, out: Path | None = None, progress: bool = True,
            specs=DECODE_SPECS) -> dict:
    """Build and run the decode benchmark on ``profile``'s twin: per-op instructions, checked against the
    host's decode (the checksum), and the fit ``instructions = overhead + k x decode_ops``."""
    import tempfile

    from .target import target_for

    target = target_for(profile, machine)
    out = Path(out or tempfile.mkdtemp(prefix=f"edgesim-decode-cal-{profile.name}-"))
    out.mkdir(parents=True, exist_ok=True)
    if progress:
        print(f"calibrating {profile.name} [native]: decode micro-benchmark ({', '.join(describe())})",
              file=sys.stderr, flush=True)
    mats = layers(specs)
    all_ops, sums = [], []
    for g, which in enumerate(groups()):
        prog, ops, want = program(mats, which)
        built = B.build(prog, target, out / f"part{g}", extra_sources=("decode.c",))
        batches = [(np.zeros((1, 1), np.float32), np.zeros(1, np.int64))] * STEPS
        m = R.run(target, built.elf, batches, 1, len(ops), out / f"part{g}")
        got = [float(x) for x in m.losses]
        if not all(np.isclose(x, want, rtol=1e-6, atol=1e-6) for x in got):
            raise AssertionError(f"{profile.name}: the C decoders' checksum {got} differs from the host's "
                                 f"{want:.7g} ({', '.join(f'{f} {b}-bit' for f, b, _ in which)})")
        for o, v in zip(ops, m.op_instructions.mean(axis=0), strict=True):
            o["instructions"] = float(v)
        all_ops += ops
        sums.append(want)
    return {"ops": all_ops, "fit": fit(all_ops), "machine": target.machine.name, "compiler": built.compiler,
            "flags": " ".join(built.flags), "checksum": sums}


def fit(ops: list[dict]) -> dict:
    """Least squares ``instructions = overhead + k x decode_ops``, over the FALLBACK_FORMATS' ops and per
    format and bit width; then the kind_costs-style row and the per-format rows (``format_rows``)."""
    def solve(sel):
        X = np.array([[1.0, o["decode_ops"]] for o in sel])
        y = np.array([o["instructions"] for o in sel])
        (o_, k), *_ = np.linalg.lstsq(X, y, rcond=None)
        res = (X @ [o_, k] - y) / y
        return {"overhead": float(o_), "per_decode_op": float(k), "residual_max": float(np.max(np.abs(res))),
                "ops": len(sel)}
    out = {"all": solve([o for o in ops if o["format"] in FALLBACK_FORMATS])}
    for fmt, bits in FORMATS:
        sel = [o for o in ops if o["format"] == fmt and o["bits"] == bits]
        if sel:
            out[f"{fmt}{bits}"] = solve(sel)
    out["row"] = kind_row(ops)
    out["formats"] = format_rows(ops)
    return out


def row_key(fmt: str, bits: int) -> str:
    """The profile row a measured encoding calibrates: its format and bit width (``int8-8``, ``csr-32``), so a
    row names exactly what was measured; other widths of the format cost cycles_per_decode_op."""
    return f"{fmt}-{bits}"


def format_rows(ops: list[dict]) -> dict:
    """``instructions = overhead + k[row] x decode_ops``: one overhead shared by the rows (a decode call's
    set-up) and one k per row (``row_key``), non-negative least squares on relative error (small layers count)."""
    from scipy.optimize import nnls

    key = [row_key(o["format"], o["bits"]) for o in ops]
    keys = sorted(set(key))
    X = np.array([[1.0] + [o["decode_ops"] * (kk == r) for r in keys] for o, kk in zip(ops, key, strict=True)])
    y = np.array([o["instructions"] for o in ops])
    w, _ = nnls(X / y[:, None], np.ones(len(y)))
    res = (X @ w - y) / y
    per = {r: {"per_decode_op": float(w[1 + i]),
               "residual_max": float(max(abs(e) for e, kk in zip(res, key, strict=True) if kk == r)),
               "bits": sorted({o["bits"] for o, kk in zip(ops, key, strict=True) if kk == r}),
               "ops": sum(1 for kk in key if kk == r)} for i, r in enumerate(keys)}
    return {"overhead": float(w[0]), "per_format": per, "residual_max": float(np.max(np.abs(res)))}


def kind_row(ops: list[dict]) -> dict:
    """The ``decode`` kind_costs row: instructions = overhead + a x decode ops + b x compressed bytes read +
    c x dense bytes written (what a trace's decode op carries: workloads.steps), non-negative least squares on
    relative error. The compressed bytes tell int8 (one byte per weight: an int-to-float conversion each,
    in software without an FPU) from 1-bit codes (an eighth of a byte per weight)."""
    from scipy.optimize import nnls

    X = np.array([[1.0, o["decode_ops"], o["compressed_bytes"], 4 * o["weights"]] for o in ops])
    y = np.array([o["instructions"] for o in ops])
    w, _ = nnls(X / y[:, None], np.ones(len(y)))
    res = (X @ w - y) / y
    return {"overhead": float(w[0]), "per_mac": float(w[1]), "per_byte_read": float(w[2]),
            "per_byte_written": float(w[3]), "residual_max": float(np.max(np.abs(res)))}
