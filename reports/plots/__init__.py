"""The report's plots, one module per family, each plot returning PNG bytes. Every plot has a title, axis
labels with units and a legend; ``figure`` holds the shared helpers (Agg backend, deterministic PNG)."""
from __future__ import annotations

from .battery import battery_plot
from .cpu import cpu_plot
from .emulation import instructions_plot, loss_compare_plot
from .figure import inspect_figures
from .heatmaps import gain_heatmap_plot, heatmap_plot
from .learning import learning_plot
from .memory import memory_plot
from .techniques import comparison_plot

__all__ = ["battery_plot", "comparison_plot", "cpu_plot", "gain_heatmap_plot", "heatmap_plot", "inspect_figures",
           "instructions_plot", "learning_plot", "loss_compare_plot", "memory_plot"]
