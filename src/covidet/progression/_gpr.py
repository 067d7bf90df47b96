"""DL#5: Gaussian process regression of one patient's lesion ratio over days (fit per request).

The model (issue 20; docs/progression.md says which choices were fixed before any evaluation):

- **Scale.** The GP runs on the *started logit* of the ratio, ``y = log((r + c) / (1 + c - r))``
  with ``c = MEASUREMENT_SD`` (0.01, the paper's DL#4 root mean square error against radiologists:
  the ratio's own measurement floor; it also keeps ``r = 0`` finite). Back on the ratio scale the
  forecast is the inverse of the latent mean (the posterior median) and the band the inverse of
  the latent mean -+ z sd, both clipped to [0, 1]: forecasts and bands never leave [0, 1].
- **Known measurement error, and only that.** Each scan's ratio has SD `MEASUREMENT_SD`, carried
  to the latent scale by the delta method and given to scikit-learn as the per-scan ``alpha``.
  No extra noise is fitted: from 3-5 points the marginal likelihood cannot tell extra noise from
  a real change, and a fitted noise term explained the latest change away.
- **A damped trend that resolves.** ``y(t) = level + drift (t - t_last) + integral of u``, where
  the slope's deviation ``u`` from the population's ``drift`` is an Ornstein-Uhlenbeck process
  (SD ``slope_sd``, memory ``tau`` days). The slope the scans show is remembered for about
  ``tau`` days after the last scan and then relaxes to ``drift``, which is negative: COVID-19
  pneumonia is self-limiting. A falling course keeps falling; a rising one keeps rising for a
  while, turns and resolves. This is the continuous-time damped trend of exponential smoothing:
  a trend seen in 3-5 points rarely lasts, and an undamped one (the model before) extrapolated a
  rise for ever, so that no lower level was ever reached.
- **Per patient,** as the paper insists: the level and the current slope (the GP's Bayesian
  regression) and ``tau`` by marginal likelihood (maximum a posteriori if the prior gives
  ``tau_log_sd``), bounded below by the scans' mean spacing (the data cannot show the slope
  changing faster than they are sampled) and above by `MAX_LENGTH_SCALE` days. A population prior
  on tau was the first choice; it held every course to the population's memory, so sustained
  rises were forecast to turn within days against the patient's own scans. The population's
  ``drift`` and ``slope_sd`` (and tau's start) come from a `CoursePrior` (built-in: from the
  literature; or learnt from earlier patients with ``covidet train-course-prior``).
"""

from __future__ import annotations

import functools
import math
import warnings
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

from covidet.errors import InvalidInputError
from covidet.progression._prior import DEFAULT_PRIOR, CoursePrior

__all__ = [
    "LEVEL_SD",
    "MAX_LENGTH_SCALE",
    "MEASUREMENT_SD",
    "MIN_POINTS",
    "CourseModel",
    "FirstPassage",
    "PreparedCourse",
    "ProgressionError",
    "course_log_likelihood",
    "fit_course",
    "forecast_outputs",
    "from_latent",
    "prepare_course",
    "to_latent",
]

#: A course needs at least this many distinct scan days (the paper uses the first 3 time points).
MIN_POINTS = 3
#: SD of one scan's lesion ratio (CoviDet DL#4: RMSE 0.01 against radiologists); also the offset
#: of the started logit.
MEASUREMENT_SD = 0.01
#: Prior SD of the latent level at the last scan (logit units): flat next to the data.
LEVEL_SD = 2.0
#: Upper bound of the slope's memory, days (the time scale of a COVID-19 course).
MAX_LENGTH_SCALE = 28.0


class ProgressionError(InvalidInputError):
    """The scan series cannot be fit: too few days, non-finite or out-of-range values."""


def to_latent(ratios: Sequence[float] | np.ndarray) -> np.ndarray:
    """Started logit ``log((r + c) / (1 + c - r))`` of ratios in [0, 1], ``c = MEASUREMENT_SD``."""
    r = np.clip(np.asarray(ratios, dtype=np.float64), 0.0, 1.0)
    c = MEASUREMENT_SD
    return np.asarray(np.log(r + c) - np.log1p(c - r))


def from_latent(y: Sequence[float] | np.ndarray) -> np.ndarray:
    """Inverse of `to_latent`, ``(1 + 2c) sigmoid(y) - c``, clipped to [0, 1]."""
    y = np.asarray(y, dtype=np.float64)
    c = MEASUREMENT_SD
    sigmoid = np.exp(-np.logaddexp(0.0, -y))
    return np.asarray(np.clip((1.0 + 2.0 * c) * sigmoid - c, 0.0, 1.0))


