"""Load and validate device profile TOML files into frozen dataclasses.

A profile is one TOML file per board (see ``bbc-microbit-v1.toml``): tables ``[core]``, ``[memory]``,
``[runtime.native]`` (+ optional ``[runtime.micropython]``), ``[power]``, ``[flash]``, ``[battery]`` and an
optional ``[emulator]``. Every numeric figure has its unit in its key and a ``<key>_source`` sibling naming
the datasheet, version and section, or starting with ``estimate:`` and a one-line reason. Unknown keys are
errors (a ``ram_kb`` gets "did you mean ram_bytes?"), and every error is one line naming the file, the field
and the value.
"""
from __future__ import annotations

import dataclasses
import difflib
import math
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

PROFILE_DIR = Path(__file__).resolve().parent
RUNTIMES = ("native", "micropython")
FPUS = ("none", "sp", "dp")


class ProfileError(ValueError):
    """A profile that cannot be used; the message names the file, the field and the value."""


@dataclass(frozen=True)
class Core:
    cpu: str                       # "Cortex-M4F"
    arch: str                      # "armv7e-m"
    fpu: str                       # none | sp | dp
    clock_hz: float
    cycles_per_instruction: float  # mean CPI, turns instruction counts into cycles


@dataclass(frozen=True)
class Memory:
    ram_bytes: int
    flash_bytes: int


@dataclass(frozen=True)
class Runtime:
    """What a runtime (bare-metal C ``native`` or ``micropython``) reserves and what its ops cost."""

    ram_reserved_bytes: int      # RAM the runtime/stack/radio stack takes before the workload starts
    flash_reserved_bytes: int    # flash the firmware/interpreter takes
    heap_block_bytes: int        # allocation granularity (MicroPython GC: 16 B on 32-bit ports)
    alloc_overhead_bytes: int    # per-allocation header/object overhead
    cycles_per_mac_f32: float
    cycles_per_mac_i8: float
    cycles_per_elem_f32: float   # elementwise / reduce ops, per element
    cycles_per_byte_copy: float  # copies and memory traffic not covered by MACs
    op_overhead_cycles: float    # fixed cost per op (call/dispatch/loop set-up)
    # per decode operation of compressed weights (workloads.compression); None: the profile has no figure,
    # and a scenario with compressed layers on it is an error naming the field
    cycles_per_decode_op: float | None = None
    # [runtime.<name>.decode_cycles_per_op] (int8 = 8.7, int8_source = ...): a listed format's own figure, else
    # cycles_per_decode_op; decode_overhead_cycles: the fixed cost of one decode op (None: op_overhead_cycles)
    decode_cycles_per_op: dict[str, float] | None = None
    decode_overhead_cycles: float | None = None
    # MicroPython's garbage collector (edgesim calibrate on a twin): a kernel allocates this many bytes of
    # garbage (boxed floats) per cycle of work; a collection costs gc_collection_cycles plus
    # gc_cycles_per_live_byte per live heap byte it marks. None: the cost model has no GC term.
    # heap the edgesim MicroPython port itself holds on a twin (its code compiled from source, its tables),
    # measured by `edgesim calibrate`; not in ram_reserved_bytes, since a deployment freezes the code into flash
    port_heap_bytes: int | None = None
    gc_garbage_bytes_per_cycle: float | None = None
    gc_collection_cycles: float | None = None
    gc_cycles_per_live_byte: float | None = None
    # measured cost per op kind (edgesim calibrate --runtime native): replaces the figures above for the
    # f32 ops of a kind it lists; read from the [runtime.<name>.kind_costs] table
    kind_costs: dict[str, KindCost] | None = None


# the formats a decode row may name: workloads.compression.FORMATS less f32 (profiles sit below workloads and
# cannot import it; tests/test_compression_costs.py checks the two agree)
DECODE_FORMATS = ("int8", "binary", "csr", "xor", "lowrank")


