"""The sweep's heat maps: feasibility and accuracy gain, device x schedule."""
from __future__ import annotations

import numpy as np

from ..fmt import finite
from .figure import figure, png


def heatmap_plot(devices: list[str], schedules: list[str], cells: dict) -> bytes:
    """Device x schedule. Green where the schedule fits, darker with more margin on the binding
    constraint; red where it does not, darker with a larger violation; grey where the scenario failed.
    Each cell names the binding constraint and its margin (% of its budget)."""
    import matplotlib
    import matplotlib.patches as mpatches

    greens, reds = matplotlib.colormaps["Greens"], matplotlib.colormaps["Reds"]
    grey = (0.74, 0.74, 0.74, 1.0)
    img = np.ones((len(devices), len(schedules), 4))
    h = max(2.6, 0.5 * len(devices) + 2.0 + 0.04 * max((len(x) for x in schedules), default=0))
    w = min(max(10.0, 1.3 * len(schedules) + 5.0), 40.0)
    with figure(height=h, width=w) as (fig, axes):
        ax = axes[0][0]
        texts = []
        for i, d in enumerate(devices):
            for j, s in enumerate(schedules):
                c = cells.get(d, {}).get(s)
                if not c:
                    img[i, j] = (1, 1, 1, 1)
                    texts.append((i, j, "not run", "black"))
                    continue
                if c.get("fits") is None:
                    img[i, j] = grey
                    texts.append((i, j, "error", "black"))
                    continue
                r = c.get("rel_margin")
                mag = 1.0 if r is None else min(abs(r), 1.0)
                img[i, j] = greens(0.25 + 0.6 * mag) if c["fits"] else reds(0.35 + 0.6 * mag)
                bind = str(c.get("binding") or "-")
                if c.get("fatal"):
                    bind = f"{c['fatal']}"
                margin = f"{100 * r:+.0f} %" if r is not None else ""
                txt = f"{'fits' if c['fits'] else 'NO'}\n{bind} {margin}".strip()
                texts.append((i, j, txt, "white" if mag > 0.6 else "black"))
        ax.imshow(img, aspect="auto", interpolation="nearest")
        for i, j, txt, color in texts:
            ax.text(j, i, txt, ha="center", va="center", fontsize=6.5, color=color)
        ax.set_xticks(range(len(schedules)), schedules, rotation=20, ha="right")
        ax.set_yticks(range(len(devices)), devices)
        ax.set_xlabel("schedule")
        ax.set_ylabel("device")
        ax.grid(False)
        ax.set_title("Feasibility: device x schedule (binding constraint, its margin as % of budget)")
        ax.legend(handles=[mpatches.Patch(color=greens(0.55), label="fits (darker: more margin)"),
                           mpatches.Patch(color=reds(0.65), label="does not fit (darker: larger violation)"),
                           mpatches.Patch(color=grey, label="error: scenario failed to run")],
                  loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=7)
        return png(fig)


def gain_heatmap_plot(devices: list[str], schedules: list[str], cells: dict) -> bytes:
    """Device x schedule: accuracy gain from personalisation (after - before, percentage points), the
    first criterion of the best-schedule objective; cells that do not fit are hatched."""
    import matplotlib
    import matplotlib.patches as mpatches

    g = np.full((len(devices), len(schedules)), np.nan)
    for i, d in enumerate(devices):
        for j, s in enumerate(schedules):
            c = cells.get(d, {}).get(s) or {}
            if finite(c.get("accuracy_gain")):
                g[i, j] = 100 * c["accuracy_gain"]
    h = max(2.6, 0.5 * len(devices) + 2.0 + 0.04 * max((len(x) for x in schedules), default=0))
    w = min(max(10.0, 1.3 * len(schedules) + 5.0), 40.0)
    with figure(height=h, width=w) as (fig, axes):
        ax = axes[0][0]
        cmap = matplotlib.colormaps["Blues"].with_extremes(bad="#e0e0e0")
        lim = float(np.nanmax(np.abs(g))) if np.isfinite(g).any() else 1.0
        im = ax.imshow(np.ma.masked_invalid(g), cmap=cmap, vmin=min(0.0, float(np.nanmin(g)) if np.isfinite(g).any()
                                                                     else 0.0), vmax=max(lim, 1e-9),
                       aspect="auto", interpolation="nearest")
        for i, d in enumerate(devices):
            for j, s in enumerate(schedules):
                c = cells.get(d, {}).get(s) or {}
                txt = f"{g[i, j]:+.1f}" if np.isfinite(g[i, j]) else "n/a"
                if c.get("fits") is False:
                    ax.add_patch(mpatches.Rectangle((j - 0.5, i - 0.5), 1, 1, fill=False, hatch="//",
                                                    edgecolor=(0.71, 0.14, 0.09, 0.45), lw=0))
                    txt += "\n(does not fit)"
                dark = np.isfinite(g[i, j]) and g[i, j] > 0.6 * lim
                ax.text(j, i, txt, ha="center", va="center", fontsize=7, color="white" if dark else "black")
        ax.set_xticks(range(len(schedules)), schedules, rotation=20, ha="right")
        ax.set_yticks(range(len(devices)), devices)
        ax.set_xlabel("schedule")
        ax.set_ylabel("device")
        ax.grid(False)
        ax.set_title("Accuracy gain from personalisation (user data, after - before)")
        cb = fig.colorbar(im, ax=ax)
        cb.set_label("accuracy gain (percentage points)")
        ax.legend(handles=[mpatches.Patch(facecolor="white", edgecolor=(0.71, 0.14, 0.09, 0.45), hatch="//",
                                          label="schedule does not fit"),
                           mpatches.Patch(color="#e0e0e0", label="no figure (error)")],
                  loc="upper left", bbox_to_anchor=(1.15, 1.0), fontsize=7)
        return png(fig)