def _latent_slope(ratios: np.ndarray) -> np.ndarray:
    """d to_latent / d r (for carrying the measurement SD to the latent scale)."""
    c = MEASUREMENT_SD
    r = np.clip(ratios, 0.0, 1.0)
    return np.asarray(1.0 / (r + c) + 1.0 / (1.0 + c - r))


def _iou_g(x: np.ndarray, slope_sd: float, tau: float) -> tuple[np.ndarray, np.ndarray]:
    """``G(x) = Var(integral of u over x days) / 2`` and ``dG / d log(tau)``, for an OU ``u``.

    ``G(x) = slope_sd^2 tau^2 (a - 1 + exp(-a))``, ``a = |x| / tau`` (expm1 keeps small ``a``
    exact).
    """
    a = np.abs(x) / tau
    em = np.expm1(-a)
    scale = slope_sd**2 * tau**2
    return scale * (a + em), scale * (a * (2.0 + em) + 2.0 * em)


def _iou_cov(s: np.ndarray, t: np.ndarray, slope_sd: float, tau: float) -> tuple[np.ndarray, np.ndarray]:
    """Covariance (and its d / d log tau) of ``X(s), X(t)``, ``X`` = the integral of ``u`` from 0.

    ``Cov = G(s) + G(t) - G(s - t)`` (``X`` has stationary increments and ``X(0) = 0``).
    """
    gs, dgs = _iou_g(s, slope_sd, tau)
    gt, dgt = _iou_g(t, slope_sd, tau)
    gd, dgd = _iou_g(s[:, None] - t[None, :], slope_sd, tau)
    return gs[:, None] + gt[None, :] - gd, dgs[:, None] + dgt[None, :] - dgd


@functools.cache
def _damped_trend_kernel() -> type:
    """scikit-learn kernel of the damped trend: the integrated Ornstein-Uhlenbeck process.

    ``X(t) = integral from 0 to t of u``, ``u`` stationary OU with SD ``slope_sd`` and
    correlation ``exp(-|dt| / tau)``; days are relative to the last scan, where ``X = 0``. Beyond
    the data the posterior slope decays towards 0 (towards the drift, which the mean carries)
    with time constant ``tau``, the kernel's one hyper-parameter.
    """
    from sklearn.gaussian_process.kernels import Hyperparameter, Kernel

    class _DampedTrend(Kernel):  # type: ignore[misc]
        def __init__(
            self,
            tau: float = 5.0,
            tau_bounds: tuple[float, float] | str = (1.0, MAX_LENGTH_SCALE),
            slope_sd: float = DEFAULT_PRIOR.slope_sd,
        ) -> None:
            self.tau = tau
            self.tau_bounds = tau_bounds
            self.slope_sd = slope_sd

        @property
        def hyperparameter_tau(self) -> Hyperparameter:
            return Hyperparameter("tau", "numeric", self.tau_bounds)

        def __call__(self, X: np.ndarray, Y: np.ndarray | None = None, eval_gradient: bool = False) -> object:
            s = np.asarray(X, dtype=np.float64)[:, 0]
            t = s if Y is None else np.asarray(Y, dtype=np.float64)[:, 0]
            k, dk = _iou_cov(s, t, self.slope_sd, self.tau)
            if not eval_gradient:
                return k
            if Y is not None:
                raise ValueError("gradient can only be evaluated when Y is None")
            if self.hyperparameter_tau.fixed:
                return k, np.empty((s.size, s.size, 0))
            return k, dk[:, :, None]

        def diag(self, X: np.ndarray) -> np.ndarray:
            g, _ = _iou_g(np.asarray(X, dtype=np.float64)[:, 0], self.slope_sd, self.tau)
            return np.asarray(2.0 * g)

        def is_stationary(self) -> bool:
            return False

        def __repr__(self) -> str:
            return f"DampedTrend(tau={self.tau:.3g}, slope_sd={self.slope_sd:g})"

    return _DampedTrend


