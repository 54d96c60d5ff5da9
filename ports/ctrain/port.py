"""``port``: a workload as generated C on a board's twin, compared with the host and the simulator.

Same initial weights and data order as the host job; the simulator's ``native`` prediction for the same
board, workload and batch: instructions per step (``predict_step``), RAM = the runtime's reserve + the
planned arena (persistent tensors included), flash = the runtime's reserve + the weights.
"""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from simulator.agreement import AGREEMENT_RELATIVE, LOSS_ATOL, LOSS_RTOL, NATIVE_FLASH_RELATIVE, NATIVE_RAM_RELATIVE

from . import build as B
from . import codegen, run, step
from .target import target_for

RUNTIME = "native"


def _progress(msg: str) -> None:
    import sys
    print(f"edgesim port: {msg} ...", file=sys.stderr, flush=True)


def _rel(measured: float, predicted: float) -> float | None:
    """(predicted - measured) / measured."""
    return None if not measured else (predicted - measured) / measured


def default_out(board: str, workload: str) -> Path:
    return Path("edgesim-out") / "port" / f"{board}-{workload.replace(':', '_')}"


def prepare(board, workload: str, *, steps: int = 20, batch: int = 1, techniques=None, seed: int = 0,
            machine: str | None = None, offsets: dict[str, int] | None = None):
    """Profile, target, host run and generated program (nothing built yet)."""
    from device_profiles.loader import DeviceProfile, load_profile
    from workloads import Techniques, make_job

    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise ValueError(f"--steps must be an integer >= 1 (got {steps!r})")
    if isinstance(batch, bool) or not isinstance(batch, int) or batch < 1:
        raise ValueError(f"--batch must be an integer >= 1 (got {batch!r})")
    profile = board if isinstance(board, DeviceProfile) else load_profile(board)
    target = target_for(profile, machine)
    tech = techniques if isinstance(techniques, Techniques) else Techniques.from_dict(techniques or {}, "--techniques")
    codegen.check_techniques(tech)
    job = make_job(workload, techniques=tech, seed=seed)
    host = step.host_run(job, steps, batch)
    job.model.load_state(host.initial_state)
    planted = ", planted offsets" if offsets else ""
    prog = codegen.generate(job.model, host.ops, host.persistent, host.plan, batch=batch, lr=job.lr,
                            momentum=job.opt.momentum, offsets=offsets,
                            title=f"{job.spec.text} on {profile.name}, batch {batch}{planted}")
    prog.meta.update({"board": profile.name, "workload": workload, "spec": job.spec.text, "seed": seed,
                      "planned_bytes": int(host.plan.planned_bytes),
                      "lower_bound_bytes": int(host.plan.lower_bound_bytes), "offsets_overridden": bool(offsets)})
    return profile, target, tech, job, host, prog


def staging_bytes(job, batch: int) -> int:
    """The input buffer the port fills before a step (a sensor buffer on a product): samples and labels."""
    return batch * (4 * int(np.prod(job.input_shape)) + 4)


def predict(profile, workload: str, *, batch: int, techniques, seed: int, ops=None) -> dict:
    """The simulator's native prediction: instructions per step, RAM (the runtime's reserve + the input
    staging buffer + the planned arena) and flash (reserve + weights), per-op instructions."""
    from simulator import op_cycles, predict_step
    from workloads import make_job

    rt = profile.runtime_for(RUNTIME)
    job = make_job(workload, techniques=techniques, seed=seed)
    p = predict_step(profile, workload, batch=batch, runtime=RUNTIME, techniques=techniques, seed=seed, job=job)
    cpi = profile.core.cycles_per_instruction
    out = {"instructions_per_step": float(p["instructions"]),
           "ram_peak_bytes": int(rt.ram_reserved_bytes + staging_bytes(job, batch) + p["planned_bytes"]),
           "flash_bytes": int(rt.flash_reserved_bytes + job.flash_bytes()),
           "arena_bytes": int(p["planned_bytes"])}
    if ops is not None:
        out["op_instructions"] = [op_cycles(op, rt) / cpi for op in ops]
    return out


def port(board, workload: str, *, steps: int = 20, batch: int = 1, techniques=None, seed: int = 0,
         out: str | Path | None = None, machine: str | None = None, offsets: dict[str, int] | None = None,
         progress: bool = False, timeout_s: float | None = None) -> dict:
    """Generate, build and run ``workload`` on ``board``'s twin; the comparison as a JSON-able dict.

    Raises ``DoesNotFit`` (the linker says so, region named), ``CompileError``, ``GuestFault``, ``GuestHang``,
    ``ToolchainMissing``; ValueError for bad input.
    """
    say = _progress if progress else (lambda msg: None)
    say(f"host: {workload}, {steps} steps of batch {batch} (traced, arena planned)")
    profile, target, tech, job, host, prog = prepare(board, workload, steps=steps, batch=batch, techniques=techniques,
                                                     seed=seed, machine=machine, offsets=offsets)
    out = Path(out) if out else default_out(profile.name, workload)
    say(f"building for {target.describe()}")
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    built = B.build(prog, target, out)
    build_s = time.perf_counter() - t0
    pred = predict(profile, workload, batch=batch, techniques=tech, seed=seed, ops=host.ops)
    if timeout_s is None:   # room for the predicted work at a slow emulation speed, never under the default
        timeout_s = max(run.TIMEOUT_S, steps * pred["instructions_per_step"] / run.SLOWEST_INSTRUCTIONS_PER_S)
    say(f"running on the twin {target.machine.qemu_machine} (-icount shift=0,sleep=off)")
    meas = run.run(target, built.elf, host.batches[:steps], prog.inputs, len(host.ops), out, timeout_s=timeout_s,
                   progress=progress)
    return result(profile, target, workload, job, host, prog, built, meas, pred, steps=steps, batch=batch, tech=tech,
                  out=out, build_s=build_s)


