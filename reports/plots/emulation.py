"""The emulation plots: loss and instructions per step, emulated board vs host and simulator."""
from __future__ import annotations

from collections.abc import Sequence

from .figure import figure, integer_ticks, png


def loss_compare_plot(losses: Sequence[float], host_losses: Sequence[float], board: str) -> bytes:
    """Training loss per step on the emulated board and on the host (CPython + numpy) for the same data."""
    with figure(height=3.2) as (fig, axes):
        ax = axes[0][0]
        ax.plot(range(1, len(losses) + 1), losses, "o-", ms=3, label=f"{board} (emulated, float32)")
        ax.plot(range(1, len(host_losses) + 1), host_losses, "s--", ms=3, label="host (numpy)")
        integer_ticks(ax)
        ax.set_title("Loss per step: emulated board vs host")
        ax.set_xlabel("training step")
        ax.set_ylabel("cross-entropy loss (nats)")
        ax.legend(loc="upper right", fontsize=8)
        return png(fig)


def instructions_plot(measured: Sequence[float], predicted: Sequence[float], board: str) -> bytes:
    """Instructions per training step on the emulated board and as the simulator predicted them."""
    with figure(height=3.0) as (fig, axes):
        ax = axes[0][0]
        if measured:
            ax.plot(range(1, len(measured) + 1), measured, "o-", ms=3, label=f"{board} (emulated, QEMU icount)")
        ax.plot(range(1, len(predicted) + 1), predicted, "s--", ms=3, label="simulator prediction")
        ax.set_title("Instructions per training step: emulated board vs simulator")
        ax.set_xlabel("training step")
        ax.set_ylabel("instructions (count)")
        top = max([*measured, *predicted, 1])
        ax.set_ylim(0, top * 1.15)                 # room above the lines: neither hides on the frame
        integer_ticks(ax)
        ax.legend(loc="lower right", fontsize=8)
        return png(fig)