@functools.cache
def _map_regressor() -> type:
    """scikit-learn's GP regressor whose hyper-parameter search adds a log-normal prior on tau.

    The optimizer maximises ``log_marginal_likelihood``; adding the log prior there makes the
    fitted tau the maximum a posteriori (the prior is Gaussian in log tau, the kernel's theta).
    """
    from sklearn.gaussian_process import GaussianProcessRegressor

    class _MapGPR(GaussianProcessRegressor):  # type: ignore[misc]
        #: (centre, SD) of log tau's Gaussian prior; None: plain maximum likelihood
        log_tau_prior: tuple[float, float] | None = None

        def log_marginal_likelihood(
            self, theta: np.ndarray | None = None, eval_gradient: bool = False, clone_kernel: bool = True
        ) -> object:
            out = super().log_marginal_likelihood(theta, eval_gradient, clone_kernel)
            if theta is None or self.log_tau_prior is None:  # stored value: the prior is in it already
                return out
            centre, sd = self.log_tau_prior
            z = (np.asarray(theta, dtype=np.float64) - centre) / sd  # theta = [log tau]
            if eval_gradient:
                lml, grad = out
                return lml - 0.5 * float(np.sum(z**2)), grad - z / sd
            return out - 0.5 * float(np.sum(z**2))

    return _MapGPR


def _clean(days: Sequence[float] | np.ndarray, ratios: Sequence[float] | np.ndarray) -> tuple:
    d = np.asarray(days, dtype=np.float64).reshape(-1)
    r = np.asarray(ratios, dtype=np.float64).reshape(-1)
    if d.shape != r.shape:
        raise ProgressionError(
            f"expected one lesion ratio per scan day, got {d.size} days and {r.size} ratios"
        )
    if not (np.isfinite(d).all() and np.isfinite(r).all()):
        raise ProgressionError("days and ratios must be finite numbers (no NaN or inf)")
    if (d < 0).any():
        raise ProgressionError(f"days must be >= 0 (days since onset/admission), got {d.min():g}")
    if ((r < 0) | (r > 1)).any():
        bad = r[(r < 0) | (r > 1)][0]
        raise ProgressionError(f"lesion ratios must be in [0, 1] (lesion / lung), got {bad:g}")
    # Several scans on the same day: their mean ratio is that day's value.
    ud, inverse = np.unique(d, return_inverse=True)
    ur = np.bincount(inverse, weights=r) / np.bincount(inverse)
    if ud.size < MIN_POINTS:
        raise ProgressionError(
            f"a course needs at least {MIN_POINTS} scans on distinct days, got {ud.size} "
            f"distinct day(s) from {d.size} scan(s)"
        )
    return ud, ur


@dataclass(frozen=True)
class PreparedCourse:
    """One series as the GP sees it: sorted distinct days, ratios, latent values, their noise."""

    days: np.ndarray
    ratios: np.ndarray
    latent: np.ndarray
    alpha: np.ndarray

    @property
    def t_ref(self) -> float:
        """The last scan day: the GP's origin of time."""
        return float(self.days[-1])

    @property
    def min_spacing(self) -> float:
        """The scans' mean spacing (days): the lower bound of tau."""
        return float(self.days[-1] - self.days[0]) / (self.days.size - 1)

    def target(self, drift: float) -> tuple[np.ndarray, float]:
        """What the zero-mean GP is fit to: the latent values less the drift, centred; the centre."""
        y = self.latent - drift * (self.days - self.t_ref)
        offset = float(y.mean())
        return y - offset, offset


def prepare_course(
    days: Sequence[float] | np.ndarray, ratios: Sequence[float] | np.ndarray
) -> PreparedCourse:
    """Check, sort and de-duplicate a series (`ProgressionError` if it cannot be fit)."""
    d, r = _clean(days, ratios)
    return PreparedCourse(
        days=d, ratios=r, latent=to_latent(r), alpha=(MEASUREMENT_SD * _latent_slope(r)) ** 2
    )


def course_log_likelihood(course: PreparedCourse, *, drift: float, slope_sd: float, tau: float) -> float:
    """Log marginal likelihood of one course under the model with these population values.

    The same covariance and target as `fit_course` (level + damped trend + known noise), at a
    fixed ``tau``: the per-patient term that ``covidet train-course-prior`` sums over patients.
    """
    y, _ = course.target(drift)
    t = course.days - course.t_ref
    k, _ = _iou_cov(t, t, slope_sd, tau)
    k = k + LEVEL_SD**2 + np.diag(course.alpha)
    try:
        chol = np.linalg.cholesky(k)
    except np.linalg.LinAlgError:
        return -math.inf
    w = np.linalg.solve(chol, y)
    return float(-0.5 * w @ w - np.log(np.diag(chol)).sum() - 0.5 * y.size * math.log(2.0 * math.pi))


