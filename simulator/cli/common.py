"""What every subcommand shares: exit codes, the help formatter, subparser set-up, plain-text tables."""
from __future__ import annotations

import argparse
from typing import Any

from simulator.units import is_number

# the one definition of the exit codes (docs/architecture.md, "Exit codes")
EXIT_OK, EXIT_INTERNAL, EXIT_INPUT, EXIT_NOFIT = 0, 1, 2, 3

EPILOG = "exit codes: 0 ok / fits, 3 does not fit, 2 bad input or usage, 1 internal error"


class Formatter(argparse.RawDescriptionHelpFormatter, argparse.ArgumentDefaultsHelpFormatter):
    """Keeps the descriptions' line breaks and shows defaults."""


def add_command(sub, name: str, help: str, description: str, example: str) -> argparse.ArgumentParser:
    """A subparser whose --help shows what the command answers and an example."""
    return sub.add_parser(name, help=help, description=f"{description}\n\nexample:\n  {example}",
                          epilog=EPILOG, formatter_class=Formatter)


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
