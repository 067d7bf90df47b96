"""DL#5: per-patient Gaussian process regression of the lesion ratio course, synthetic courses."""

from __future__ import annotations

from covidet.progression._gpr import MIN_POINTS, CourseModel, ProgressionError, fit_course
from covidet.progression._plot import plot_course
from covidet.progression._synthetic import (
    PATTERNS,
    evaluate_progression,
    generate_course,
    true_course,
)

__all__ = [
    "MIN_POINTS",
    "PATTERNS",
    "CourseModel",
    "ProgressionError",
    "evaluate_progression",
    "fit_course",
    "generate_course",
    "plot_course",
    "true_course",
]