def _decode_costs(where: str, table: Any, sources: dict, estimates: set) -> dict[str, float]:
    """``[runtime.X.decode_cycles_per_op]``: per format (``csr``) or format-bits (``csr-8``) a number > 0, sourced."""
    if not isinstance(table, dict):
        raise ProfileError(f"{where} must be a table of cycles per decode operation by format (got {table!r})")
    out = {}
    for key, v in table.items():
        fmt, dash, bits = key.removesuffix("_source").partition("-")
        if fmt not in DECODE_FORMATS or (dash and not (bits.isdigit() and int(bits) > 0)):
            raise ProfileError(f"{where}.{key} is not a format or format-bits (value {v!r})"
                               f"{_did_you_mean(key, set(DECODE_FORMATS))}; formats: {', '.join(DECODE_FORMATS)}")
        if key.endswith("_source"):
            if key.removesuffix("_source") not in table:
                raise ProfileError(f"{where}.{key} has no figure beside it (got {v!r})")
            continue
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v <= 0:
            raise ProfileError(f"{where}.{key} must be a finite number > 0 (got {v!r})")
        src = table.get(f"{key}_source")
        if not isinstance(src, str) or not src.strip():
            raise ProfileError(f"{where}.{key}_source must be a non-empty string naming how the figure was "
                               f"measured or 'estimate: why' (got {src!r}; value {v!r})")
        sources[name := f"{where.split(': ', 1)[-1]}.{key}"] = src
        estimates.update([name] if src.strip().lower().startswith("estimate") else [])
        out[key] = float(v)
    return out


@dataclass(frozen=True)
class KindCost:
    """cycles = overhead_cycles + macs x cycles_per_mac + bytes read x ... + bytes written x ... (one op kind)."""

    overhead_cycles: float
    cycles_per_mac: float
    cycles_per_byte_read: float
    cycles_per_byte_written: float


def _kind_costs(where: str, table: Any, sources: dict, estimates: set) -> dict[str, KindCost]:
    """``[runtime.X.kind_costs]``: ``source = "..."`` and one inline table of KindCost fields per op kind."""
    if not isinstance(table, dict) or not isinstance(table.get("source"), str) or not table["source"].strip():
        raise ProfileError(f"{where}.source must be a non-empty string naming how the costs were measured "
                           f"(got {table.get('source') if isinstance(table, dict) else table!r})")
    out = {}
    names = [f.name for f in dataclasses.fields(KindCost)]
    for kind, row in table.items():
        if kind == "source":
            continue
        if not isinstance(row, dict) or sorted(row) != sorted(names):
            raise ProfileError(f"{where}.{kind} must be a table with exactly {', '.join(names)} (got {row!r})")
        for k, v in row.items():
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v < 0:
                raise ProfileError(f"{where}.{kind}.{k} must be a finite number >= 0 (got {v!r})")
        out[kind] = KindCost(**{k: float(row[k]) for k in names})
        sources[f"{where.split(': ', 1)[-1]}.{kind}"] = table["source"]
        if table["source"].strip().lower().startswith("estimate"):
            estimates.add(f"{where.split(': ', 1)[-1]}.{kind}")
    return out


@dataclass(frozen=True)
class Power:
    """Currents at ``supply_voltage_v``; the loader checks sleep <= idle <= active."""

    supply_voltage_v: float               # the voltage the currents below are quoted at
    active_current_a: float               # CPU computing flat out (training, inference)
    idle_current_a: float                 # awake, CPU waiting (WFI) with its clocks running
    sleep_current_a: float                # the lowest state that still keeps RAM (Stop, System ON sleep...)
    flash_write_energy_j_per_byte: float  # programming energy on top of the CPU's active power


@dataclass(frozen=True)
class Flash:
    """The non-volatile store checkpoints go to (on-chip flash, SPI NOR, or an SD card)."""

    endurance_cycles: int      # erase cycles per page before wear-out
    erase_page_bytes: int      # smallest erase unit: a checkpoint wears every page it touches once
    write_bytes_per_s: float   # programming throughput (erase time not included unless the source says so)


@dataclass(frozen=True)
class Battery:
    chemistry: str
    capacity_mah: float
    voltage_v: float           # nominal; capacity_j = mAh x 3.6 x V

    @property
    def capacity_j(self) -> float:
        """Nominal stored energy in joules."""
        return self.capacity_mah * 3.6 * self.voltage_v


# Virtual twins (docs/architecture.md §4b): the machine table itself is ports/twin/machines.py, which checks on import
# that it defines exactly these names (profiles sit below ports and cannot import it).
TWINS = ("mps2-an385", "mps2-an385-armv6m", "mps2-an386", "mps2-an500", "netduinoplus2")


@dataclass(frozen=True)
class Emulator:
    """``[emulator]``: either a virtual ``twin`` (built from source with ``micropython_heap_bytes``) or a
    fixed ``qemu_machine`` with a prebuilt ``firmware_path``. A table holding only ``no_twin_reason``
    says why the board has neither (the profile's ``emulator`` is then None)."""

    twin: str = ""
    micropython_heap_bytes: int = 0     # MICROPY_HEAP_SIZE of the twin's firmware: the GC heap incl. its tables
    qemu_machine: str = ""
    firmware_path: str = ""
    qemu_args: tuple[str, ...] = ()
    twin_note: str = ""                 # how the twin differs from the board (e.g. Armv6-M code on an M3)
    no_twin_reason: str = ""


