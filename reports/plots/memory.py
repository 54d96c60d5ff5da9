"""The memory plot: live bytes over time stacked by tensor kind, with the RAM budget and the memory
planner's figures for one step."""
from __future__ import annotations

import numpy as np

from .figure import bytes_axis, figure, mark_end, png, time_axis

KIND_ORDER = ("runtime", "weight", "bias", "optim", "input", "activation", "grad", "wgrad", "workspace",
              "arena_unused")
KIND_COLORS = {"weight": "#4c72b0", "bias": "#64b5cd", "optim": "#8172b2", "input": "#937860",
               "activation": "#55a868", "grad": "#dd8452", "wgrad": "#c44e52", "workspace": "#8c8c8c",
               "runtime": "#cccccc", "arena_unused": "#eeeeee"}


def _bin_envelope(t: np.ndarray, stacks: np.ndarray, end_s: float, n: int = 1000) -> tuple[np.ndarray, np.ndarray]:
    """The run cut into ``n`` time bins; each bin shows the stack of its fullest moment (the state carried
    in from before the bin, or a sample inside it), so short peaks stay visible at any zoom."""
    if len(t) == 0:
        return t, stacks
    end_s = max(end_s, float(t[-1]), 1e-9)
    edges = np.linspace(0.0, end_s, n + 1)
    total = stacks.sum(axis=0)
    carry = np.searchsorted(t, edges[:-1], side="right") - 1           # state at each bin's start
    b = np.clip(np.searchsorted(edges, t, side="right") - 1, 0, n - 1)  # bin of each sample
    best = carry.copy()
    for i in range(len(t)):                                            # fullest sample inside each bin
        k = b[i]
        if best[k] < 0 or total[i] > total[best[k]]:
            best[k] = i
    out = np.zeros((stacks.shape[0], n))
    ok = best >= 0
    out[:, ok] = stacks[:, best[ok]]
    return edges[:-1], out


