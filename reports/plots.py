"""The report's plots: matplotlib on the Agg backend (imported here only), each returning PNG bytes.
Every plot has a title, axis labels with units and a legend; the PNG carries no date or version
metadata, so the same input gives the same bytes.
"""
from __future__ import annotations

import io
import math
from collections.abc import Sequence
from contextlib import contextmanager

import numpy as np

KIND_ORDER = ("runtime", "weight", "bias", "optim", "input", "activation", "grad", "wgrad", "workspace",
              "arena_unused")
KIND_COLORS = {"weight": "#4c72b0", "bias": "#64b5cd", "optim": "#8172b2", "input": "#937860",
               "activation": "#55a868", "grad": "#dd8452", "wgrad": "#c44e52", "workspace": "#8c8c8c",
               "runtime": "#cccccc", "arena_unused": "#eeeeee"}
MAX_POINTS = 2000


@contextmanager
def _figure(nrows: int = 1, ncols: int = 1, height: float = 3.6, width: float = 10.0, **kw):
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


def _png(fig, layout: bool = True) -> bytes:
    if _INSPECT is not None:
        _INSPECT.append({
            "panels": [{"title": ax.get_title(), "xlabel": ax.get_xlabel(), "ylabel": ax.get_ylabel()}
                       for ax in fig.axes if getattr(ax, "_colorbar", None) is None],
            "colorbars": [ax.get_ylabel() or ax.get_xlabel() for ax in fig.axes
                          if getattr(ax, "_colorbar", None) is not None],
            "legend": bool(fig.legends) or any(ax.get_legend() is not None for ax in fig.axes)})
    buf = io.BytesIO()
    if layout:
        fig.tight_layout()
    fig.savefig(buf, format="png", dpi=100, metadata={"Software": None})
    return buf.getvalue()


def _time_axis(duration_s: float) -> tuple[float, str]:
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


def _bytes_axis(peak: float) -> tuple[float, str]:
    if peak >= 2 * 1024 * 1024:
        return 1024.0 * 1024, "MiB"
    if peak >= 2 * 1024:
        return 1024.0, "KiB"
    return 1.0, "B"


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
                naive: float | None, planned: float | None, lower: float | None, duration_s: float = 0.0) -> bytes:
    """Live bytes over time stacked by tensor kind, with the RAM budget; left: the whole run,
    right: a zoom on the step with the peak. The planner's figures are drawn as reference lines."""
    t = np.asarray(memory.get("time_s") or [], dtype=float)
    by_kind = memory.get("by_kind") or {}
    kinds = [k for k in KIND_ORDER if k in by_kind] + sorted(k for k in by_kind if k not in KIND_ORDER)
    stacks = np.array([np.asarray(by_kind[k], dtype=float) for k in kinds]) if kinds else np.zeros((0, len(t)))
    if runtime_reserved_bytes and "runtime" not in by_kind:
        kinds = ["runtime"] + kinds
        stacks = np.vstack([np.full((1, len(t)), float(runtime_reserved_bytes)), stacks])
    with _figure(1, 2, height=4.0, gridspec_kw={"width_ratios": [3, 2]}) as (fig, axes):
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
            return _png(fig)
        total = stacks.sum(axis=0)
        used = total - (stacks[kinds.index("arena_unused")] if "arena_unused" in kinds else 0.0)
        peak_i = int(np.argmax(used))
        refs = [v for v in (ram_budget_bytes, float(total.max())) if v]
        bdiv, bunit = _bytes_axis(max(refs))
        colors = [KIND_COLORS.get(k, None) for k in kinds]
        base = float(runtime_reserved_bytes or 0)
        handles: dict = {}
        # left: the whole run
        tt, ss = _bin_envelope(t, stacks, duration_s)
        tdiv, tunit = _time_axis(max(float(tt[-1]) if len(tt) else 0.0, float(t[-1]), duration_s))
        ax_all.stackplot(tt / tdiv, ss / bdiv, labels=kinds, colors=colors, step="post", alpha=0.85)
        if ram_budget_bytes:
            ax_all.axhline(ram_budget_bytes / bdiv, color="black", lw=1.5, label="RAM budget")
        ax_all.set_ylim(0, max(refs) / bdiv * 1.12)
        ax_all.set_title("Memory over time, stacked by tensor kind (fullest moment per time bin)")
        ax_all.set_xlabel(f"simulated time ({tunit})")
        ax_all.set_ylabel(f"RAM in use ({bunit})")
        # right: the peak's composition beside the planner's figures for one step (each + runtime reserve)
        bars = [("observed\npeak", stacks[:, peak_i])]
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
        return _png(fig, layout=False)


