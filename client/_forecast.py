"""Disease-course forecast (CoviDet DL#5) through the served `progression_gpr` model."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from covidet import _contract as C

__all__ = ["Forecast", "ForecastRequest", "forecast_inputs", "plot_forecast"]


Range = tuple[float | None, float | None]


@dataclass(frozen=True)
class Forecast:
    """The forecast lesion ratio at ``query_days`` and when it reaches given levels.

    ``mean`` is the forecast course (the server's posterior median, in [0, 1]); ``lower``/``upper``
    the 95 % band (asymmetric, in [0, 1]); ``std`` an equivalent SD.

    When each level is reached, as a time to an event: ``crossing_days[level]`` is the forecast
    day, the median day the patient's possible courses first reach the level after the last scan
    (None: under half do within the server's horizon); ``crossing_ranges[level]`` the days by
    which 2.5 % and 97.5 % of them have (None: fewer do within the horizon);
    ``reach_probability[level]`` the share that reach it within the horizon.
    ``mean_crossing_days[level]`` is where the plotted ``mean`` curve reaches the level, which is
    not the forecast day: a course that may go either way has a mean curve that goes neither way.
    The last two are empty from an older server.
    """

    days: np.ndarray
    ratios: np.ndarray
    query_days: np.ndarray
    mean: np.ndarray
    std: np.ndarray
    crossing_days: dict[float, float | None]
    lower: np.ndarray
    upper: np.ndarray
    crossing_ranges: dict[float, Range]
    reach_probability: dict[float, float | None] = field(default_factory=dict)
    mean_crossing_days: dict[float, float | None] = field(default_factory=dict)

    def describe(self, level: float) -> str:
        """When ``level`` is reached, in words, e.g. "reaches 0.05 around day 14 (11-19)"."""
        early, late = self.crossing_ranges.get(level, (None, None))
        last = float(self.days[-1]) if self.days.size else 0.0
        p_reach = self.reach_probability.get(level)
        return C.describe_crossing(level, self.crossing_days.get(level), early, late, last, p_reach)

    def shown_until(self, margin_days: float = 2.0) -> float:
        """The last day a plot must show for every predicted crossing to be marked on it.

        The forecast's own end, or the latest predicted crossing day (with the band's far edge,
        where it reaches the level) plus ``margin_days``, whichever is later. The server looks
        for crossings over its own horizon, which may run past the days asked for: a plot to
        this day marks them all instead of naming them "beyond the plot".
        """
        end = float(np.max(self.query_days, initial=float(np.max(self.days, initial=0.0))))
        for level, day in self.crossing_days.items():
            if day is None:
                continue
            late = self.crossing_ranges.get(level, (None, None))[1]
            end = max(end, max(day, late if late is not None else day) + margin_days)
        return end

    def to_dict(self) -> dict[str, Any]:
        return {
            "observed": [
                {"day": float(d), "ratio": float(r)} for d, r in zip(self.days, self.ratios, strict=True)
            ],
            "forecast": [
                {"day": float(d), "mean": float(m), "low": float(lo), "high": float(hi)}
                for d, m, lo, hi in zip(self.query_days, self.mean, self.lower, self.upper, strict=True)
            ],
            "crossing_days": {str(k): v for k, v in self.crossing_days.items()},
            "crossing_ranges": {
                str(k): {"earliest": e, "latest": la} for k, (e, la) in self.crossing_ranges.items()
            },
            "reach_probability": {str(k): v for k, v in self.reach_probability.items()},
            "mean_crossing_days": {str(k): v for k, v in self.mean_crossing_days.items()},
            "crossing_text": {str(k): self.describe(k) for k in self.crossing_days},
        }


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
        mean_s, std_s, cross_s, lower_s, upper_s, early_s, late_s, prob_s, mean_cross_s = (
            C.PROGRESSION_GPR.outputs
        )

        def per_level(spec: C.TensorSpec) -> list[float | None]:
            values = as_numpy(spec.name)
            flat = [] if values is None else values.reshape(-1).tolist()
            return [None if np.isnan(v) else float(v) for v in flat]

        cross, early, late = per_level(cross_s), per_level(early_s), per_level(late_s)
        order = np.argsort(self.days, kind="stable")
        return Forecast(
            days=self.days[order],
            ratios=self.ratios[order],
            query_days=self.query_days,
            mean=as_numpy(mean_s.name).astype(np.float64),
            std=as_numpy(std_s.name).astype(np.float64),
            crossing_days=dict(zip(self.levels, cross, strict=False)),
            lower=as_numpy(lower_s.name).astype(np.float64),
            upper=as_numpy(upper_s.name).astype(np.float64),
            crossing_ranges={lv: (e, la) for lv, e, la in zip(self.levels, early, late, strict=False)},
            reach_probability=dict(zip(self.levels, per_level(prob_s), strict=False)),
            mean_crossing_days=dict(zip(self.levels, per_level(mean_cross_s), strict=False)),
        )


def plot_forecast(fc: Forecast, out_png: Path, *, title: str = "") -> Path:
    """A course figure a clinician reads at a glance (like CoviDet's Fig. 4).

    The scans (dots), the fitted course (solid) and the forecast after the last scan (dashed),
    the 95 % band (within [0, 1]), and on each level's line its forecast day (a diamond: half of
    the likely courses have reached the level by then), the 95 % range of that day as a bar, and
    the words of `Forecast.describe` in the legend.
    """
    from matplotlib.figure import Figure

    fig = Figure(figsize=(8, 4.8))
    ax = fig.add_subplot()
    q, mean = fc.query_days, np.clip(fc.mean, 0.0, 1.0)
    lo, hi = np.clip(fc.lower, 0.0, 1.0), np.clip(fc.upper, 0.0, 1.0)
    last = float(fc.days[-1]) if fc.days.size else float("-inf")
    ax.fill_between(q, lo, hi, color="tab:blue", alpha=0.18, lw=0, label="95% band")
    past, future = q <= last, q >= last
    ax.plot(q[past], mean[past], "-", color="tab:blue", lw=2, label="fitted course")
    ax.plot(q[future], mean[future], "--", color="tab:blue", lw=2, label="forecast")
    ax.plot(fc.days, fc.ratios, "o", color="black", ms=7, zorder=5, label="scans")
    if np.isfinite(last):
        ax.axvline(last, color="grey", lw=0.8, ls=":")
    # the scale of the course, not of the far forecast's band (which may run up to 1: it is
    # drawn to the top edge then, and the legend says so)
    top = min(
        1.0, max(0.05, 2.0 * max(float(np.max(mean, initial=0.0)), float(np.max(fc.ratios, initial=0.0))))
    )
    if float(np.max(hi, initial=0.0)) > top:
        ax.plot([], [], " ", label="(the band runs beyond the top edge)")
    x_end = float(np.max(q, initial=last))
    for i, level in enumerate(fc.crossing_days):
        colour = f"C{(i + 1) % 10}"
        ax.axhline(level, color=colour, lw=0.8, ls=":")
        day = fc.crossing_days[level]
        early, late = fc.crossing_ranges.get(level, (None, None))
        text = fc.describe(level)
        if day is not None and day <= x_end:
            left = day if early is None else early
            right = x_end if late is None else min(late, x_end)
            ax.plot([left, right], [level, level], "-", color=colour, lw=4, alpha=0.5)
            ax.plot([day], [level], "D", color=colour, ms=8, zorder=6, label=text)
        else:
            ax.plot([], [], "D", color=colour, ms=8, label=text + (" (beyond the plot)" if day else ""))
    ax.set_xlabel("day")
    ax.set_ylabel("lesion area / lung area")
    ax.set_ylim(0.0, top)
    ax.set_title(title or "disease course: lesion ratio forecast (GPR, DL#5)")
    ax.grid(alpha=0.3)
    ax.legend(loc="best", fontsize=9)
    fig.tight_layout()
    out_png.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out_png, dpi=110)
    return out_png
