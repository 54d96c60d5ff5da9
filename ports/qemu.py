"""QEMU launcher: one emulated board over pipes (pexpect.popen_spawn), always ended by its own PID.

The serial console goes through stdin/stdout pipes; everything the guest prints is appended to a log
file so an error can point at it. ``Qemu`` is a context manager and registers an atexit hook, so no
process outlives the Python process that started it.
"""
from __future__ import annotations

import atexit
import os
import shutil
import signal
import tempfile
import time
import weakref
from pathlib import Path

from .boards import INSTALL_HINT, QEMU_BINARY, Board
from .errors import QemuExited, QemuMissing, ReplTimeout

BOOT_TIMEOUT_S = 20.0
STOP_GRACE_S = 3.0

_live: weakref.WeakSet[Qemu] = weakref.WeakSet()


def _stop_all() -> None:
    for q in list(_live):
        q.stop()


atexit.register(_stop_all)


def live_pids() -> list[int]:
    """PIDs of QEMU processes this Python process started and has not ended yet."""
    return [q.pid for q in list(_live) if q.pid is not None and q.running()]


class Qemu:
    """One QEMU process emulating ``board``; ``read``/``write`` move raw serial bytes."""

    def __init__(self, board: Board, log_path: str | Path | None = None, qemu: str = QEMU_BINARY,
                 icount_shift: int = 0) -> None:
        self.board = board
        self.qemu = qemu
        self.icount_shift = icount_shift
        if log_path is None:
            fd, log_path = tempfile.mkstemp(prefix=f"edgesim-{board.name}-", suffix=".serial.log")
            os.close(fd)
        self.log_path = str(log_path)
        self.proc = None
        self.pid: int | None = None
        self._log = None
        self._tail = b""          # the last 4000 bytes the guest printed, for error messages

    # --- life cycle -------------------------------------------------------------------------------
    def start(self) -> Qemu:
        from pexpect.popen_spawn import PopenSpawn

        exe = shutil.which(self.qemu)
        if exe is None:
            raise QemuMissing(f"{self.qemu} not found on PATH: {INSTALL_HINT}")
        if not Path(self.board.firmware).is_file():
            raise QemuMissing(f"firmware {self.board.firmware} (from {self.board.profile.path}: "
                              f"emulator.firmware_path) not found: {INSTALL_HINT}")
        Path(self.log_path).parent.mkdir(parents=True, exist_ok=True)
        self._log = open(self.log_path, "ab")
        cmd = self.board.qemu_command(exe, self.icount_shift)
        self._log.write(("\n=== " + " ".join(cmd) + "\n").encode())
        self.proc = PopenSpawn(cmd, timeout=BOOT_TIMEOUT_S)
        self.pid = self.proc.pid
        _live.add(self)
        return self

    def running(self) -> bool:
        return self.proc is not None and self.proc.proc.poll() is None

    def stop(self) -> int | None:
        """End QEMU by its own PID: SIGTERM, then SIGKILL after a grace period. Returns its exit code."""
        if self.proc is None:
            return None
        p = self.proc.proc
        if p.poll() is None:
            try:
                os.kill(p.pid, signal.SIGTERM)
                p.wait(STOP_GRACE_S)
            except ProcessLookupError:
                pass
            except Exception:  # noqa: BLE001 - TimeoutExpired: it did not stop, kill it
                try:
                    os.kill(p.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                p.wait(STOP_GRACE_S)
        for f in (p.stdin, p.stdout):
            try:
                if f:
                    f.close()
            except OSError:
                pass
        _live.discard(self)
        if self._log:
            self._log.close()
            self._log = None
        return p.returncode

    def __enter__(self) -> Qemu:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    # --- serial bytes -----------------------------------------------------------------------------
    def write(self, data: bytes) -> None:
        if not self.running():
            raise QemuExited(f"QEMU (pid {self.pid}) is not running (exit code {self.exitcode()})",
                             serial_tail=self.tail(), log_path=self.log_path)
        try:
            self.proc.send(data)
        except (BrokenPipeError, OSError) as e:
            raise QemuExited(f"QEMU (pid {self.pid}) closed its serial input: {e}", serial_tail=self.tail(),
                             log_path=self.log_path) from None

    def read(self, timeout_s: float) -> bytes:
        """Whatever bytes arrive within ``timeout_s`` (possibly none). QemuExited at end of file."""
        from pexpect import EOF

        deadline = time.monotonic() + timeout_s
        while True:
            try:
                data = self.proc.read_nonblocking(4096, timeout=1.0)  # returns at once when nothing is queued
            except EOF:
                raise QemuExited(f"QEMU (pid {self.pid}) exited (code {self.exitcode()})",
                                 serial_tail=self.tail(), log_path=self.log_path) from None
            if data:
                if self._log:
                    self._log.write(data)
                    self._log.flush()
                self._tail = (self._tail + data)[-4000:]
                return data
            if time.monotonic() >= deadline:
                return b""
            time.sleep(0.001)

    def exitcode(self) -> int | None:
        return None if self.proc is None else self.proc.proc.poll()

    def tail(self) -> str:
        return self._tail.decode("utf-8", "replace")

    def timeout(self, what: str, seconds: float, pending: bytes = b"") -> ReplTimeout:
        """End QEMU and build the ReplTimeout for ``what``."""
        self.stop()
        tail = (self.tail() if not pending else pending.decode("utf-8", "replace"))
        return ReplTimeout(f"{what}: no answer from the guest within {seconds:g} s; QEMU (pid {self.pid}) "
                           "was ended", serial_tail=tail, log_path=self.log_path)
