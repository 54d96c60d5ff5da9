"""How close a measurement on an emulated twin must be to the simulator's prediction to agree: the one
place for these tolerances, read by the ports, the reports and the command line (docs/architecture.md)."""
from __future__ import annotations

# simulator vs MicroPython on a twin: heap peak and instructions per step within +-10 % (the goal table)
AGREEMENT_RELATIVE = 0.10