@dataclass(frozen=True)
class DeviceProfile:
    name: str
    display_name: str
    path: str
    core: Core
    memory: Memory
    runtime: dict[str, Runtime]
    power: Power
    flash: Flash
    battery: Battery
    emulator: Emulator | None = None
    sources: dict[str, str] = field(default_factory=dict)     # "core.clock_hz" -> "nRF51822 PS v3.4 §..."
    estimates: frozenset[str] = frozenset()                   # fields whose source starts with "estimate"
    no_twin_reason: str = ""                                  # why there is no emulator (when emulator is None)

    @property
    def emulator_summary(self) -> str:
        """One cell for tables: the twin and its heap, the fixed QEMU machine, or why there is none."""
        em = self.emulator
        if em is None:
            return f"none: {self.no_twin_reason}" if self.no_twin_reason else "-"
        if em.twin:
            return f"twin {em.twin}, heap {em.micropython_heap_bytes / 1024:g} KiB"
        return f"QEMU {em.qemu_machine}"

    @property
    def active_power_w(self) -> float:
        return self.power.active_current_a * self.power.supply_voltage_v

    def runtime_for(self, name: str) -> Runtime:
        if name not in self.runtime:
            raise ProfileError(f"{self.path}: runtime.{name} is not in this profile (has {sorted(self.runtime)})")
        return self.runtime[name]

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["estimates"] = sorted(self.estimates)
        if self.emulator is not None:
            d["emulator"]["qemu_args"] = list(self.emulator.qemu_args)
        return d


# --- validation -----------------------------------------------------------------------------------

def _unit_stem(key: str) -> str:
    """``ram_kb`` -> ``ram``, ``active_current_ma`` -> ``active_current``: the key without its unit."""
    return key.rsplit("_", 1)[0] if "_" in key else key


def _did_you_mean(key: str, known: set[str]) -> str:
    """A hint for an unknown key: the known key with the same stem and another unit, or a close spelling."""
    stem = _unit_stem(key.removesuffix("_source"))
    same_stem = sorted(k for k in known if not k.endswith("_source") and _unit_stem(k) == stem)
    if same_stem:
        return f"; units live in the key: did you mean {same_stem[0]}?"
    close = difflib.get_close_matches(key, sorted(known), n=1)
    return f"; did you mean {close[0]}?" if close else ""


def _check_table(path: str, section: str, table: Any, cls: type, sources: dict, estimates: set) -> Any:
    """Validate one TOML table against a dataclass: every field present, typed, positive, sourced."""
    if not isinstance(table, dict):
        raise ProfileError(f"{path}: [{section}] must be a table (got {table!r})")
    hints = {f.name: f for f in dataclasses.fields(cls)}
    allowed = set(hints) | {f"{k}_source" for k in hints}
    for key in table:
        if key not in allowed:
            raise ProfileError(
                f"{path}: {section}.{key} is not a known field (value {table[key]!r})"
                f"{_did_you_mean(key, allowed)}; known: {', '.join(sorted(hints))}"
            )
    values = {}
    for name, f in hints.items():
        where = f"{path}: {section}.{name}"
        if name not in table:
            if f.default is not dataclasses.MISSING:
                continue
            raise ProfileError(f"{where} is missing")
        v = table[name]
        ftype = str(f.type)
        if ftype == "str":
            if not isinstance(v, str) or not v:
                raise ProfileError(f"{where} must be a non-empty string (got {v!r})")
        elif ftype.startswith("tuple"):
            if not isinstance(v, list) or not all(isinstance(x, str) for x in v):
                raise ProfileError(f"{where} must be a list of strings (got {v!r})")
            v = tuple(v)
        else:
            want_int = ftype == "int"
            if isinstance(v, bool) or not isinstance(v, (int, float)) or (want_int and not isinstance(v, int)):
                raise ProfileError(f"{where} must be {'an integer' if want_int else 'a number'} (got {v!r})")
            if not math.isfinite(v):
                raise ProfileError(f"{where} must be a finite number (got {v!r})")
            may_be_zero = name.endswith(("reserved_bytes", "overhead_bytes", "overhead_cycles", "_current_a",
                                         "energy_j_per_byte"))
            if v < 0 or (v == 0 and not may_be_zero):
                raise ProfileError(f"{where} must be {'>= 0' if may_be_zero else '> 0'} (got {v!r})")
            src = table.get(f"{name}_source")
            if src is None:
                raise ProfileError(f"{where}_source is missing: every figure needs its source (value {v!r})")
            if not isinstance(src, str) or not src.strip():
                raise ProfileError(f"{where}_source must be a non-empty string naming the datasheet, section "
                                   f"or 'estimate: why' (got {src!r})")
            sources[f"{section}.{name}"] = src
            if src.strip().lower().startswith("estimate"):
                estimates.add(f"{section}.{name}")
        values[name] = v
    return cls(**values)


