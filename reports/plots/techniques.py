"""The technique-comparison plot: variants side by side (MACs, peak RAM, accuracy)."""
from __future__ import annotations

import numpy as np

from .figure import figure, png


def comparison_plot(labels: list[str], macs: list[float | None], ram: list[float | None],
                    acc: list[float | None], fits: list[bool | None] | None = None) -> bytes:
    """Technique variants side by side: training MACs, peak RAM and accuracy after personalisation. A
    variant that did not fit is hatched red and says so: its MACs and accuracy are those of a run that
    stopped, not what the technique costs or gives (its RAM bar is what it needed)."""
    fits = list(fits) if fits is not None else [None] * len(labels)
    with figure(1, 3, height=3.6) as (fig, axes):
        y = np.arange(len(labels))
        for ax, vals, title, unit, color in (
                (axes[0][0], macs, "Training compute", "MACs (millions)", "#4c72b0"),
                (axes[0][1], ram, "Peak RAM", "RAM (KiB)", "#dd8452"),
                (axes[0][2], acc, "Accuracy after", "user accuracy (%)", "#55a868")):
            div = {"MACs (millions)": 1e6, "RAM (KiB)": 1024.0, "user accuracy (%)": 0.01}[unit]
            v = [(x / div if x is not None else 0.0) for x in vals]
            ok = [f is not False for f in fits]
            ax.barh(y[ok], np.asarray(v)[ok], color=color, label=title.lower())
            if not all(ok):
                bad = [not o for o in ok]
                ax.barh(y[bad], np.asarray(v)[bad], color="white", edgecolor="#b42318", hatch="//",
                        label="variant does not fit")
            for yi, x, raw, o in zip(y, v, vals, ok, strict=True):
                text = f" {x:.3g}" if raw is not None else " n/a"
                ax.text(x, yi, text + ("" if o else " (does not fit)"), va="center", fontsize=7,
                        color="black" if o else "#b42318")
            ax.set_yticks(y, labels if ax is axes[0][0] else [""] * len(labels))
            ax.invert_yaxis()
            ax.set_title(title)
            ax.set_xlabel(unit)
            ax.set_ylabel("technique variant")
            ax.legend(loc="lower right", fontsize=7)
            ax.set_xlim(0, max(v + [1e-9]) * (1.25 if all(ok) else 1.6))
        return png(fig)
