"""QEMU launcher: one emulated board over pipes (pexpect.popen_spawn), always ended by its own PID.

The serial console goes through stdin/stdout pipes; everything the guest prints is appended to a log
file so an error can point at it. QEMU's own monitor protocol (QMP, through the ``qemu.qmp`` package) is
on a private unix socket: status, guest memory dumps (``pmemsave``) and a clean quit. ``Qemu`` is a
context manager; an atexit hook and SIGTERM/SIGINT/SIGHUP handlers end every QEMU this process started,
and on Linux each QEMU also gets SIGTERM from the kernel if the Python process dies without cleaning up.
"""
from __future__ import annotations

import atexit
import ctypes
import os
import shutil
import signal
import tempfile
import threading
import time
import weakref
from pathlib import Path

from .boards import INSTALL_HINT, QEMU_BINARY, Board
from .errors import QemuExited, QemuMissing, QmpError, ReplTimeout

BOOT_TIMEOUT_S = 20.0
STOP_GRACE_S = 3.0
QMP_CONNECT_TIMEOUT_S = 10.0
QMP_COMMAND_TIMEOUT_S = 30.0
_PR_SET_PDEATHSIG = 1

_live: weakref.WeakSet[Qemu] = weakref.WeakSet()
_handled_signals: dict[int, object] = {}      # signal -> the handler that was there before ours


def _stop_all() -> None:
    for q in list(_live):
        q.stop()


atexit.register(_stop_all)


def _on_signal(signum, frame) -> None:
    """End our QEMUs, then do what the signal did before (default: die of it; SIGINT: KeyboardInterrupt)."""
    _stop_all()
    previous = _handled_signals.get(signum, signal.SIG_DFL)
    if callable(previous):
        previous(signum, frame)
        return
    if previous == signal.SIG_IGN:
        return
    signal.signal(signum, signal.SIG_DFL)
    os.kill(os.getpid(), signum)


def _install_signal_handlers() -> None:
    """Once, from the main thread: SIGTERM, SIGINT and SIGHUP end our QEMUs before the usual action."""
    if threading.current_thread() is not threading.main_thread():
        return
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        if sig in _handled_signals:
            continue
        previous = signal.getsignal(sig)
        if previous is None:          # set from C: leave it alone
            continue
        _handled_signals[sig] = previous
        signal.signal(sig, _on_signal)


def _die_with_parent() -> None:  # pragma: no cover - runs in the child between fork and exec
    """Linux: the kernel sends QEMU SIGTERM when the thread that started it ends (even by SIGKILL)."""
    try:
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
    except (OSError, AttributeError):
        pass


def live_pids() -> list[int]:
    """PIDs of QEMU processes this Python process started and has not ended yet."""
    return [q.pid for q in list(_live) if q.pid is not None and q.running()]


