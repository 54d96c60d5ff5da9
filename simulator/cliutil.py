"""Small helpers shared by the subcommands: JSON on stdout, plain-text tables, subparser set-up."""
from __future__ import annotations

import argparse
import json
import math
import os
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any


def add_command(sub, name: str, help: str, description: str, example: str) -> argparse.ArgumentParser:
    """A subparser whose --help shows what the command answers and an example."""
    from .cli import EPILOG, _Formatter

    return sub.add_parser(name, help=help, description=f"{description}\n\nexample:\n  {example}",
                          epilog=EPILOG, formatter_class=_Formatter)


def _jsonable(o: Any) -> Any:
    if isinstance(o, float) and not math.isfinite(o):
        return None if math.isnan(o) else ("inf" if o > 0 else "-inf")
    if hasattr(o, "tolist"):
        return o.tolist()
    raise TypeError(f"not JSON-serialisable: {type(o).__name__}")


def emit_json(obj: Any, stream=None) -> None:
    """One machine-readable JSON object on stdout, keys sorted so equal results are equal bytes."""
    stream = stream or sys.stdout
    stream.write(json.dumps(obj, sort_keys=True, indent=2, default=_jsonable, allow_nan=False) + "\n")


def write_atomic(path: str | Path, data: bytes | str, validate: Callable[[Path], None] | None = None) -> Path:
    """Write ``data`` to a temp file beside ``path``, fsync it, optionally ``validate(temp_path)``, then
    rename it over ``path``: readers see the old file or the new one, never half of one. The file gets
    the ordinary permissions (0666 less the umask); the temp file is removed on any failure."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data.encode("utf-8") if isinstance(data, str) else data)
            f.flush()
            os.fsync(f.fileno())
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        if validate is not None:
            validate(Path(tmp))
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


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


def is_number(v: Any) -> bool:
    """An int or float, not a bool."""
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def human_bytes(n: Any) -> str:
    """Bytes for people, in the terminal and in reports alike: 512 B, 16.0 KiB, 1.00 MiB, 1.50 GiB."""
    if not is_number(n):
        return "n/a"
    if abs(n) < 1024:
        return f"{n:,.0f} B"
    if abs(n) < 1024 ** 2:
        return f"{n / 1024:,.1f} KiB"
    if abs(n) < 1024 ** 3:
        return f"{n / 1024 ** 2:,.2f} MiB"
    return f"{n / 1024 ** 3:,.2f} GiB"
