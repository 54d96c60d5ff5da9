"""MicroPython firmware per (twin, heap size), built on first use into the cache and reused after.

``firmware_for(machine, heap_bytes)`` returns the ELF path: it builds ``make -C ports/qemu BOARD=...
FROZEN_MANIFEST= MICROPY_HEAP_SIZE=...`` in the pinned source tree (our board directories copied into
its ``ports/qemu/boards/`` first), with a progress line on stderr at least once a second, under a file
lock so two processes never build the same firmware at once. The cache key holds everything that
changes the image: MicroPython version, board files, compiler version and heap size.
"""
from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

from ..errors import FirmwareBuildError
from .machines import Machine
from .source import MICROPYTHON_VERSION, cache_dir, require_source, require_toolchain

BOARDS_DIR = Path(__file__).resolve().parent / "boards"
PROGRESS_INTERVAL_S = 1.0

# MicroPython py/gc.c (1.25) splits the heap into an allocation table (2 bits per 16-byte block), a
# finaliser table (1 bit per block) and a one-byte gap; only the pool is what gc.mem_free() +
# gc.mem_alloc() report.
GC_BYTES_PER_BLOCK = 16
_GC_BLOCKS_PER_ATB = 4
_GC_BLOCKS_PER_FTB = 8
_GC_ALLOC_TABLE_GAP_BYTE = 1


def gc_pool_bytes(heap_bytes: int) -> int:
    """What ``gc.mem_free() + gc.mem_alloc()`` reports on a firmware built with ``MICROPY_HEAP_SIZE``."""
    bits = 8
    atb = (heap_bytes - _GC_ALLOC_TABLE_GAP_BYTE) * bits // (
        bits + bits * _GC_BLOCKS_PER_ATB // _GC_BLOCKS_PER_FTB + bits * _GC_BLOCKS_PER_ATB * GC_BYTES_PER_BLOCK)
    return atb * _GC_BLOCKS_PER_ATB * GC_BYTES_PER_BLOCK


def _board_files() -> list[Path]:
    return sorted(p for p in BOARDS_DIR.rglob("*") if p.is_file() and "__pycache__" not in p.parts)


def _compiler_version() -> str:
    try:
        r = subprocess.run(["arm-none-eabi-gcc", "--version"], capture_output=True, text=True, timeout=30)
        return r.stdout.splitlines()[0] if r.stdout else ""
    except (OSError, subprocess.SubprocessError):
        return ""


def firmware_key(machine: Machine, heap_bytes: int) -> str:
    """``<BOARD>-heap<bytes>-<digest>``: the digest covers the source version, our board files, the
    compiler and the target flags, so any change there builds a new image."""
    h = hashlib.sha256()
    for part in (MICROPYTHON_VERSION, machine.micropython_board, str(heap_bytes), _compiler_version(),
                 " ".join(machine.gcc_flags())):
        h.update(part.encode() + b"\0")
    for f in _board_files():          # this board's directory and the shared code only
        rel = f.relative_to(BOARDS_DIR)
        if rel.parts[0] in (machine.micropython_board, "edgesim_common"):
            h.update(str(rel).encode() + b"\0" + f.read_bytes() + b"\0")
    return f"{machine.micropython_board}-heap{heap_bytes}-{h.hexdigest()[:12]}"


def firmware_dir(machine: Machine, heap_bytes: int) -> Path:
    return cache_dir() / "firmware" / firmware_key(machine, heap_bytes)


def cached_firmware(machine: Machine, heap_bytes: int) -> Path | None:
    """The ELF when it is already built, else None (never builds)."""
    elf = firmware_dir(machine, heap_bytes) / "firmware.elf"
    return elf if elf.is_file() else None


def _install_boards(src: Path) -> None:
    """Copy our board directories into the source tree's ports/qemu/boards/ (file by file, atomically,
    only what differs, so concurrent builds of other boards never see a half-written file)."""
    dest_root = src / "ports" / "qemu" / "boards"
    for f in _board_files():
        dest = dest_root / f.relative_to(BOARDS_DIR)
        data = f.read_bytes()
        if dest.is_file() and dest.read_bytes() == data:
            continue
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp = dest.with_name(f".{dest.name}.{os.getpid()}.tmp")
        tmp.write_bytes(data)
        os.replace(tmp, dest)


class _Progress:
    """A progress line on stderr at least once a second: what is built, files compiled, seconds."""

    def __init__(self, what: str, stream=None) -> None:
        self.what = what
        self.stream = stream or sys.stderr
        self.files = 0
        self.t0 = time.monotonic()
        self._stop = threading.Event()
        self._tty = hasattr(self.stream, "isatty") and self.stream.isatty()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def line(self, final: str = "") -> None:
        text = (f"edgesim: building {self.what}: {self.files} files compiled, "
                f"{time.monotonic() - self.t0:.0f} s{final}")
        if self._tty:
            self.stream.write("\r" + text + ("\n" if final else ""))
        else:
            self.stream.write(text + "\n")
        self.stream.flush()

    def _run(self) -> None:
        while not self._stop.wait(PROGRESS_INTERVAL_S):
            self.line()

    def __enter__(self) -> _Progress:
        self.line()
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()


