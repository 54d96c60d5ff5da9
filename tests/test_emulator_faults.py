"""Faults injected into the emulated board and its serial line: each ends clearly, nothing hangs or leaks."""
from __future__ import annotations

import dataclasses

import pytest
from emulator_support import BOARD, FaultyQemu, emulator, no_qemu_left, qemu_children  # noqa: F401

from ports.boards import load_board
from ports.errors import GuestError, GuestMemoryError, ProtocolError, QemuExited, QemuMissing, ReplTimeout
from ports.qemu import live_pids
from ports.session import BoardSession, device_source

pytestmark = emulator


def test_guest_hang_times_out_and_ends_qemu(tmp_path):
    s = BoardSession(load_board(BOARD), log_path=tmp_path / "serial.log")
    with s:
        pid = s.qemu.pid
        with pytest.raises(ReplTimeout) as e:
            s.repl.exec("while True:\n    pass", timeout=2.0)
        assert not s.qemu.running() and pid not in live_pids()
    assert str(tmp_path / "serial.log") in str(e.value)


def test_guest_memory_error_names_the_failed_allocation(tmp_path):
    with BoardSession(load_board(BOARD), log_path=tmp_path / "serial.log") as s:
        with pytest.raises(GuestMemoryError) as e:
            s.exec("x = bytearray(20000)")
        assert e.value.failed_alloc_bytes == 20000
        assert "allocating 20000 bytes" in str(e.value) and "serial log" in str(e.value)
        with pytest.raises(GuestError) as e2:                 # any other traceback: GuestError, typed
            s.exec("1/0")
        assert e2.value.exc_type == "ZeroDivisionError" and not isinstance(e2.value, GuestMemoryError)
        assert s.exec("print(6*7)").strip() == "42"             # the session is still usable


def test_qemu_missing_is_a_clear_error(tmp_path):
    with pytest.raises(QemuMissing) as e:
        BoardSession(load_board(BOARD), qemu_binary="qemu-system-does-not-exist").start()
    assert "make test" in str(e.value)
    board = dataclasses.replace(load_board(BOARD), firmware=str(tmp_path / "no-firmware.hex"))
    with pytest.raises(QemuMissing, match="no-firmware.hex"):
        BoardSession(board).start()


def test_qemu_exiting_early_is_reported_with_its_message(tmp_path):
    board = dataclasses.replace(load_board(BOARD), machine="no-such-machine")
    with pytest.raises(QemuExited) as e:
        with BoardSession(board, log_path=tmp_path / "serial.log", boot_timeout_s=10):
            pass
    assert "no-such-machine" in str(e.value) or "unsupported machine" in str(e.value).lower()
    assert not qemu_children()


def test_dropped_and_garbled_bytes_are_resynced_and_retried(tmp_path):
    with BoardSession(load_board(BOARD), log_path=tmp_path / "serial.log", qemu_cls=FaultyQemu) as s:
        q = s.qemu
        q.drop_p, q.garbage_p, q.armed = 0.05, 0.05, True
        s.install("mlpk.py")                                  # 1.9 kB in verified pieces
        q.armed = False
        size = int(s.exec("import os\nprint(os.size('mlpk.py'))").strip())
        assert size == len(device_source("mlpk.py"))
        out = s.exec("print(sum(open('mlpk.py','rb').read()) & 0xffff)").strip()
        assert int(out) == sum(device_source("mlpk.py")) & 0xFFFF  # the file arrived intact
        assert q.dropped > 0 and q.garbled > 0
        assert s.repl.resyncs > 0


def test_a_line_that_keeps_losing_bytes_fails_clearly(tmp_path):
    with BoardSession(load_board(BOARD), log_path=tmp_path / "serial.log", qemu_cls=FaultyQemu) as s:
        q = s.qemu
        q.drop_p, q.armed = 1.0, True                          # every chunk loses a byte
        s.repl.retries = 2
        with pytest.raises(ProtocolError) as e:
            s.install("mlpk.py")
        assert "attempts" in str(e.value) and "serial log" in str(e.value)


def test_a_loader_that_arrived_corrupted_is_sent_again(tmp_path, monkeypatch):
    """A dropped byte once turned the loader's ``open`` into ``pen``: valid code, so nothing failed until the
    first file was installed (NameError). The session sends the loader again and installs the file."""
    import ports.session

    sent = []

    def corrupted_once(name):
        src = device_source(name)
        if name == "edgeload.py" and not sent:
            sent.append(name)
            assert b"open(" in src
            return src.replace(b"open(", b"pen(", 1)
        return src

    monkeypatch.setattr(ports.session, "device_source", corrupted_once)
    with BoardSession(load_board(BOARD), log_path=tmp_path / "serial.log") as s:
        s.install("mlpk.py")
        assert s.loader_resends == 1 and sent == ["edgeload.py"]
        assert s.repl.exec("import os\nprint('mlpk.py' in os.listdir())").strip() == "True"
