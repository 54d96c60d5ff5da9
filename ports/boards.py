"""The board table: what it takes to boot one emulated board (DESIGN.md §4).

A :class:`Board` is read from a device profile's ``[emulator]`` table plus its core and memory figures,
so a new board is a new profile file, not new code.
"""
from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

from device_profiles import DeviceProfile, load_profile

QEMU_BINARY = "qemu-system-arm"
INSTALL_HINT = ("`make test` (the README set-up) installs it: apt-get install qemu-system-arm "
                "firmware-microbit-micropython")


@dataclass(frozen=True)
class Board:
    """One emulated board: QEMU machine, firmware image, extra QEMU arguments, RAM and clock."""

    name: str
    machine: str
    firmware: str
    extra_args: tuple[str, ...]
    ram_bytes: int
    clock_hz: float
    cycles_per_instruction: float
    profile: DeviceProfile

    def qemu_command(self, qemu: str = QEMU_BINARY, icount_shift: int = 0) -> list[str]:
        """The QEMU command line: serial on stdio via a chardev (``-nographic`` would swallow Ctrl-A),
        firmware through the generic loader (``-kernel`` refuses a .hex), deterministic guest time."""
        return [qemu, "-M", self.machine, "-display", "none",
                "-chardev", "stdio,id=s0,signal=off", "-serial", "chardev:s0", "-monitor", "none",
                "-device", f"loader,file={self.firmware}",
                "-icount", f"shift={icount_shift}", *self.extra_args]


def board_from_profile(profile: DeviceProfile) -> Board:
    """The board table entry of a profile; ValueError naming the file if it has no ``[emulator]``."""
    if profile.emulator is None:
        raise ValueError(f"{profile.path}: [emulator] is missing: {profile.name} has no emulated board")
    em = profile.emulator
    return Board(name=profile.name, machine=em.qemu_machine, firmware=em.firmware_path,
                 extra_args=tuple(em.qemu_args), ram_bytes=profile.memory.ram_bytes,
                 clock_hz=profile.core.clock_hz, cycles_per_instruction=profile.core.cycles_per_instruction,
                 profile=profile)


def load_board(name_or_path: str | Path) -> Board:
    """A board by profile name (``bbc-microbit-v1``) or profile path."""
    return board_from_profile(load_profile(name_or_path))


def missing_requirements(board: Board, qemu: str = QEMU_BINARY) -> list[str]:
    """What is missing on this machine to emulate ``board`` (empty when it can run)."""
    missing = []
    if shutil.which(qemu) is None:
        missing.append(f"{qemu} is not on PATH")
    if not Path(board.firmware).is_file():
        missing.append(f"firmware {board.firmware} is missing")
    return missing
