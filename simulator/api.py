"""Moved: the simulator's entry points are exported by the package (``from simulator import run_scenario``).

Where they live now: ``simulator.run`` (``run_scenario``, ``simulate``), ``simulator.predict``
(``predict_step``), ``simulator.inputs`` (``job_for``, ``profile_for``, ``make_job``). This module only keeps
the old import path working for code of other owners until it imports from ``simulator``; do not add to it.
"""
from __future__ import annotations

from .inputs import job_for, make_job, profile_for
from .predict import predict_step
from .run import run_scenario, simulate

__all__ = ["job_for", "make_job", "predict_step", "profile_for", "run_scenario", "simulate"]
