"""Long waits say what is happening (issue #12): host-side pre-training shows a progress bar on a
terminal's stderr, and stays quiet in logs (not a terminal) and in worker processes."""
from __future__ import annotations

import fcntl
import os
import pty
import struct
import subprocess
import sys
import termios
import time

SCRIPT = "import workloads; workloads.make_job('mlp:64-40-10', seed=7)"


def _run_on_a_terminal(code: str, timeout: float = 120.0) -> bytes:
    """``python -c code`` with stdin/stdout/stderr on a pseudo-terminal of 120 columns; its output."""
    pid, fd = pty.fork()
    if pid == 0:                                      # the child: wait for the window size, then run
        time.sleep(0.2)
        os.execv(sys.executable, [sys.executable, "-c", code])
    fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 120, 0, 0))
    out, deadline = b"", time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            chunk = os.read(fd, 4096)
        except OSError:                               # the child closed the terminal
            break
        if not chunk:
            break
        out += chunk
    os.waitpid(pid, 0)
    os.close(fd)
    return out


def test_pretraining_shows_progress_on_a_terminal():
    out = _run_on_a_terminal(SCRIPT)
    assert b"pre-training mlp:64-40-10 on the host" in out and b"step/s" in out, out[-500:]


def test_pretraining_is_quiet_when_stderr_is_not_a_terminal():
    p = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    assert "pre-training" not in p.stderr


def test_pretraining_is_quiet_in_a_worker_process():
    code = ("import multiprocessing as mp\n"
            "def job():\n"
            "    import workloads; workloads.make_job('mlp:64-40-10', seed=7)\n"
            "if __name__ == '__main__':\n"
            "    p = mp.get_context('fork').Process(target=job); p.start(); p.join(); print('exit', p.exitcode)\n")
    out = _run_on_a_terminal(code)
    assert b"exit 0" in out and b"pre-training" not in out, out[-500:]
