"""What keeping frozen layers compressed in flash costs and saves in a run (issue #14): the model's flash
with and without compression, and the decode work of inference and training priced by the cost model.

Trained layers stay dense in RAM and are checkpointed dense: their flash writes are the ordinary
checkpoints (``checkpoints`` x the trainable bytes); the compressed frozen layers are written once, with
the firmware, and never rewritten.
"""
from __future__ import annotations

from typing import Any

from workloads.compression import decode_op_name
from workloads.trace import Op

from .cost import CostModel
from .units import human_bytes

DAY_S = 86400.0


def compression_figures(sc: Any, prof: Any, job: Any, *, inferences: int, decode_ops_training: int,
                        decode_calls_training: int, elapsed_s: float) -> dict[str, Any] | None:
    """None without compression; else the per-layer encodings, the flash saved and the decode cost."""
    enc = getattr(job, "compressed", None) or {}
    if not enc:
        return None
    cost = CostModel(prof, sc.runtime)
    per_forward = [Op(decode_op_name(name, "decode", e), "decode", e.decode_ops, e.flash_bytes, e.n * 4)
                   for name, e in enc.items()]
    fwd_s = sum(cost.cost(op)[1] for op in per_forward)
    fwd_j = sum(cost.cost(op)[2] for op in per_forward)
    # training decodes the same layers: its calls at one decode op's fixed cost, its decode operations at the
    # forward's mean cycles per decode operation (each format at its own figure: simulator.cost)
    rt = cost.runtime
    fixed = rt.op_overhead_cycles if rt.decode_overhead_cycles is None else rt.decode_overhead_cycles
    fwd_ops = sum(e.decode_ops for e in enc.values())
    per_op = (sum(cost.cost(op)[0] for op in per_forward) - fixed * len(per_forward)) / max(fwd_ops, 1)
    train_cycles = decode_calls_training * fixed + decode_ops_training * per_op
    train_s = train_cycles / cost.clock_hz
    train_j = train_s * cost.active_w
    dense_w = sum(e.n * 4 for e in enc.values())
    comp_w = sum(e.flash_bytes for e in enc.values())
    per_day = DAY_S / max(elapsed_s, 1e-9)
    return {
        "spec": sc.workload.compression.to_dict() if sc.workload.compression is not None else None,
        "layers": {name: {"format": e.format, "weights": e.n, "kept": e.kept, "bits_per_weight": e.bits_per_weight,
                          "flash_bytes": e.flash_bytes, "decode_ops": e.decode_ops, "bits": dict(e.bits)}
                   for name, e in enc.items()},
        "checkpoint": "dense",
        "checkpoint_bytes": int(job.trainable_bytes()),     # each checkpoint writes the trained layers dense
        "model_flash_bytes": int(job.flash_bytes()),
        "model_flash_bytes_uncompressed": int(job.flash_bytes()) - comp_w + dense_w,
        "compressed_weight_bytes": comp_w, "dense_weight_bytes": dense_w,
        "decode_ops_per_inference": sum(e.decode_ops for e in enc.values()),
        "decode_s_per_inference": fwd_s,
        "decode_ops_training": int(decode_ops_training),
        "decode_energy_j_per_day": (inferences * fwd_j + train_j) * per_day,
        "decode_s_per_day": (inferences * fwd_s + train_s) * per_day,
    }


def flash_note(fig: dict[str, Any] | None) -> str:
    if not fig:
        return ""
    fmts = sorted({v["format"] for v in fig["layers"].values()})
    return (f"frozen layers {', '.join(fig['layers'])} stored as {'/'.join(fmts)}: weights "
            f"{human_bytes(fig['compressed_weight_bytes'])} instead of {human_bytes(fig['dense_weight_bytes'])} "
            f"(model {human_bytes(fig['model_flash_bytes'])} instead of {human_bytes(fig['model_flash_bytes_uncompressed'])}); "
            f"trained layers checkpointed dense")


def energy_note(fig: dict[str, Any] | None) -> str:
    if not fig:
        return ""
    return (f"includes decoding compressed weights: {fig['decode_energy_j_per_day']:.3g} J/day "
            f"({fig['decode_s_per_inference'] * 1e3:.3g} ms per inference)")
