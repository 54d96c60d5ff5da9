"""Shared helpers of the emulator tests: the one marker, the leak check, a fault-injecting QEMU."""
from __future__ import annotations

import importlib.util
import random
import shutil
from pathlib import Path

import pytest
from process_support import kill_and_list_left, qemu_children  # noqa: F401 - re-exported for the fault tests

from ports.boards import QEMU_BINARY, load_board
from ports.qemu import Qemu

BOARD = "bbc-microbit-v1"
FIRMWARE = Path(load_board(BOARD).firmware)
HAVE_PEXPECT = importlib.util.find_spec("pexpect") is not None
HAVE_QEMU = shutil.which(QEMU_BINARY) is not None and FIRMWARE.is_file() and HAVE_PEXPECT
SKIP_REASON = (f"{QEMU_BINARY}, {FIRMWARE} or the pexpect package is missing: `make test` (the README set-up) "
               "installs them (apt-get install qemu-system-arm firmware-microbit-micropython; "
               "pip install -e '.[emulator]')")

needs_qemu = pytest.mark.skipif(not HAVE_QEMU, reason=SKIP_REASON)
emulator = [pytest.mark.emulator, needs_qemu]      # use as: pytestmark = emulator


@pytest.fixture(scope="session", autouse=True)
def no_qemu_left():
    """After the emulator tests: no QEMU we started is still running (any left is killed, then fails)."""
    yield
    left = kill_and_list_left()
    assert not left, f"QEMU processes left running after the tests: {left}"


class FaultyQemu(Qemu):
    """A QEMU whose serial line loses bytes on the way in and picks up garbage on the way out."""

    drop_p = 0.0       # probability a written chunk loses one byte
    garbage_p = 0.0    # probability a read gets garbage bytes inserted
    armed = False      # faults only once armed (after boot)

    def __init__(self, *a, **kw) -> None:
        super().__init__(*a, **kw)
        self.rng = random.Random(1234)
        self.dropped = 0
        self.garbled = 0

    def write(self, data: bytes) -> None:
        if self.armed and len(data) > 4 and self.rng.random() < self.drop_p:
            i = self.rng.randrange(len(data))
            data = data[:i] + data[i + 1:]
            self.dropped += 1
        super().write(data)

    def read(self, timeout_s: float) -> bytes:
        data = super().read(timeout_s)
        if self.armed and data and self.rng.random() < self.garbage_p:
            i = self.rng.randrange(len(data) + 1)
            data = data[:i] + b"#~?garbage?~#" + data[i:]
            self.garbled += 1
        return data


class _Mem32:
    """A stand-in for ``machine.mem32``: the timer advances 7 ticks per read; writes set it."""

    def __init__(self) -> None:
        self.t = 0

    def __getitem__(self, addr: int) -> int:
        self.t += 7
        return self.t

    def __setitem__(self, addr: int, value: int) -> None:
        self.t = value


def device_namespace(files: tuple[str, ...] = ("protocol.py", "netk.py", "netc.py", "net.py")) -> tuple[dict, list[str]]:
    """The twin's device files, as they are, run by CPython in one namespace (as the raw REPL runs them
    on the board): ``gc`` and ``machine`` are stand-ins, ``print`` is captured into the returned list."""
    import builtins
    import types

    from ports.session import DEVICE_DIR

    fakes = {"gc": types.SimpleNamespace(collect=lambda: None, mem_alloc=lambda: 0),
             "machine": types.SimpleNamespace(mem32=_Mem32())}
    real_import = builtins.__import__

    def imp(name, *a, **kw):
        return fakes[name] if name in fakes else real_import(name, *a, **kw)

    printed: list[str] = []
    b = dict(vars(builtins), __import__=imp, print=lambda *a: printed.append(" ".join(str(x) for x in a)))
    ns: dict = {"__builtins__": b, "__name__": "__main__"}
    for f in files:
        exec(compile((DEVICE_DIR / f).read_text(), f, "exec"), ns)
    return ns, printed
