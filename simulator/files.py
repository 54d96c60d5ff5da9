"""Writing results: one atomic file write and one JSON encoding, shared by the core, ports, reports and the
command line (docs/architecture.md, "Shared helpers")."""
from __future__ import annotations

import json
import math
import os
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any


def jsonable(o: Any) -> Any:
    """``json.dumps(default=...)``: numpy arrays and scalars as lists/numbers, non-finite floats as strings."""
    if isinstance(o, float) and not math.isfinite(o):
        return None if math.isnan(o) else ("inf" if o > 0 else "-inf")
    if hasattr(o, "tolist"):
        return o.tolist()
    raise TypeError(f"not JSON-serialisable: {type(o).__name__}")


def dumps(obj: Any) -> str:
    """The one JSON text form: keys sorted, indented, so equal results are equal bytes."""
    return json.dumps(obj, sort_keys=True, indent=2, default=jsonable, allow_nan=False) + "\n"


def emit_json(obj: Any, stream=None) -> None:
    """One machine-readable JSON object on stdout."""
    (stream or sys.stdout).write(dumps(obj))


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
