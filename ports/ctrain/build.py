"""Build: the generated sources + edgetrain + start-up, compiled for the target and linked into its memory."""
from __future__ import annotations

import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from .codegen import Program
from .errors import INSTALL_HINT, CompileError, DoesNotFit, ToolchainMissing
from .target import Target

NATIVE_DIR = Path(__file__).resolve().parents[1] / "native"
LIBRARY_SOURCES = ("edgetrain.c", "semihost.c", "startup.c", "main.c")
GCC = "arm-none-eabi-gcc"
OPT_FLAGS = ("-O2", "-ffunction-sections", "-fdata-sections", "-fno-common", "-Wall", "-Wextra")


@dataclass(frozen=True)
class Build:
    """An ELF and where its bytes go."""

    elf: Path
    map_path: Path
    compiler: str
    flags: tuple[str, ...]
    sections: dict[str, int]       # output section -> bytes

    @property
    def flash_bytes(self) -> int:
        """Flash the image takes: code, read-only data (the initial weights), exception tables, .data."""
        return sum(self.sections.get(s, 0) for s in (".text", ".ARM.exidx", ".data"))

    @property
    def static_ram_bytes(self) -> int:
        """.data + .bss (the arena not included)."""
        return self.sections.get(".data", 0) + self.sections.get(".bss", 0)

    @property
    def arena_bytes(self) -> int:
        return self.sections.get(".arena", 0)


def compiler_version() -> str:
    """``arm-none-eabi-gcc (…) 12.2.1 …`` first line; ToolchainMissing when absent."""
    exe = shutil.which(GCC)
    if exe is None:
        raise ToolchainMissing(f"{GCC} not found on PATH: {INSTALL_HINT}")
    out = subprocess.run([exe, "--version"], capture_output=True, text=True, check=False).stdout
    return out.splitlines()[0].strip() if out else GCC


def write_sources(prog: Program, target: Target, out: Path) -> Path:
    """Generated files, the library and the filled-in linker script into ``out/src``."""
    src = out / "src"
    src.mkdir(parents=True, exist_ok=True)
    for name, text in prog.files.items():
        (src / name).write_text(text)
    (src / "twin.h").write_text(target.twin_h())
    (src / "link.ld").write_text(target.link_script((NATIVE_DIR / "link.ld.in").read_text()))
    (out / "arena.json").write_text(prog.arena_json())
    return src


def _one_line(stderr: str, src: Path) -> str:
    for line in stderr.splitlines():
        if ": error:" in line or "fatal error" in line or "undefined reference" in line:
            return line.strip()
    lines = [x.strip() for x in stderr.splitlines() if x.strip()]
    return lines[-1] if lines else "(no message)"


def _no_fit(stderr: str) -> tuple[str, str] | None:
    m = re.search(r"region `(\w+)' overflowed by (\d+) bytes", stderr)
    if m:
        return m.group(1), f"region {m.group(1)} overflowed by {m.group(2)} B"
    m = re.search(r"edgesim: (RAM): ([^\"\n]+)", stderr)
    if m:
        return "stack", m.group(2).strip()
    m = re.search(r"will not fit in region `(\w+)'", stderr)
    if m:
        return m.group(1), f"section will not fit in region {m.group(1)}"
    return None


def build(prog: Program, target: Target, out: str | Path, extra_sources: tuple[str, ...] = ()) -> Build:
    """Compile and link into ``out/model.elf`` (with ``extra_sources`` from ports/native, e.g. ``decode.c``).
    CompileError (one line), DoesNotFit (exit 3, region named)."""
    out = Path(out)
    version = compiler_version()
    src = write_sources(prog, target, out)
    elf, map_path = out / "model.elf", out / "model.map"
    flags = (*target.gcc_flags(), *OPT_FLAGS)
    cmd = [GCC, *flags, f"-I{src}", f"-I{NATIVE_DIR}", str(src / "model.c"),
           *(str(NATIVE_DIR / s) for s in (*LIBRARY_SOURCES, *extra_sources)), "-nostartfiles", "--specs=nano.specs",
           f"-Wl,-Map={map_path}", f"-T{src / 'link.ld'}", "-o", str(elf), "-lm"]
    (out / "build.cmd").write_text(" ".join(cmd) + "\n")
    r = subprocess.run(cmd, capture_output=True, text=True, check=False)
    (out / "build.log").write_text(r.stdout + r.stderr)
    if r.returncode != 0:
        nf = _no_fit(r.stderr)
        if nf:
            raise DoesNotFit(f"{target.board}: does not fit: {nf[1]} (RAM {target.ram_bytes} B, flash "
                             f"{target.flash_bytes} B; arena {prog.arena_bytes} B)", nf[0], log_path=str(out / "build.log"))
        raise CompileError(f"compile error: {_one_line(r.stderr, src)} (generated sources in {src}; "
                           f"log {out / 'build.log'})")
    return Build(elf, map_path, version, tuple(flags), section_sizes(elf))


def section_sizes(elf: Path) -> dict[str, int]:
    """Output section sizes of an ELF (``arm-none-eabi-size -A``)."""
    exe = shutil.which("arm-none-eabi-size")
    if exe is None:
        raise ToolchainMissing(f"arm-none-eabi-size not found on PATH: {INSTALL_HINT}")
    out = subprocess.run([exe, "-A", str(elf)], capture_output=True, text=True, check=True).stdout
    sizes = {}
    for line in out.splitlines():
        parts = line.split()
        if len(parts) >= 3 and parts[0].startswith(".") and parts[1].isdigit():
            sizes[parts[0]] = int(parts[1])
    return sizes
