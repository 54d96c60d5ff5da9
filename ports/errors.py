"""Typed errors of the emulated board. Each carries the serial tail and the session's log path."""
from __future__ import annotations


class PortError(RuntimeError):
    """Something went wrong talking to the emulated board."""

    def __init__(self, message: str, serial_tail: str = "", log_path: str = "") -> None:
        self.message = message
        self.serial_tail = serial_tail
        self.log_path = log_path
        super().__init__(self._format())

    def _format(self) -> str:
        parts = [self.message]
        if self.serial_tail:
            tail = self.serial_tail[-600:]
            parts.append("serial tail:\n" + "\n".join("  | " + line for line in tail.splitlines()))
        if self.log_path:
            parts.append(f"serial log: {self.log_path}")
        return "\n".join(parts)


class QemuMissing(PortError, FileNotFoundError):
    """qemu-system-arm or the firmware image is not installed."""


class QemuExited(PortError):
    """QEMU ended while we were talking to it (bad arguments, crash, killed)."""


class ReplTimeout(PortError):
    """The guest did not answer in time (hung, or the serial link lost the prompt). QEMU has been ended."""


class ProtocolError(PortError):
    """The serial stream did not follow the raw-REPL protocol, even after resyncing and retrying."""


class GuestError(PortError):
    """The guest raised an exception; ``exc_type`` and ``traceback`` are the guest's."""

    def __init__(self, message: str, exc_type: str = "", traceback: str = "", serial_tail: str = "",
                 log_path: str = "") -> None:
        self.exc_type = exc_type
        self.traceback = traceback
        super().__init__(message, serial_tail=serial_tail, log_path=log_path)


class GuestMemoryError(GuestError):
    """The guest raised MemoryError; ``failed_alloc_bytes`` is the allocation that failed, when it says."""

    def __init__(self, message: str, failed_alloc_bytes: int | None = None, **kw) -> None:
        self.failed_alloc_bytes = failed_alloc_bytes
        super().__init__(message, **kw)


class TwinUnavailable(QemuMissing):
    """A twin cannot be built here: the cross toolchain or the MicroPython source is missing. The message
    names the command that installs it."""


class FirmwareBuildError(PortError):
    """Building a twin's firmware failed; ``log_path`` holds the compiler's output."""


class QmpError(PortError):
    """QEMU's monitor (QMP) did not answer or refused a command."""