def read_toml(path: str | Path, what: str, where: str | None = None, error: type[Exception] = ValueError,
              missing: type[Exception] = FileNotFoundError) -> dict[str, Any]:
    """Parse a TOML file (a profile, scenario or sweep grid); every failure is one line that starts
    with ``where`` (default: the path): missing (raised as ``missing``), a directory, not UTF-8,
    unreadable or malformed TOML (raised as ``error``)."""
    where = where or str(path)
    try:
        return tomllib.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise missing(f"{where}: no such {what} file") from None
    except IsADirectoryError:
        raise error(f"{where}: is a directory, not a {what} .toml file") from None
    except UnicodeDecodeError as e:
        raise error(f"{where}: not a UTF-8 text file (byte {e.start}: {e.reason})") from None
    except OSError as e:
        raise error(f"{where}: cannot read the {what} file ({e.strerror})") from None
    except tomllib.TOMLDecodeError as e:
        raise error(f"{where}: malformed TOML: {e}") from None


def _parse(path: Path) -> DeviceProfile:
    p = str(path)
    raw = read_toml(path, "profile", error=ProfileError, missing=ProfileError)
    top = {"name", "display_name", "core", "memory", "runtime", "power", "flash", "battery", "emulator"}
    for key in raw:
        if key not in top:
            raise ProfileError(f"{p}: {key} is not a known field (value {raw[key]!r}); known: {', '.join(sorted(top))}")
    for key in ("core", "memory", "runtime", "power", "flash", "battery"):
        if key not in raw:
            raise ProfileError(f"{p}: [{key}] is missing")
    name = raw.get("name", path.stem)
    if not isinstance(name, str) or not name:
        raise ProfileError(f"{p}: name must be a non-empty string (got {name!r})")
    display = raw.get("display_name", name)
    if not isinstance(display, str) or not display:
        raise ProfileError(f"{p}: display_name must be a non-empty string (got {display!r})")
    sources: dict[str, str] = {}
    estimates: set[str] = set()
    core = _check_table(p, "core", raw["core"], Core, sources, estimates)
    if core.fpu not in FPUS:
        raise ProfileError(f"{p}: core.fpu must be one of {FPUS} (got {core.fpu!r})")
    memory = _check_table(p, "memory", raw["memory"], Memory, sources, estimates)
    rt_raw = raw["runtime"]
    if not isinstance(rt_raw, dict) or "native" not in rt_raw:
        raise ProfileError(f"{p}: [runtime.native] is missing")
    runtime = {}
    for rname, table in rt_raw.items():
        if rname not in RUNTIMES:
            raise ProfileError(f"{p}: runtime.{rname} is not a known runtime (known: {', '.join(RUNTIMES)})")
        kind_costs = table.pop("kind_costs", None) if isinstance(table, dict) else None
        decode_costs = table.pop("decode_cycles_per_op", None) if isinstance(table, dict) else None
        rt = _check_table(p, f"runtime.{rname}", table, Runtime, sources, estimates)
        if kind_costs is not None:
            rt = dataclasses.replace(rt, kind_costs=_kind_costs(f"{p}: runtime.{rname}.kind_costs", kind_costs,
                                                                sources, estimates))
        if decode_costs is not None:
            rt = dataclasses.replace(rt, decode_cycles_per_op=_decode_costs(
                f"{p}: runtime.{rname}.decode_cycles_per_op", decode_costs, sources, estimates))
        if rt.ram_reserved_bytes >= memory.ram_bytes:
            raise ProfileError(
                f"{p}: runtime.{rname}.ram_reserved_bytes must be < memory.ram_bytes "
                f"({memory.ram_bytes}) (got {rt.ram_reserved_bytes})"
            )
        if rt.flash_reserved_bytes > memory.flash_bytes:
            raise ProfileError(
                f"{p}: runtime.{rname}.flash_reserved_bytes must be <= memory.flash_bytes "
                f"({memory.flash_bytes}) (got {rt.flash_reserved_bytes})"
            )
        runtime[rname] = rt
    power = _check_table(p, "power", raw["power"], Power, sources, estimates)
    if power.sleep_current_a > power.idle_current_a:
        raise ProfileError(f"{p}: power.sleep_current_a must be <= power.idle_current_a "
                           f"({power.idle_current_a}) (got {power.sleep_current_a})")
    if power.idle_current_a > power.active_current_a:
        raise ProfileError(f"{p}: power.idle_current_a must be <= power.active_current_a "
                           f"({power.active_current_a}) (got {power.idle_current_a})")
    flash = _check_table(p, "flash", raw["flash"], Flash, sources, estimates)
    if flash.erase_page_bytes > memory.flash_bytes:
        raise ProfileError(f"{p}: flash.erase_page_bytes must be <= memory.flash_bytes "
                           f"({memory.flash_bytes}) (got {flash.erase_page_bytes})")
    battery = _check_table(p, "battery", raw["battery"], Battery, sources, estimates)
    emulator = None
    no_twin_reason = ""
    if "emulator" in raw:
        emulator = _check_emulator(p, raw["emulator"], memory, sources, estimates)
        if not (emulator.twin or emulator.qemu_machine):
            no_twin_reason, emulator = emulator.no_twin_reason, None
    return DeviceProfile(name=name, display_name=display, path=p, core=core, memory=memory, runtime=runtime,
                         power=power, flash=flash, battery=battery, emulator=emulator, sources=sources,
                         estimates=frozenset(estimates), no_twin_reason=no_twin_reason)


