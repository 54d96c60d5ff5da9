"""Shared pytest set-up. Room-specific fixtures live in their own support modules."""
from __future__ import annotations

import os

import matplotlib
import pytest

os.environ.setdefault("MPLBACKEND", "Agg")
matplotlib.use("Agg")

# property tests: the same examples on every run (a CI failure reproduces at home), no per-example time
# limit and no "too slow" health check (a loaded 2-core CI machine is slow, not wrong)
from hypothesis import HealthCheck, settings  # noqa: E402

settings.register_profile("edgesim", derandomize=True, deadline=None,
                          suppress_health_check=[HealthCheck.too_slow])
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "edgesim"))


class WorkStarted(AssertionError):
    """Raised by ``forbid_work`` when a command began real work it should have refused before."""


@pytest.fixture
def forbid_work(monkeypatch):
    """Make "before any work" checkable without a clock: pre-training, a simulation or a QEMU boot
    raises ``WorkStarted`` (a command that reaches one of them exits 1, not 2 or 3)."""
    import ports.qemu
    import simulator.run
    import workloads.pretrain

    def refuse(what):
        def raiser(*a, **k):
            raise WorkStarted(f"{what} started")
        return raiser

    monkeypatch.setattr(workloads.pretrain, "_fit", refuse("pre-training"))
    monkeypatch.setattr(simulator.run, "simulate", refuse("the simulation"))
    monkeypatch.setattr(ports.qemu.Qemu, "start", refuse("a QEMU boot"))
