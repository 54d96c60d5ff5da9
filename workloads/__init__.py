"""edgesim workloads: real numpy training that yields an op trace (docs/architecture.md §1).

Public API: ``parse_spec``, ``build_model``, ``zoo``, ``make_job`` (a ``TrainingJob``), ``default_lr``,
``Techniques``, ``SpecError``, ``collect``, ``check_trace``, the allowed values ``STORIES`` and
``UPDATE_MODES``, and the ``datasets`` module.
"""
from . import datasets
from .checks import TraceError, TraceSummary, check_trace
from .datasets import STORIES
from .job import FINE_TUNE_LR, Job, default_lr, make_job
from .model import Model, ZooEntry, build_model, etf_matrix, zoo
from .spec import LayerSpec, ModelSpec, SpecError, parse_spec
from .techniques import UPDATE_MODES, Techniques
from .trace import OP_KINDS, TENSOR_KINDS, Op, Tensor, collect

__all__ = [
    "OP_KINDS", "STORIES", "TENSOR_KINDS", "UPDATE_MODES", "Job", "LayerSpec", "Model", "ModelSpec", "Op",
    "SpecError", "Techniques", "Tensor", "TraceError", "TraceSummary", "ZooEntry", "build_model",
    "FINE_TUNE_LR", "check_trace", "collect", "datasets", "default_lr", "etf_matrix", "make_job", "parse_spec", "zoo",
]