def result(profile, target, workload, job, host, prog, built, meas, pred, *, steps, batch, tech, out, build_s) -> dict:
    instr = meas.instructions_by_step
    ips = float(np.mean(instr))
    ram = built.static_ram_bytes + built.arena_bytes + meas.stack_used_bytes
    losses, hl = meas.losses, host.losses
    close = bool(np.allclose(losses, hl, rtol=LOSS_RTOL, atol=LOSS_ATOL))
    diffs = [abs(a - b) for a, b in zip(losses, hl, strict=True)]
    rel_loss = [abs(a - b) / abs(b) if b else (0.0 if a == b else float("inf")) for a, b in zip(losses, hl, strict=True)]
    err_i = _rel(ips, pred["instructions_per_step"])
    err_r = _rel(ram, pred["ram_peak_bytes"])
    err_f = _rel(built.flash_bytes, pred["flash_bytes"])
    op_meas = meas.op_instructions.mean(axis=0)
    ops = [{"name": n, "kind": k, "instructions": float(m), "predicted_instructions": float(p)}
           for n, k, m, p in zip(prog.op_names, prog.op_kinds, op_meas, pred["op_instructions"], strict=True)]
    cpi = profile.core.cycles_per_instruction
    return {
        "board": profile.name, "machine": target.machine.qemu_machine, "twin": target.machine.name,
        "compiler": built.compiler, "compiler_flags": list(built.flags), "float_abi": target.float_abi,
        "core": target.describe(), "workload": workload, "spec": job.spec.text, "steps": steps, "batch": batch,
        "techniques": tech.active(), "seed": job.seed, "lr": job.lr, "momentum": job.opt.momentum,
        "instructions_per_step": ips, "predicted_instructions_per_step": pred["instructions_per_step"],
        "instructions_by_step": instr, "instructions_error": err_i,
        "device_seconds_per_step": ips * cpi / profile.core.clock_hz,
        "predicted_device_seconds_per_step": pred["instructions_per_step"] * cpi / profile.core.clock_hz,
        "cycles_per_instruction": cpi,
        "cycles_per_instruction_source": profile.sources.get("core.cycles_per_instruction", ""),
        "ram_peak_bytes": int(ram), "predicted_ram_peak_bytes": pred["ram_peak_bytes"], "ram_error": err_r,
        "ram_budget_bytes": profile.memory.ram_bytes,
        "static_ram_bytes": built.static_ram_bytes, "data_bytes": built.sections.get(".data", 0),
        "bss_bytes": built.sections.get(".bss", 0), "arena_bytes": built.arena_bytes,
        "predicted_arena_bytes": pred["arena_bytes"], "planned_arena_bytes": int(host.plan.planned_bytes),
        "lower_bound_bytes": int(host.plan.lower_bound_bytes),
        "stack_peak_bytes": meas.stack_used_bytes, "stack_room_bytes": meas.stack_size_bytes,
        "flash_bytes": built.flash_bytes, "predicted_flash_bytes": pred["flash_bytes"], "flash_error": err_f,
        "flash_budget_bytes": target.flash_bytes, "text_bytes": built.sections.get(".text", 0),
        "weights_bytes": int(job.flash_bytes()),
        "losses": losses, "host_losses": hl, "losses_match_host": close,
        "loss_max_abs_diff": max(diffs) if diffs else 0.0,
        "loss_max_rel_diff": max(rel_loss) if rel_loss else 0.0,
        "loss_tolerance": {"rtol": LOSS_RTOL, "atol": LOSS_ATOL},
        "tolerances": {"instructions": AGREEMENT_RELATIVE, "ram": NATIVE_RAM_RELATIVE, "flash": NATIVE_FLASH_RELATIVE},
        "agrees": bool(close and err_i is not None and abs(err_i) <= AGREEMENT_RELATIVE and err_r is not None
                       and abs(err_r) <= NATIVE_RAM_RELATIVE and err_f is not None
                       and abs(err_f) <= NATIVE_FLASH_RELATIVE),
        "ops": ops, "wall_s": meas.wall_s, "build_s": build_s,
        "emulated_steps_per_s": steps / meas.wall_s if meas.wall_s else None,
        "files": {"dir": str(out), "sources": str(out / "src"), "elf": str(built.elf), "map": str(built.map_path),
                  "arena_map": str(out / "arena.json"), "qemu_log": str(out / "qemu.log")},
    }
