"""Virtual twins (docs/architecture.md §4b): a profile's core and memory size on a QEMU Cortex-M machine.

``machines`` (the QEMU machine table: compiler target, RAM, console, guest timer), ``source`` (the
pinned MicroPython source package, fetched with a private apt configuration), ``firmware`` (MicroPython
built per twin and heap size into a cache), ``boards/`` (our MicroPython board definitions).
"""
from __future__ import annotations

from .machines import MACHINES, Machine, get_machine

__all__ = ["MACHINES", "Machine", "get_machine"]
