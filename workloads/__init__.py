"""edgesim workloads: real numpy training that yields an op trace (DESIGN.md §1).

Public API: ``parse_spec``, ``build_model``, ``zoo``, ``make_job`` (a ``TrainingJob``), ``Techniques``,
``SpecError``, ``collect`` and the ``datasets`` module.
"""
from . import datasets
from .checks import TraceError, TraceSummary, check_trace
from .job import Job, make_job
from .model import Model, ZooEntry, build_model, etf_matrix, zoo
from .spec import LayerSpec, ModelSpec, SpecError, parse_spec
from .techniques import Techniques
from .trace import OP_KINDS, TENSOR_KINDS, Op, Tensor, collect

__all__ = [
    "OP_KINDS", "TENSOR_KINDS", "Job", "TraceError", "TraceSummary", "check_trace", "LayerSpec", "Model", "ModelSpec", "Op", "SpecError", "Techniques", "Tensor",
    "ZooEntry", "build_model", "collect", "datasets", "etf_matrix", "make_job", "parse_spec", "zoo",
]