def _check_emulator(p: str, table: Any, memory: Memory, sources: dict, estimates: set) -> Emulator:
    """``[emulator]`` holds exactly one of: a twin (+ its heap), a QEMU machine (+ firmware), a reason."""
    em = _check_table(p, "emulator", table, Emulator, sources, estimates)
    kinds = [k for k in ("twin", "qemu_machine", "no_twin_reason") if getattr(em, k)]
    if len(kinds) != 1:
        got = ", ".join(f"{k}={getattr(em, k)!r}" for k in kinds) or "none of them"
        raise ProfileError(f"{p}: [emulator] needs exactly one of twin, qemu_machine, no_twin_reason (got {got})")
    if em.twin:
        if em.twin not in TWINS:
            raise ProfileError(f"{p}: emulator.twin must be one of {', '.join(TWINS)} (got {em.twin!r})")
        if not em.micropython_heap_bytes:
            raise ProfileError(f"{p}: emulator.micropython_heap_bytes is missing: a twin needs its heap size")
        if em.micropython_heap_bytes >= memory.ram_bytes:
            raise ProfileError(f"{p}: emulator.micropython_heap_bytes must be < memory.ram_bytes "
                               f"({memory.ram_bytes}) (got {em.micropython_heap_bytes})")
        for k in ("firmware_path", "qemu_args", "no_twin_reason"):
            if getattr(em, k):
                raise ProfileError(f"{p}: emulator.{k} does not go with a twin (got {getattr(em, k)!r}); "
                                   "the twin's firmware is built from source")
    elif em.qemu_machine:
        if not em.firmware_path:
            raise ProfileError(f"{p}: emulator.firmware_path is missing: qemu_machine needs a firmware image")
        for k in ("micropython_heap_bytes", "twin_note"):
            if getattr(em, k):
                raise ProfileError(f"{p}: emulator.{k} goes with a twin, not a fixed qemu_machine "
                                   f"(got {getattr(em, k)!r})")
    else:
        extra = [k for k in ("micropython_heap_bytes", "firmware_path", "qemu_args", "twin_note") if getattr(em, k)]
        if extra:
            raise ProfileError(f"{p}: emulator.{extra[0]} does not go with no_twin_reason "
                               f"(got {getattr(em, extra[0])!r})")
    return em


def profile_paths() -> list[Path]:
    """The bundled profile files, sorted by name."""
    return sorted(PROFILE_DIR.glob("*.toml"))


def load_profile(name_or_path: str | Path) -> DeviceProfile:
    """A bundled profile by name (``bbc-microbit-v1``) or any profile file by path."""
    s = str(name_or_path)
    if s.endswith(".toml") or "/" in s or Path(s).is_file():
        return _parse(Path(s))
    path = PROFILE_DIR / f"{s}.toml"
    if not path.is_file():
        known = ", ".join(p.stem for p in profile_paths())
        raise ProfileError(f"unknown device {s!r}: not a bundled profile ({known}) nor a .toml path")
    return _parse(path)


def list_profiles() -> list[DeviceProfile]:
    """Every bundled profile, validated, sorted by file name."""
    return [_parse(p) for p in profile_paths()]