def _build(machine: Machine, heap_bytes: int, out: Path, jobs: int, progress: bool) -> Path:
    require_toolchain()
    src = require_source()
    _install_boards(src)
    build = out / "build"
    shutil.rmtree(build, ignore_errors=True)
    log_path = out / "build.log"
    cmd = ["make", "-C", str(src / "ports" / "qemu"), f"-j{jobs}", f"BOARD={machine.micropython_board}",
           "FROZEN_MANIFEST=", f"MICROPY_HEAP_SIZE={heap_bytes}", f"BUILD={build}"]
    what = f"MicroPython {MICROPYTHON_VERSION} for {machine.name} (heap {heap_bytes:,} B)"
    t0 = time.monotonic()
    with open(log_path, "w", encoding="utf-8") as log:
        log.write(" ".join(cmd) + "\n")
        log.flush()
        ticker = _Progress(what) if progress else None
        if ticker:
            ticker.__enter__()
        try:
            proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                    env=dict(os.environ, LC_ALL="C"))
            for line in proc.stdout:
                log.write(line)
                if ticker and line.startswith("CC "):
                    ticker.files += 1
            rc = proc.wait()
        finally:
            if ticker:
                ticker.__exit__(None, None, None)
    elf = build / "firmware.elf"
    if rc != 0 or not elf.is_file():
        tail = log_path.read_text(encoding="utf-8", errors="replace").strip().splitlines()[-12:]
        raise FirmwareBuildError(f"building {what} failed (make exit {rc})", serial_tail="\n".join(tail),
                                 log_path=str(log_path))
    seconds = time.monotonic() - t0
    if ticker:
        ticker.line(final=f": done in {seconds:.1f} s")
    for name in ("firmware.elf", "firmware.map"):
        if (build / name).is_file():
            tmp = out / f".{name}.tmp"
            shutil.copyfile(build / name, tmp)
            os.replace(tmp, out / name)
    info = {"machine": machine.name, "board": machine.micropython_board, "heap_bytes": heap_bytes,
            "gc_pool_bytes": gc_pool_bytes(heap_bytes), "micropython": MICROPYTHON_VERSION,
            "compiler": _compiler_version(), "gcc_flags": machine.gcc_flags(), "build_seconds": round(seconds, 2),
            "command": " ".join(cmd)}
    (out / "firmware.json").write_text(json.dumps(info, indent=2) + "\n", encoding="utf-8")
    shutil.rmtree(build, ignore_errors=True)
    _drop_stale(out)
    return out / "firmware.elf"


def _drop_stale(current: Path) -> None:
    """Remove older builds of the same board and heap (another digest: other sources, boards or compiler),
    unless another process holds their lock."""
    prefix = current.name.rsplit("-", 1)[0] + "-"
    for d in current.parent.glob(prefix + "*"):
        if d == current or not d.is_dir():
            continue
        try:
            with open(d / ".lock", "a") as lock:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
                shutil.rmtree(d, ignore_errors=True)
        except OSError:          # BlockingIOError: in use; or already gone
            continue


def firmware_for(machine: Machine, heap_bytes: int, progress: bool = True, jobs: int | None = None) -> Path:
    """The firmware ELF of ``machine`` with a ``heap_bytes`` GC heap, built on first use.

    Raises TwinUnavailable (toolchain/source missing, says how to install) or FirmwareBuildError.
    """
    if not isinstance(heap_bytes, int) or heap_bytes < 4096:
        raise ValueError(f"heap_bytes must be an integer >= 4096 (got {heap_bytes!r})")
    done = cached_firmware(machine, heap_bytes)
    if done:
        return done
    out = firmware_dir(machine, heap_bytes)
    out.mkdir(parents=True, exist_ok=True)
    with open(out / ".lock", "w") as lock:
        t0 = time.monotonic()
        while True:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if progress:
                    print(f"edgesim: waiting for another process building {out.name}: "
                          f"{time.monotonic() - t0:.0f} s", file=sys.stderr, flush=True)
                time.sleep(PROGRESS_INTERVAL_S)
        done = cached_firmware(machine, heap_bytes)      # the other process may have built it meanwhile
        if done:
            return done
        return _build(machine, heap_bytes, out, jobs or os.cpu_count() or 1, progress)


def build_info(machine: Machine, heap_bytes: int) -> dict:
    """What was recorded when the cached firmware was built (empty when it is not built)."""
    p = firmware_dir(machine, heap_bytes) / "firmware.json"
    return json.loads(p.read_text(encoding="utf-8")) if p.is_file() else {}
