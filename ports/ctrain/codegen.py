"""Code generation: a traced training step -> one C program whose tensors sit at the planner's offsets.

The op trace (``workloads.Op``) drives the program: one kernel call per op, in trace order, every buffer
a pointer into one static arena (``et_arena``) at the offset the simulator's memory planner gave its
tensor (persistent weights and optimiser state included). The initial weights are ``const`` tables in
flash, copied into the arena by ``model_init``. Nothing here depends on the board: ``twin.h`` (timer)
is written by ``build``. The same trace, plan and weights give byte-identical sources (floats as exact
hexadecimal literals, tensors named, never numbered by their process-wide ids).
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass, field

import numpy as np

from workloads import layers as L

# techniques the generated program implements; the others change the step in ways it does not model
SUPPORTED_TECHNIQUES = ("etf", "update", "last_k", "fused_update")


@dataclass(frozen=True)
class ArenaTensor:
    """One tensor of the arena map."""

    name: str
    kind: str
    offset_bytes: int
    nbytes: int
    first_op: int
    last_op: int


@dataclass
class Program:
    """The generated sources and the arena map they were generated from."""

    files: dict[str, str]                 # file name -> text (model.h, model.c)
    arena_bytes: int
    tensors: list[ArenaTensor]
    op_names: list[str]
    op_kinds: list[str]
    batch: int
    inputs: int
    meta: dict = field(default_factory=dict)

    def arena_map(self) -> dict:
        """The arena map as JSON-able data (written to ``arena.json``)."""
        return {"arena_bytes": self.arena_bytes, "batch": self.batch, "ops": self.op_names,
                "tensors": [t.__dict__ for t in self.tensors], **self.meta}

    def arena_json(self) -> str:
        return json.dumps(self.arena_map(), indent=1, sort_keys=True) + "\n"


def check_techniques(techniques) -> None:
    """ValueError naming a technique the C program does not implement."""
    bad = [t for t in techniques.active() if t not in SUPPORTED_TECHNIQUES]
    if techniques.update == "sparse":
        bad.append("update=sparse")
    if bad:
        raise ValueError(f"--techniques: {', '.join(bad)} not supported by the native port "
                         f"(supported: etf, update=all|bias|last-k, last_k, fused_update)")


def arena_tensors(ops, persistent, plan) -> list[ArenaTensor]:
    """Every tensor of the trace and the persistent set with its planned offset and lifetime, by name."""
    named = {t.id: t for t in persistent}
    for op in ops:
        for t in op.alloc:
            named[t.id] = t
    out = []
    for tid, t in named.items():
        if not t.name:
            raise ValueError(f"tensor {tid} ({t.kind}) has no name: the trace cannot be mapped to C buffers")
        first, last = plan.lifetimes[tid]
        out.append(ArenaTensor(t.name, t.kind, int(plan.offsets[tid]), int(t.nbytes), int(first), int(last)))
    names = [t.name for t in out]
    if len(set(names)) != len(names):
        raise ValueError("two tensors of the trace share a name: the trace cannot be mapped to C buffers")
    return out


def _f32(x: float) -> str:
    """An exact C float literal."""
    v = float(np.float32(x))
    if v == 0.0:
        return "0.0f" if math.copysign(1.0, v) > 0 else "-0.0f"
    return v.hex() + "f"


def _layers_by_name(model) -> dict[str, tuple[int, L.Layer]]:
    return {ly.name: (i, ly) for i, ly in enumerate(model.layers)}


def _in_key(model, i: int) -> str:
    """The trace key of layer i's input: the previous non-view layer's output, or the input tensor."""
    for j in range(i - 1, -1, -1):
        if not model.layers[j].view:
            return f"{model.layers[j].name}.y"
    return "input"


def generate(model, ops, persistent, plan, *, batch: int, lr: float, momentum: float,
             offsets: dict[str, int] | None = None, title: str = "") -> Program:
    """The C program for one training step of ``model`` as traced in ``ops`` and planned in ``plan``.

    ``offsets`` (tensor name -> byte offset) overrides the planner's offsets (tests plant overlaps).
    The initial weights are the model's current parameters.
    """
    tensors = arena_tensors(ops, persistent, plan)
    if offsets:
        unknown = sorted(set(offsets) - {t.name for t in tensors})
        if unknown:
            raise ValueError(f"offsets: no tensor named {unknown[0]!r} in the trace")
        tensors = [ArenaTensor(t.name, t.kind, int(offsets.get(t.name, t.offset_bytes)), t.nbytes, t.first_op,
                               t.last_op) for t in tensors]
    by_name = {t.name: t for t in tensors}
    for t in tensors:
        if t.offset_bytes % 4 or t.nbytes % 4:
            raise ValueError(f"tensor {t.name}: offset {t.offset_bytes} / size {t.nbytes} B not float-aligned")
    arena_bytes = max([int(plan.planned_bytes)] + [t.offset_bytes + t.nbytes for t in tensors])
    layers = _layers_by_name(model)
    n = batch
    inputs = int(np.prod(model.internal_shape))

    def buf(key: str) -> str:
        if key not in by_name:
            raise ValueError(f"the trace has no tensor {key!r} where the C program needs one")
        return f"A + {by_name[key].offset_bytes // 4}"

    consts: list[str] = []
    body: list[str] = []
    g = "loss.grad"
    for k, op in enumerate(ops):
        note = f"    /* op {k}: {op.name} ({op.kind}, {op.macs} MACs) */"
        if op.name == "input.load":
            call = f"et_copy({buf('input')}, x, {n * inputs});"
        elif op.name == "loss":
            last = model.layers[-1]
            call = (f"loss = et_softmax_xent({buf(last.name + '.y')}, y, {buf('loss.grad')}, {n}, "
                    f"{last.out_shape[-1]});")
            g = "loss.grad"
        else:
            lname, action = op.name.rsplit(".", 1)
            if lname not in layers:
                raise ValueError(f"op {op.name!r}: no layer {lname!r} in the model")
            i, ly = layers[lname]
            call = _layer_call(ly, action, op.name, n, buf, _in_key(model, i), g, lr, momentum, consts, by_name)
            if action == "backward_input":
                g = f"{lname}.dx"
        body.append(note)
        body.append(f"    {call}")
        body.append(f"    et_marks[{k + 1}] = ET_TIMER_READ();")

    init_tables, init_rows = [], []
    for ly in model.param_layers():
        for arr, pname in zip(ly.params, ("W", "b"), strict=True):
            key = f"{ly.name}.{pname}"
            flat = np.asarray(arr, np.float32).reshape(-1)
            vals = ",\n".join("    " + ", ".join(_f32(v) for v in flat[j:j + 6]) for j in range(0, flat.size, 6))
            cname = f"init_{ly.name}_{pname}"
            init_tables.append(f"static const float {cname}[{flat.size}] = {{\n{vals}\n}};")
            init_rows.append(f"    et_copy({buf(key)}, {cname}, {flat.size});")

    head = title or "edgesim native training step"
    model_h = f"""/* {head}: generated by edgesim (ports/ctrain/codegen.py); do not edit. */
