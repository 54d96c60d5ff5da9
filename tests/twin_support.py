"""Shared helpers of the twin tests: one skip marker, firmware built once per test session, a booted twin."""
from __future__ import annotations

import importlib.util
import shutil
import time
from contextlib import contextmanager
from pathlib import Path

import pytest
from process_support import kill_and_list_left  # noqa: F401 - the twin tests import their leak check from here

from ports.boards import QEMU_BINARY, Board, load_board
from ports.qemu import Qemu
from ports.repl import RawRepl
from ports.twin.firmware import cached_firmware, firmware_for
from ports.twin.source import INSTALL_COMMAND, source_ready, toolchain_missing

# One profile per twin machine: every machine boots, at that profile's heap.
TWIN_PROFILES = {
    "mps2-an385": "mps2-an385",
    "mps2-an385-armv6m": "rpi-pico",
    "mps2-an386": "bbc-microbit-v2",
    "mps2-an500": "stm32f746-disco",
    "netduinoplus2": "stm32f405-pyboard",
}
DEVICE_DIR = Path(__file__).resolve().parent.parent / "ports" / "micropython"


def _why_not() -> str:
    missing = []
    if shutil.which(QEMU_BINARY) is None:
        missing.append(QEMU_BINARY)
    if importlib.util.find_spec("pexpect") is None or importlib.util.find_spec("qemu.qmp") is None:
        missing.append("the pexpect/qemu.qmp packages (pip install -e '.[emulator]')")
    missing += toolchain_missing()
    if not source_ready() and shutil.which("apt-get") is None:
        missing.append("the MicroPython 1.25 source (no apt-get here to fetch it)")
    if not missing:
        return ""
    return f"{', '.join(missing)} missing: {INSTALL_COMMAND} installs them (`make test` runs it)"


SKIP_REASON = _why_not()
needs_twins = pytest.mark.skipif(bool(SKIP_REASON), reason=SKIP_REASON or "-")
twin = [pytest.mark.emulator, pytest.mark.slow, needs_twins]      # use as: pytestmark = twin

BUILD_SECONDS: dict[str, float] = {}     # firmware key -> seconds this session spent building it (cold)


def built_board(profile: str) -> Board:
    """The profile's twin board with its firmware built (once per session; later calls reuse the cache).
    A firmware that cannot be had (source fetch fails) skips with the reason and how to install."""
    from ports.errors import TwinUnavailable

    board = load_board(profile)
    if cached_firmware(board.twin, board.heap_bytes) is None:
        t0 = time.monotonic()
        try:
            firmware_for(board.twin, board.heap_bytes)
        except TwinUnavailable as e:
            pytest.skip(str(e))
        BUILD_SECONDS[f"{board.twin.name} heap {board.heap_bytes} B"] = time.monotonic() - t0
    return board


class Twin:
    """A booted twin at its raw REPL, with ``ports/micropython/twinclock.py`` loaded and configured."""

    def __init__(self, board: Board, qemu: Qemu, repl: RawRepl) -> None:
        self.board, self.qemu, self.repl = board, qemu, repl

    def run(self, src: str, timeout: float = 60.0) -> str:
        return self.repl.exec(src, timeout).strip()

    def ints(self, src: str) -> list[int]:
        return [int(v) for v in self.run(src).split()]


@contextmanager
def booted(board: Board, log_dir: Path):
    with Qemu(board, log_path=log_dir / f"{board.name}.serial.log") as q:
        r = RawRepl(q)
        r.wait_boot(20)
        r.enter_raw_repl()
        r.exec((DEVICE_DIR / "twinclock.py").read_text())
        r.exec(board.twin.clock_configure_call(module=""))
        yield Twin(board, q, r)


SPIN = "@micropython.asm_thumb\ndef spin(r0):\n    label(loop)\n    sub(r0, r0, 1)\n    bne(loop)\n"   # 2 instr/loop
