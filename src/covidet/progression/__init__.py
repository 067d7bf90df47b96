"""DL#5: per-patient Gaussian process regression of the lesion ratio course, synthetic courses."""

from __future__ import annotations

from covidet.progression._evaluate import METHODS, PAPER_DL5, evaluate_progression, line_crossing
from covidet.progression._gpr import (
    MIN_POINTS,
    CourseModel,
    ProgressionError,
    fit_course,
    forecast_outputs,
    from_latent,
    to_latent,
)
from covidet.progression._plot import plot_course
from covidet.progression._synthetic import PATTERNS, generate_course, true_course

__all__ = [
    "METHODS",
    "MIN_POINTS",
    "PAPER_DL5",
    "PATTERNS",
    "CourseModel",
    "ProgressionError",
    "evaluate_progression",
    "fit_course",
    "forecast_outputs",
    "from_latent",
    "generate_course",
    "line_crossing",
    "plot_course",
    "to_latent",
    "true_course",
]
