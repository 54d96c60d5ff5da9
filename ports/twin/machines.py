"""The twin machine table: what QEMU emulates, how to compile for it, where its RAM, console and clock are.

A *twin* is a device profile's core and memory size on a QEMU machine (docs/architecture.md §4b): the same ISA and
FPU (or a subset: an Armv6-M build on an Armv7-M machine), the profile's RAM as the heap/arena/linker
limit. This table holds the facts about the QEMU side only; the profile's ``[emulator]`` table names the
twin. Addresses are guest physical addresses; every size and rate carries its unit in its name.

Guest time: QEMU runs with ``-icount shift=0,sleep=off``, so one guest instruction is one virtual
nanosecond and every timer below advances exactly ``instructions_per_timer_tick`` instructions per tick.
MicroPython reads the counter with ``machine.mem32[timer_count_address]``; the counter is kept below 2**30
(``timer_period_ticks``) so the read is a small int and allocates nothing on the guest heap. Write
``timer_start_writes`` (address, value pairs, in order) to (re)start it: the count then starts at
``timer_start_count`` and moves by one per tick, down when ``timer_counts_down``. Elapsed ticks between
two reads a and b: ``(a - b) % timer_period_ticks`` counting down, ``(b - a) % timer_period_ticks`` up.
"""
from __future__ import annotations

from dataclasses import dataclass

from device_profiles.loader import TWINS

SMALL_INT_PERIOD_TICKS = 1 << 30      # MicroPython small ints hold 31 bits: stay below 2**30, allocate nothing

# CMSDK APB timer 0 of the MPS2 FPGA images (ARM DAI0385D/AN386/AN500 memory map): CTRL +0, VALUE +4,
# RELOAD +8; a 32-bit down counter on the 25 MHz peripheral clock = 40 ns = 40 instructions at shift=0.
_CMSDK_TIMER0 = 0x4000_0000
_CMSDK_TIMER_WRITES = ((_CMSDK_TIMER0 + 0x0, 0),                               # CTRL: stop
                       (_CMSDK_TIMER0 + 0x8, SMALL_INT_PERIOD_TICKS - 1),      # RELOAD
                       (_CMSDK_TIMER0 + 0x4, SMALL_INT_PERIOD_TICKS - 1),      # VALUE
                       (_CMSDK_TIMER0 + 0x0, 1))                               # CTRL: enable
# STM32F4 TIM2 (RM0090 §18.4): CNT +0x24, PSC +0x28. QEMU's STM32F405 clocks its timers at 1 GHz, so with
# PSC = 0 one tick = 1 ns = exactly 1 instruction; writing CNT = 0 restarts the count.
_STM32_TIM2 = 0x4000_0000
_STM32_TIM2_WRITES = ((_STM32_TIM2 + 0x28, 0),          # PSC: no prescaler
                      (_STM32_TIM2 + 0x24, 0))          # CNT: count from 0


