"""The learning plot: training loss per step and held-out accuracy during personalisation."""
from __future__ import annotations

import numpy as np

from .figure import figure, integer_ticks, png


def learning_plot(learning: dict) -> bytes:
    """Training loss per step (left) and held-out accuracy on the user's data and old classes (right)."""
    step = np.asarray(learning.get("step") or [], dtype=float)
    loss = np.asarray(learning.get("loss") or [], dtype=float)
    ev = learning.get("eval") or []
    with figure(1, 2, height=3.4) as (fig, axes):
        a, b = axes[0]
        if len(step):
            a.plot(step, loss, color="#dd8452", lw=0.8, alpha=0.5, label="batch loss")
            if len(loss) >= 10:
                k = max(len(loss) // 20, 2)
                sm = np.convolve(loss, np.ones(k) / k, mode="valid")
                a.plot(step[k - 1:], sm, color="#c44e52", lw=1.8, label=f"moving mean ({k} steps)")
        else:
            a.plot([], [], label="no training steps")
        integer_ticks(a)
        integer_ticks(b)
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
        return png(fig)