#ifndef MODEL_H
#define MODEL_H

#include <stdint.h>

#define MODEL_BATCH {n}
#define MODEL_INPUTS {inputs}
#define MODEL_CLASSES {model.num_classes}
#define MODEL_OPS {len(ops)}
#define MODEL_ARENA_BYTES {arena_bytes}

extern uint32_t et_marks[MODEL_OPS + 1];
void model_init(void);
float model_step(const float *x, const int32_t *y);

#endif
"""
    model_c = "\n".join([
        f"/* {head}: generated by edgesim (ports/ctrain/codegen.py); do not edit.",
        f" * {len(ops)} ops, arena {arena_bytes} B at the memory planner's offsets (arena.json). */",
        '#include "edgetrain.h"', '#include "model.h"', '#include "twin.h"', "",
        "float et_arena[MODEL_ARENA_BYTES / 4] __attribute__((section(\".arena\"), aligned(8)));", "",
        *consts, *([""] if consts else []),
        *init_tables, "",
        "void model_init(void)", "{", "    float *A = et_arena;",
        "    for (int i = 0; i < MODEL_ARENA_BYTES / 4; i++)", "        A[i] = 0.0f;   /* optimiser state starts at 0 */",
        *init_rows, "}", "",
        "float model_step(const float *x, const int32_t *y)", "{", "    float *A = et_arena;",
        "    float loss = 0.0f;", "    et_marks[0] = ET_TIMER_READ();", *body, "    return loss;", "}", "",
    ])
    prog = Program({"model.h": model_h, "model.c": model_c}, arena_bytes, tensors, [op.name for op in ops],
                   [op.kind for op in ops], n, inputs)
    return prog


def _conv_const(ly, consts: list[str]) -> str:
    h, w, cin = ly.in_shape
    oh, ow, cout = ly.out_shape
    cname = f"geom_{ly.name}"
    line = (f"static const et_conv_t {cname} = {{{h}, {w}, {cin}, {oh}, {ow}, {cout}, {ly.kh}, {ly.kw}, "
            f"{ly.sh}, {ly.sw}, {ly.ph // 2}, {ly.pw // 2}}};")
    if line not in consts:
        consts.append(line)
    return f"&{cname}"


def _layer_call(ly, action: str, opname: str, n: int, buf, x_key: str, g: str, lr: float, momentum: float,
                consts: list[str], by_name: dict) -> str:
    """The kernel call of one traced op of layer ``ly``."""
    name = ly.name
    y = f"{name}.y"
    relu = int(bool(ly.relu))
    if action == "backward_act":
        return f"et_relu_backward({buf(y)}, {buf(g)}, {n * int(np.prod(ly.out_shape))});"
    if action == "backward_bias":
        rows = n * int(np.prod(ly.out_shape[:-1]))
        return f"et_bias_grad({buf(g)}, {buf(name + '.db')}, {rows}, {ly.out_shape[-1]});"
    if action == "update":
        calls = []
        for pname, arr in zip(("W", "b"), ly.params, strict=True):
            grad = f"{name}.d{pname}"
            if grad not in by_name:
                continue
            state = f"{name}.{pname}.state0"
            v = buf(state) if state in by_name else "0"
            calls.append(f"et_sgd_update({buf(name + '.' + pname)}, {buf(grad)}, {v}, {arr.size}, {_f32(lr)}, "
                         f"{_f32(momentum)});")
        return "\n    ".join(calls)
    if isinstance(ly, L.Dense):
        nin, nout = ly.in_shape[0], ly.out_shape[0]
        if action == "forward":
            return (f"et_dense_forward({buf(x_key)}, {buf(name + '.W')}, {buf(name + '.b')}, {buf(y)}, {n}, {nin}, "
                    f"{nout}, {relu});")
        if action == "backward_weight":
            return (f"et_dense_weight_grad({buf(x_key)}, {buf(g)}, {buf(name + '.dW')}, {buf(name + '.db')}, {n}, "
                    f"{nin}, {nout});")
        if action == "backward_input":
            return f"et_dense_input_grad({buf(g)}, {buf(name + '.W')}, {buf(name + '.dx')}, {n}, {nin}, {nout});"
    elif isinstance(ly, L.Conv2D):
        geom = _conv_const(ly, consts)
        if action == "forward":
            return (f"et_conv2d_forward({geom}, {buf(x_key)}, {buf(name + '.W')}, {buf(name + '.b')}, {buf(y)}, "
                    f"{buf(name + '.forward.cols')}, {n}, {relu});")
        if action == "backward_weight":
            return (f"et_conv2d_weight_grad({geom}, {buf(x_key)}, {buf(g)}, {buf(name + '.dW')}, "
                    f"{buf(name + '.db')}, {buf(name + '.cols_bw')}, {n});")
        if action == "backward_input":
            return (f"et_conv2d_input_grad({geom}, {buf(g)}, {buf(name + '.W')}, {buf(name + '.dx')}, "
                    f"{buf(name + '.dcols')}, {n});")
    elif isinstance(ly, L.DepthwiseConv2D):
        geom = _conv_const(ly, consts)
        if action == "forward":
            return (f"et_dwconv_forward({geom}, {buf(x_key)}, {buf(name + '.W')}, {buf(name + '.b')}, {buf(y)}, "
                    f"{n}, {relu});")
        if action == "backward_weight":
            return (f"et_dwconv_weight_grad({geom}, {buf(x_key)}, {buf(g)}, {buf(name + '.dW')}, "
                    f"{buf(name + '.db')}, {n});")
        if action == "backward_input":
            return f"et_dwconv_input_grad({geom}, {buf(g)}, {buf(name + '.W')}, {buf(name + '.dx')}, {n});"
    elif isinstance(ly, (L.MaxPool, L.AvgPool)):
        h, w, c = ly.in_shape
        dims = f"{n}, {h}, {w}, {c}, {ly.kh}, {ly.kw}"
        kind = "maxpool" if isinstance(ly, L.MaxPool) else "avgpool"
        if action == "forward":
            return f"et_{kind}_forward({buf(x_key)}, {buf(y)}, {dims});"
        if action == "backward_input" and kind == "maxpool":
            return f"et_maxpool_input_grad({buf(x_key)}, {buf(y)}, {buf(g)}, {buf(name + '.dx')}, {dims});"
        if action == "backward_input":
            return f"et_avgpool_input_grad({buf(g)}, {buf(name + '.dx')}, {dims});"
    elif isinstance(ly, L.GlobalAvgPool):
        h, w, c = ly.in_shape
        if action == "forward":
            return f"et_gap_forward({buf(x_key)}, {buf(y)}, {n}, {h * w}, {c});"
        if action == "backward_input":
            return f"et_gap_input_grad({buf(g)}, {buf(name + '.dx')}, {n}, {h * w}, {c});"
    raise ValueError(f"op {opname!r}: the native port has no kernel for {type(ly).__name__}.{action}")
