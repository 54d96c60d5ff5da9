"""Capacity-planning sweeps (docs/architecture.md §3): expand a grid of devices x workloads x schedules x seeds
(``grid``), run every scenario through the simulator (``worker``) on a local process pool (``pool``) or a
Dask cluster (``dask_backend``), stream the rows to ``results.jsonl`` one atomic line at a time
(``results_log``) so an interrupted sweep resumes without losing work (``run``), and reduce them to the
device x schedule feasibility matrix (``feasibility``); ``--verify`` then runs each fitting cell's step on
its device's twin with a verifier the command line hands in (``verify``)."""
from __future__ import annotations

from .feasibility import (
    FATAL_CONSTRAINT,
    MATRIX_FILE,
    OBJECTIVE,
    binding_constraint,
    feasibility,
    read_matrix,
    write_matrix,
)
from .grid import Grid, Point, load_grid, parse_grid
from .results_log import RESULTS_FILE, ResultsLog
from .run import SweepOutcome, run_sweep
from .verify import VERIFY_FILE, run_verification
from .worker import run_point

__all__ = ["FATAL_CONSTRAINT", "MATRIX_FILE", "OBJECTIVE", "RESULTS_FILE", "Grid", "Point", "ResultsLog",
           "SweepOutcome", "VERIFY_FILE", "binding_constraint", "feasibility", "load_grid", "parse_grid",
           "read_matrix", "run_point", "run_sweep", "run_verification", "write_matrix"]
