"""Native C training on the twins (issue #11): ``edgesim port`` and ``edgesim calibrate --runtime native``.

A traced training step becomes one C program (``codegen``) whose tensors live at the memory planner's
offsets in one static arena; it is built for the profile's core with the project's start-up code and a
linker script sized to the profile's RAM and flash (``target``, ``build``; sources in ``ports/native``),
run on the profile's QEMU twin under ``-icount shift=0,sleep=off`` with samples in and results out over
semihosting (``run``), and compared with the host's losses and the simulator's native prediction
(``port``). ``calibrate`` fits the profile's per-kind instruction costs from C micro-benchmarks.
The entry points are ``ports.ctrain.port.port`` and ``ports.ctrain.calibrate.calibrate`` (the package
exports only the errors, so its submodules keep their names).
"""
from __future__ import annotations

from .errors import CompileError, DoesNotFit, GuestExit, GuestFault, GuestHang, ToolchainMissing

__all__ = ["CompileError", "DoesNotFit", "GuestExit", "GuestFault", "GuestHang", "ToolchainMissing"]
