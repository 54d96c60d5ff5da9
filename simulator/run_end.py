"""Run-ending events: out of memory, a fragmented heap, an empty battery (docs/architecture.md §3).

An exception of this module stops a simulated run where it happened; the run's result carries it as
``fatal`` ({kind, time_s, op, message, ram_needed_bytes}) and the verdict names the constraint it broke
(``verdict.RUN_END_CONSTRAINT``).
"""
from __future__ import annotations

from typing import Any

RUN_END_KINDS = ("out_of_memory", "fragmentation", "battery_empty")


class RunEnded(Exception):
    """A run-ending event of ``kind`` (one of ``RUN_END_KINDS``) at sim time ``time_s`` during ``op``."""

    def __init__(self, kind: str, time_s: float, op: str, message: str, ram_needed_bytes: int | None = None) -> None:
        self.kind, self.time_s, self.op, self.message = kind, time_s, op, message
        self.ram_needed_bytes = ram_needed_bytes   # out of memory: RAM the failing allocation called for
        super().__init__(message)

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "time_s": self.time_s, "op": self.op, "message": self.message,
                "ram_needed_bytes": self.ram_needed_bytes}


class BatteryEmpty(Exception):
    """The battery ran out: ``time_s`` when it did, ``op`` what was running."""

    def __init__(self, time_s: float, op: str) -> None:
        self.time_s, self.op = time_s, op
        super().__init__(f"battery empty at t={time_s:.1f} s during {op}")

    def run_ended(self) -> RunEnded:
        return RunEnded("battery_empty", self.time_s, self.op, str(self))
