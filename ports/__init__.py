"""edgesim ports: the same workload on a QEMU-emulated board (DESIGN.md §4).

``boards`` (the board table, read from profiles), ``qemu`` (launcher), ``repl`` (raw-REPL transport),
``session`` (boot + device files), ``emulate`` (training beside the host and the simulator),
``calibrate`` (micro-benchmarks -> the profile's micropython coefficients), ``predict`` (the simulator's
prediction for the board), ``cli`` (``edgesim emulate`` / ``calibrate``). Device-side code lives in
``ports/micropython/*.py``. The heavier modules are imported where used.
"""
from __future__ import annotations

from .boards import Board, board_from_profile, load_board
from .errors import GuestError, GuestMemoryError, PortError, ProtocolError, QemuExited, QemuMissing, ReplTimeout

__all__ = [
    "Board",
    "GuestError",
    "GuestMemoryError",
    "PortError",
    "ProtocolError",
    "QemuExited",
    "QemuMissing",
    "ReplTimeout",
    "board_from_profile",
    "load_board",
]
