"""Disease-course forecast (CoviDet DL#5) through the served `progression_gpr` model."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from covidet import _contract as C

__all__ = ["Forecast", "ForecastRequest", "forecast_inputs", "plot_forecast"]


@dataclass(frozen=True)
class Forecast:
    """GP mean and standard deviation of the lesion ratio at ``query_days``; level crossings."""

    days: np.ndarray
    ratios: np.ndarray
    query_days: np.ndarray
    mean: np.ndarray
    std: np.ndarray
    crossing_days: dict[float, float | None]

    def to_dict(self) -> dict[str, Any]:
        return {
            "observed": [
                {"day": float(d), "ratio": float(r)} for d, r in zip(self.days, self.ratios, strict=True)
            ],
            "forecast": [
                {"day": float(d), "mean": float(m), "low": float(max(0.0, m - 1.96 * s)),
                 "high": float(min(1.0, m + 1.96 * s))}
                for d, m, s in zip(self.query_days, self.mean, self.std, strict=True)
            ],
            "crossing_days": {str(k): v for k, v in self.crossing_days.items()},
        }  # fmt: skip


def forecast_inputs(
    days: Sequence[float] | np.ndarray,
    ratios: Sequence[float] | np.ndarray,
    query_days: Sequence[float] | np.ndarray,
    levels: Sequence[float],
) -> list[tuple[C.TensorSpec, np.ndarray]]:
    """(tensor spec, array) pairs for a `progression_gpr` request, names from the contract."""
    d, r, q, lv = C.PROGRESSION_GPR.inputs
    pairs = [
        (d, np.asarray(days, np.float32).reshape(-1)),
        (r, np.asarray(ratios, np.float32).reshape(-1)),
        (q, np.asarray(query_days, np.float32).reshape(-1)),
    ]
    if len(levels):
        pairs.append((lv, np.asarray(levels, np.float32).reshape(-1)))
    return pairs


@dataclass(frozen=True)
class ForecastRequest:
    """One patient's series and the days to forecast, as both clients send them."""

    days: np.ndarray
    ratios: np.ndarray
    query_days: np.ndarray
    levels: tuple[float, ...]

    @classmethod
    def of(
        cls, days: Any, ratios: Any, query_days: Any = None, *, levels: Any = (), horizon_days: float = 14.0
    ) -> ForecastRequest:
        """``query_days`` defaults to a grid from the first scan to ``horizon_days`` after the last."""
        d = np.asarray(days, np.float64).reshape(-1)
        r = np.asarray(ratios, np.float64).reshape(-1)
        if d.size and query_days is None:
            query_days = np.linspace(d.min(), d.max() + horizon_days, 120)
        q = np.asarray(query_days if query_days is not None else [], np.float64)
        return cls(d, r, q, tuple(float(v) for v in levels))

    def inputs(self) -> list[tuple[C.TensorSpec, np.ndarray]]:
        return forecast_inputs(self.days, self.ratios, self.query_days, list(self.levels))

    def result(self, as_numpy: Any) -> Forecast:
        """The `Forecast` from the response's ``as_numpy(name)``."""
        mean_s, std_s, cross_s = C.PROGRESSION_GPR.outputs
        crossings = as_numpy(cross_s.name)
        cross = [] if crossings is None else crossings.reshape(-1).tolist()
        order = np.argsort(self.days, kind="stable")
        return Forecast(
            days=self.days[order],
            ratios=self.ratios[order],
            query_days=self.query_days,
            mean=as_numpy(mean_s.name).astype(np.float64),
            std=as_numpy(std_s.name).astype(np.float64),
            crossing_days={
                lv: (None if np.isnan(c) else float(c)) for lv, c in zip(self.levels, cross, strict=False)
            },
        )


def plot_forecast(fc: Forecast, out_png: Path, *, title: str = "") -> Path:
    """A figure like CoviDet's Fig. 4: observed ratios, GP mean and 95% band."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(7, 4.2))
    ax = fig.add_subplot()
    lo = np.clip(fc.mean - 1.96 * fc.std, 0, 1)
    hi = np.clip(fc.mean + 1.96 * fc.std, 0, 1)
    ax.fill_between(fc.query_days, lo, hi, alpha=0.25, label="95% band")
    ax.plot(fc.query_days, fc.mean, "-", label="GP mean")
    ax.plot(fc.days, fc.ratios, "o", color="black", label="observed")
    for level, day in fc.crossing_days.items():
        if day is not None:
            ax.axhline(level, color="grey", lw=0.6, ls=":")
            ax.axvline(day, color="grey", lw=0.6, ls=":")
    ax.set_xlabel("day")
    ax.set_ylabel("lesion / lung ratio")
    ax.set_title(title or "disease course (GPR forecast)")
    ax.grid(alpha=0.3)
    ax.legend(loc="best")
    fig.tight_layout()
    out_png.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out_png, dpi=100)
    return out_png
