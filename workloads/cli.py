"""Subcommands (placeholder until its issue lands)."""
from __future__ import annotations

import sys

from simulator.cliutil import add_command


def _not_yet(args) -> int:
    print(f"edgesim {args.command}: not implemented yet", file=sys.stderr)
    return 1


def register(sub) -> None:
    add_command(sub, "workloads", help="list the model zoo and the spec grammar", description="list the model zoo and the spec grammar (not implemented yet).", example="edgesim workloads --help").set_defaults(func=_not_yet)
