"""Typed errors of a native port. All are ``ports.errors.PortError``s: they carry the console tail and a log."""
from __future__ import annotations

from ..errors import PortError, QemuExited, QemuMissing

INSTALL_HINT = ("the README set-up installs it (make test, or .ci/install-system-deps: apt-get install "
                "gcc-arm-none-eabi libnewlib-arm-none-eabi qemu-system-arm)")


class ToolchainMissing(QemuMissing):
    """arm-none-eabi-gcc (or qemu-system-arm) is not installed."""


class CompileError(PortError):
    """The generated C did not compile; the message is one line: the compiler's message and the file."""


class DoesNotFit(PortError):
    """The program does not fit the board: ``region`` (RAM, FLASH or stack) and the linker's words."""

    def __init__(self, message: str, region: str, **kw) -> None:
        self.region = region
        super().__init__(message, **kw)


class GuestFault(PortError):
    """The guest took a hard fault; ``pc`` is the faulting instruction's address."""

    def __init__(self, message: str, pc: int | None, **kw) -> None:
        self.pc = pc
        super().__init__(message, **kw)


class GuestHang(PortError):
    """The guest did not finish in time; QEMU has been ended."""


class GuestExit(QemuExited):
    """The guest program exited with a non-zero code of its own (I/O or a samples file mismatch)."""


__all__ = ["CompileError", "DoesNotFit", "GuestExit", "GuestFault", "GuestHang", "INSTALL_HINT", "ToolchainMissing"]
