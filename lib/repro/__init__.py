"""repro: the shared library of the deep-learning reproduction book.

One data path (:mod:`repro.data`), one training engine (:mod:`repro.engine`, with model
families from :mod:`repro.models` and :mod:`repro.optim`), one gradient check
(:mod:`repro.gradcheck`), one reporting path (:mod:`repro.report`, with the tolerance rule of
:mod:`repro.verdicts` and the reports' conclusions as :mod:`repro.claims`), a result store
(:mod:`repro.store`, keyed by :mod:`repro.fingerprint`) and parameter handling (:mod:`repro.config`).
"""
from . import claims, config, data, engine, fingerprint, gradcheck, models, optim, parameters, plots, report, store, verdicts
from .config import ParameterError, Settings, resolve
from .parameters import setup
from .data import Dataset, MissingDataError, Split, load_cifar10, load_mnist
from .engine import clipped_cross_entropy, cross_entropy, evaluate, fit, predict
from .models import MLPFamily, count_parameters, mlp, mlp_parameter_count
from .optim import FamilyOptimizer
from .report import Row, compare, comparison_table, write_summary

__all__ = [
    "claims", "config", "data", "engine", "fingerprint", "gradcheck", "models", "optim", "parameters", "plots", "report",
    "store", "verdicts", "setup",
    "ParameterError", "Settings", "resolve",
    "Dataset", "MissingDataError", "Split", "load_cifar10", "load_mnist",
    "clipped_cross_entropy", "cross_entropy", "evaluate", "fit", "predict",
    "MLPFamily", "count_parameters", "mlp", "mlp_parameter_count",
    "FamilyOptimizer", "Row", "compare", "comparison_table", "write_summary",
]
