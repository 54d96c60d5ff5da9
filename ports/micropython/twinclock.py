# Guest time on a twin (docs/architecture.md §4b; table: ports/twin/machines.py).
# Under -icount shift=0,sleep=off one instruction is one virtual nanosecond, so a hardware counter read
# with machine.mem32 counts instructions exactly (times instructions_per_timer_tick). The host calls
# configure() once with the machine's figures; start() restarts the counter (so its tick phase is the
# same on every run: identical runs give identical counts) and ticks() is the ticks since start().
# Every value stays below 2**30, so no read allocates on the GC heap.
import machine

_addr = 0
_down = 0
_period = 1 << 30
_writes = ()
_t0 = 0


def configure(count_address, counts_down, period_ticks, start_writes):
    global _addr, _down, _period, _writes
    _addr = count_address
    _down = counts_down
    _period = period_ticks
    _writes = start_writes
    start()


def start():
    global _t0
    m = machine.mem32
    for a, v in _writes:
        m[a] = v
    _t0 = m[_addr]


def ticks():
    now = machine.mem32[_addr]
    if _down:
        return (_t0 - now) % _period
    return (now - _t0) % _period
