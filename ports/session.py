"""A board session: boot QEMU, enter the raw REPL, install the device-side files, run commands.

Device-side code lives in ``ports/micropython/*.py`` and is sent as it is. On the micro:bit
(:class:`BoardSession`): ``edgeload.py`` through a plain raw-REPL exec (it defines the verified-transfer
helpers), every other file written into the board's flash file system in verified pieces and imported
from there (an import compiles from the file, so the source never sits whole in the 10 KB heap). On a
virtual twin (:class:`TwinSession`, MicroPython 1.25, no writable file system, a loss-free UART):
protocol.py, netk.py, netc.py and net.py, each executed whole through the raw REPL into one namespace.
"""
from __future__ import annotations

import re
import time
from pathlib import Path

from .boards import Board
from .errors import GuestError, ProtocolError
from .qemu import Qemu
from .repl import RawRepl, checksum

DEVICE_DIR = Path(__file__).resolve().parent / "micropython"


def device_source(name: str) -> bytes:
    """The bytes of a device-side file, e.g. ``mlp.py``."""
    return (DEVICE_DIR / name).read_bytes()


class BoardSession:
    """QEMU + raw REPL + the device-side loader; a context manager that always ends QEMU."""

    def __init__(self, board: Board, log_path: str | Path | None = None, boot_timeout_s: float = 20.0,
                 qemu_binary: str | None = None, icount_shift: int = 0, qemu_cls: type = Qemu) -> None:
        kw = {"qemu": qemu_binary} if qemu_binary else {}
        self.board = board
        self.qemu = qemu_cls(board, log_path=log_path, icount_shift=icount_shift, **kw)
        self.repl: RawRepl | None = None
        self.boot_timeout_s = boot_timeout_s
        self.banner = ""
        self.heap_total_bytes = 0
        self.boot_wall_s = 0.0
        self.reloads = 0               # twins: boots again when a command had to be retried while loading
        self.loader_resends = 0        # the micro:bit: the loader sent again after a file failed to install

    @property
    def log_path(self) -> str:
        return self.qemu.log_path

    def __enter__(self) -> BoardSession:
        try:
            self.start()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def start(self) -> None:
        t0 = time.monotonic()
        self.qemu.start()
        self.repl = RawRepl(self.qemu)
        self.banner = self.repl.wait_boot(self.boot_timeout_s).decode("utf-8", "replace")
        self.repl.enter_raw_repl()
        self.repl.exec(device_source("edgeload.py"))
        out = self.repl.exec("hz()")
        self.heap_total_bytes = check_answer(out, 1, "GC heap size", self)[0]
        self.boot_wall_s = time.monotonic() - t0

    def close(self) -> None:
        self.qemu.stop()

    @property
    def firmware_version(self) -> str:
        m = re.search(r"MicroPython \S+ on [^;]+;[^\r\n]*", self.banner)
        return m.group(0).strip() if m else self.banner.strip()

    def install(self, name: str) -> None:
        """Write ``ports/micropython/<name>`` into the board's file system, verified piece by piece. The
        loader itself can arrive corrupted and still compile (a dropped byte turned ``open`` into ``pen``
        once): when a file fails, the loader is sent again, once, and the file written again."""
        try:
            self._install(name)
        except (GuestError, ProtocolError) as first:
            if self.loader_resends:
                raise
            self.loader_resends += 1
            try:
                self.repl.resync()
                self.repl.exec(device_source("edgeload.py"))
                self._install(name)
            except (GuestError, ProtocolError):
                raise first from None        # failing again: the first failure is the one to report

    def _install(self, name: str) -> None:
        r = self.repl
        r.call_checked(f"fo('{name}')", lambda out: out.strip() == "ok")
        data = device_source(name)
        r.put_hex("fw", data)
        r.call_checked("fc()", lambda out: out.strip() == f"ok {len(data)}")

    def drop_loader(self) -> None:
        """Delete the loader's names once the files are written: its code no longer takes heap."""
        self.repl.exec("globals().get('fz', id)(0)\nimport gc\ngc.collect()")   # safe to repeat
        self.fresh_raw_repl()

    def fresh_raw_repl(self) -> None:
        """Leave and re-enter the raw REPL: its line buffer keeps the capacity of the longest code
        ever sent (the loader's ~1 KB), and only leaving frees it."""
        self.repl.qemu.write(b"\x02")
        self.repl.read_until(b">>> ", 10, what="leaving the raw REPL")
        self.repl.enter_raw_repl()

    def exec(self, src: str, timeout: float = 60.0) -> str:
        return self.repl.exec(src, timeout)

    def call_framed(self, cmd: str, timeout: float = 120.0) -> str:
        """Run a command whose answer ends in `` #<checksum>``; a garbled answer is read again by
        repeating the command (the device side answers a repeated command from its memory)."""
        def ok(out: str) -> bool:
            body, sep, ck = out.strip().rpartition(" #")
            return bool(sep) and ck.isdigit() and checksum(body.encode()) == int(ck)

        out = self.repl.call_checked(cmd, ok, timeout)
        return out.strip().rpartition(" #")[0]


