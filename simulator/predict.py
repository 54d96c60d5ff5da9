"""One training step's predicted cost and memory on a device, for the emulator comparison
(docs/architecture.md §3)."""
from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

import numpy as np

from device_profiles.loader import DeviceProfile, load_profile
from workloads.techniques import Techniques
from workloads.trace import collect

from .cost import CostModel
from .inputs import make_job
from .memory import Heap, OutOfMemory, place_trace
from .planner import plan_arena


def predict_step(device: str | Path | DeviceProfile, workload: str, *, batch: int = 1, runtime: str = "native",
                 techniques: Techniques | dict | None = None, seed: int = 0, dataset: str | None = None,
                 story: str = "new-class", optimizer: str = "sgd", lr: float = 0.05, momentum: float = 0.9,
                 job: Any = None) -> dict:
    """The simulator's prediction for one training step of ``workload`` on ``device``.

    cycles/seconds/energy from the cost model, MicroPython's garbage collections included (``gc_cycles``,
    in the heap the profile leaves); instructions = cycles / CPI; heap_peak_bytes from
    placing the persistent tensors and the step's trace in a ``memory.Heap`` with the runtime's block
    size and per-object overhead (runtime reserve excluded); lower_bound_bytes from the planner.
    """
    profile = device if isinstance(device, DeviceProfile) else load_profile(device)
    if isinstance(techniques, dict):
        techniques = Techniques.from_dict(techniques)
    if isinstance(batch, bool) or not isinstance(batch, int) or batch < 1:
        raise ValueError(f"predict_step: batch must be an integer >= 1 (got {batch!r})")
    rt = profile.runtime_for(runtime)
    if job is None:
        job = make_job(workload, dataset=dataset, story=story, optimizer=optimizer, lr=lr, momentum=momentum,
                       techniques=techniques, seed=seed)
    xs, ys = zip(*itertools.islice(iter(job.labelled_stream()), batch), strict=False)
    ops, loss = collect(job.train_step(np.stack(xs), np.array(ys)))
    persistent = tuple(job.persistent_tensors())
    avail = profile.memory.ram_bytes - rt.ram_reserved_bytes
    cm = CostModel(profile, runtime)
    h = Heap.for_runtime(avail, rt)          # MicroPython: collections in the heap the profile leaves
    cm.collect_garbage(h.capacity_bytes, sum(h.size_for(t.nbytes) for t in persistent), h.size_for)
    gc = sum(cm.gc_cycles_by_op(ops))
    cycles = sum(cm.cost(op)[0] for op in ops) + gc
    cum_t, cum_e = cm.cumulative(ops)
    seconds, energy = cum_t[-1], cum_e[-1]
    heap = place_trace(Heap.for_runtime(1 << 40, rt), ops, persistent)
    p = plan_arena(ops, persistent)
    fits_heap = True
    try:
        place_trace(Heap.for_runtime(avail, rt), ops, persistent)
    except OutOfMemory:
        fits_heap = False
    return {"device": profile.name, "workload": workload, "runtime": runtime, "batch": batch,
            "techniques": (techniques or Techniques()).active(), "ops": len(ops),
            "cycles": cycles, "gc_cycles": gc, "instructions": cycles / profile.core.cycles_per_instruction,
            "seconds": seconds, "energy_j": energy, "macs": int(sum(op.macs for op in ops)),
            "heap_peak_bytes": int(heap.peak_bytes), "lower_bound_bytes": int(p.lower_bound_bytes),
            "planned_bytes": int(p.planned_bytes), "naive_bytes": int(p.naive_bytes),
            "heap_available_bytes": int(avail), "fits_heap": fits_heap, "loss": float(loss)}
