"""The DL#5 evaluation: fit on 3 scans, predict the interval to the 4th and 5th, against a line.

As in the paper (DL#5 results): the GP is fit on the first 3 time points and predicts the
interval from the 3rd to the 4th and to the 5th time point "based on the lesion ratio measured at
those time points". Precisely: the predicted interval to point k is the forecast day the ratio
observed at point k is reached after the 3rd scan, minus the 3rd scan day. For the GPR that is
the served CROSSING_DAYS, the median first passage of the fitted course's possible futures
(``gpr``); the day its mean path reaches the level is reported beside it (``gpr_mean_path``).

- **Baseline in the same run:** the straight line through the 2nd and 3rd scans (ratio scale),
  with the same rule. A forecast that does not beat it is not worth serving.
- **No crossing within the horizon** counts as the horizon (e.g. 30 days) in the MAE, and its
  share is reported: a forecast that never commits cannot hide in an average over the others.
- **Possible, apart:** the share of courses whose forecast does not reach the level but which may
  (``possible_only_3to{k}``, both GPR rows): for ``gpr``, at least 2.5 % of the possible courses
  reach it within the horizon; for ``gpr_mean_path``, the 95 % band does. It is never counted as
  a crossing.
- **The ranges, checked:** the share of courses whose actual day lies in the stated 95 % range
  (``range_coverage_3to{k}``, both GPR rows; an open end, "may take longer than the horizon",
  covers every later day) and the share whose range is closed within the horizon
  (``range_closed_3to{k}``). A range that covers far more than 95 % is honest but says little;
  one that covers far less overstates what is known.
- **The true course** (only with this project's generator, which knows it): the noise-free
  course itself used as the forecast. It misses the 4th scan's level whenever noise puts that
  level where the course does not go (a plateau): a floor for a forecast of one curve. The
  served forecast, of many possible courses, can cross there: from 3 scans a plateau and a slow
  change look alike.
- **The paper's comparison:** predicted vs actual interval, mean ± SD and a paired t-test
  (``scipy.stats.ttest_rel``), with the Bland-Altman bias and 95 % limits of agreement (the
  paper's Fig. 3e/f), over the courses whose forecast crosses. A large p says no difference was
  *detected*, not that the forecast agrees: read the limits of agreement.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from covidet._contract import range_covers
from covidet.progression._gpr import ProgressionError, _first_reach, fit_course
from covidet.progression._prior import CoursePrior
from covidet.progression._synthetic import PATTERNS, generate_course, generated_truth

__all__ = [
    "METHODS",
    "PAPER_DL5",
    "TRUTH",
    "Course",
    "evaluate_courses",
    "evaluate_progression",
    "line_crossing",
]

#: Forecasting methods compared by `evaluate_progression`.
#: ``gpr``: the served forecast day (CROSSING_DAYS), the median day the GP's possible courses
#: first reach the level (`CourseModel.first_passage`); ``line``: the straight line through
#: scans 2 and 3; ``gpr_mean_path``: the day the GP's mean path reaches it (MEAN_CROSSING_DAYS).
METHODS: tuple[str, ...] = ("gpr", "line", "gpr_mean_path")
#: The reference row with this project's generator: its noise-free course as the forecast.
TRUTH = "truth"
#: CoviDet DL#5 results: predicted vs actual interval (days, mean ± SD) and the paired p value.
PAPER_DL5: dict[int, dict[str, float]] = {
    4: {"pred_mean": 5.00, "pred_sd": 5.08, "actual_mean": 4.61, "actual_sd": 2.61, "p": 0.53},
    5: {"pred_mean": 7.72, "pred_sd": 10.6, "actual_mean": 9.82, "actual_sd": 5.84, "p": 0.17},
}

Generator = Callable[[str, int, int], tuple[np.ndarray, np.ndarray]]


def line_crossing(
    days: Sequence[float] | np.ndarray,
    ratios: Sequence[float] | np.ndarray,
    level: float,
    horizon_days: float = 30.0,
) -> float | None:
    """Day the line through the last two scans reaches ``level`` within the horizon, or None."""
    (d0, d1), (r0, r1) = np.asarray(days, float)[-2:], np.asarray(ratios, float)[-2:]
    if r1 == level:
        return float(d1)
    slope = (r1 - r0) / (d1 - d0)
    if slope == 0.0:
        return None
    dt = (level - r1) / slope
    return float(d1 + dt) if 0.0 <= dt <= horizon_days else None


def _line_value(days: np.ndarray, ratios: np.ndarray, t: float) -> float:
    (d0, d1), (r0, r1) = days[-2:], ratios[-2:]
    return float(np.clip(r1 + (r1 - r0) / (d1 - d0) * (t - d1), 0.0, 1.0))


def evaluate_progression(
    n: int = 200,
    seed: int = 0,
    *,
    horizon_days: float = 30.0,
    patterns: Sequence[str] = PATTERNS,
    n_restarts: int = 2,
    generator: Generator = generate_course,
    prior: CoursePrior | None = None,
) -> dict[str, dict[str, Any]]:
    """Fit-on-3, predict-the-interval evaluation over ``n`` courses (patterns in turn).

    ``generator(pattern, seed, n_points)`` gives one course ``(days, ratios)`` (default: this
    project's `generate_course`; pass another to check on courses the model was not built on).
    ``prior`` is the GP's course prior (default: the built-in one). With the default generator
    the `TRUTH` row is added. The figures are `evaluate_courses`'s, one group per pattern.
    """
    own = generator is generate_course  # only this project's generator knows its true courses
    courses: list[Course] = []
    truths: list[Callable[[np.ndarray], Any]] = []
    for i in range(n):
        pattern = patterns[i % len(patterns)]
        course_seed = seed * 1_000_003 + i
        days, ratios = generator(pattern, course_seed, 5)
        courses.append((f"{pattern}-{i}", pattern, np.asarray(days, float), np.asarray(ratios, float)))
        if own:
            truths.append(generated_truth(pattern, course_seed))
    return evaluate_courses(
        courses,
        horizon_days=horizon_days,
        n_restarts=n_restarts,
        prior=prior,
        truths=truths if own else None,
        groups=patterns,
    )


#: One course to evaluate: (patient, group, days, ratios), scans in day order.
Course = tuple[str, str, np.ndarray, np.ndarray]


def evaluate_courses(
    courses: Sequence[Course],
    *,
    horizon_days: float = 30.0,
    n_restarts: int = 2,
    prior: CoursePrior | None = None,
    truths: Sequence[Callable[[np.ndarray], Any]] | None = None,
    groups: Sequence[str] = (),
) -> dict[str, dict[str, Any]]:
    """The DL#5 evaluation over given courses: a hospital's serial scans (`read_course_table`)
    or a generator's.

    Each course is fit on its first 3 scans; the 3rd->4th interval is predicted where it has a
    4th scan, the 3rd->5th where it has a 5th. Courses with fewer than 4 scans cannot be judged
    and are counted in ``["all"]["n_skipped"]``; a course that cannot be fit (a ratio outside
    [0, 1], fewer than 3 distinct days among its first 3 scans) raises `ProgressionError` naming
    the patient. ``truths`` (one noise-free course function per course) adds the `TRUTH` row.

    Returns per group (in the order of ``groups``, then as they come) and ``"all"``: ``n``, and per
    method in `METHODS`, for k in (4, 5): ``n_3to{k}`` (courses with a k-th scan),
    ``mae_days_3to{k}`` (no crossing counted as ``horizon_days``), ``no_crossing_3to{k}``
    (share), ``mae_days_crossed_3to{k}`` and ``n_crossed_3to{k}``; over the crossed courses the
    paper's comparison: ``pred_mean/pred_sd/actual_mean/actual_sd_3to{k}``, ``p_paired_3to{k}``
    (paired t-test), ``bias_3to{k}`` and ``loa_3to{k}`` (Bland-Altman: mean and 1.96 SD of
    predicted minus actual); and ``mae_ratio_{k}`` (forecast vs observed ratio at the true day).
    For both GPR rows also ``possible_only_3to{k}``, ``range_coverage_3to{k}`` and
    ``range_closed_3to{k}``.
    """
    methods = (*METHODS, TRUTH) if truths is not None else METHODS
    rows: dict[str, list[dict[str, float]]] = {g: [] for g in groups}
    skipped = 0
    for i, (patient, group, days_in, ratios_in) in enumerate(courses):
        days, ratios = np.asarray(days_in, float), np.asarray(ratios_in, float)
        if days.size < 4:
            skipped += 1
            continue
        try:
            course = fit_course(days[:3], ratios[:3], prior=prior, seed=i, n_restarts=n_restarts)
        except ProgressionError as exc:
            raise ProgressionError(f"course {patient!r}: {exc}") from exc
        later = days[3:5]
        gp_mean, _ = course.predict(later)
        levels = [float(v) for v in ratios[3 : 3 + later.size]]
        passage = course.first_passage(levels, horizon_days=horizon_days)  # same draws: order-free
        mean_path = course.mean_path_crossings(levels, horizon_days=horizon_days)
        truth = truths[i] if truths is not None else None
        rec: dict[str, float] = {}
        for k, level in enumerate(levels, start=4):
            rec[f"actual_{k}"] = float(days[k - 1] - days[2])
            fp, (day, early, late) = passage[level], mean_path[level]
            rec[f"gpr_possible_only_{k}"] = float(fp.median is None and fp.earliest is not None)
            rec[f"gpr_mean_path_possible_only_{k}"] = float(day is None and early is not None)
            actual_day = float(days[k - 1])
            for m, (lo, hi) in (("gpr", (fp.earliest, fp.latest)), ("gpr_mean_path", (early, late))):
                rec[f"{m}_in_range_{k}"] = float(range_covers(actual_day, lo, hi))
                rec[f"{m}_range_closed_{k}"] = float(lo is not None and hi is not None)
            hits = {
                "gpr": fp.median,
                "line": line_crossing(days[:3], ratios[:3], level, horizon_days),
                "gpr_mean_path": day,
            }
            values = {
                "gpr": float(gp_mean[k - 4]),
                "line": _line_value(days[:3], ratios[:3], days[k - 1]),
                "gpr_mean_path": float(gp_mean[k - 4]),  # the same fitted course
            }
            if truth is not None:
                grid = np.linspace(days[2], days[2] + horizon_days, int(horizon_days / 0.05) + 1)
                v = np.asarray(truth(grid), float)
                hits[TRUTH] = _first_reach(grid, v, level, 1.0 if v[0] >= level else -1.0)
                values[TRUTH] = float(np.asarray(truth(days[k - 1 : k]), float)[0])
            for m in methods:
                hit = hits[m]
                rec[f"{m}_crossed_{k}"] = float(hit is not None)
                rec[f"{m}_pred_{k}"] = np.nan if hit is None else hit - float(days[2])
                rec[f"{m}_ratio_err_{k}"] = abs(values[m] - level)
        rows.setdefault(group, []).append(rec)
    out: dict[str, dict[str, Any]] = {g: _summary(r, horizon_days, methods) for g, r in rows.items()}
    out["all"] = _summary([r for rs in rows.values() for r in rs], horizon_days, methods)
    out["all"]["n_skipped"] = skipped
    return out


def _paired_p(pred: np.ndarray, act: np.ndarray) -> float:
    if pred.size < 2 or np.ptp(pred - act) < 1e-9:  # no differences to test
        return float("nan")
    from scipy.stats import ttest_rel

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return float(ttest_rel(pred, act).pvalue)


def _summary(recs: list[dict[str, float]], horizon_days: float, methods: Sequence[str]) -> dict[str, Any]:
    nan = float("nan")
    s: dict[str, Any] = {"n": len(recs)}
    for m in methods:
        ms: dict[str, float] = {}
        for k in (4, 5):
            rk = [r for r in recs if f"actual_{k}" in r]  # the courses with a k-th scan
            ms[f"n_3to{k}"] = float(len(rk))
            act = np.array([r[f"actual_{k}"] for r in rk])
            pred = np.array([r[f"{m}_pred_{k}"] for r in rk])
            ok = np.isfinite(pred)
            err = np.abs(np.where(ok, pred, horizon_days) - act)
            diff = pred[ok] - act[ok]
            ms[f"mae_days_3to{k}"] = float(err.mean()) if rk else nan
            ms[f"no_crossing_3to{k}"] = float(1.0 - ok.mean()) if rk else nan
            ms[f"n_crossed_3to{k}"] = float(ok.sum())
            ms[f"mae_days_crossed_3to{k}"] = float(np.abs(diff).mean()) if ok.any() else nan
            ms[f"pred_mean_3to{k}"] = float(pred[ok].mean()) if ok.any() else nan
            ms[f"pred_sd_3to{k}"] = float(pred[ok].std(ddof=1)) if ok.sum() > 1 else nan
            ms[f"actual_mean_3to{k}"] = float(act[ok].mean()) if ok.any() else nan
            ms[f"actual_sd_3to{k}"] = float(act[ok].std(ddof=1)) if ok.sum() > 1 else nan
            ms[f"p_paired_3to{k}"] = _paired_p(pred[ok], act[ok])
            ms[f"bias_3to{k}"] = float(diff.mean()) if ok.any() else nan
            ms[f"loa_3to{k}"] = float(1.96 * diff.std(ddof=1)) if ok.sum() > 1 else nan
            errs = [r[f"{m}_ratio_err_{k}"] for r in rk]
            ms[f"mae_ratio_{k}"] = float(np.mean(errs)) if rk else nan
            if m in ("gpr", "gpr_mean_path"):
                for key, rec_key in (
                    ("possible_only", "possible_only"),
                    ("range_coverage", "in_range"),
                    ("range_closed", "range_closed"),
                ):
                    values = [r[f"{m}_{rec_key}_{k}"] for r in rk]
                    ms[f"{key}_3to{k}"] = float(np.mean(values)) if rk else nan
        s[m] = ms
    return s
