"""DL#5: Gaussian process regression of one patient's lesion ratio over days (fit per request).

The model (issue 20). Its constants were chosen on principle before any course was evaluated; the
last two structural points (no fitted noise, a local trend) were revised once after the first run
(benchmarks/README.md says what changed and why):

- **Scale.** The GP runs on the *started logit* of the ratio, ``y = log((r + c) / (1 + c - r))``
  with ``c = MEASUREMENT_SD`` (0.01, the paper's DL#4 root mean square error against radiologists:
  the ratio's own measurement floor; it also keeps ``r = 0`` finite). Back on the ratio scale the
  forecast is the inverse of the latent mean (the posterior median) and the band the inverse of
  the latent mean -+ z sd, both clipped to [0, 1]: forecasts and bands never leave [0, 1], and a
  straight latent trend is an exponential decay towards 0 or a logistic rise towards 1.
- **Known measurement error, and only that.** Each scan's ratio has SD `MEASUREMENT_SD`, carried
  to the latent scale by the delta method and given to scikit-learn as the per-scan ``alpha``.
  No extra noise is fitted: from 3-5 points the marginal likelihood cannot tell extra noise from
  a real change, and a fitted noise term explained the latest change away.
- **A local linear trend:** a level and a slope at the last scan (Bayesian linear regression,
  prior SDs `LEVEL_SD`, flat next to the data, and `SLOPE_SD` logit units per day, a ratio
  doubling or halving in about 3 days), plus a slope that drifts as a random walk from the first
  scan on (the integrated Wiener process, the GP prior of the cubic smoothing spline). Beyond the
  data the forecast goes on along the slope at the last scans instead of returning to a constant
  or to a trend fitted through all scans (a stationary RBF does either once past its length
  scale). No higher-order trend: extrapolating curvature from 3-5 noisy points is unstable.
- **One hyper-parameter, bounded:** the time scale ``l`` over which the slope may change by
  `SLOPE_SD`, by marginal likelihood between the scans' mean spacing (the data cannot show the
  slope changing faster than they are sampled) and `MAX_LENGTH_SCALE` days (a course's time scale).
"""

from __future__ import annotations

import functools
import warnings
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

from covidet.errors import InvalidInputError

__all__ = [
    "LEVEL_SD",
    "MAX_LENGTH_SCALE",
    "MEASUREMENT_SD",
    "MIN_POINTS",
    "SLOPE_SD",
    "CourseModel",
    "ProgressionError",
    "fit_course",
    "forecast_outputs",
    "from_latent",
    "to_latent",
]

#: A course needs at least this many distinct scan days (the paper uses the first 3 time points).
MIN_POINTS = 3
#: SD of one scan's lesion ratio (CoviDet DL#4: RMSE 0.01 against radiologists); also the offset
#: of the started logit.
MEASUREMENT_SD = 0.01
#: Prior SD of the latent level at the last scan (logit units): flat next to the data.
LEVEL_SD = 2.0
#: Prior SD of the latent trend's slope, logit units per day (ratio x2 or /2 in ~3 days).
SLOPE_SD = 0.25
#: Upper bound of the trend's time scale, days (the time scale of a COVID-19 course).
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


