"""Run a built program on its twin: samples in and results out over semihosting, under -icount shift=0,sleep=off.

QEMU runs in the output directory (the guest opens ``samples.bin`` and writes ``results.bin`` there),
ended by its own PID on a timeout, an error or the end of the Python process. The results file holds
per step the loss and the guest timer read before the first op and after each op, then the painted
stack's high-water mark.
"""
from __future__ import annotations

import atexit
import re
import shutil
import struct
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .errors import INSTALL_HINT, GuestExit, GuestFault, GuestHang, ToolchainMissing
from .target import Target

QEMU = "qemu-system-arm"
SAMPLES_MAGIC = 0x31534D45
RESULTS_MAGIC = 0x31525345
EXIT_CODES = {10: "a host file could not be opened, read or written (semihosting)",
              11: "samples.bin does not match the compiled model (batch or inputs)",
              12: "hard fault"}
TIMEOUT_S = 120.0                 # the least a run is given before it counts as hung
SLOWEST_INSTRUCTIONS_PER_S = 5e6  # a slow bound: QEMU ran 200-275 M guest instructions per host second here

_live: set[subprocess.Popen] = set()


@atexit.register
def _end_all() -> None:
    for p in list(_live):
        _end(p)


def _end(p: subprocess.Popen) -> None:
    if p.poll() is None:
        p.kill()
        try:
            p.wait(5)
        except subprocess.TimeoutExpired:  # pragma: no cover - a process that survives SIGKILL
            pass
    _live.discard(p)


@dataclass
class Measured:
    """What the guest reported."""

    losses: list[float]
    op_instructions: np.ndarray          # (steps, ops) instructions per op
    stack_used_bytes: int
    stack_size_bytes: int
    wall_s: float

    @property
    def instructions_by_step(self) -> list[int]:
        return [int(x) for x in self.op_instructions.sum(axis=1)]


def write_samples(path: Path, batches: list[tuple[np.ndarray, np.ndarray]], inputs: int) -> None:
    """samples.bin: magic, steps, batch, inputs, then per step the batch's inputs (float32) and labels (int32)."""
    b = len(batches[0][1]) if batches else 0
    with open(path, "wb") as f:
        f.write(struct.pack("<4I", SAMPLES_MAGIC, len(batches), b, inputs))
        for xs, ys in batches:
            f.write(np.ascontiguousarray(xs, "<f4").reshape(-1).tobytes())
            f.write(np.asarray(ys, "<i4").tobytes())


def qemu_command(target: Target, elf: Path) -> list[str]:
    exe = shutil.which(QEMU)
    if exe is None:
        raise ToolchainMissing(f"{QEMU} not found on PATH: {INSTALL_HINT}")
    return [exe, *target.machine.qemu_args(str(elf)), "-display", "none", "-monitor", "none", "-serial", "null",
            "-no-reboot"]


def run(target: Target, elf: Path, batches: list[tuple[np.ndarray, np.ndarray]], inputs: int, n_ops: int,
        workdir: Path, timeout_s: float = TIMEOUT_S, progress: bool = False) -> Measured:
    """Run ``elf`` on the twin over ``batches``; typed errors for faults, hangs and guest exit codes."""
    workdir = Path(workdir)
    write_samples(workdir / "samples.bin", batches, inputs)
    res_path = workdir / "results.bin"
    res_path.unlink(missing_ok=True)
    log_path = workdir / "qemu.log"
    cmd = qemu_command(target, Path(elf).resolve())
    t0 = time.perf_counter()
    with open(log_path, "wb") as log:
        log.write(("$ " + " ".join(cmd) + "\n").encode())
        log.flush()
        p = subprocess.Popen(cmd, cwd=workdir, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT)
        _live.add(p)
        try:
            rc = _wait(p, timeout_s, progress, target)
        except BaseException:
            _end(p)
            raise
        _live.discard(p)
    wall = time.perf_counter() - t0
    tail = log_path.read_text(errors="replace")[-2000:]
    if rc is None:
        raise GuestHang(f"{target.board}: the guest did not finish within {timeout_s:g} s on "
                        f"{target.machine.qemu_machine}; QEMU ended", serial_tail=tail, log_path=str(log_path))
    m = re.search(r"edgesim-fault pc=0x([0-9a-f]{8})", tail)
    if m or "edgesim-fault" in tail:
        pc = int(m.group(1), 16) if m else None
        where = f"pc=0x{pc:08x}" if pc is not None else "an unexpected interrupt"
        raise GuestFault(f"{target.board}: hard fault at {where} (look it up: arm-none-eabi-addr2line -e {elf} "
                         f"0x{pc or 0:08x})", pc, serial_tail=tail, log_path=str(log_path))
    if rc != 0:
        why = EXIT_CODES.get(rc, "QEMU or the guest failed")
        raise GuestExit(f"{target.board}: exit code {rc}: {why}", serial_tail=tail, log_path=str(log_path))
    return parse_results(res_path, len(batches), n_ops, target, wall)


def _wait(p: subprocess.Popen, timeout_s: float, progress: bool, target: Target) -> int | None:
    """The exit code, or None after ending QEMU on the timeout; a progress line on stderr while waiting."""
    start = time.monotonic()
    while True:
        try:
            return p.wait(timeout=1.0)
        except subprocess.TimeoutExpired:
            waited = time.monotonic() - start
            if progress:
                print(f"\r  running on {target.machine.qemu_machine}: {waited:4.0f} s", end="", file=sys.stderr,
                      flush=True)
            if waited > timeout_s:
                _end(p)
                if progress:
                    print(file=sys.stderr)
                return None


def parse_results(path: Path, steps: int, n_ops: int, target: Target, wall_s: float) -> Measured:
    data = path.read_bytes()
    magic, n, ops, _ = struct.unpack_from("<4I", data, 0)
    if magic != RESULTS_MAGIC or n != steps or ops != n_ops:
        raise GuestExit(f"{path}: unexpected results header (magic {magic:#x}, {n} steps, {ops} ops)")
    rec = 4 + 4 * (n_ops + 1)
    off = 16
    losses, per_op = [], np.zeros((steps, n_ops), np.int64)
    m = target.machine
    for s in range(steps):
        (loss,) = struct.unpack_from("<f", data, off)
        marks = struct.unpack_from(f"<{n_ops + 1}I", data, off + 4)
        off += rec
        losses.append(float(loss))
        per_op[s] = [m.elapsed_instructions(marks[k], marks[k + 1]) for k in range(n_ops)]
    used, size = struct.unpack_from("<2I", data, off)
    return Measured(losses, per_op, int(used), int(size), wall_s)
