"""What every subcommand shares: exit codes, the help formatter, subparser set-up, plain-text tables."""
from __future__ import annotations

import argparse
import math
from typing import Any

from simulator.units import is_number

# the one definition of the exit codes (docs/architecture.md, "Exit codes")
EXIT_OK, EXIT_INTERNAL, EXIT_INPUT, EXIT_NOFIT = 0, 1, 2, 3

EPILOG = "exit codes: 0 ok / fits, 3 does not fit, 2 bad input or usage, 1 internal error"
SIGNAL_EXITS = "130 interrupted (Ctrl-C), 143 terminated (SIGTERM); finished results stay on disk"


class Terminated(KeyboardInterrupt):
    """SIGTERM (``timeout``, a CI cancel), raised in the main thread so clean-up runs as for Ctrl-C."""


def exit_codes(*codes: str) -> str:
    """A command's own exit-code footer: its codes, then the ones every command shares."""
    return "exit codes: " + ", ".join([*codes, "2 bad input or usage", "1 internal error", SIGNAL_EXITS])


def finite_float(text: str) -> float:
    """argparse ``type`` for a number flag: NaN and infinities are refused like any other bad value."""
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not math.isfinite(v):
        raise argparse.ArgumentTypeError(f"must be a finite number (got {text!r})")
    return v


class Formatter(argparse.RawDescriptionHelpFormatter, argparse.ArgumentDefaultsHelpFormatter):
    """Keeps the descriptions' line breaks and shows defaults that say something (not None or off)."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        if action.default in (None, False, argparse.SUPPRESS) or "%(default)" in (action.help or ""):
            return action.help
        return super()._get_help_string(action)


def add_command(sub, name: str, help: str, description: str, example: str,
                exits: str = EPILOG) -> argparse.ArgumentParser:
    """A subparser whose --help shows what the command answers, an example and its exit codes."""
    return sub.add_parser(name, help=help, description=f"{description}\n\nexample:\n  {example}",
                          epilog=exits, formatter_class=Formatter)


def format_table(headers: list[str], rows: list[list[Any]]) -> str:
    """A plain fixed-width table; numbers right-aligned."""
    cells = [[str(h) for h in headers]] + [[str(c) for c in r] for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    numeric = [all(is_number(r[i]) for r in rows) if rows else False for i in range(len(headers))]
    out = []
    for j, r in enumerate(cells):
        out.append("  ".join(c.rjust(w) if numeric[i] and j else c.ljust(w) for i, (c, w) in enumerate(zip(r, widths, strict=True))).rstrip())
        if j == 0:
            out.append("  ".join("-" * w for w in widths))
    return "\n".join(out)
