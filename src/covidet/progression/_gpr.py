"""DL#5: Gaussian process regression of one patient's lesion ratio over days (fit per request)."""

from __future__ import annotations

import warnings
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

from covidet.errors import InvalidInputError

__all__ = ["MIN_POINTS", "CourseModel", "ProgressionError", "fit_course"]

#: A course needs at least this many distinct scan days (the paper uses the first 3 time points).
MIN_POINTS = 3


class ProgressionError(InvalidInputError):
    """The scan series cannot be fit: too few days, non-finite or out-of-range values."""


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


@dataclass
class CourseModel:
    """A fitted per-patient GP: observed (sorted, de-duplicated) days/ratios and the regressor."""

    days: np.ndarray
    ratios: np.ndarray
    gp: object

    @property
    def kernel(self) -> str:
        """The fitted kernel with its hyper-parameters."""
        return str(self.gp.kernel_)  # type: ignore[attr-defined]

    def predict(self, days: Sequence[float] | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """GP posterior ``(mean, std)`` of the lesion ratio at ``days`` (std includes the noise).

        The mean is the GP's, not clipped to [0, 1]; `band` clips.
        """
        q = np.asarray(days, dtype=np.float64).reshape(-1)
        if not np.isfinite(q).all():
            raise ProgressionError("query days must be finite numbers")
        mean, std = self.gp.predict(q[:, None], return_std=True)  # type: ignore[attr-defined]
        return np.asarray(mean, dtype=np.float64), np.asarray(std, dtype=np.float64)

    def band(self, days: Sequence[float] | np.ndarray, z: float = 1.96) -> tuple[np.ndarray, np.ndarray]:
        """``(lower, upper)`` = mean -+ z * std at ``days``, clipped to [0, 1] (95 % for 1.96)."""
        mean, std = self.predict(days)
        return np.clip(mean - z * std, 0.0, 1.0), np.clip(mean + z * std, 0.0, 1.0)

    def crossing_days(
        self, levels: Iterable[float], horizon_days: float = 30.0, step_days: float = 0.05
    ) -> dict[float, float | None]:
        """First day after the last scan where the predicted mean reaches each level.

        The mean is evaluated on a grid from the last scan day to ``horizon_days`` later (step
        ``step_days``); the crossing is the first grid interval where ``mean - level`` changes
        sign (or touches 0), located by linear interpolation. ``None`` if not within the horizon.
        If the mean equals the level at the last scan day, that day is returned.
        """
        if horizon_days <= 0 or step_days <= 0:
            raise ProgressionError("horizon_days and step_days must be > 0")
        t0 = float(self.days[-1])
        grid = np.linspace(t0, t0 + horizon_days, int(np.ceil(horizon_days / step_days)) + 1)
        mean, _ = self.predict(grid)
        out: dict[float, float | None] = {}
        for level in levels:
            lv = float(level)
            if not np.isfinite(lv):
                raise ProgressionError(f"levels must be finite numbers, got {level!r}")
            g = mean - lv
            if g[0] == 0.0:
                out[lv] = t0
                continue
            hit = np.flatnonzero(np.sign(g[1:]) != np.sign(g[0]))
            if hit.size == 0:
                out[lv] = None
                continue
            i = int(hit[0])  # crossing between grid[i] and grid[i + 1]
            a, b = g[i], g[i + 1]
            out[lv] = float(grid[i] + (grid[i + 1] - grid[i]) * a / (a - b))
        return out


def fit_course(
    days: Sequence[float] | np.ndarray,
    ratios: Sequence[float] | np.ndarray,
    *,
    n_restarts: int = 2,
    seed: int = 0,
) -> CourseModel:
    """Fit a GP to one patient's (day, lesion ratio) series.

    Kernel ``ConstantKernel * RBF + WhiteKernel`` with ``normalize_y=True``; hyper-parameters
    maximize the marginal likelihood (L-BFGS-B, ``n_restarts`` extra random starts from ``seed``).
    Days are sorted; scans on the same day are averaged into one point; at least `MIN_POINTS`
    distinct days are needed. Ratios must lie in [0, 1], days be finite and >= 0.
    """
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.gaussian_process import GaussianProcessRegressor
    from sklearn.gaussian_process.kernels import RBF, ConstantKernel, WhiteKernel

    d, r = _clean(days, ratios)
    span = max(float(d[-1] - d[0]), 1.0)
    kernel = ConstantKernel(1.0, (1e-2, 1e2)) * RBF(
        length_scale=span / 2, length_scale_bounds=(0.5, 1e3)
    ) + WhiteKernel(1e-2, (1e-8, 1.0))
    gp = GaussianProcessRegressor(
        kernel=kernel, normalize_y=True, n_restarts_optimizer=n_restarts, random_state=seed
    )
    with warnings.catch_warnings():
        # Bounds reached (e.g. noise -> 0 on noise-free data) are expected with 3-6 points.
        warnings.simplefilter("ignore", ConvergenceWarning)
        gp.fit(d[:, None], r)
    return CourseModel(days=d, ratios=r, gp=gp)