def _zoom(t: np.ndarray, stacks: np.ndarray, used: np.ndarray, i: int,
          width: int = 2000) -> tuple[np.ndarray, np.ndarray]:
    """The burst of activity around sample ``i``: from the last sample at the baseline of ``used``
    before it to the first one after it (at most ``width`` samples each side)."""
    base = used.min()
    lo = hi = i
    while lo > 0 and used[lo - 1] > base and i - lo < width:
        lo -= 1
    while hi < len(t) - 1 and used[hi + 1] > base and hi - i < width:
        hi += 1
    lo, hi = max(lo - 1, 0), min(hi + 1, len(t) - 1)
    return t[lo:hi + 1], stacks[:, lo:hi + 1]


def _merge_intervals(iv: list[tuple[float, float]], gap: float) -> list[tuple[float, float]]:
    out: list[list[float]] = []
    for s, e in sorted(iv):
        if out and s - out[-1][1] <= gap:
            out[-1][1] = max(out[-1][1], e)
        else:
            out.append([s, e])
    return [(s, e) for s, e in out]


def _busy_per_bin(iv: list[tuple[float, float]], edges: np.ndarray) -> np.ndarray:
    """Seconds of CPU each time bin spends inside the intervals ``iv``."""
    busy = np.zeros(len(edges) - 1)
    if not iv:
        return busy
    width = edges[1] - edges[0]
    for s, e in iv:
        k0 = int(min(max((s - edges[0]) // width, 0), len(busy) - 1))
        k1 = int(min(max((e - edges[0]) // width, 0), len(busy) - 1))
        if k0 == k1:
            busy[k0] += e - s
        else:
            busy[k0] += edges[k0 + 1] - s
            busy[k0 + 1:k1] += width
            busy[k1] += e - edges[k1]
    return busy


def cpu_plot(cpu: Sequence[dict], duration_s: float, busy_by_hour: Sequence[dict] | None = None) -> bytes:
    """Who holds the CPU. Left: the share of each time bin spent on inference and on training over the
    whole run, with preemptions marked. Right: the actual slices around the first preemption (or the
    first training burst); preempted training slices are hatched red."""
    rows = {"inference": 1, "training": 0}
    colors = {"inference": "#4c72b0", "training": "#55a868"}
    with _figure(1, 2, height=3.0, gridspec_kw={"width_ratios": [3, 2]}) as (fig, axes):
        ax_all, ax_zoom = axes[0]
        end = max(duration_s, max((c["end_s"] for c in cpu), default=0.0), 1e-9)
        tdiv, tunit = _time_axis(end)
        if busy_by_hour and end >= 3 * 3600:
            # the run's own per-hour totals: exact even where the slice list was capped
            nb = int(math.ceil(end / 3600))
            edges = np.arange(nb + 1) * 3600.0
            shares = [np.zeros(nb) for _ in rows]
            for h in busy_by_hour:
                if 0 <= h["hour"] < nb:
                    for k, task in enumerate(rows):
                        shares[k][h["hour"]] = 100 * (h.get(task) or 0.0) / 3600
        else:
            nb = 200
            edges = np.linspace(0.0, end, nb + 1)
            shares = [100 * _busy_per_bin([(c["start_s"], c["end_s"]) for c in cpu if c.get("task") == task], edges)
                      / (edges[1] - edges[0]) for task in rows]
        ax_all.stackplot(edges / tdiv, [np.r_[sh, sh[-1:]] for sh in shares], step="post", colors=[colors[k] for k in rows],
                         labels=[f"{k} (busy share)" for k in rows], alpha=0.85)
        pre = [c for c in cpu if c.get("preempted")]
        top = max(float(np.max(np.sum(shares, axis=0))) if nb else 0.0, 1e-3)
        if pre:
            ax_all.plot([c["start_s"] / tdiv for c in pre], [top * 1.08] * len(pre), "v", color="#c44e52", ms=4,
                        label=f"training preempted ({len(pre)})")
        ax_all.set_ylim(0, top * 1.25)
        ax_all.set_xlim(0, end / tdiv)
        ax_all.set_title(f"CPU use over the run (share of each {fmt_span(edges[1] - edges[0])} bin)")
        ax_all.set_xlabel(f"simulated time ({tunit})")
        ax_all.set_ylabel("CPU busy (% of bin)")
        ax_all.legend(loc="upper right", fontsize=7)

        focus = pre[0] if pre else next((c for c in cpu if c.get("task") == "training"), cpu[0] if cpu else None)
        if focus is None:
            lo, hi = 0.0, 1.0
        else:
            # the whole burst: training slices that follow on within one slice length or 0.5 s
            start, stop = focus["start_s"], focus["end_s"]
            for c in sorted(cpu, key=lambda c: c["start_s"]):
                if c["start_s"] >= stop and c["start_s"] - stop <= max(0.5, stop - start):
                    stop = max(stop, c["end_s"]) if c.get("task") == "training" else stop
            w = max(stop - start, 1e-3)
            lo, hi = max(0.0, start - 0.15 * w), stop + 0.15 * w
        zdiv, zunit = _time_axis(hi - lo)
        for task, y in rows.items():
            for preempted, color, hatch in ((False, colors[task], None), (True, "#c44e52", "//")):
                iv = [(c["start_s"], c["end_s"]) for c in cpu if c.get("task") == task
                      and bool(c.get("preempted")) == preempted and c["end_s"] >= lo and c["start_s"] <= hi]
                if not iv and preempted:
                    continue
                ax_zoom.broken_barh([((s - lo) / zdiv, max((e - s) / zdiv, (hi - lo) / zdiv / 2000)) for s, e in iv],
                                    (y - 0.35, 0.7), facecolors=color, hatch=hatch,
                                    label=f"{task}{' (preempted)' if preempted else ''}")
        ax_zoom.set_yticks(list(rows.values()), list(rows))
        ax_zoom.set_xlim(0, (hi - lo) / zdiv)
        ax_zoom.set_xlabel(f"time since t = {lo:.3f} s ({zunit})")
        ax_zoom.set_ylabel("task on CPU")
        ax_zoom.set_title("Zoom: first preemption" if pre else "Zoom: first training burst")
        ax_zoom.legend(loc="upper right", fontsize=7)
        return _png(fig)


def fmt_span(s: float) -> str:
    if s >= 3600:
        return f"{s / 3600:g} h"
    if s >= 60:
        return f"{s / 60:g} min"
    if s >= 1:
        return f"{s:.3g} s"
    return f"{s * 1e3:.3g} ms"


def battery_plot(battery: dict, energy_per_day_j: float | None) -> bytes:
    """State of charge over the run (J), with the capacity as reference."""
    t = np.asarray(battery.get("time_s") or [], dtype=float)
    q = np.asarray(battery.get("charge_j") or [], dtype=float)
    cap = battery.get("capacity_j")
    with _figure(height=3.2) as (fig, axes):
        ax = axes[0][0]
        span = float(t[-1]) if len(t) else 1.0
        tdiv, tunit = _time_axis(span)
        ax.plot(t / tdiv, q, color="#4c72b0", lw=1.5, label="charge")
        if cap:
            ax.axhline(cap, color="black", lw=1, ls="--", label=f"capacity {cap:,.0f} J")
        if len(q) > 1:
            used = q[0] - q[-1]
            ax.plot([], [], " ", label=f"used over the run: {used:,.1f} J")
        if energy_per_day_j is not None:
            ax.plot([], [], " ", label=f"energy per day: {energy_per_day_j:,.1f} J")
        ax.set_title("Battery charge over the run")
        ax.set_xlabel(f"simulated time ({tunit})")
        ax.set_ylabel("charge (J)")
        lo = float(q.min()) if len(q) else 0.0
        hi = float(cap or (q.max() if len(q) else 1.0))
        pad = max((hi - lo) * 0.1, hi * 1e-4, 1e-9)
        ax.set_ylim(lo - pad, hi + pad)
        ax.legend(loc="lower left", fontsize=8)
        return _png(fig)


def learning_plot(learning: dict) -> bytes:
    """Training loss per step (left) and held-out accuracy on the user's data and old classes (right)."""
    step = np.asarray(learning.get("step") or [], dtype=float)
    loss = np.asarray(learning.get("loss") or [], dtype=float)
    ev = learning.get("eval") or []
    with _figure(1, 2, height=3.4) as (fig, axes):
        a, b = axes[0]
        if len(step):
            a.plot(step, loss, color="#dd8452", lw=0.8, alpha=0.5, label="batch loss")
            if len(loss) >= 10:
                k = max(len(loss) // 20, 2)
                sm = np.convolve(loss, np.ones(k) / k, mode="valid")
                a.plot(step[k - 1:], sm, color="#c44e52", lw=1.8, label=f"moving mean ({k} steps)")
        else:
            a.plot([], [], label="no training steps")
        a.set_title("Learning curve")
        a.set_xlabel("training step")
        a.set_ylabel("cross-entropy loss (nats)")
        a.legend(loc="upper right", fontsize=8)
        es = [e["step"] for e in ev]
        b.plot(es, [100 * e["user_accuracy"] for e in ev], "o-", color="#4c72b0", label="user data (new)")
        b.plot(es, [100 * e["retention_accuracy"] for e in ev], "s--", color="#55a868", label="old classes (retention)")
        b.set_ylim(-2, 102)
        b.set_title("Accuracy during personalisation")
        b.set_xlabel("training step")
        b.set_ylabel("held-out accuracy (%)")
        b.legend(loc="lower right", fontsize=8)
        return _png(fig)


def comparison_plot(labels: list[str], macs: list[float | None], ram: list[float | None],
                    acc: list[float | None]) -> bytes:
    """Technique variants side by side: training MACs, peak RAM and accuracy after personalisation."""
    with _figure(1, 3, height=3.6) as (fig, axes):
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
        return _png(fig)


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
    with _figure(height=h, width=w) as (fig, axes):
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
        return _png(fig)


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
    with _figure(height=h, width=w) as (fig, axes):
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
        return _png(fig)


def loss_compare_plot(losses: Sequence[float], host_losses: Sequence[float], board: str) -> bytes:
    """Training loss per step on the emulated board and on the host (CPython + numpy) for the same data."""
    with _figure(height=3.2) as (fig, axes):
        ax = axes[0][0]
        ax.plot(range(1, len(losses) + 1), losses, "o-", ms=3, label=f"{board} (emulated, float32)")
        ax.plot(range(1, len(host_losses) + 1), host_losses, "s--", ms=3, label="host (numpy)")
        ax.set_title("Loss per step: emulated board vs host")
        ax.set_xlabel("training step")
        ax.set_ylabel("cross-entropy loss (nats)")
        ax.legend(loc="upper right", fontsize=8)
        return _png(fig)


def instructions_plot(measured: Sequence[float], predicted: Sequence[float], board: str) -> bytes:
    """Instructions per training step on the emulated board and as the simulator predicted them."""
    with _figure(height=3.0) as (fig, axes):
        ax = axes[0][0]
        if measured:
            ax.plot(range(1, len(measured) + 1), measured, "o-", ms=3, label=f"{board} (emulated, QEMU icount)")
        ax.plot(range(1, len(predicted) + 1), predicted, "s--", ms=3, label="simulator prediction")
        ax.set_title("Instructions per training step: emulated board vs simulator")
        ax.set_xlabel("training step")
        ax.set_ylabel("instructions (count)")
        ax.set_ylim(bottom=0)
        ax.legend(loc="lower right", fontsize=8)
        return _png(fig)


def finite(x) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)
