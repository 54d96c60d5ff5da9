"""Open reports in headless Chromium over the DevTools protocol (stdlib websocket, no extra packages):
no console errors, no failed loads, and a screenshot that is not blank."""
from __future__ import annotations

import base64
import io
import json
import os
import re
import shutil
import socket
import struct
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest

try:
    from test_reports_demo import demo_report  # noqa: F401 - a fixture: the real demo, rendered
except ImportError:  # tests/ imported as a package
    from tests.test_reports_demo import demo_report  # noqa: F401

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
needs_chromium = pytest.mark.skipif(CHROMIUM is None, reason="chromium missing: `make test` installs it "
                                                              "(Debian package chromium, via .ci/install-system-deps)")
pytestmark = [pytest.mark.browser, needs_chromium]


class _WebSocket:
    """The client side of RFC 6455, enough for the DevTools protocol: masked text frames out,
    (possibly fragmented) text frames in."""

    def __init__(self, url: str, timeout: float = 30.0):
        m = re.match(r"ws://([^/:]+):(\d+)(/.*)", url)
        assert m, url
        self.sock = socket.create_connection((m[1], int(m[2])), timeout=timeout)
        key = base64.b64encode(os.urandom(16)).decode()
        self.sock.sendall((f"GET {m[3]} HTTP/1.1\r\nHost: {m[1]}:{m[2]}\r\nUpgrade: websocket\r\n"
                           f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n").encode())
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = self.sock.recv(4096)
            if not chunk:
                raise ConnectionError("DevTools closed the connection during the handshake")
            head += chunk
        head, self.buf = head.split(b"\r\n\r\n", 1)
        assert b" 101 " in head.split(b"\r\n")[0], head

    def _read(self, n: int) -> bytes:
        while len(self.buf) < n:
            chunk = self.sock.recv(1 << 16)
            if not chunk:
                raise ConnectionError("DevTools closed the connection")
            self.buf += chunk
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def send(self, text: str) -> None:
        data = text.encode()
        n = len(data)
        head = bytes([0x81])
        if n < 126:
            head += bytes([0x80 | n])
        elif n < 1 << 16:
            head += bytes([0x80 | 126]) + struct.pack(">H", n)
        else:
            head += bytes([0x80 | 127]) + struct.pack(">Q", n)
        mask = os.urandom(4)
        masked = bytes(b ^ mask[i % 4] for i, b in enumerate(data))
        self.sock.sendall(head + mask + masked)

    def recv(self) -> str:
        parts = []
        while True:
            b0, b1 = self._read(2)
            n = b1 & 0x7F
            if n == 126:
                n = struct.unpack(">H", self._read(2))[0]
            elif n == 127:
                n = struct.unpack(">Q", self._read(8))[0]
            mask = self._read(4) if b1 & 0x80 else None
            payload = self._read(n)
            if mask:
                payload = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
            op = b0 & 0x0F
            if op == 0x8:
                raise ConnectionError("DevTools sent close")
            if op in (0x9, 0xA):        # ping/pong: not used by Chromium's DevTools
                continue
            parts.append(payload)
            if b0 & 0x80:
                return b"".join(parts).decode()

    def close(self) -> None:
        self.sock.close()


class Chromium:
    """Headless Chromium with a DevTools websocket; ``open(path)`` returns (errors, screenshot PNG)."""

    def __init__(self, tmp: Path):
        self.proc = subprocess.Popen(
            [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             "--disable-dev-shm-usage", f"--user-data-dir={tmp / 'profile'}", "--remote-debugging-port=0",
             "--window-size=1200,1600", "about:blank"],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        url, deadline, lines = None, time.monotonic() + 60, []
        while url is None and time.monotonic() < deadline:
            line = self.proc.stderr.readline()
            if not line and self.proc.poll() is not None:
                break
            lines.append(line)
            m = re.search(r"DevTools listening on (ws://\S+)", line)
            url = m[1] if m else None
        if url is None:
            self.stop()
            raise RuntimeError("chromium did not print its DevTools address:\n" + "".join(lines[-20:]))
        self.ws = _WebSocket(url)
        self.next_id = 0
        self.events: list[dict] = []

    def call(self, method: str, session: str | None = None, **params) -> dict:
        self.next_id += 1
        msg = {"id": self.next_id, "method": method, "params": params}
        if session:
            msg["sessionId"] = session
        self.ws.send(json.dumps(msg))
        while True:
            reply = json.loads(self.ws.recv())
            if reply.get("id") == self.next_id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply.get("result", {})
            self.events.append(reply)

    def wait_event(self, method: str, timeout: float = 30.0) -> dict:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for i, e in enumerate(self.events):
                if e.get("method") == method:
                    return self.events.pop(i)
            self.events.append(json.loads(self.ws.recv()))
        raise TimeoutError(method)

    def open(self, path: Path) -> tuple[list[str], bytes]:
        target = self.call("Target.createTarget", url="about:blank")["targetId"]
        session = self.call("Target.attachToTarget", targetId=target, flatten=True)["sessionId"]
        for domain in ("Runtime", "Log", "Page", "Network"):
            self.call(f"{domain}.enable", session)
        self.events.clear()
        self.call("Page.navigate", session, url=path.resolve().as_uri())
        self.wait_event("Page.loadEventFired")
        time.sleep(0.3)                          # late console messages, if any
        shot = base64.b64decode(self.call("Page.captureScreenshot", session, format="png",
                                          captureBeyondViewport=False)["data"])
        self.call("Runtime.evaluate", session, expression="1")   # flush pending events
        errors = []
        for e in self.events:
            m, p = e.get("method"), e.get("params", {})
            if m == "Runtime.consoleAPICalled" and p.get("type") in ("error", "assert"):
                errors.append("console." + p["type"] + ": " + " ".join(str(a.get("value", a.get("description")))
                                                                       for a in p.get("args", [])))
            elif m == "Runtime.exceptionThrown":
                errors.append("exception: " + json.dumps(p.get("exceptionDetails", {}))[:300])
            elif m == "Log.entryAdded" and p.get("entry", {}).get("level") == "error":
                errors.append("log: " + p["entry"].get("text", "") + " " + p["entry"].get("url", ""))
            elif m == "Network.loadingFailed":
                errors.append("load failed: " + p.get("errorText", ""))
        self.call("Target.closeTarget", targetId=target)
        return errors, shot

    def stop(self) -> None:
        if getattr(self, "ws", None):
            self.ws.close()
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


@pytest.fixture(scope="module")
def chromium(tmp_path_factory):
    c = Chromium(tmp_path_factory.mktemp("chromium"))
    yield c
    c.stop()


def pixel_std(png: bytes) -> float:
    from PIL import Image

    return float(np.asarray(Image.open(io.BytesIO(png)).convert("L"), dtype=float).std())


def test_harness_catches_console_errors_and_blank_pages(chromium, tmp_path):
    """The checks can fail: a page that logs an error and a blank page are both caught."""
    bad = tmp_path / "bad.html"
    bad.write_text("<!DOCTYPE html><html><body><p>x</p><script>console.error('boom')</script>"
                   "<img src='missing.png'></body></html>")
    errors, _ = chromium.open(bad)
    assert any("boom" in e for e in errors), errors
    assert any("missing.png" in e or "ERR_FILE_NOT_FOUND" in e for e in errors), errors
    blank = tmp_path / "blank.html"
    blank.write_text("<!DOCTYPE html><html><body></body></html>")
    errors, shot = chromium.open(blank)
    assert errors == []
    assert pixel_std(shot) < 1.0


def _open_report(chromium, page: Path, tmp_path: Path) -> None:
    errors, shot = chromium.open(page)
    (tmp_path / "screenshot.png").write_bytes(shot)
    assert errors == [], errors
    assert shot[:8] == b"\x89PNG\r\n\x1a\n"
    assert pixel_std(shot) > 10.0, "the screenshot of the report is blank"


@pytest.fixture(scope="module")
def sweep_report(tmp_path_factory) -> Path:
    """A real, small sweep (2 devices x 2 schedules) rendered as a report."""
    from reports import render_sweep
    from simulator.sweep import parse_grid, run_sweep, write_matrix

    tmp = tmp_path_factory.mktemp("sweep-report")
    grid = parse_grid({"name": "browser", "base": "demo",
                       "set": {"duration_s": 1800.0, "workload.model": "mlp:64-16-10", "compare.variants": [],
                               "pipeline.sensor_rate_hz": 2.0},
                       "axes": {"device": ["bbc-microbit-v1", "rpi-pico"]},
                       "schedules": {"light": {"schedule.steps": 1}, "default": {}}})
    outcome = run_sweep(grid, tmp / "out", workers=2, progress=False)
    assert outcome.errors == 0, [r.get("error") for r in outcome.rows]
    write_matrix(tmp / "out", outcome.rows)
    return render_sweep(outcome.rows, tmp / "out", title=grid.name)


@pytest.mark.slow
def test_demo_report_opens_in_chromium(chromium, demo_report, tmp_path):
    _open_report(chromium, demo_report, tmp_path)


@pytest.mark.slow
def test_sweep_report_opens_in_chromium(chromium, sweep_report, tmp_path):
    _open_report(chromium, sweep_report, tmp_path)