def _first_reach(grid: np.ndarray, values: np.ndarray, level: float, side: float) -> float | None:
    """First grid day where ``values`` reach ``level`` coming from ``side`` (+1 above, -1 below).

    Linear interpolation inside the grid interval; ``grid[0]`` if already there; None if never.
    """
    g = side * (values - level)
    if g[0] <= 0.0:
        return float(grid[0])
    hit = np.flatnonzero(g[1:] <= 0.0)
    if hit.size == 0:
        return None
    i = int(hit[0])  # reached between grid[i] and grid[i + 1]
    a, b = g[i], g[i + 1]
    return float(grid[i] + (grid[i + 1] - grid[i]) * a / (a - b))


def _finite_levels(levels: Iterable[float]) -> list[float]:
    """``levels`` as floats; a non-finite one is the caller's error."""
    out = []
    for level in levels:
        lv = float(level)
        if not np.isfinite(lv):
            raise ProgressionError(f"levels must be finite numbers, got {level!r}")
        out.append(lv)
    return out


def _finite_or_none(day: float) -> float | None:
    return float(day) if np.isfinite(day) else None


@dataclass(frozen=True)
class FirstPassage:
    """When a course first reaches a level: ``median`` day (None: under half its possible
    futures reach it within the horizon), ``p_reach`` (the share that do), ``earliest`` and
    ``latest`` (the 2.5 % and 97.5 % quantiles of the day; None beyond the horizon)."""

    median: float | None
    p_reach: float
    earliest: float | None
    latest: float | None


