"""Drive the twin network port (``ports/micropython/net.py``) through any ``run(command) -> output``
callable: the raw REPL of a booted twin, or CPython running the same files in the tests.

Commands are calls with literal arguments (no code travels in strings); each answers one ``@`` line.
Floats travel as little-endian float32 hex with a checksum the board verifies (``@E``: sent again).
A repeated step is answered from the board's memory; a step that started and failed answers
``protocol.STEP_FAILED`` and is never run again.
"""
from __future__ import annotations

import struct
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from .micropython import protocol as P
from .program import StepProgram, setup_call
from .repl import checksum

DEVICE_FILES = ("protocol.py", "netk.py", "netc.py", "net.py")   # sent in this order into one namespace
RETRIES = 3


class StepFailed(RuntimeError):
    """The board started this step before and it did not finish: it is not run again."""


@dataclass
class TwinStep:
    loss: float
    base_alloc_bytes: int
    op_ticks: list[int]
    op_heap_bytes: list[int]
    op_alloc_bytes: list[int]     # allocated during each op (its buffers + garbage), on a collected heap


def answer(out: str) -> str:
    """The last ``@`` line of a command's output, without the ``@``."""
    lines = [ln.strip() for ln in out.splitlines() if ln.strip().startswith("@")]
    if not lines:
        raise ValueError(f"no answer line in {out[-80:]!r}")
    return lines[-1][1:]


def float_pieces(values: np.ndarray, per_call: int = P.NET_FLOATS_PER_CALL):
    """(offset, hex, checksum) pieces of a float32 vector: little-endian bytes as hex, exactly."""
    flat = np.ascontiguousarray(np.asarray(values, dtype="<f4").ravel())
    for o in range(0, flat.size, per_call):
        h = flat[o:o + per_call].tobytes().hex()
        yield o, h, checksum(h.encode())


class TwinPort:
    """The host side of net.py: set up a model, send weights and samples, run steps."""

    def __init__(self, run: Callable[[str], str]) -> None:
        self.run = run

    def call(self, cmd: str, ok: Callable[[str], bool]) -> str:
        if len(cmd) > P.NET_MAX_CODE_BYTES:
            raise ValueError(f"command of {len(cmd)} bytes exceeds protocol.NET_MAX_CODE_BYTES "
                             f"({P.NET_MAX_CODE_BYTES}): {cmd[:40]}...")
        last = ""
        for _ in range(RETRIES + 1):
            a = answer(self.run(cmd))
            if ok(a):
                return a
            last = a
        raise ValueError(f"the board kept answering {last[:60]!r} to {cmd[:40]!r}")

    def setup(self, prog: StepProgram, lr: float, momentum: float, clock: tuple) -> int:
        """Geometry, program, SGD and timer; returns the live heap after the model is allocated."""
        self.call(setup_call(prog, lr, momentum, clock), lambda s: s.startswith("ok "))
        a = self.call("mk()", lambda s: s.startswith("ok "))
        return int(a.split()[1])

    def send(self, layer: int, which: int, values: np.ndarray) -> None:
        """Floats into layer ``layer``'s weights (which 0) or biases (1), or the sample (layer -1)."""
        for o, h, ck in float_pieces(values):
            want = f"{o + len(h) // 8} {ck}"
            self.call(f"pw({layer},{which},{o},'{h}',{ck})", lambda s, w=want: s == w)

    def send_params(self, layers: list, params: list[np.ndarray]) -> None:
        it = iter(params)
        for i, ly in enumerate(layers):
            if ly.params:
                self.send(i, 0, next(it))
                self.send(i, 1, next(it))

    def step(self, q: int, x: np.ndarray, y) -> TwinStep:
        """Step ``q`` on the sample(s) ``x`` with label(s) ``y`` (an int, or one per sample of a batch)."""
        self.send(-1, 0, x)
        ys = [int(v) for v in np.ravel(y)]

        def ok(a: str) -> bool:
            body, sep, ck = a.rpartition(" #")
            return a == P.STEP_FAILED or (bool(sep) and ck.isdigit() and checksum(body.encode()) == int(ck))

        a = self.call(f"s({q},{ys})", ok)
        if a == P.STEP_FAILED:
            raise StepFailed(f"step {q} failed half-way on the board (its updates may be partly applied): "
                             "it is not run again")
        return parse_twin_step(a.rpartition(" #")[0], q)


def parse_twin_step(body: str, q: int) -> TwinStep:
    """``<q> <loss bits> <heap before> <ticks,...> <heap,...> <allocated,...>``."""
    try:
        sq, bits, base, ticks, heap, alloc = body.split(" ")
        if int(sq) != q:
            raise ValueError(f"answer for step {sq}, expected {q}")
        loss = struct.unpack("<f", struct.pack("<I", int(bits, 16)))[0]
        return TwinStep(loss, int(base), [int(v) for v in ticks.split(",")], [int(v) for v in heap.split(",")],
                        [int(v) for v in alloc.split(",")])
    except ValueError as e:
        raise ValueError(f"step {q}: unreadable answer {body[:80]!r}: {e}") from None
