"""Process helpers shared by the tests: which processes are still alive in a session, which QEMU children
this pytest process still has (and ending them), so each leak check reads the same facts."""
from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path


def session_pids(sid: int) -> list[int]:
    """Processes still alive (not zombies) in session ``sid``: a command we started and all it spawned."""
    out = []
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                fields = (d / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[3]) == sid and fields[0] != "Z":
                out.append(int(d.name))
    return out


def qemu_children() -> list[int]:
    """PIDs of qemu-system processes that are children of this pytest process."""
    out = subprocess.run(["pgrep", "-P", str(os.getpid()), "qemu-system"], capture_output=True, text=True)
    return [int(p) for p in out.stdout.split()]


def kill_and_list_left() -> list[int]:
    """End (SIGKILL) every QEMU child still running and return their PIDs: a leak check asserts it is empty."""
    left = qemu_children()
    for pid in left:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    return left
