"""DL#5: per-patient Gaussian process regression of the lesion ratio course, synthetic courses."""

from __future__ import annotations

from covidet.progression._evaluate import (
    METHODS,
    PAPER_DL5,
    TRUTH,
    evaluate_courses,
    evaluate_progression,
    line_crossing,
)
from covidet.progression._gpr import (
    MIN_POINTS,
    CourseModel,
    ProgressionError,
    fit_course,
    forecast_outputs,
    from_latent,
    to_latent,
)
from covidet.progression._plot import describe_crossing, plot_course
from covidet.progression._prior import DEFAULT_PRIOR, CoursePrior, read_course_table, read_courses_csv
from covidet.progression._prior_train import train_course_prior
from covidet.progression._synthetic import PATTERNS, generate_course, generated_truth, true_course

__all__ = [
    "DEFAULT_PRIOR",
    "METHODS",
    "MIN_POINTS",
    "PAPER_DL5",
    "PATTERNS",
    "TRUTH",
    "CourseModel",
    "CoursePrior",
    "ProgressionError",
    "describe_crossing",
    "evaluate_courses",
    "evaluate_progression",
    "fit_course",
    "forecast_outputs",
    "from_latent",
    "generate_course",
    "generated_truth",
    "line_crossing",
    "plot_course",
    "read_course_table",
    "read_courses_csv",
    "to_latent",
    "train_course_prior",
    "true_course",
]
