"""Training-technique switches (docs/architecture.md §1). Each one is a field here; a schedule sets them.

The workloads implement what each switch does to the math and to the op trace; the effect on MACs,
peak live bytes and accuracy is measured from the trace, never assumed.
"""
from __future__ import annotations

from dataclasses import dataclass, fields

from .buffers import BUFFER_POLICIES

UPDATE_MODES = ("all", "bias", "last-k", "sparse")
EARLY_FILTER_TARGETS = ("loss", "label")   # what the early filter's head learns (workloads.early_filter)


@dataclass(frozen=True)
class Techniques:
    """Switches for on-device training. Defaults: plain full backprop, separate gradient buffers."""

    etf: bool = False                    # fixed ETF classifier: no classifier wgrad / optimiser state
    instance_filter: float | None = None  # skip backward for samples whose loss is below this (nats)
    error_map_prune: float | None = None  # drop backward entries with |error| < this fraction of the sample's max
    grad_prune: float | None = None       # stochastic pruning: entries under this fraction tau of the sample's max
    #                                       become +-tau with probability |e|/tau, else 0 (unbiased); in (0, 1]
    update: str = "all"                  # all | bias | last-k | sparse
    last_k: int = 1                      # with update="last-k": how many trainable layers from the end
    sparse_fraction: float = 0.1         # with update="sparse": fraction of weights updated per step
    fused_update: bool = False           # update each weight right after its gradient: no wgrad buffer
    recompute: bool = False              # checkpointing: drop activations, recompute in backward
    swap: bool = False                   # swap activations to flash between forward and backward
    int8: bool = False                   # fake-quantised int8 training
    # learning from imperfect data (noisy labels, unlabelled stream, sensor noise)
    self_adaptive: float | None = None   # self-adaptive training: momentum M of the per-sample soft targets
    self_adaptive_start: int = 100       # ... after this many plain cross-entropy steps (the paper's warm-up E_s)
    sinkhorn: int | None = None          # pseudo-label unlabelled samples by K Sinkhorn iterations per batch
    buffer: str | None = None            # replay buffer policy: fifo | reservoir | representative
    buffer_size: int = 32                # samples the replay buffer keeps (>= the batch)
    noise_bias: bool = False             # bias-only adaptation per measured input-noise level
    noise_bias_steps: int = 20           # bias-only steps per noise level before its bias set is kept as is
    # the early instance filter (workloads.early_filter): a head on early features predicts each sample's loss
    early_filter: float | None = None    # drop samples predicted under this loss (nats) after the early layers
    early_filter_layer: int = 2          # the head reads the output of the model's first this-many layers
    early_filter_hidden: int = 8         # the head's hidden ReLU units (0: a linear head)
    early_filter_explore: float = 0.2    # fraction of the samples it would drop that go on anyway (it learns from them)
    early_filter_target: str = "loss"    # loss: regress the true log-loss | label: classify the label, its CE is the score
    early_filter_slack: float | None = None  # None: drop under the threshold; s: keep the top s x (running fraction of
    #                                          samples whose true loss >= early_filter) of each batch by predicted loss
    early_filter_lr: float = 0.02        # the head's own SGD learning rate

    def __post_init__(self) -> None:
        if self.update not in UPDATE_MODES:
            raise ValueError(f"techniques.update must be one of {UPDATE_MODES} (got {self.update!r})")
        if self.last_k < 1:
            raise ValueError(f"techniques.last_k must be >= 1 (got {self.last_k})")
        if not 0 < self.sparse_fraction <= 1:
            raise ValueError(f"techniques.sparse_fraction must be in (0, 1] (got {self.sparse_fraction})")
        for name in ("instance_filter", "error_map_prune", "grad_prune"):
            v = getattr(self, name)
            if v is not None and v < 0:
                raise ValueError(f"techniques.{name} must be >= 0 (got {v})")
        if self.grad_prune is not None and not 0 < self.grad_prune <= 1:
            raise ValueError(f"techniques.grad_prune must be in (0, 1] (got {self.grad_prune})")
        if self.self_adaptive is not None and (isinstance(self.self_adaptive, bool) or not 0 <= self.self_adaptive < 1):
            raise ValueError(f"techniques.self_adaptive must be a momentum in [0, 1) (got {self.self_adaptive!r})")
        if self.sinkhorn is not None and (isinstance(self.sinkhorn, bool) or not isinstance(self.sinkhorn, int)
                                          or self.sinkhorn < 1):
            raise ValueError(f"techniques.sinkhorn must be a whole number of iterations >= 1 (got {self.sinkhorn!r})")
        if self.buffer is not None and self.buffer not in BUFFER_POLICIES:
            raise ValueError(f"techniques.buffer must be one of {', '.join(BUFFER_POLICIES)} (got {self.buffer!r})")
        if isinstance(self.self_adaptive_start, bool) or not isinstance(self.self_adaptive_start, int) \
                or self.self_adaptive_start < 0:
            raise ValueError(f"techniques.self_adaptive_start must be a whole number >= 0 (got {self.self_adaptive_start!r})")
        if self.early_filter is not None and (isinstance(self.early_filter, bool)
                                              or not isinstance(self.early_filter, (int, float))
                                              or not 0 <= self.early_filter < float("inf")):
            raise ValueError(f"techniques.early_filter must be a loss in nats >= 0 (got {self.early_filter!r})")
        if isinstance(self.early_filter_layer, bool) or not isinstance(self.early_filter_layer, int) \
                or self.early_filter_layer < 1:
            raise ValueError(f"techniques.early_filter_layer must be a whole number >= 1 (got {self.early_filter_layer!r})")
        if isinstance(self.early_filter_hidden, bool) or not isinstance(self.early_filter_hidden, int) \
                or self.early_filter_hidden < 0:
            raise ValueError(f"techniques.early_filter_hidden must be a whole number >= 0 (got {self.early_filter_hidden!r})")
        if isinstance(self.early_filter_explore, bool) or not isinstance(self.early_filter_explore, (int, float)) \
                or not 0 <= self.early_filter_explore <= 1:
            raise ValueError(f"techniques.early_filter_explore must be a fraction in [0, 1] (got {self.early_filter_explore!r})")
        if self.early_filter_target not in EARLY_FILTER_TARGETS:
            raise ValueError(f"techniques.early_filter_target must be one of {EARLY_FILTER_TARGETS} "
                             f"(got {self.early_filter_target!r})")
        for name in ("early_filter_slack", "early_filter_lr"):
            v = getattr(self, name)
            if (v is not None or name == "early_filter_lr") and (
                    isinstance(v, bool) or not isinstance(v, (int, float)) or not 0 < v < float("inf")):
                raise ValueError(f"techniques.{name} must be a number > 0 (got {v!r})")
        data = [n for n in ("self_adaptive", "sinkhorn", "buffer") if getattr(self, n) is not None] + \
            (["noise_bias"] if self.noise_bias else [])
        if self.early_filter is not None and data:
            raise ValueError(f"techniques.early_filter cannot be combined with {', '.join(data)} (their loss ops "
                             "replace the loss the early filter's head learns from)")
        for name in ("buffer_size", "noise_bias_steps"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"techniques.{name} must be a whole number >= 1 (got {v!r})")

    @classmethod
    def from_dict(cls, d: dict, where: str = "techniques") -> Techniques:
        """Build from a TOML table; unknown keys are an error naming ``where`` and the key."""
        known = {f.name for f in fields(cls)}
        for k in d:
            if k not in known:
                raise ValueError(f"{where}: unknown technique {k!r} (known: {', '.join(sorted(known))})")
        return cls(**d)

    def active(self) -> list[str]:
        """Names of the switches that differ from the defaults, for labels and reports."""
        default = Techniques()
        return [f.name for f in fields(self) if getattr(self, f.name) != getattr(default, f.name)]
