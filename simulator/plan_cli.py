"""Subcommands (placeholder until its issue lands)."""
from __future__ import annotations

import sys

from simulator.cliutil import add_command


def _not_yet(args) -> int:
    print(f"edgesim {args.command}: not implemented yet", file=sys.stderr)
    return 1


def register(sub) -> None:
    add_command(sub, "plan", help="check whether a training schedule fits a device", description="check whether a training schedule fits a device (not implemented yet).", example="edgesim plan --help").set_defaults(func=_not_yet)
    add_command(sub, "demo", help="run the embedded default scenario", description="run the embedded default scenario (not implemented yet).", example="edgesim demo --help").set_defaults(func=_not_yet)
