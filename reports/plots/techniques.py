"""The technique-comparison plot: variants side by side (MACs, peak RAM, accuracy)."""
from __future__ import annotations

import numpy as np

from .figure import figure, png


def comparison_plot(labels: list[str], macs: list[float | None], ram: list[float | None],
                    acc: list[float | None]) -> bytes:
    """Technique variants side by side: training MACs, peak RAM and accuracy after personalisation."""
    with figure(1, 3, height=3.6) as (fig, axes):
        y = np.arange(len(labels))
        for ax, vals, title, unit, color in (
                (axes[0][0], macs, "Training compute", "MACs (millions)", "#4c72b0"),
                (axes[0][1], ram, "Peak RAM", "RAM (KiB)", "#dd8452"),
                (axes[0][2], acc, "Accuracy after", "user accuracy (%)", "#55a868")):
            div = {"MACs (millions)": 1e6, "RAM (KiB)": 1024.0, "user accuracy (%)": 0.01}[unit]
            v = [(x / div if x is not None else 0.0) for x in vals]
            ax.barh(y, v, color=color, label=title.lower())
            for yi, x, raw in zip(y, v, vals, strict=True):
                ax.text(x, yi, f" {x:.3g}" if raw is not None else " n/a", va="center", fontsize=7)
            ax.set_yticks(y, labels if ax is axes[0][0] else [""] * len(labels))
            ax.invert_yaxis()
            ax.set_title(title)
            ax.set_xlabel(unit)
            ax.set_ylabel("technique variant")
            ax.legend(loc="lower right", fontsize=7)
            ax.set_xlim(0, max(v + [1e-9]) * 1.25)
        return png(fig)