@functools.cache
def _local_trend_kernel() -> type:
    """scikit-learn kernel of a local linear trend: the once-integrated Wiener process.

    ``k(s, s') = (slope_sd^2 / l) * (m^3 / 3 + |s - s'| m^2 / 2)``, ``m = min(s, s')``,
    ``s = max(x - origin, 0)``: a trend whose slope drifts as a random walk, its SD growing by
    ``slope_sd`` over ``l`` days (the GP prior behind the cubic smoothing spline). Beyond the data
    its posterior mean goes on along the slope at the last scan; ``l`` is the time scale over
    which the slope may change, the kernel's one hyper-parameter.
    """
    from sklearn.gaussian_process.kernels import Hyperparameter, Kernel

    class _LocalTrend(Kernel):  # type: ignore[misc]
        def __init__(
            self,
            length_scale: float = 7.0,
            length_scale_bounds: tuple[float, float] | str = (1.0, 28.0),
            slope_sd: float = SLOPE_SD,
            origin: float = 0.0,
        ) -> None:
            self.length_scale = length_scale
            self.length_scale_bounds = length_scale_bounds
            self.slope_sd = slope_sd
            self.origin = origin

        @property
        def hyperparameter_length_scale(self) -> Hyperparameter:
            return Hyperparameter("length_scale", "numeric", self.length_scale_bounds)

        def _s(self, x: np.ndarray) -> np.ndarray:
            return np.maximum(np.asarray(x, dtype=np.float64)[:, 0] - self.origin, 0.0)

        def __call__(self, X: np.ndarray, Y: np.ndarray | None = None, eval_gradient: bool = False) -> object:
            s = self._s(X)
            t = s if Y is None else self._s(Y)
            m = np.minimum(s[:, None], t[None, :])
            k = (self.slope_sd**2 / self.length_scale) * (
                m**3 / 3.0 + np.abs(s[:, None] - t[None, :]) * m**2 / 2.0
            )
            if not eval_gradient:
                return k
            if Y is not None:
                raise ValueError("gradient can only be evaluated when Y is None")
            if self.hyperparameter_length_scale.fixed:
                return k, np.empty((s.size, s.size, 0))
            return k, -k[:, :, None]  # d k / d log(l)

        def diag(self, X: np.ndarray) -> np.ndarray:
            s = self._s(X)
            return np.asarray((self.slope_sd**2 / self.length_scale) * s**3 / 3.0)

        def is_stationary(self) -> bool:
            return False

        def __repr__(self) -> str:
            return f"LocalTrend(length_scale={self.length_scale:.3g}, slope_sd={self.slope_sd:g})"

    return _LocalTrend


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


