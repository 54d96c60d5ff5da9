"""How figures are rounded in results: stable, readable JSON, the same on every machine."""
from __future__ import annotations

import math


def rounded(x: float | None, nd: int = 9) -> float | None:
    """``x`` rounded to ``nd`` decimals; None for None, NaN and infinities (JSON has no such numbers)."""
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return None
    return round(float(x), nd)
