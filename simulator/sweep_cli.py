"""Subcommands (placeholder until its issue lands)."""
from __future__ import annotations

import sys

from simulator.cliutil import add_command


def _not_yet(args) -> int:
    print(f"edgesim {args.command}: not implemented yet", file=sys.stderr)
    return 1


def register(sub) -> None:
    add_command(sub, "sweep", help="capacity-planning sweep over devices x workloads x schedules", description="capacity-planning sweep over devices x workloads x schedules (not implemented yet).", example="edgesim sweep --help").set_defaults(func=_not_yet)
