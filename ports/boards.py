"""The board table: what it takes to boot one emulated board (docs/architecture.md §4, §4b).

A :class:`Board` is read from a device profile's ``[emulator]`` table plus its core and memory figures,
so a new board is a new profile file, not new code. Two kinds: a fixed QEMU machine with a prebuilt
firmware (the micro:bit v1 and Debian's firmware), or a *virtual twin* (``twin = "..."``): one of
``ports.twin.machines`` with MicroPython built from source at the profile's heap size.
"""
from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

from device_profiles import DeviceProfile, load_profile

from .twin.machines import Machine, get_machine

QEMU_BINARY = "qemu-system-arm"
INSTALL_HINT = ("`make test` (the README set-up) installs it: apt-get install qemu-system-arm "
                "firmware-microbit-micropython")


ARCH_SUBSETS = {"armv6-m": {"armv6-m"}, "armv7-m": {"armv6-m", "armv7-m"},
                "armv7e-m": {"armv6-m", "armv7-m", "armv7e-m"}}     # ISAs each core runs
FPU_SUBSETS = {"none": {"none"}, "sp": {"none", "sp"}, "dp": {"none", "sp", "dp"}}


@dataclass(frozen=True)
class Board:
    """One emulated board: QEMU machine, firmware image, extra QEMU arguments, RAM and clock; for a
    virtual twin also its machine table entry and MicroPython heap size."""

    name: str
    machine: str                  # qemu-system-arm -M
    firmware: str                 # image path (a twin's is in the firmware cache, built on first use)
    extra_args: tuple[str, ...]
    ram_bytes: int
    clock_hz: float
    cycles_per_instruction: float
    profile: DeviceProfile
    twin: Machine | None = None
    heap_bytes: int = 0           # MICROPY_HEAP_SIZE of a twin's firmware

    def qemu_command(self, qemu: str = QEMU_BINARY, icount_shift: int = 0, qmp_socket: str | None = None
                     ) -> list[str]:
        """The QEMU command line: serial on stdio via a chardev without signals (binary-safe; ``-nographic``
        would swallow Ctrl-A), no display or monitor, deterministic guest time; QMP on a unix socket.
        A twin boots its ELF with ``-kernel`` and semihosting (``machine.reset()`` exits QEMU); the
        micro:bit's .hex goes through the generic loader. Both run under ``-icount shift=N,sleep=off``: without
        ``sleep=off`` an idle guest's virtual clock follows host time and counts drift from run to run."""
        cmd = [qemu, "-M", self.machine, "-display", "none",
               "-chardev", "stdio,id=s0,signal=off", "-serial", "chardev:s0", "-monitor", "none"]
        if self.twin is not None:
            cmd += ["-kernel", self.firmware]
            if self.twin.semihosting:
                cmd += ["-semihosting-config", "enable=on,target=native"]
        else:
            cmd += ["-device", f"loader,file={self.firmware}"]
        cmd += ["-icount", f"shift={icount_shift},sleep=off"]
        if qmp_socket:
            cmd += ["-qmp", f"unix:{qmp_socket},server=on,wait=off"]
        return [*cmd, *self.extra_args]

    def ensure_firmware(self, progress: bool = True) -> str:
        """The firmware path, building a twin's firmware into the cache first if needed."""
        if self.twin is not None and not Path(self.firmware).is_file():
            from .twin.firmware import firmware_for

            built = str(firmware_for(self.twin, self.heap_bytes, progress=progress))
            if built != self.firmware:      # pragma: no cover - the key changed under us (compiler upgrade)
                object.__setattr__(self, "firmware", built)
        return self.firmware


def _check_twin(profile: DeviceProfile, m: Machine) -> None:
    """A twin runs the profile's ISA and FPU or a subset of them; ValueError naming the file otherwise."""
    if m.arch not in ARCH_SUBSETS.get(profile.core.arch, set()):
        raise ValueError(f"{profile.path}: emulator.twin {m.name!r} runs {m.arch} code, which core.arch "
                         f"{profile.core.arch!r} does not run")
    if m.fpu not in FPU_SUBSETS.get(profile.core.fpu, set()):
        raise ValueError(f"{profile.path}: emulator.twin {m.name!r} uses a {m.fpu} FPU, which core.fpu "
                         f"{profile.core.fpu!r} does not have")


def board_from_profile(profile: DeviceProfile) -> Board:
    """The board table entry of a profile; ValueError naming the file if it has no ``[emulator]``."""
    if profile.emulator is None:
        why = f" ({profile.no_twin_reason})" if profile.no_twin_reason else ""
        raise ValueError(f"{profile.path}: [emulator] is missing: {profile.name} has no emulated board{why}")
    em = profile.emulator
    common = dict(name=profile.name, ram_bytes=profile.memory.ram_bytes, clock_hz=profile.core.clock_hz,
                  cycles_per_instruction=profile.core.cycles_per_instruction, profile=profile)
    if em.twin:
        from .twin.firmware import firmware_dir

        m = get_machine(em.twin)
        _check_twin(profile, m)
        firmware = str(firmware_dir(m, em.micropython_heap_bytes) / "firmware.elf")
        return Board(machine=m.qemu_machine, firmware=firmware, extra_args=(), twin=m,
                     heap_bytes=em.micropython_heap_bytes, **common)
    return Board(machine=em.qemu_machine, firmware=em.firmware_path, extra_args=tuple(em.qemu_args), **common)


def load_board(name_or_path: str | Path) -> Board:
    """A board by profile name (``bbc-microbit-v1``) or profile path."""
    return board_from_profile(load_profile(name_or_path))


def twin_boards() -> list[Board]:
    """Every bundled profile that has a virtual twin."""
    from device_profiles import list_profiles

    return [board_from_profile(p) for p in list_profiles() if p.emulator is not None and p.emulator.twin]


def missing_requirements(board: Board, qemu: str = QEMU_BINARY) -> list[str]:
    """What is missing on this machine to emulate ``board`` (empty when it can run). A twin whose
    firmware is not built yet needs the cross toolchain and the MicroPython source (fetched on first use)."""
    missing = []
    if shutil.which(qemu) is None:
        missing.append(f"{qemu} is not on PATH")
    if board.twin is not None:
        if not Path(board.firmware).is_file():
            from .twin.source import toolchain_missing

            missing += [f"{what} (needed to build the {board.twin.name} firmware)" for what in toolchain_missing()]
    elif not Path(board.firmware).is_file():
        missing.append(f"firmware {board.firmware} is missing")
    return missing