def memory_plot(memory: dict, ram_budget_bytes: float | None, runtime_reserved_bytes: float | None,
                naive: float | None, planned: float | None, lower: float | None, duration_s: float = 0.0,
                ended: tuple[float, str] | None = None, needed_bytes: float | None = None) -> bytes:
    """Live bytes over time stacked by tensor kind, with the RAM budget; left: the whole run,
    right: a zoom on the step with the peak. The planner's figures are drawn as reference lines.
    ``ended`` = (time, reason) marks where a run stopped early; ``needed_bytes`` (in use + the
    allocation that failed) is drawn there."""
    t = np.asarray(memory.get("time_s") or [], dtype=float)
    by_kind = memory.get("by_kind") or {}
    kinds = [k for k in KIND_ORDER if k in by_kind] + sorted(k for k in by_kind if k not in KIND_ORDER)
    stacks = np.array([np.asarray(by_kind[k], dtype=float) for k in kinds]) if kinds else np.zeros((0, len(t)))
    if runtime_reserved_bytes and "runtime" not in by_kind:
        kinds = ["runtime"] + kinds
        stacks = np.vstack([np.full((1, len(t)), float(runtime_reserved_bytes)), stacks])
    with figure(1, 2, height=4.0, gridspec_kw={"width_ratios": [3, 2]}) as (fig, axes):
        ax_all, ax_zoom = axes[0]
        if len(t) == 0:
            for ax in (ax_all, ax_zoom):
                ax.text(0.5, 0.5, "no memory samples in this result", ha="center", transform=ax.transAxes)
                ax.set_xlabel("time (s)")
                ax.set_ylabel("RAM (B)")
            ax_all.set_title("Memory over time")
            ax_zoom.set_title("Peak step")
            ax_all.plot([], [], label="no data")
            ax_all.legend(loc="upper right")
            return png(fig)
        total = stacks.sum(axis=0)
        used = total - (stacks[kinds.index("arena_unused")] if "arena_unused" in kinds else 0.0)
        peak_i = int(np.argmax(used))
        refs = [v for v in (ram_budget_bytes, float(total.max()), needed_bytes) if v]
        bdiv, bunit = bytes_axis(max(refs))
        colors = [KIND_COLORS.get(k, None) for k in kinds]
        base = float(runtime_reserved_bytes or 0)
        handles: dict = {}
        # left: the whole run
        tt, ss = _bin_envelope(t, stacks, duration_s)
        tdiv, tunit = time_axis(max(float(tt[-1]) if len(tt) else 0.0, float(t[-1]), duration_s))
        ax_all.stackplot(tt / tdiv, ss / bdiv, labels=kinds, colors=colors, step="post", alpha=0.85)
        if ram_budget_bytes:
            ax_all.axhline(ram_budget_bytes / bdiv, color="black", lw=1.5, label="RAM budget")
        if ended:
            mark_end(ax_all, ended[0], tdiv, ended[1])
            if needed_bytes:
                ax_all.plot([ended[0] / tdiv], [needed_bytes / bdiv], "x", color="#b42318", ms=9, mew=2,
                            label="in use + the allocation that failed")
        ax_all.set_ylim(0, max(refs) / bdiv * 1.12)
        ax_all.set_title("Memory over time, stacked by tensor kind (fullest moment per time bin)")
        ax_all.set_xlabel(f"simulated time ({tunit})")
        ax_all.set_ylabel(f"RAM in use ({bunit})")
        # right: the peak's composition beside the planner's figures for one step (each + runtime reserve)
        bars = [("in use when\nit stopped" if needed_bytes else "observed\npeak", stacks[:, peak_i])]
        for v, name in ((naive, "naive"), (planned, "planned\narena"), (lower, "liveness\nlower bound")):
            if v:
                col = np.zeros(len(kinds))
                if "runtime" in kinds:
                    col[kinds.index("runtime")] = base
                bars.append((name, col))
        x = np.arange(len(bars))
        bottoms = np.zeros(len(bars))
        for k in range(len(kinds)):
            h = np.array([b[1][k] for b in bars]) / bdiv
            ax_zoom.bar(x, h, bottom=bottoms, color=colors[k], width=0.6)
            bottoms += h
        planner = np.array([0.0] + [v for v in (naive, planned, lower) if v]) / bdiv
        ax_zoom.bar(x[1:], planner[1:], bottom=bottoms[1:], color="#2f4b7c", width=0.6,
                    label="planner figure (one step)")
        tops = bottoms + planner
        for xi, tp in zip(x, tops, strict=True):
            ax_zoom.text(xi, tp, f"{tp:.1f}", ha="center", va="bottom", fontsize=7)
        if ram_budget_bytes:
            ax_zoom.axhline(ram_budget_bytes / bdiv, color="black", lw=1.5)
        ax_zoom.set_xticks(x, [b[0] for b in bars], fontsize=7)
        ax_zoom.set_ylim(0, max(refs + [float(tops.max()) * bdiv]) / bdiv * 1.12)
        ax_zoom.set_title(f"Peak (t = {t[peak_i]:.3f} s) vs the memory planner", fontsize=9)
        ax_zoom.set_xlabel("(planner bars: runtime reserve + planner figure)")
        ax_zoom.set_ylabel(f"RAM ({bunit})")
        ax_zoom.grid(axis="x", visible=False)
        handles: dict = {}
        for ax in (ax_all, ax_zoom):
            hs, ls_ = ax.get_legend_handles_labels()
            handles.update(dict(zip(ls_, hs, strict=True)))
        handles[f"RAM budget ({ram_budget_bytes / bdiv:.1f} {bunit})" if ram_budget_bytes else "no budget"] = \
            handles.pop("RAM budget", None) or ax_all.plot([], [], color="black")[0]
        fig.tight_layout(rect=(0, 0.1, 1, 1))
        fig.legend(handles.values(), handles.keys(), loc="lower center", ncol=6, fontsize=7, frameon=False)
        return png(fig, layout=False)
