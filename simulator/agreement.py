"""How close a measurement on an emulated twin must be to the simulator's prediction to agree: the one
place for these tolerances, read by the ports, the reports and the command line (docs/architecture.md)."""
from __future__ import annotations

# simulator vs MicroPython on a twin: heap peak and instructions per step within +-10 % (the goal table)
AGREEMENT_RELATIVE = 0.10

# simulator vs generated C on a twin (edgesim port): instructions per step within AGREEMENT_RELATIVE,
# RAM (static + arena + stack) within +-5 %, flash (text + rodata + data) within +-10 %
NATIVE_RAM_RELATIVE = 0.05
NATIVE_FLASH_RELATIVE = 0.10
# twin vs host losses per step: float32 on both sides, summed in different orders, each with its own exp/log
LOSS_RTOL = 1e-3
LOSS_ATOL = 1e-4
