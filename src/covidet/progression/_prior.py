"""The population prior of DL#5 courses: the resolution drift, the slopes' spread, their memory.

Per patient the GP fits the level, the current slope and the slope's memory ``tau``
(`covidet.progression._gpr`); what 3-5 scans of one patient cannot tell comes from a population:

- ``drift``: the latent slope (started logit per day) a course relaxes to once the trend its
  scans show is spent. Negative: COVID-19 pneumonia is self-limiting, courses resolve.
- ``slope_sd``: how far a course's slope strays from the drift (SD, logit per day).
- ``tau``: how long a slope is remembered (days). Each patient's own ``tau`` is fitted by maximum
  likelihood from this start; with ``tau_log_sd`` set, by maximum a posteriori under a log-normal
  prior centred here (the first, pre-registered model; it held sustained rises to a turn within
  days against the patient's own scans, docs/progression.md).

`DEFAULT_PRIOR` is set from the literature on CT courses (docs/progression.md gives the sources
and the reasoning); `train_course_prior` learns the three values from earlier patients' courses
(``covidet train-course-prior``): the values that maximise the summed marginal likelihood of all
their courses under the same model (type-II maximum likelihood, pooled over patients).
"""

from __future__ import annotations

import csv
import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from covidet.errors import InvalidInputError

__all__ = [
    "DEFAULT_PRIOR",
    "CoursePrior",
    "read_course_table",
    "read_courses_csv",
]


@dataclass(frozen=True)
class CoursePrior:
    """A population's course prior (see this module's doc); ``source`` says where it came from."""

    drift: float
    slope_sd: float
    tau: float
    tau_log_sd: float | None = None
    source: str = ""
    n_courses: int = 0

    def __post_init__(self) -> None:
        sd = 1.0 if self.tau_log_sd is None else self.tau_log_sd
        finite = all(math.isfinite(v) for v in (self.drift, self.slope_sd, self.tau, sd))
        if not finite or self.slope_sd <= 0 or self.tau <= 0 or sd <= 0:
            raise InvalidInputError(
                "a course prior needs a finite drift and positive slope_sd, tau and tau_log_sd, got "
                f"drift={self.drift!r}, slope_sd={self.slope_sd!r}, tau={self.tau!r}, "
                f"tau_log_sd={self.tau_log_sd!r}"
            )

    def to_dict(self) -> dict[str, Any]:
        return {"format": "covidet-course-prior/1", **asdict(self)}

    def save(self, path: Path | str) -> Path:
        out = Path(path)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(self.to_dict(), indent=2) + "\n")
        return out

    @classmethod
    def load(cls, path: Path | str) -> CoursePrior:
        """Read a prior written by `save` (``covidet train-course-prior``)."""
        p = Path(path)
        try:
            data = json.loads(p.read_text())
        except (OSError, ValueError) as exc:
            raise InvalidInputError(f"cannot read the course prior {p}: {exc}") from exc
        if not isinstance(data, dict) or data.get("format") != "covidet-course-prior/1":
            raise InvalidInputError(f"{p} is not a covidet course prior (format covidet-course-prior/1)")
        try:
            return cls(
                drift=float(data["drift"]),
                slope_sd=float(data["slope_sd"]),
                tau=float(data["tau"]),
                tau_log_sd=None if data.get("tau_log_sd") is None else float(data["tau_log_sd"]),
                source=str(data.get("source", p.name)),
                n_courses=int(data.get("n_courses", 0)),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise InvalidInputError(f"course prior {p}: missing or bad field ({exc})") from exc


#: The built-in prior (docs/progression.md): the burden halves in about 10 days once a course
#: resolves (Pan et al. 2020; Wang et al. 2020), a trend lasts about one stage of the course
#: (4-5 days in Pan et al.: where each patient's own tau search starts), slopes stray by about a
#: doubling or halving in 3 days.
DEFAULT_PRIOR = CoursePrior(
    drift=-math.log(2.0) / 10.0,
    slope_sd=0.25,
    tau=5.0,
    source="built-in: literature (Pan et al. 2020, Wang et al. 2020)",
)


def read_courses_csv(path: Path | str) -> list[tuple[np.ndarray, np.ndarray]]:
    """Courses from a CSV with columns ``patient,day,ratio`` (one row per scan, any order)."""
    return [(days, ratios) for _, _, days, ratios in read_course_table(path)]


def read_course_table(path: Path | str) -> list[tuple[str, str, np.ndarray, np.ndarray]]:
    """``(patient, group, days, ratios)`` per patient from a CSV with columns ``patient,day,ratio``
    and, optionally, ``group`` (e.g. a course pattern or a cohort: an evaluation reports each
    group apart; empty: ``"all"``). Rows may come in any order; each course is sorted by day."""
    p = Path(path)
    rows: dict[str, list[tuple[float, float]]] = {}
    groups: dict[str, str] = {}
    try:
        with p.open(newline="") as fh:
            reader = csv.DictReader(fh)
            missing = {"patient", "day", "ratio"} - set(reader.fieldnames or ())
            if missing:
                raise InvalidInputError(f"{p}: missing column(s) {', '.join(sorted(missing))}")
            for i, row in enumerate(reader, start=2):
                patient, group = row["patient"], (row.get("group") or "").strip() or "all"
                if groups.setdefault(patient, group) != group:
                    raise InvalidInputError(
                        f"{p} line {i}: patient {patient!r} is in group {groups[patient]!r} on an "
                        f"earlier line and {group!r} here; give each patient one group"
                    )
                try:
                    rows.setdefault(patient, []).append((float(row["day"]), float(row["ratio"])))
                except (TypeError, ValueError) as exc:
                    raise InvalidInputError(f"{p} line {i}: day and ratio must be numbers") from exc
    except OSError as exc:
        raise InvalidInputError(f"cannot read {p}: {exc}") from exc
    out = []
    for patient, scans in rows.items():
        scans.sort()
        out.append(
            (patient, groups[patient], np.array([d for d, _ in scans]), np.array([r for _, r in scans]))
        )
    return out