class Qemu:
    """One QEMU process emulating ``board``; ``read``/``write`` move raw serial bytes."""

    def __init__(self, board: Board, log_path: str | Path | None = None, qemu: str = QEMU_BINARY,
                 icount_shift: int = 0, qmp: bool = True) -> None:
        self.board = board
        self.qemu = qemu
        self.icount_shift = icount_shift
        self.use_qmp = qmp
        self._qmp_dir: str | None = None
        self._qmp = None
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
        firmware = self.board.ensure_firmware()          # a twin's is built into the cache on first use
        if not Path(firmware).is_file():
            raise QemuMissing(f"firmware {firmware} (from {self.board.profile.path}: "
                              f"emulator.firmware_path) not found: {INSTALL_HINT}")
        Path(self.log_path).parent.mkdir(parents=True, exist_ok=True)
        self._log = open(self.log_path, "ab")
        sock = None
        if self.use_qmp:
            self._qmp_dir = tempfile.mkdtemp(prefix="edgesim-qmp-")   # short: unix socket paths max ~107 bytes
            sock = os.path.join(self._qmp_dir, "qmp.sock")
        cmd = self.board.qemu_command(exe, self.icount_shift, qmp_socket=sock)
        self._log.write(("\n=== " + " ".join(cmd) + "\n").encode())
        _install_signal_handlers()
        on_main = threading.current_thread() is threading.main_thread()
        self.proc = PopenSpawn(cmd, timeout=BOOT_TIMEOUT_S, preexec_fn=_die_with_parent if on_main else None)
        self.pid = self.proc.pid
        _live.add(self)
        return self

    # --- QMP: status, memory, quit ----------------------------------------------------------------
    def qmp(self):
        """The connected QMP client (``qemu.qmp``'s synchronous QEMUMonitorProtocol), connected on first use."""
        if self._qmp is not None:
            return self._qmp
        if not self.use_qmp or self._qmp_dir is None:
            raise QmpError("this QEMU was started without a QMP socket (Qemu(..., qmp=True))",
                           serial_tail=self.tail(), log_path=self.log_path)
        try:
            from qemu.qmp.legacy import QEMUMonitorProtocol
        except ImportError:
            raise QemuMissing("the qemu.qmp package is missing: pip install -e '.[emulator]' (make setup) "
                              "installs it") from None
        sock = os.path.join(self._qmp_dir, "qmp.sock")
        deadline = time.monotonic() + QMP_CONNECT_TIMEOUT_S
        last = None
        while time.monotonic() < deadline:
            if not self.running():
                raise QemuExited(f"QEMU (pid {self.pid}) exited (code {self.exitcode()}) before QMP answered",
                                 serial_tail=self.tail(), log_path=self.log_path)
            if os.path.exists(sock):
                client = QEMUMonitorProtocol(sock)
                try:
                    client.connect()
                    client.settimeout(QMP_COMMAND_TIMEOUT_S)
                    self._qmp = client
                    return client
                except Exception as e:  # noqa: BLE001 - ConnectError/OSError: QEMU not listening yet
                    last = e
                    client.close()
            time.sleep(0.02)
        raise QmpError(f"QMP socket {sock} of QEMU (pid {self.pid}) did not answer within "
                       f"{QMP_CONNECT_TIMEOUT_S:g} s ({last})", serial_tail=self.tail(), log_path=self.log_path)

    def qmp_command(self, name: str, **args):
        """Run one QMP command; QmpError with QEMU's message when it fails."""
        try:
            return self.qmp().cmd(name, **args)
        except (QmpError, QemuExited, QemuMissing):
            raise
        except Exception as e:  # noqa: BLE001 - ExecuteError, timeouts, a closed socket
            raise QmpError(f"QMP {name} failed on QEMU (pid {self.pid}): {type(e).__name__}: {e}",
                           serial_tail=self.tail(), log_path=self.log_path) from None

    def status(self) -> dict:
        """QMP ``query-status``: ``{"status": "running", "running": True, ...}``."""
        return self.qmp_command("query-status")

    def pmemsave(self, address: int, size_bytes: int, path: str | Path | None = None) -> bytes:
        """Guest physical memory ``[address, address + size_bytes)`` as bytes (QMP ``pmemsave``; kept in
        ``path`` when given, else in a temporary file that is removed)."""
        keep = path is not None
        if path is None:
            fd, path = tempfile.mkstemp(prefix="edgesim-pmem-", suffix=".bin")
            os.close(fd)
        try:
            self.qmp_command("pmemsave", val=int(address), size=int(size_bytes), filename=str(Path(path).resolve()))
            data = Path(path).read_bytes()
        finally:
            if not keep:
                os.unlink(path)
        if len(data) != size_bytes:
            raise QmpError(f"pmemsave wrote {len(data)} of {size_bytes} bytes at 0x{address:08x}",
                           serial_tail=self.tail(), log_path=self.log_path)
        return data

    def quit(self, timeout_s: float = STOP_GRACE_S) -> int | None:
        """Ask QEMU to quit over QMP and wait for it; falls back to :meth:`stop`. Returns the exit code."""
        if self.running():
            try:
                self.qmp_command("quit")
                self.proc.proc.wait(timeout_s)
            except Exception:  # noqa: BLE001 - no QMP, or it did not exit in time: end it by PID
                pass
        return self.stop()

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
        self._close_qmp()
        if self._log:
            self._log.close()
            self._log = None
        return p.returncode

    def _close_qmp(self) -> None:
        if self._qmp is not None:
            try:
                self._qmp.close()
            except Exception:  # noqa: BLE001 - the peer is gone; nothing to close cleanly
                pass
            self._qmp = None
        if self._qmp_dir is not None:
            shutil.rmtree(self._qmp_dir, ignore_errors=True)
            self._qmp_dir = None

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
