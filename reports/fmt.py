"""Number formatting for people: every figure with its unit, stable across runs (no locale, no dates)."""
from __future__ import annotations

import math
from typing import Any

from simulator.units import human_bytes as nbytes  # noqa: F401 - one byte formatter for terminal and reports
from simulator.units import is_number as _num


def seconds(s: Any) -> str:
    if not _num(s):
        return "n/a"
    if not math.isfinite(s):
        return "inf s"
    a = abs(s)
    if a == 0:
        return "0 s"
    if a < 1e-3:
        return f"{s * 1e6:.1f} µs"
    if a < 1:
        return f"{s * 1e3:.2f} ms"
    if a < 3600:
        return f"{s:.2f} s"
    if a < 3 * 86400:
        return f"{s / 3600:.2f} h"
    return f"{s / 86400:.1f} days"


def pct(x: Any, digits: int = 1) -> str:
    return f"{100 * x:.{digits}f} %" if _num(x) and math.isfinite(x) else "n/a"


def count(x: Any) -> str:
    return f"{x:,}" if isinstance(x, int) and not isinstance(x, bool) else (f"{x:,.0f}" if _num(x) else "n/a")


def quantity(v: Any, unit: str | None) -> str:
    """A value in a constraint's own unit, formatted by that unit."""
    if v is None:
        return "n/a"
    if isinstance(v, str):
        return v
    if not _num(v):
        return str(v)
    u = (unit or "").strip()
    if u in ("B", "bytes", "byte"):
        return nbytes(v)
    if u in ("s", "seconds"):
        return seconds(v)
    if u in ("fraction", "ratio", "1"):
        return pct(v, 2)
    if u == "":
        return f"{v:.4g}"
    if u in ("%", "percent"):
        return f"{v:.2f} %"
    if not math.isfinite(v):
        return f"{'inf' if v > 0 else '-inf'} {u}"
    if abs(v) >= 1e7 or (v != 0 and abs(v) < 1e-3):
        return f"{v:.3e} {u}"
    if abs(v) >= 1000:
        return f"{v:,.1f} {u}"
    return f"{v:.4g} {u}"


def signed_pct(x: Any) -> str:
    return f"{100 * x:+.1f} %" if _num(x) and math.isfinite(x) else "n/a"


def finite(x: Any) -> bool:
    """A finite int or float, not a bool."""
    return _num(x) and math.isfinite(x)