@dataclass
class CourseModel:
    """A fitted per-patient GP: observed (sorted, de-duplicated) days/ratios and the regressor.

    The regressor sees days relative to ``t_ref`` (the last scan) and the latent ratio less the
    prior's drift line through ``t_ref`` and less ``y_offset`` (the mean of what remains).
    """

    days: np.ndarray
    ratios: np.ndarray
    gp: object
    t_ref: float = 0.0
    y_offset: float = 0.0
    min_length_scale: float = 0.0
    prior: CoursePrior = DEFAULT_PRIOR

    @property
    def kernel(self) -> str:
        """The fitted kernel with its hyper-parameters."""
        return str(self.gp.kernel_)  # type: ignore[attr-defined]

    @property
    def length_scale(self) -> float:
        """The fitted memory ``tau`` of the slope (days); never below the scans' mean spacing."""
        params = self.gp.kernel_.get_params()  # type: ignore[attr-defined]
        return float(next(v for k, v in params.items() if k.endswith("__tau")))

    def latent(self, days: Sequence[float] | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """GP posterior ``(mean, sd)`` on the latent (started logit) scale at ``days``."""
        q = np.asarray(days, dtype=np.float64).reshape(-1)
        if not np.isfinite(q).all():
            raise ProgressionError("query days must be finite numbers")
        mean, sd = self.gp.predict((q - self.t_ref)[:, None], return_std=True)  # type: ignore[attr-defined]
        drift = self.prior.drift * (q - self.t_ref)
        return np.asarray(mean, dtype=np.float64) + drift + self.y_offset, np.asarray(sd, dtype=np.float64)

    def predict(self, days: Sequence[float] | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(mean, std)`` of the lesion ratio at ``days``, in [0, 1].

        ``mean`` is the back-transformed latent mean (the posterior median of the ratio);
        ``std`` is half the width of the back-transformed latent mean -+ 1 sd (an equivalent SD:
        the band is asymmetric, use `band` for it). The uncertainty is the course's, without the
        measurement error of a new scan.
        """
        mu, sd = self.latent(days)
        return from_latent(mu), (from_latent(mu + sd) - from_latent(mu - sd)) / 2.0

    def band(self, days: Sequence[float] | np.ndarray, z: float = 1.96) -> tuple[np.ndarray, np.ndarray]:
        """``(lower, upper)``: the latent mean -+ z sd back on the ratio scale, within [0, 1]."""
        mu, sd = self.latent(days)
        return from_latent(mu - z * sd), from_latent(mu + z * sd)

    def _grid(self, horizon_days: float, step_days: float) -> np.ndarray:
        if horizon_days <= 0 or step_days <= 0:
            raise ProgressionError("horizon_days and step_days must be > 0")
        t0 = float(self.days[-1])
        return np.linspace(t0, t0 + horizon_days, int(np.ceil(horizon_days / step_days)) + 1)

    def crossing_days(self, levels: Iterable[float], horizon_days: float = 30.0) -> dict[float, float | None]:
        """The forecast's day for each level: the median first passage (`first_passage`).

        ``None`` where under half of the course's possible futures reach the level within
        ``horizon_days`` after the last scan; the last scan's day where the fitted course is at
        or past the level there. This is what `progression_gpr` serves as CROSSING_DAYS.
        """
        return {lv: fp.median for lv, fp in self.first_passage(levels, horizon_days=horizon_days).items()}

    def mean_path_crossings(
        self,
        levels: Iterable[float],
        horizon_days: float = 30.0,
        step_days: float = 0.05,
        z: float = 1.96,
    ) -> dict[float, tuple[float | None, float | None, float | None]]:
        """Per level ``(day, earliest, latest)``: when the mean path, and the band's edges, reach it.

        The mean path (the plotted curve) is evaluated on a grid from the last scan day to
        ``horizon_days`` later (step ``step_days``); ``day`` is the first grid interval where
        ``mean - level`` changes sign (or touches 0), located by linear interpolation, and the
        last scan's day if the mean is at the level there. This is *not* the forecast's day
        (`crossing_days`): the mean path of a course that may go either way goes neither way,
        so it misses levels most of the possible courses reach. The band's near edge (the lower
        one for a level below the mean at the last scan, the upper one for a level above)
        reaching the level gives ``earliest``; the far edge gives ``latest`` (pointwise 95 %
        band for ``z = 1.96``).
        ``None`` where it does not happen within the horizon.
        """
        grid = self._grid(horizon_days, step_days)
        mu, sd = self.latent(grid)
        mean, lo, hi = from_latent(mu), from_latent(mu - z * sd), from_latent(mu + z * sd)
        out: dict[float, tuple[float | None, float | None, float | None]] = {}
        for lv in _finite_levels(levels):
            side = 1.0 if mean[0] >= lv else -1.0
            g = mean - lv
            if g[0] == 0.0:
                out[lv] = (float(grid[0]), float(grid[0]), float(grid[0]))
                continue
            near, far = (lo, hi) if side > 0 else (hi, lo)
            out[lv] = (
                _first_reach(grid, mean, lv, side),
                _first_reach(grid, near, lv, side),
                _first_reach(grid, far, lv, side),
            )
        return out

    def first_passage(
        self,
        levels: Iterable[float],
        horizon_days: float = 30.0,
        step_days: float = 0.1,
        n_paths: int = 2000,
        seed: int = 0,
    ) -> dict[float, FirstPassage]:
        """When the course first reaches each level, as a distribution over its possible futures.

        ``n_paths`` courses are drawn from the GP posterior (the course, without measurement
        error) on a grid from the last scan to ``horizon_days`` later; each path's first day at
        the level, coming from its own side, is its first passage. Per level: the median
        first-passage day (None if fewer than half the paths reach the level within the
        horizon), the share of paths that reach it, and the 2.5 % and 97.5 % quantiles (None
        where beyond the horizon). The median is the point forecast of a time to an event,
        which the mean path's crossing is not: a level the mean path never reaches can still be
        reached by most courses. Drawn with ``seed``: reproducible.
        """
        grid = self._grid(horizon_days, step_days)
        gp_mean, cov = self.gp.predict((grid - self.t_ref)[:, None], return_cov=True)  # type: ignore[attr-defined]
        mu = gp_mean + self.prior.drift * (grid - self.t_ref) + self.y_offset  # as `latent`
        # Cholesky with a little jitter (the integrated process is smooth, so its covariance on a
        # fine grid is nearly singular): an order of magnitude faster than scikit-learn's
        # sample_y, which takes an SVD
        jitter = 1e-9 * max(float(np.max(np.diag(cov))), 1e-12)
        chol = np.linalg.cholesky(cov + jitter * np.eye(grid.size))
        z = np.random.default_rng(seed).standard_normal((grid.size, n_paths))
        paths = from_latent(mu[:, None] + chol @ z)  # [grid, path]
        start = float(from_latent(mu[:1])[0])  # the fitted course at the last scan
        out: dict[float, FirstPassage] = {}
        for lv in _finite_levels(levels):
            # the side the course is on now, as `mean_path_crossings`: a path already past the level
            # there has reached it on that day
            crossed = paths <= lv if start >= lv else paths >= lv
            reached = crossed.any(axis=0)
            first = np.where(reached, grid[crossed.argmax(axis=0)], np.inf)
            q = np.quantile(first, [0.5, 0.025, 0.975], method="inverted_cdf")
            out[lv] = FirstPassage(
                _finite_or_none(q[0]), float(reached.mean()), _finite_or_none(q[1]), _finite_or_none(q[2])
            )
        return out


def fit_course(
    days: Sequence[float] | np.ndarray,
    ratios: Sequence[float] | np.ndarray,
    *,
    prior: CoursePrior | None = None,
    n_restarts: int = 2,
    seed: int = 0,
) -> CourseModel:
    """Fit a GP to one patient's (day, lesion ratio) series (the model: see this module's doc).

    Days are sorted; scans on the same day are averaged into one point; at least `MIN_POINTS`
    distinct days are needed. Ratios must lie in [0, 1], days be finite and >= 0. ``prior`` is
    the population's (default `DEFAULT_PRIOR`). The slope's memory ``tau`` maximizes the marginal
    likelihood times its prior within its bounds (L-BFGS-B, ``n_restarts`` extra random starts
    from ``seed``).
    """
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.gaussian_process.kernels import ConstantKernel

    prior = DEFAULT_PRIOR if prior is None else prior
    course = prepare_course(days, ratios)
    d, t_ref = course.days, course.t_ref
    y, y_offset = course.target(prior.drift)
    min_ls = course.min_spacing
    max_ls = max(MAX_LENGTH_SCALE, 2.0 * min_ls)
    kernel = ConstantKernel(LEVEL_SD**2, "fixed") + _damped_trend_kernel()(
        tau=float(np.clip(prior.tau, min_ls, max_ls)),
        tau_bounds=(min_ls, max_ls),
        slope_sd=prior.slope_sd,
    )
    gp = _map_regressor()(
        kernel=kernel,
        alpha=course.alpha,
        normalize_y=False,
        n_restarts_optimizer=n_restarts,
        random_state=seed,
    )
    if prior.tau_log_sd is not None:
        gp.log_tau_prior = (math.log(prior.tau), prior.tau_log_sd)
    with warnings.catch_warnings():
        # Bounds reached (tau at the scans' spacing or at its maximum) are expected with 3-6 points.
        warnings.simplefilter("ignore", ConvergenceWarning)
        gp.fit((d - t_ref)[:, None], y)
    return CourseModel(
        days=d,
        ratios=course.ratios,
        gp=gp,
        t_ref=t_ref,
        y_offset=y_offset,
        min_length_scale=min_ls,
        prior=prior,
    )


def forecast_outputs(
    days: np.ndarray,
    ratios: np.ndarray,
    query_days: np.ndarray,
    levels: np.ndarray | None,
    *,
    horizon_days: float = 30.0,
    n_restarts: int = 2,
    prior: CoursePrior | None = None,
) -> dict[str, np.ndarray]:
    """The `progression_gpr` model's answer: its output tensors by contract name, float32."""
    from covidet import _contract as C

    course = fit_course(days, ratios, prior=prior, n_restarts=n_restarts)
    mean, std = course.predict(query_days)
    lower, upper = course.band(query_days)
    n_levels = 0 if levels is None else np.asarray(levels).size
    # per level: the median first passage, its 2.5 % and 97.5 % quantiles, the share of courses
    # reaching it, and the day the plotted mean path reaches it
    per_level = np.full((5, n_levels), np.nan, dtype=np.float32)
    if levels is not None and n_levels:
        flat = np.asarray(levels).reshape(-1)
        passage = course.first_passage(flat, horizon_days=horizon_days)
        mean_path = course.mean_path_crossings(flat, horizon_days=horizon_days)
        for j, v in enumerate(flat):
            fp = passage[float(v)]
            per_level[:, j] = [
                np.nan if x is None else x
                for x in (fp.median, fp.earliest, fp.latest, fp.p_reach, mean_path[float(v)][0])
            ]
    day, earliest, latest, p_reach, mean_day = per_level
    arrays = (mean, std, day, lower, upper, earliest, latest, p_reach, mean_day)
    return {
        s.name: np.ascontiguousarray(a, dtype=np.float32)
        for s, a in zip(C.PROGRESSION_GPR.outputs, arrays, strict=True)
    }