def check_answer(out: str, n: int, what: str, session: BoardSession) -> list[int]:
    """Parse ``n`` integers from a guest answer or raise ProtocolError naming the command."""
    try:
        vals = [int(v) for v in out.split()]
    except ValueError:
        vals = []
    if len(vals) != n:
        raise ProtocolError(f"{what}: expected {n} integers from the guest, got {out[:80]!r}",
                            serial_tail=session.qemu.tail(), log_path=session.log_path)
    return vals


TWIN_CHUNK_BYTES = 256       # the twins' UARTs hold the sender back (QEMU's chardev flow control): no pauses
TWIN_EXEC_TIMEOUT_S = 120.0
TWIN_SLOWEST_LINK_BYTES_PER_S = 2000   # host -> guest through the emulated UART on a busy machine (24-34 KiB/s idle)
# a twin's UART loses no byte (flow control), so a late acknowledgement means a busy host, not a lost
# line: waiting longer costs nothing, while a retry re-runs the command and changes the heap's layout
TWIN_OK_TIMEOUT_S = 15.0


class TwinSession(BoardSession):
    """A virtual twin: boot its MicroPython 1.25 firmware (built on first use) and load the network port."""

    device_files = ("protocol.py", "netk.py", "netc.py", "net.py")

    def start(self) -> None:
        t0 = time.monotonic()
        for attempt in range(2):
            self._boot_and_load()
            if not self.repl.resyncs or attempt:
                break
            # a command was retried while the port loaded (the host was too busy to see its answer in
            # time): its second run left the heap laid out differently, and the step's instructions
            # depend on that layout (~1 %). Boot again so every measurement starts from the same heap.
            self.reloads += 1
            self.qemu.stop()
        self.boot_wall_s = time.monotonic() - t0

    def _boot_and_load(self) -> None:
        self.qemu.start()
        self.repl = RawRepl(self.qemu, chunk_bytes=TWIN_CHUNK_BYTES, chunk_pause_s=0.0)
        self.repl.ok_timeout_per_byte_s = 1.0 / TWIN_SLOWEST_LINK_BYTES_PER_S
        self.repl.ok_timeout_s = TWIN_OK_TIMEOUT_S
        self.banner = self.repl.wait_boot(self.boot_timeout_s).decode("utf-8", "replace")
        self.repl.enter_raw_repl()
        for name in self.device_files:
            self.repl.exec(device_source(name), TWIN_EXEC_TIMEOUT_S)
        self.fresh_raw_repl()            # the raw REPL's line buffer kept the longest file's size: free it
        out = self.repl.exec("import gc\ngc.collect()\nprint(gc.mem_free() + gc.mem_alloc())")
        self.heap_total_bytes = check_answer(out, 1, "GC heap size", self)[0]

    def heap_map(self) -> list[bool]:
        """Which 16-byte GC blocks are in use right now (after a collection): MicroPython's own heap
        dump (micropython.mem_info(1)), so the heap model can start from the heap the port leaves."""
        out = self.repl.exec("import micropython\ngc.collect()\nmicropython.mem_info(1)", TWIN_EXEC_TIMEOUT_S)
        return parse_heap_map(out, self.heap_total_bytes // HEAP_BLOCK_BYTES)

    def run(self, cmd: str, timeout: float = TWIN_EXEC_TIMEOUT_S) -> str:
        """One command of the port (a call with literal arguments); its output."""
        return self.repl.exec(cmd, timeout)

    @property
    def clock(self) -> tuple:
        """net.setup's timer argument: count register, counts down, period, restart writes."""
        m = self.board.twin
        return (m.timer_count_address, int(m.timer_counts_down), m.timer_period_ticks,
                tuple(tuple(w) for w in m.timer_start_writes))


def open_session(board: Board, **kw) -> BoardSession:
    """The session class a board needs: a twin's or the micro:bit's."""
    return (TwinSession if board.twin is not None else BoardSession)(board, **kw)


HEAP_BLOCK_BYTES = 16          # MicroPython py/gc.c BYTES_PER_BLOCK on 32-bit ports
_MAP_LINE = re.compile(r"^([0-9a-f]{8}): (\S+)$")


def parse_heap_map(text: str, blocks: int) -> list[bool]:
    """``micropython.mem_info(1)``'s block map -> in-use flag per block (``.`` is a free block; lines
    the dump abbreviates as "all free" stay free)."""
    used = [False] * blocks
    for line in text.splitlines():
        m = _MAP_LINE.match(line.strip("\r"))
        if not m:
            continue
        first = int(m.group(1), 16) // HEAP_BLOCK_BYTES
        for i, c in enumerate(m.group(2)):
            if first + i < blocks:
                used[first + i] = c != "."
    return used
