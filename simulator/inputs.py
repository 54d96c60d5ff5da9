"""A scenario's inputs: its device profile and its training job, with errors naming the scenario
(docs/architecture.md §3)."""
from __future__ import annotations

from typing import Any

from device_profiles.loader import DeviceProfile, load_profile
from workloads.techniques import Techniques

from .scenario import Scenario


def make_job(model: str, *, dataset: str | None = None, story: str = "new-class", optimizer: str = "sgd",
             lr: float = 0.05, momentum: float = 0.9, techniques: Techniques | None = None, seed: int = 0,
             compression: Any = None, story_options: Any = None) -> Any:
    """A TrainingJob from the workloads package (imported here so the simulator core stays light)."""
    import workloads

    return workloads.make_job(model, dataset=dataset, story=story, optimizer=optimizer, lr=lr, momentum=momentum,
                              techniques=techniques or Techniques(), seed=seed, compression=compression,
                              story_options=story_options)


def job_for(sc: Scenario) -> Any:
    """The scenario's TrainingJob; a bad model or data set is an error naming the scenario and field."""
    w = sc.workload
    try:
        return make_job(w.model, dataset=None if w.dataset == "auto" else w.dataset, story=w.story,
                        optimizer=w.optimizer, lr=w.lr, momentum=w.momentum, techniques=sc.techniques, seed=sc.seed,
                        compression=w.compression, story_options=w.story_options())
    except ValueError as e:
        raise ValueError(f"{sc.where}: workload (model {w.model!r}, dataset {w.dataset!r}): {e}") from None


def profile_for(sc: Scenario) -> DeviceProfile:
    """The scenario's device profile, with the runtime checked; errors name the scenario and field."""
    try:
        profile = load_profile(sc.device)
        profile.runtime_for(sc.runtime)
    except ValueError as e:
        raise ValueError(f"{sc.where}: device {sc.device!r} / runtime {sc.runtime!r}: {e}") from None
    return profile
