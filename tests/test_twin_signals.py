"""No QEMU outlives the Python process that started it: ended by SIGTERM, SIGINT, SIGHUP, or even SIGKILL
(the kernel's parent-death signal), for the micro:bit and for a twin."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from twin_support import SKIP_REASON, built_board

from ports.boards import QEMU_BINARY, load_board

ROOT = Path(__file__).resolve().parent.parent
CHILD = """
import sys, time
from ports.boards import load_board
from ports.qemu import Qemu
q = Qemu(load_board(sys.argv[1]), log_path=sys.argv[2]).start()
print(q.pid, flush=True)
time.sleep(120)
"""

pytestmark = [pytest.mark.emulator,
              pytest.mark.skipif(subprocess.run(["sh", "-c", f"command -v {QEMU_BINARY}"],
                                                capture_output=True).returncode != 0,
                                 reason=f"{QEMU_BINARY} missing: sh .ci/install-system-deps (`make test`) installs it")]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie is dead for our purpose (its parent, the child Python, has gone)
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split()[2] != "Z"
    except OSError:
        return False


def _start_child(profile: str, tmp_path: Path) -> tuple[subprocess.Popen, int]:
    p = subprocess.Popen([sys.executable, "-c", CHILD, profile, str(tmp_path / "serial.log")], cwd=ROOT,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    line = p.stdout.readline().strip()
    if not line.isdigit():
        p.kill()
        pytest.fail(f"the child did not start QEMU: {line!r} {p.stderr.read()[-2000:]}")
    pid = int(line)
    assert _alive(pid)
    return p, pid


def _gone_within(pid: int, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if not _alive(pid):
            return True
        time.sleep(0.05)
    return False


@pytest.fixture(params=["bbc-microbit-v1", "stm32f405-pyboard"])
def profile(request):
    if request.param == "stm32f405-pyboard":
        if SKIP_REASON:
            pytest.skip(SKIP_REASON)
        built_board(request.param)                 # the child must not spend the test building it
    elif not Path(load_board(request.param).firmware).is_file():
        pytest.skip("micro:bit firmware missing: sh .ci/install-system-deps installs firmware-microbit-micropython")
    return request.param


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGKILL],
                         ids=["SIGTERM", "SIGINT", "SIGHUP", "SIGKILL"])
def test_qemu_ends_with_the_python_process(profile, sig, tmp_path):
    child, qemu_pid = _start_child(profile, tmp_path)
    try:
        time.sleep(0.3)                             # let it settle into its sleep
        child.send_signal(sig)
        child.wait(10)
        assert _gone_within(qemu_pid, 5), f"QEMU pid {qemu_pid} still running after the child got {sig.name}"
        if sig != signal.SIGKILL:                   # our handler ran and the signal still did its job
            assert child.returncode != 0
    finally:
        if child.poll() is None:
            child.kill()
        if _alive(qemu_pid):
            os.kill(qemu_pid, signal.SIGKILL)
