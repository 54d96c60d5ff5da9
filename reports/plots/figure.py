"""Figure helpers shared by every plot: matplotlib on the Agg backend (imported here only), a figure
context with the report's style, PNG bytes without date or version metadata (the same input gives the
same bytes), axis units that suit a span, and the labelling inspector the tests use."""
from __future__ import annotations

import io
from contextlib import contextmanager

import numpy as np


@contextmanager
def figure(nrows: int = 1, ncols: int = 1, height: float = 3.6, width: float = 10.0, **kw):
    """A figure of ``nrows`` x ``ncols`` panels in the report's style, closed when the block ends."""
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    with matplotlib.rc_context({"svg.hashsalt": "edgesim", "font.size": 9, "axes.grid": True,
                                "grid.alpha": 0.3, "figure.dpi": 100, "path.simplify": True}):
        fig, axes = plt.subplots(nrows, ncols, figsize=(width, height * nrows), squeeze=False, **kw)
        try:
            yield fig, axes
        finally:
            plt.close(fig)


_INSPECT: list[dict] | None = None


@contextmanager
def inspect_figures():
    """Collect, for every figure rendered inside the block, each panel's title and axis labels and
    whether the figure has a legend (tests check every plot is labelled)."""
    global _INSPECT
    seen: list[dict] = []
    _INSPECT = seen
    try:
        yield seen
    finally:
        _INSPECT = None


def png(fig, layout: bool = True) -> bytes:
    """The figure as PNG bytes without date or version metadata (the same figure gives the same bytes)."""
    if _INSPECT is not None:
        _INSPECT.append({
            "panels": [{"title": ax.get_title(), "xlabel": ax.get_xlabel(), "ylabel": ax.get_ylabel(),
                        "xticks": [float(x) for x in ax.get_xticks() if ax.get_xlim()[0] <= x <= ax.get_xlim()[1]],
                        "ylim": tuple(float(v) for v in ax.get_ylim()),
                        "lines_y": [float(v) for line in ax.get_lines() for v in np.ravel(line.get_ydata())
                                    if isinstance(v, (int, float, np.number))]}
                       for ax in fig.axes if getattr(ax, "_colorbar", None) is None],
            "legend_texts": [t.get_text() for lg in [*fig.legends, *(ax.get_legend() for ax in fig.axes)]
                             if lg is not None for t in lg.get_texts()],
            "colorbars": [ax.get_ylabel() or ax.get_xlabel() for ax in fig.axes
                          if getattr(ax, "_colorbar", None) is not None],
            "legend": bool(fig.legends) or any(ax.get_legend() is not None for ax in fig.axes)})
    buf = io.BytesIO()
    if layout:
        fig.tight_layout()
    fig.savefig(buf, format="png", dpi=100, metadata={"Software": None})
    return buf.getvalue()


def time_axis(duration_s: float) -> tuple[float, str]:
    """Divisor and unit label that suit a span of ``duration_s`` seconds."""
    if duration_s >= 3 * 3600:
        return 3600.0, "h"
    if duration_s >= 180:
        return 60.0, "min"
    if duration_s >= 2:
        return 1.0, "s"
    if duration_s >= 2e-3:
        return 1e-3, "ms"
    return 1e-6, "µs"


def bytes_axis(peak: float) -> tuple[float, str]:
    """Divisor and unit label that suit byte counts up to ``peak``."""
    if peak >= 2 * 1024 * 1024:
        return 1024.0 * 1024, "MiB"
    if peak >= 2 * 1024:
        return 1024.0, "KiB"
    return 1.0, "B"


def integer_ticks(ax, axis: str = "x") -> None:
    """Whole-number ticks on ``axis`` (training steps are counted, never fractional)."""
    from matplotlib.ticker import MaxNLocator

    (ax.xaxis if axis == "x" else ax.yaxis).set_major_locator(MaxNLocator(integer=True))


def mark_end(ax, end_s: float, tdiv: float, label: str) -> None:
    """A vertical line where the run ended early (out of memory, battery empty), with its reason."""
    ax.axvline(end_s / tdiv, color="#b42318", lw=1.5, ls="--", label=label)
