"""The scenario's tables as typed, frozen configs (docs/architecture.md §3).

``simulator.scenario`` validates a scenario file and builds these; the engine's processes read them as
attributes (``pipeline.window``), never through string keys. Field names are the scenario file's keys,
so ``dataclasses.asdict`` gives the table back as the result shows it.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from workloads.compression.config import CompressionSpec
from workloads.datasets import StoryOptions
from workloads.techniques import Techniques

TRIGGERS = ("every-n", "periodic", "idle", "charging")
MEMORY_POLICIES = ("planned", "heap")
FIDELITY_MODES = ("auto", "full")


@dataclass(frozen=True)
class WorkloadConfig:
    """What trains: the model (zoo name or spec), its data and story, the optimiser."""

    model: str
    dataset: str          # "auto": the zoo entry's / the input shape's data set
    story: str
    optimizer: str
    lr: float
    momentum: float
    compression: CompressionSpec | None = None   # frozen layers kept compressed in flash (None: dense)
    # imperfect-data stories (workloads.datasets.StoryOptions; each applies to its own story only)
    label_noise: float = StoryOptions.label_noise            # noisy-labels: fraction of the user's labels that are wrong
    label_noise_kind: str = StoryOptions.label_noise_kind    # ... to any other class | to the confusable class
    label_fraction: float = StoryOptions.label_fraction      # unlabelled: fraction of the stream that comes with a label
    noise_level: float = StoryOptions.noise_level            # input-noise: sensor noise scale the stream rises to

    def story_options(self) -> StoryOptions:
        return StoryOptions(self.label_noise, self.label_noise_kind, self.label_fraction, self.noise_level)


@dataclass(frozen=True)
class PipelineConfig:
    """The sensor stream: ``sensor -> window -> infer -> sink``, bounded queues between stages."""

    sensor_rate_hz: float
    window: int
    deadline_s: float
    queue_capacity: int
    label_every: int

    @property
    def window_period_s(self) -> float:
        """Seconds between two inference inputs (one DMA block of ``window`` frames)."""
        return self.window / self.sensor_rate_hz


@dataclass(frozen=True)
class ScheduleConfig:
    """When and how much to train, and how RAM is managed (the techniques are ``Scenario.techniques``)."""

    trigger: str
    every_n: int
    period_s: float
    batch: int
    steps: int
    memory_policy: str
    heap_policy: str
    checkpoint_every_steps: int
    replay: int           # labelled samples kept for batches (experience replay buffer)
    max_steps: int


@dataclass(frozen=True)
class PowerConfig:
    idle_timeout_s: float


@dataclass(frozen=True)
class BatteryConfig:
    capacity_mah: float | None     # None: the device profile's battery
    voltage_v: float | None
    initial_fraction: float
    harvest_w_by_hour: tuple[float, ...]
    sample_s: float


@dataclass(frozen=True)
class BudgetsConfig:
    step_latency_s: float
    deadline_miss_rate: float
    battery_life_days: float
    energy_per_day_j: float | None   # None: battery capacity / battery_life_days
    flash_wear_per_year: float


@dataclass(frozen=True)
class EvalConfig:
    points: int


@dataclass(frozen=True)
class FidelityConfig:
    """Which steps run real numpy and which are charged from records (``simulator.fidelity``)."""

    mode: str             # auto | full
    real_rounds: int      # 0: real rounds until the loss curve is flat; N: N real rounds (the first day is always real)


@dataclass(frozen=True)
class Variant:
    """A technique variant to compare against the scenario as scheduled."""

    label: str
    techniques: Techniques


def table(cfg: Any) -> dict[str, Any]:
    """A config as the plain dict the result JSON shows."""
    return asdict(cfg)