@dataclass
class CourseModel:
    """A fitted per-patient GP: observed (sorted, de-duplicated) days/ratios and the regressor.

    The regressor sees days relative to ``t_ref`` (the last scan) and the latent ratio minus
    ``y_offset`` (the mean of the scans' latent values).
    """

    days: np.ndarray
    ratios: np.ndarray
    gp: object
    t_ref: float = 0.0
    y_offset: float = 0.0
    min_length_scale: float = 0.0

    @property
    def kernel(self) -> str:
        """The fitted kernel with its hyper-parameters."""
        return str(self.gp.kernel_)  # type: ignore[attr-defined]

    @property
    def length_scale(self) -> float:
        """The fitted time scale of the local trend (days): over it the slope may change by
        `SLOPE_SD`; never below the scans' mean spacing."""
        params = self.gp.kernel_.get_params()  # type: ignore[attr-defined]
        return float(next(v for k, v in params.items() if k.endswith("length_scale")))

    def latent(self, days: Sequence[float] | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """GP posterior ``(mean, sd)`` on the latent (started logit) scale at ``days``."""
        q = np.asarray(days, dtype=np.float64).reshape(-1)
        if not np.isfinite(q).all():
            raise ProgressionError("query days must be finite numbers")
        mean, sd = self.gp.predict((q - self.t_ref)[:, None], return_std=True)  # type: ignore[attr-defined]
        return np.asarray(mean, dtype=np.float64) + self.y_offset, np.asarray(sd, dtype=np.float64)

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

    def crossing_days(
        self, levels: Iterable[float], horizon_days: float = 30.0, step_days: float = 0.05
    ) -> dict[float, float | None]:
        """First day after the last scan where the predicted mean reaches each level.

        The mean is evaluated on a grid from the last scan day to ``horizon_days`` later (step
        ``step_days``); the crossing is the first grid interval where ``mean - level`` changes
        sign (or touches 0), located by linear interpolation. ``None`` if not within the horizon.
        If the mean equals the level at the last scan day, that day is returned.
        """
        return {lv: day for lv, (day, _, _) in self.crossings(levels, horizon_days, step_days).items()}

    def crossings(
        self,
        levels: Iterable[float],
        horizon_days: float = 30.0,
        step_days: float = 0.05,
        z: float = 1.96,
    ) -> dict[float, tuple[float | None, float | None, float | None]]:
        """Per level ``(day, earliest, latest)``: when the mean, and the band's edges, reach it.

        ``day`` is as in `crossing_days`. The band's near edge (the lower one for a level below
        the mean at the last scan, the upper one for a level above) reaching the level gives
        ``earliest``; the far edge gives ``latest`` (pointwise 95 % band for ``z = 1.96``).
        ``None`` where it does not happen within the horizon.
        """
        grid = self._grid(horizon_days, step_days)
        mu, sd = self.latent(grid)
        mean, lo, hi = from_latent(mu), from_latent(mu - z * sd), from_latent(mu + z * sd)
        out: dict[float, tuple[float | None, float | None, float | None]] = {}
        for level in levels:
            lv = float(level)
            if not np.isfinite(lv):
                raise ProgressionError(f"levels must be finite numbers, got {level!r}")
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


def fit_course(
    days: Sequence[float] | np.ndarray,
    ratios: Sequence[float] | np.ndarray,
    *,
    n_restarts: int = 2,
    seed: int = 0,
) -> CourseModel:
    """Fit a GP to one patient's (day, lesion ratio) series (the model: see this module's doc).

    Days are sorted; scans on the same day are averaged into one point; at least `MIN_POINTS`
    distinct days are needed. Ratios must lie in [0, 1], days be finite and >= 0. The trend's
    time scale maximizes the marginal likelihood within its bounds (L-BFGS-B,
    ``n_restarts`` extra random starts from ``seed``).
    """
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.gaussian_process import GaussianProcessRegressor
    from sklearn.gaussian_process.kernels import ConstantKernel, DotProduct

    d, r = _clean(days, ratios)
    y = to_latent(r)
    y_offset = float(y.mean())
    t_ref = float(d[-1])
    min_ls = float(d[-1] - d[0]) / (d.size - 1)  # the scans' mean spacing
    max_ls = max(MAX_LENGTH_SCALE, 2.0 * min_ls)
    # level and slope at the last scan (Bayesian linear regression) + the slope's drift from the
    # first scan on (local linear trend, time scale l: the one fitted hyper-parameter)
    kernel = (
        ConstantKernel(LEVEL_SD**2, "fixed")
        + ConstantKernel(SLOPE_SD**2, "fixed") * DotProduct(0.0, "fixed")
        + _local_trend_kernel()(
            length_scale=float(np.clip(2.0 * min_ls, min_ls, max_ls)),
            length_scale_bounds=(min_ls, max_ls),
            origin=float(d[0]) - t_ref,
        )
    )
    alpha = (MEASUREMENT_SD * _latent_slope(r)) ** 2
    gp = GaussianProcessRegressor(
        kernel=kernel, alpha=alpha, normalize_y=False, n_restarts_optimizer=n_restarts, random_state=seed
    )
    with warnings.catch_warnings():
        # Bounds reached (e.g. noise -> its floor on clean data) are expected with 3-6 points.
        warnings.simplefilter("ignore", ConvergenceWarning)
        gp.fit((d - t_ref)[:, None], y - y_offset)
    return CourseModel(days=d, ratios=r, gp=gp, t_ref=t_ref, y_offset=y_offset, min_length_scale=min_ls)


def forecast_outputs(
    days: np.ndarray,
    ratios: np.ndarray,
    query_days: np.ndarray,
    levels: np.ndarray | None,
    *,
    horizon_days: float = 30.0,
    n_restarts: int = 2,
) -> dict[str, np.ndarray]:
    """The `progression_gpr` model's answer: its output tensors by contract name, float32."""
    from covidet import _contract as C

    course = fit_course(days, ratios, n_restarts=n_restarts)
    mean, std = course.predict(query_days)
    lower, upper = course.band(query_days)
    n_levels = 0 if levels is None else np.asarray(levels).size
    crossing = np.full((3, n_levels), np.nan, dtype=np.float32)  # day, earliest, latest
    if levels is not None and n_levels:
        hits = course.crossings(np.asarray(levels).reshape(-1), horizon_days=horizon_days)
        for j, v in enumerate(np.asarray(levels).reshape(-1)):
            crossing[:, j] = [np.nan if x is None else x for x in hits[float(v)]]
    mean_s, std_s, cross_s, lower_s, upper_s, early_s, late_s = C.PROGRESSION_GPR.outputs
    arrays = (mean, std, crossing[0], lower, upper, crossing[1], crossing[2])
    return {
        s.name: np.ascontiguousarray(a, dtype=np.float32)
        for s, a in zip((mean_s, std_s, cross_s, lower_s, upper_s, early_s, late_s), arrays, strict=True)
    }