@dataclass(frozen=True)
class Machine:
    """One twin machine: a QEMU ``-M`` machine plus the compiler target and the guest addresses used."""

    name: str                         # twin name used by profiles' [emulator] twin = "..."
    qemu_machine: str                 # qemu-system-arm -M <this>
    cpu: str                          # the core QEMU emulates ("Cortex-M4F")
    arch: str                         # ISA the code is built for: armv6-m | armv7-m | armv7e-m
    fpu: str                          # none | sp | dp (as device profiles spell core.fpu)
    gcc_cpu: str                      # arm-none-eabi-gcc -mcpu=
    gcc_fpu: str | None               # -mfpu= (None: no FPU, soft float)
    gcc_float_abi: str                # -mfloat-abi= soft | hard
    code_base_address: int            # where the image is linked and loaded (vector table at reset)
    code_size_bytes: int
    ram_base_address: int             # data/bss/heap/stack RAM used by the twin's programs
    ram_size_bytes: int               # what the machine has there; the profile's RAM is the limit we set
    blob_load_address: int | None     # free RAM for `-device loader,file=..,addr=` bulk data (None: none)
    blob_size_bytes: int
    console_uart_base_address: int    # the UART wired to -serial stdio
    console_uart_kind: str            # cmsdk-apb-uart | stm32-usart
    timer_name: str
    timer_count_address: int          # machine.mem32[this] is the counter
    timer_counts_down: bool
    timer_start_writes: tuple[tuple[int, int], ...]   # (address, value) writes that (re)start the counter
    timer_start_count: int            # the count right after timer_start_writes
    timer_period_ticks: int           # the counter wraps after this many ticks (< 2**30: small ints)
    instructions_per_timer_tick: int  # guest instructions per tick under -icount shift=0
    semihosting: bool                 # ARM semihosting (bkpt 0xab) works: exit codes, host files
    micropython_board: str            # board directory in MicroPython's ports/qemu/boards (ours or theirs)
    micropython_board_is_ours: bool   # True: ports/twin/boards/<board> is copied into the source tree
    note: str = ""

    @property
    def has_fpu(self) -> bool:
        return self.fpu != "none"

    def gcc_flags(self) -> list[str]:
        """The target flags for arm-none-eabi-gcc: Thumb, the core, its FPU and float ABI."""
        flags = ["-mthumb", f"-mcpu={self.gcc_cpu}", f"-mfloat-abi={self.gcc_float_abi}"]
        if self.gcc_fpu:
            flags.append(f"-mfpu={self.gcc_fpu}")
        return flags

    def qemu_args(self, kernel: str, icount: bool = True) -> list[str]:
        """Machine, image and guest-time arguments (console and control arguments are the launcher's)."""
        args = ["-M", self.qemu_machine, "-kernel", kernel]
        if self.semihosting:
            args += ["-semihosting-config", "enable=on,target=native"]
        if icount:
            args += ["-icount", "shift=0,sleep=off"]
        return args

    def clock_configure_call(self, module: str = "twinclock") -> str:
        """The call that sets up ``ports/micropython/twinclock.py`` on the guest for this machine (``module``
        empty when the file was executed into the REPL's globals rather than imported)."""
        writes = ", ".join(f"(0x{a:08x}, 0x{v:x})" for a, v in self.timer_start_writes)
        prefix = f"{module}." if module else ""
        return (f"{prefix}configure(0x{self.timer_count_address:08x}, {int(self.timer_counts_down)}, "
                f"0x{self.timer_period_ticks:x}, ({writes},))")

    def elapsed_ticks(self, first: int, second: int) -> int:
        """Ticks from counter reading ``first`` to ``second`` (host-side twin of the guest arithmetic)."""
        d = (first - second) if self.timer_counts_down else (second - first)
        return d % self.timer_period_ticks

    def elapsed_instructions(self, first: int, second: int) -> int:
        return self.elapsed_ticks(first, second) * self.instructions_per_timer_tick


_MPS2_COMMON = dict(
    code_base_address=0x0000_0000, code_size_bytes=4 << 20,          # SSRAM1, 4 MB
    ram_base_address=0x2000_0000, ram_size_bytes=4 << 20,            # SSRAM2/3, 4 MB
    blob_size_bytes=16 << 20,                                        # PSRAM, 16 MB
    console_uart_base_address=0x4000_4000, console_uart_kind="cmsdk-apb-uart",
    timer_name="CMSDK APB timer0 (25 MHz)", timer_count_address=_CMSDK_TIMER0 + 0x4, timer_counts_down=True,
    timer_start_writes=_CMSDK_TIMER_WRITES, timer_start_count=SMALL_INT_PERIOD_TICKS - 1,
    timer_period_ticks=SMALL_INT_PERIOD_TICKS, instructions_per_timer_tick=40, semihosting=True,
)

