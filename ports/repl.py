"""The raw-REPL transport: one small class on one primitive, ``read_until(ending, timeout)``.

Raw REPL protocol (MicroPython tools/pyboard.py): Ctrl-A enters it and the guest answers
``raw REPL; CTRL-B to exit\\r\\n>``; code followed by Ctrl-D is acknowledged with ``OK``, then the guest
prints the output, ``\\x04``, any traceback, ``\\x04>``. The micro:bit's UART loses bytes on bulk writes,
so code goes out in 64-byte chunks with a short pause, and anything that must arrive intact (files,
weights, samples) travels in verified chunks (:meth:`RawRepl.put_hex` with a checksum the guest checks);
a garbled or missing answer makes us resync (Ctrl-C, Ctrl-A) and retry the chunk, then fail clearly.
"""
from __future__ import annotations

import re
import time
from collections.abc import Callable

from .errors import GuestError, GuestMemoryError, ProtocolError, QemuExited
from .qemu import Qemu

RAW_BANNER = b"raw REPL; CTRL-B to exit\r\n>"
FRIENDLY_PROMPT = b">>> "
CHUNK_BYTES = 32
CHUNK_PAUSE_S = 0.01
OK_TIMEOUT_S = 1.5
RETRIES = 5

_MEM_RE = re.compile(r"allocating (\d+) bytes")


def checksum(data: bytes) -> int:
    """The 16-bit rolling checksum the device-side loader computes (ports/micropython/edgeload.py)."""
    s = 0
    for c in data:
        s = (s * 31 + c) & 0xFFFF
    return s


class _NoAnswer(Exception):
    pass


