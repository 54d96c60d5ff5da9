"""Fail fast (issue #12): before any pre-training or simulation, a static lower bound on the RAM one
training step needs, checked against what the device leaves for the workload. A model far too big for
the board is refused in well under a second instead of after minutes of host-side pre-training.

The bound is certain, so it only ever refuses what the simulation would refuse too, and it refuses only
what is *far* too big (``FAR_TOO_BIG`` times the RAM): a near miss is still simulated, so its result names
the op that fails and the sweep's matrix its margin. The bound is the model's
parameters (all of them in RAM; with frozen layers compressed in flash, the largest single layer, which
is decoded to RAM before use) plus the largest layer output for one batch (allocated while that layer
runs forward; the simulator streams the input batch, so inputs are not counted). Parameter counts follow from the spec's shapes (building the model would
allocate the very memory being checked); ``test_static_fit`` checks them against ``parameters()``.
"""
from __future__ import annotations

import math
from typing import Any

F32_BYTES = 4
FAR_TOO_BIG = 10.0    # refuse when the bound is an order of magnitude over the RAM the device leaves


class ModelTooBig(ValueError):
    """The static bound is over the device's RAM: the schedule cannot fit, whatever the run would do."""


def layer_parameters(ls: Any) -> int:
    """Weights + biases of one parsed layer (``workloads.spec.LayerSpec``), from its shapes."""
    a = ls.args
    if ls.kind == "dense":
        return ls.in_shape[0] * a["units"] + a["units"]
    if ls.kind == "conv":
        cin, cout = ls.in_shape[-1], ls.out_shape[-1]
        return a["kh"] * a["kw"] * cin * cout + cout
    if ls.kind == "dwconv":
        c = ls.in_shape[-1]
        return a["kh"] * a["kw"] * c + c
    return 0


def step_lower_bound_bytes(model: str, batch: int, compressed: bool = False) -> int:
    """A lower bound on the RAM one training step of ``model`` (zoo name or spec) needs, in bytes."""
    from workloads.model import resolve

    spec, _ = resolve(model)
    params = [layer_parameters(ls) * F32_BYTES for ls in spec.layers]
    acts = [batch * math.prod(ls.out_shape) * F32_BYTES for ls in spec.layers]
    weights = max(params, default=0) if compressed else sum(params)
    return weights + max(acts, default=0)


def check_static_fit(sc: Any, profile: Any) -> None:
    """Raise :class:`ModelTooBig` when scenario ``sc`` is far too big for ``profile``'s RAM (the bound over
    ``FAR_TOO_BIG`` times what the device leaves). Swapping to flash moves activations out of RAM, so with
    it only the parameters count."""
    rt = profile.runtime_for(sc.runtime)
    available = profile.memory.ram_bytes - rt.ram_reserved_bytes
    # frozen layers compressed in flash: the workload's compression table, where the scenario has one
    compressed = bool(getattr(sc.workload, "compression", None))
    batch = 0 if sc.techniques.swap else sc.schedule.batch
    need = step_lower_bound_bytes(sc.workload.model, batch, compressed)
    if need > FAR_TOO_BIG * available:
        raise ModelTooBig(
            f"{sc.where}: workload {sc.workload.model!r} cannot fit {profile.name}: one training step needs at "
            f"least {need:,} B of RAM (parameters{' of its largest layer' if compressed else ''} + its largest "
            f"layer output for a batch of {batch}), the device leaves {available:,} B for the "
            f"workload ({profile.memory.ram_bytes:,} B - {rt.ram_reserved_bytes:,} B {sc.runtime} runtime); "
            f"checked before any pre-training (refused above {FAR_TOO_BIG:g}x the RAM)")