MACHINES: dict[str, Machine] = {m.name: m for m in (
    Machine(name="mps2-an385", qemu_machine="mps2-an385", cpu="Cortex-M3", arch="armv7-m", fpu="none",
            gcc_cpu="cortex-m3", gcc_fpu=None, gcc_float_abi="soft", blob_load_address=0x2100_0000,
            micropython_board="MPS2_AN385", micropython_board_is_ours=False, **_MPS2_COMMON),
    Machine(name="mps2-an385-armv6m", qemu_machine="mps2-an385", cpu="Cortex-M3 running Armv6-M code",
            arch="armv6-m", fpu="none", gcc_cpu="cortex-m0plus", gcc_fpu=None, gcc_float_abi="soft",
            blob_load_address=0x2100_0000, micropython_board="MPS2_AN385_ARMV6M",
            micropython_board_is_ours=True,
            note="Armv6-M (Cortex-M0+) code is a subset of Armv7-M: the M3 runs it unchanged",
            **_MPS2_COMMON),
    Machine(name="mps2-an386", qemu_machine="mps2-an386", cpu="Cortex-M4F", arch="armv7e-m", fpu="sp",
            gcc_cpu="cortex-m4", gcc_fpu="fpv4-sp-d16", gcc_float_abi="hard", blob_load_address=0x2100_0000,
            micropython_board="MPS2_AN386", micropython_board_is_ours=True, **_MPS2_COMMON),
    Machine(name="mps2-an500", qemu_machine="mps2-an500", cpu="Cortex-M7", arch="armv7e-m", fpu="sp",
            gcc_cpu="cortex-m7", gcc_fpu="fpv5-sp-d16", gcc_float_abi="hard", blob_load_address=0x6000_0000,
            micropython_board="MPS2_AN500", micropython_board_is_ours=True,
            note="QEMU's M7 has the double-precision FPv5; code is built for FPv5-SP like the STM32F746 "
                 "(single precision only), a subset the machine runs",
            **_MPS2_COMMON),
    Machine(name="netduinoplus2", qemu_machine="netduinoplus2", cpu="Cortex-M4F (STM32F405)", arch="armv7e-m",
            fpu="sp", gcc_cpu="cortex-m4", gcc_fpu="fpv4-sp-d16", gcc_float_abi="hard",
            code_base_address=0x0800_0000, code_size_bytes=1 << 20,        # flash, aliased at 0 for reset
            ram_base_address=0x2000_0000, ram_size_bytes=192 << 10,        # SRAM; QEMU 7.2 models no CCM
            blob_load_address=None, blob_size_bytes=0,
            console_uart_base_address=0x4001_1000, console_uart_kind="stm32-usart",
            timer_name="STM32 TIM2 (1 GHz in QEMU)", timer_count_address=_STM32_TIM2 + 0x24,
            timer_counts_down=False, timer_start_writes=_STM32_TIM2_WRITES, timer_start_count=0,
            timer_period_ticks=SMALL_INT_PERIOD_TICKS, instructions_per_timer_tick=1, semihosting=True,
            micropython_board="NETDUINOPLUS2", micropython_board_is_ours=True,
            note="TIM2 counts 32 bits; restart it (timer_start_writes) before intervals near 2**30 instructions"),
)}

if tuple(MACHINES) != TWINS:       # profiles validate twin names against device_profiles.loader.TWINS
    raise RuntimeError(f"ports/twin/machines.py defines {tuple(MACHINES)} but device_profiles.loader.TWINS "
                       f"is {TWINS}: keep them the same")


def get_machine(name: str) -> Machine:
    """The twin machine called ``name``; KeyError listing the known ones."""
    try:
        return MACHINES[name]
    except KeyError:
        raise KeyError(f"unknown twin {name!r} (known: {', '.join(MACHINES)})") from None


def describe() -> str:
    """The table for people: one line per twin with its compiler target, RAM, console and guest timer."""
    lines = []
    for m in MACHINES.values():
        fpu = f"{m.gcc_fpu} ({m.gcc_float_abi} float)" if m.gcc_fpu else "no FPU (soft float)"
        lines.append(
            f"{m.name}: -M {m.qemu_machine}, {m.cpu}, {m.arch}, {fpu}; code 0x{m.code_base_address:08x} "
            f"({m.code_size_bytes // 1024} KiB), RAM 0x{m.ram_base_address:08x} ({m.ram_size_bytes // 1024} KiB); "
            f"console {m.console_uart_kind} at 0x{m.console_uart_base_address:08x}; guest time: {m.timer_name}, "
            f"machine.mem32[0x{m.timer_count_address:08x}] counts {'down' if m.timer_counts_down else 'up'}, "
            f"{m.instructions_per_timer_tick} instruction(s) per tick; MicroPython board {m.micropython_board}")
    return "\n".join(lines)


if __name__ == "__main__":
    print(describe())
