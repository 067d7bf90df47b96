"""`train_course_prior`: a population's course prior learnt from earlier patients' courses.

Apart from `covidet.progression._prior` (the prior itself, its file and the built-in values),
because training needs the per-patient model (`covidet.progression._gpr`), which uses the prior.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import replace

import numpy as np

from covidet.errors import InvalidInputError
from covidet.progression._gpr import ProgressionError, course_log_likelihood, prepare_course
from covidet.progression._prior import DEFAULT_PRIOR, CoursePrior

__all__ = ["train_course_prior"]

#: Search bounds of the population values in training: drift (logit / day), slope_sd, tau (days).
_DRIFT_BOUNDS = (-1.0, 1.0)
_SLOPE_SD_BOUNDS = (0.01, 2.0)
_TAU_BOUNDS = (0.5, 60.0)


def train_course_prior(
    courses: Iterable[tuple[Sequence[float] | np.ndarray, Sequence[float] | np.ndarray]],
    *,
    start: CoursePrior = DEFAULT_PRIOR,
    source: str = "trained",
) -> CoursePrior:
    """Learn ``drift``, ``slope_sd`` and ``tau`` from courses (type-II ML pooled over patients).

    Each course is one patient's scans (at least 3 distinct days; courses with fewer are
    skipped). The model is the per-patient one (`covidet.progression._gpr`) with the three values
    shared; ``tau_log_sd`` is kept from ``start``, where the search also starts.
    """
    from scipy.optimize import minimize

    prepared = []
    for days, ratios in courses:
        try:
            prepared.append(prepare_course(days, ratios))
        except ProgressionError:
            continue
    if len(prepared) < 2:
        raise InvalidInputError(
            f"training a course prior needs at least 2 courses with 3 or more scan days, got {len(prepared)}"
        )

    def objective(x: np.ndarray) -> float:
        drift, slope_sd, tau = float(x[0]), math.exp(x[1]), math.exp(x[2])
        total = sum(course_log_likelihood(c, drift=drift, slope_sd=slope_sd, tau=tau) for c in prepared)
        return -total / len(prepared)

    x0 = np.array([start.drift, math.log(start.slope_sd), math.log(start.tau)])
    bounds = [_DRIFT_BOUNDS, tuple(map(math.log, _SLOPE_SD_BOUNDS)), tuple(map(math.log, _TAU_BOUNDS))]
    res = minimize(objective, x0, method="L-BFGS-B", bounds=bounds)
    return replace(
        start,
        drift=float(res.x[0]),
        slope_sd=float(math.exp(res.x[1])),
        tau=float(math.exp(res.x[2])),
        source=source,
        n_courses=len(prepared),
    )