class RawRepl:
    """Talks the raw REPL to a guest behind a :class:`Qemu` (or anything with read/write/timeout/tail)."""

    def __init__(self, qemu: Qemu, chunk_bytes: int = CHUNK_BYTES, chunk_pause_s: float = CHUNK_PAUSE_S,
                 retries: int = RETRIES) -> None:
        self.qemu = qemu
        self.chunk_bytes = chunk_bytes
        self.chunk_pause_s = chunk_pause_s
        self.retries = retries
        self.ok_timeout_per_byte_s = 0.0   # a fast link: the write returns before the guest read it all
        self.ok_timeout_s = OK_TIMEOUT_S   # how long an acknowledgement may take before the line counts as lost
        self._buf = b""
        self.resyncs = 0

    # --- the primitive -----------------------------------------------------------------------------
    def read_until(self, ending: bytes | tuple[bytes, ...], timeout: float, what: str = "",
                   fatal: bool = True) -> bytes:
        """Bytes up to and including ``ending`` (or the first of several endings). If it does not come
        in time: ReplTimeout with QEMU ended (``fatal``), else _NoAnswer with the bytes kept."""
        endings = (ending,) if isinstance(ending, bytes) else ending
        deadline = time.monotonic() + timeout
        while True:
            hits = [(i, e) for e in endings if (i := self._buf.find(e)) >= 0]
            if hits:
                i, e = min(hits)
                out, self._buf = self._buf[:i + len(e)], self._buf[i + len(e):]
                return out
            left = deadline - time.monotonic()
            if left <= 0:
                if not fatal:
                    raise _NoAnswer(f"no answer within {timeout:g} s")
                pending, self._buf = self._buf, b""
                raise self.qemu.timeout(what or f"waiting for {endings[0]!r}", timeout, pending)
            self._buf += self.qemu.read(min(left, 0.05))

    def _drain(self, quiet_s: float = 0.05) -> bytes:
        got = self._buf
        self._buf = b""
        while True:
            data = self.qemu.read(quiet_s)
            if not data:
                return got
            got += data

    def write_chunked(self, data: bytes) -> None:
        """Send in chunks with pauses: the guest UART drops bytes on bulk writes."""
        for i in range(0, len(data), self.chunk_bytes):
            self.qemu.write(data[i:i + self.chunk_bytes])
            time.sleep(self.chunk_pause_s)

    # --- raw REPL ----------------------------------------------------------------------------------
    def wait_boot(self, timeout: float = 20.0) -> bytes:
        """Wait for the friendly prompt the firmware prints after boot."""
        return self.read_until(FRIENDLY_PROMPT, timeout, what="waiting for the MicroPython boot prompt")

    def enter_raw_repl(self, timeout: float = 5.0) -> None:
        """Interrupt whatever runs and (re)enter the raw REPL, retrying if the banner is lost."""
        last = None
        for _ in range(self.retries + 1):
            self.qemu.write(b"\r\x03")
            time.sleep(0.05)
            self.qemu.write(b"\x03")
            time.sleep(0.05)
            self._drain()
            self.qemu.write(b"\x01")
            try:
                self._read_banner(timeout)
                return
            except ProtocolError as e:
                last = e
        raise last

    def _read_banner(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while self._buf.find(RAW_BANNER) < 0:
            if time.monotonic() > deadline:
                raise ProtocolError("no raw-REPL banner after Ctrl-A", serial_tail=self._buf.decode("utf-8", "replace"),
                                    log_path=self.qemu.log_path)
            self._buf += self.qemu.read(0.05)
        i = self._buf.find(RAW_BANNER)
        self._buf = self._buf[i + len(RAW_BANNER):]

    def resync(self) -> None:
        """Drop what is pending and get back to a fresh raw-REPL prompt. Waits for the line to go quiet
        first, so a command still finishing is not interrupted half-way (it may have been acknowledged)."""
        self.resyncs += 1
        self._drain(0.3)
        self.enter_raw_repl()

    def exec_once(self, src: str | bytes, timeout: float) -> tuple[bytes, bytes]:
        """Send ``src`` and Ctrl-D; return (stdout, traceback). ProtocolError if the ``OK`` is garbled."""
        data = src.encode() if isinstance(src, str) else src
        self._drain(0.0)
        self.write_chunked(data)
        self.qemu.write(b"\x04")
        deadline = time.monotonic() + self.ok_timeout_s + len(data) * self.ok_timeout_per_byte_s
        while b"OK" not in self._buf and time.monotonic() < deadline:
            self._buf += self.qemu.read(0.05)
        i = self._buf.find(b"OK")
        if i < 0:                                   # the guest did not take the code: nothing ran
            got, self._buf = self._buf, b""
            raise ProtocolError(f"expected OK after the code, got {got[:40]!r}",
                                serial_tail=got.decode("utf-8", "replace"), log_path=self.qemu.log_path)
        self._buf = self._buf[i + 2:]               # noise before the OK is dropped: the code is running
        out = self.read_until(b"\x04", timeout, what=f"running {data[:40]!r}")[:-1]
        err = self.read_until(b"\x04", timeout, what=f"finishing {data[:40]!r}")[:-1]
        junk = self.read_until(b">", self.ok_timeout_s, what="waiting for the raw-REPL prompt")[:-1]
        if junk or (err and b"Traceback" not in err and b"MemoryError" not in err):   # (no room for a traceback)
            raise ProtocolError(f"garbled answer to {data[:40]!r}: {(err + junk)[:60]!r}",
                                serial_tail=(out + err + junk).decode("utf-8", "replace"),
                                log_path=self.qemu.log_path)
        return out, err

    def exec(self, src: str | bytes, timeout: float = 30.0, retry_syntax: bool = True) -> str:
        """Run code; return its output. Guest exceptions become GuestError / GuestMemoryError.

        A garbled acknowledgement, or a SyntaxError (what a dropped byte usually causes; nothing ran),
        is resynced and retried; callers make their commands safe to repeat.
        """
        last: Exception | None = None
        for _ in range(self.retries + 1):
            try:
                out, err = self.exec_once(src, timeout)
            except ProtocolError as e:
                last = e
                self.resync()
                continue
            if err:
                text = err.decode("utf-8", "replace")
                if retry_syntax and "SyntaxError" in text:
                    last = self._guest_error(text, out)
                    self.resync()
                    continue
                raise self._guest_error(text, out)
            return out.decode("utf-8", "replace")
        raise ProtocolError(f"gave up after {self.retries + 1} attempts: {last.message if last else ''}",
                            serial_tail=self.qemu.tail(), log_path=self.qemu.log_path)

    def _guest_error(self, text: str, out: bytes) -> GuestError:
        lines = [ln for ln in text.strip().splitlines() if ln.strip()]
        last = lines[-1] if lines else text
        exc_type = last.split(":", 1)[0].strip()
        tail = (out + b"\n" + text.encode()).decode("utf-8", "replace")
        if exc_type == "MemoryError":
            m = _MEM_RE.search(last)
            n = int(m.group(1)) if m else None
            what = f"allocating {n} bytes failed" if n is not None else "an allocation failed"
            return GuestMemoryError(f"guest MemoryError: {what} ({last})", failed_alloc_bytes=n,
                                    exc_type=exc_type, traceback=text, serial_tail=tail,
                                    log_path=self.qemu.log_path)
        return GuestError(f"guest raised {last}", exc_type=exc_type, traceback=text, serial_tail=tail,
                          log_path=self.qemu.log_path)

    def eval(self, expr: str, timeout: float = 30.0):
        """Evaluate an expression on the guest and parse its repr on the host."""
        import ast

        out = self.exec(f"print(repr({expr}))", timeout)
        try:
            return ast.literal_eval(out.strip())
        except (ValueError, SyntaxError):
            raise ProtocolError(f"cannot parse the guest's answer to {expr!r}: {out[:80]!r}",
                                serial_tail=self.qemu.tail(), log_path=self.qemu.log_path) from None

    def call_checked(self, cmd: str, check: Callable[[str], bool], timeout: float = 30.0) -> str:
        """Run an idempotent command whose answer ``check`` validates; resync and retry otherwise."""
        last = ""
        for attempt in range(self.retries + 1):
            try:
                out = self.exec(cmd, timeout)
            except GuestMemoryError:
                raise
            except GuestError as e:          # a dropped byte can turn fw(...) into f(...): NameError, nothing ran
                if attempt == self.retries:
                    raise
                last = e.message
                self.resync()
                continue
            if check(out):
                return out
            last = out
            self.resync()
        raise ProtocolError(f"the guest's answer to {cmd[:40]!r} stayed garbled after {self.retries + 1} "
                            f"attempts (last {last[:60]!r})", serial_tail=self.qemu.tail(),
                            log_path=self.qemu.log_path)

    def put_hex(self, fn: str, data: bytes, args: str = "", piece_bytes: int = 20, timeout: float = 30.0) -> None:
        """Send ``data`` in verified pieces: ``fn(args, offset, 'hex', checksum)`` on the guest checks the
        checksum, stores the piece (idempotent: offsets, not appends) and echoes ``offset+len checksum``."""
        prefix = f"{args}," if args else ""
        for ofs in range(0, len(data), piece_bytes):
            piece = data[ofs:ofs + piece_bytes]
            ck = checksum(piece)
            want = f"{ofs + len(piece)} {ck}"
            self.call_checked(f"{fn}({prefix}{ofs},'{piece.hex()}',{ck})", lambda out, w=want: out.strip() == w,
                              timeout)

    # --- a running guest program that reads lines with input() -----------------------------------
    def start_program(self, src: str) -> None:
        """Start code that talks over the serial line (``input()``/``print``); end it with :meth:`finish`."""
        data = src.encode()
        for _ in range(self.retries + 1):
            self._drain(0.0)
            self.write_chunked(data)
            self.qemu.write(b"\x04")
            deadline = time.monotonic() + OK_TIMEOUT_S
            while len(self._buf) < 2 and time.monotonic() < deadline:
                self._buf += self.qemu.read(0.05)
            if self._buf[:2] == b"OK":
                self._buf = self._buf[2:]
                return
            self.resync()
        raise ProtocolError(f"the guest did not start {src[:40]!r}", serial_tail=self.qemu.tail(),
                            log_path=self.qemu.log_path)

    def exchange(self, line: str, check: Callable[[str], bool], timeout: float = 30.0,
                 reply_timeout: float | None = None) -> str:
        """Send one line to the running program and return its answer: the next line starting with ``@``
        (``input()`` echoes what we send; the echo is skipped). A missing, garbled or rejected (``@E``)
        answer is retried: the program's commands are safe to repeat. A traceback ends the program and
        becomes a GuestError."""
        last = ""
        for attempt in range(self.retries + 1):
            if attempt:
                self.write_chunked(b"\r")          # end any half-received line: the guest answers @E
                self._skip_answers(0.3)
            self.write_chunked(line.encode() + b"\r")
            try:
                ans = self._read_answer(timeout if reply_timeout is None else reply_timeout)
            except _NoAnswer as e:
                last = e.args[0]
                continue
            if ans != "E" and check(ans):
                return ans
            last = ans
        raise ProtocolError(f"no valid answer to {line[:40]!r} after {self.retries + 1} attempts "
                            f"(last {last[:60]!r})", serial_tail=self.qemu.tail(), log_path=self.qemu.log_path)

    def read_answer(self, timeout: float = 30.0) -> str:
        """The running program's next ``@`` line (without the ``@``); ProtocolError if none comes."""
        try:
            return self._read_answer(timeout)
        except _NoAnswer as e:
            raise ProtocolError(f"the guest program did not answer: {e.args[0]}", serial_tail=self.qemu.tail(),
                                log_path=self.qemu.log_path) from None

    def _read_answer(self, timeout: float) -> str:
        deadline = time.monotonic() + timeout
        while True:
            raw = self.read_until((b"\n", b"\x04"), max(deadline - time.monotonic(), 0.0), fatal=False)
            if raw.endswith(b"\x04"):                   # the program ended (an exception) before answering
                self._buf = b"\x04" + self._buf
                out, err = self.finish(timeout=5.0, raise_errors=False)
                if err:
                    raise self._guest_error(err.decode("utf-8", "replace"), out)
                raise ProtocolError("the guest program ended before answering", serial_tail=self.qemu.tail(),
                                    log_path=self.qemu.log_path)
            text = raw.decode("utf-8", "replace").strip()
            if text.startswith("@"):
                return text[1:]

    def _skip_answers(self, quiet_s: float) -> None:
        self._buf += self._drain(quiet_s)
        lines = self._buf.split(b"\n")
        keep = [ln for ln in lines if b"\x04" in ln or ln.startswith(b"Traceback")]
        self._buf = b"\n".join(keep)

    def finish(self, timeout: float = 30.0, raise_errors: bool = True) -> tuple[bytes, bytes]:
        """Wait for the running program to end; return (rest of stdout, traceback)."""
        out = self.read_until(b"\x04", timeout, what="waiting for the guest program to end")[:-1]
        err = self.read_until(b"\x04", timeout, what="waiting for the guest's traceback")[:-1]
        self.read_until(b">", OK_TIMEOUT_S, what="waiting for the raw-REPL prompt")
        if err and raise_errors:
            raise self._guest_error(err.decode("utf-8", "replace"), out)
        return out, err

    def close(self) -> None:
        try:
            self.qemu.stop()
        except QemuExited:
            pass
