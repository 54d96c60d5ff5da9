"""A line on stderr at least once a second while something slow runs (QEMU's boot and the port's load,
the host's reference steps, a calibration fit): what is happening and the seconds so far."""
from __future__ import annotations

import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

INTERVAL_S = 0.5


@contextmanager
def waiting(what: str, enabled: bool = True, stream=None) -> Iterator[None]:
    """``with waiting("booting the twin"):`` -- ``edgesim: booting the twin ... 3 s`` rewritten in place on a
    terminal (a new line otherwise, once a second), and ``done in 4.2 s`` when the block ends."""
    if not enabled:
        yield
        return
    out = stream or sys.stderr
    tty = hasattr(out, "isatty") and out.isatty()
    t0 = time.monotonic()
    stop = threading.Event()

    def show(end: str = "") -> None:
        text = f"edgesim: {what} ... {time.monotonic() - t0:.0f} s{end}"
        out.write(("\r" + text + ("\n" if end else "")) if tty else text + "\n")
        out.flush()

    def tick() -> None:
        n = 0
        while not stop.wait(INTERVAL_S):
            n += 1
            if tty or n % 2 == 0:
                show()

    show()
    th = threading.Thread(target=tick, daemon=True)
    th.start()
    ok = False
    try:
        yield
        ok = True
    finally:
        stop.set()
        th.join()
        show(f": done in {time.monotonic() - t0:.1f} s" if ok else ": stopped")
