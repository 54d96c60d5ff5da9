"""edgesim ports: the same workload on an emulated board (docs/architecture.md §4, §4b).

``boards`` (the board table, read from profiles), ``qemu`` (launcher: pexpect console, QMP control),
``repl`` (raw-REPL transport), ``session`` (boot + device files), ``twin`` (virtual twins: machine table,
pinned MicroPython source, cached firmware builds), ``program``/``netrun`` (the host's op trace as the
twin port's program), ``emulate`` (training beside the host and the simulator), ``predict`` (the
simulator's prediction for the board), ``calibrate`` (micro-benchmarks -> per-kind MicroPython costs; ``calibration_profile`` writes them),
``verify`` (one step of a scenario's schedule on its twin), ``ctrain`` (generated C in the planner's arena:
``edgesim port``, native calibration). Device-side code lives in ``ports/micropython/`` and
``ports/native/``. The heavier modules are imported where used.
"""
from __future__ import annotations

from .boards import Board, board_from_profile, load_board
from .errors import (
                     FirmwareBuildError,
                     GuestError,
                     GuestMemoryError,
                     PortError,
                     ProtocolError,
                     QemuExited,
                     QemuMissing,
                     QmpError,
                     ReplTimeout,
                     TwinUnavailable,
)

__all__ = [
    "Board",
    "FirmwareBuildError",
    "GuestError",
    "GuestMemoryError",
    "PortError",
    "ProtocolError",
    "QemuExited",
    "QemuMissing",
    "QmpError",
    "ReplTimeout",
    "TwinUnavailable",
    "board_from_profile",
    "load_board",
]
