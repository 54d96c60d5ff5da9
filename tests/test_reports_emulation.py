"""The emulation report from a real ``edgesim emulate`` run on the QEMU micro:bit (ports/emulate.py):
its structure, whichever way the board and the simulator come out."""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from reports import render_emulation

try:
    from test_reports_render import check_report
except ImportError:  # tests/ imported as a package
    from tests.test_reports_render import check_report

FIRMWARE = Path("/usr/share/firmware-microbit-micropython/firmware.hex")
needs_qemu = pytest.mark.skipif(shutil.which("qemu-system-arm") is None or not FIRMWARE.is_file(),
                                reason="qemu-system-arm or the micro:bit firmware missing: `make test` installs them")


@pytest.mark.emulator
@pytest.mark.slow
@needs_qemu
def test_report_of_a_real_emulation(tmp_path):
    from ports.boards import load_board
    from ports.emulate import emulate

    emu = emulate(load_board("bbc-microbit-v1"), "mlp-microbit", 3, log_path=tmp_path / "serial.log")
    page = render_emulation(emu, tmp_path / "report")
    p = check_report(page, ["Verdict", "Simulator vs emulator"])
    html = page.read_text()
    assert emu["board"] in html and str(emu["firmware"]) in html
    comparison = p.tables[0]
    assert comparison[1][0] == "heap peak" and comparison[1][2] != "n/a"      # the prediction is always there
    if emu["fits"]:
        assert comparison[1][1] != "n/a" and ("AGREES" in html or "DISAGREES" in html)
    else:
        assert "The board ran out of memory" in html and emu["guest_memory_error"] in html
