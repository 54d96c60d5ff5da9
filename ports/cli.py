"""Subcommands (placeholder until its issue lands)."""
from __future__ import annotations

import sys

from simulator.cliutil import add_command


def _not_yet(args) -> int:
    print(f"edgesim {args.command}: not implemented yet", file=sys.stderr)
    return 1


def register(sub) -> None:
    add_command(sub, "emulate", help="run training on a QEMU-emulated board", description="run training on a QEMU-emulated board (not implemented yet).", example="edgesim emulate --help").set_defaults(func=_not_yet)
    add_command(sub, "calibrate", help="fit a profile's micropython cost coefficients on the emulated board", description="fit a profile's micropython cost coefficients on the emulated board (not implemented yet).", example="edgesim calibrate --help").set_defaults(func=_not_yet)
