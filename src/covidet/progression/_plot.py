"""A course plot like CoviDet Fig. 4: scans, GP fit and forecast (dashed), its 95 % band, and the
days given levels are reached, in words."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from covidet._contract import describe_crossing
from covidet.progression._gpr import CourseModel

__all__ = ["describe_crossing", "plot_course"]


def plot_course(
    course: CourseModel,
    observed: tuple[np.ndarray, np.ndarray] | None,
    out_png: Path | str,
    *,
    horizon_days: float = 14.0,
    z: float = 1.96,
    title: str | None = None,
    levels: Sequence[float] = (),
) -> Path:
    """Save a PNG: fitted scans (dots), later ``observed`` scans (crosses), fit, forecast (dashed)
    and its band (within [0, 1]); for each of ``levels`` the forecast day it is reached (a diamond:
    the median first passage, `CourseModel.first_passage`), the 95 % range of that day (a bar) and
    the words of `describe_crossing` in the legend."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    last = float(course.days[-1])
    end = last + horizon_days
    if observed is not None and len(observed[0]):
        end = max(end, float(np.max(observed[0])) + 1.0)
    t = np.linspace(float(course.days[0]), end, 400)
    mean, _ = course.predict(t)
    lo, hi = course.band(t, z=z)
    fig, ax = plt.subplots(figsize=(6, 4), dpi=100)
    try:
        ax.fill_between(t, lo, hi, color="tab:blue", alpha=0.2, label=f"mean ± {z:g} sd")
        past, future = t <= last, t >= last
        ax.plot(t[past], mean[past], color="tab:blue", label="GP fit")
        ax.plot(t[future], mean[future], "--", color="tab:blue", label="forecast")
        ax.plot(course.days, course.ratios, "o", color="black", label="fitted scans")
        if observed is not None and len(observed[0]):
            ax.plot(observed[0], observed[1], "x", color="tab:red", ms=8, label="later scans")
        ax.axvline(last, color="gray", ls=":", lw=1)
        for i, (level, fp) in enumerate(course.first_passage(levels, horizon_days=end - last).items()):
            colour = f"C{(i + 1) % 10}"
            ax.axhline(level, color=colour, lw=0.8, ls=":")
            day, early, late = fp.median, fp.earliest, fp.latest
            text = describe_crossing(level, day, early, late, last, fp.p_reach)
            if day is not None:
                left, right = (day if early is None else early), (end if late is None else late)
                ax.plot([left, right], [level, level], "-", color=colour, lw=4, alpha=0.5)
                ax.plot([day], [level], "D", color=colour, ms=7, zorder=6, label=text)
            else:
                ax.plot([], [], "D", color=colour, ms=7, label=text)
        ax.set_xlabel("day")
        ax.set_ylabel("lesion area / lung area")
        ax.set_ylim(0.0, min(1.0, max(0.05, float(np.max(hi)) * 1.1)))
        ax.set_title(title or "lesion ratio course (DL#5, Gaussian process)")
        ax.legend(loc="best", fontsize=8)
        fig.tight_layout()
        out = Path(out_png)
        out.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(out)
    finally:
        plt.close(fig)
    return out
