"""The course prior: built-in default, JSON round trip, learning it back from courses of the model."""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import numpy as np
import pytest

from covidet.cli._progression import main_train_course_prior
from covidet.errors import InvalidInputError
from covidet.progression import (
    DEFAULT_PRIOR,
    CoursePrior,
    fit_course,
    from_latent,
    read_courses_csv,
    to_latent,
    train_course_prior,
)
from covidet.progression._gpr import LEVEL_SD, MEASUREMENT_SD, _iou_cov


def _sample_courses(prior: CoursePrior, n: int, seed: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """Courses drawn from the model itself: level + drift line + integrated OU + measurement noise."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        days = np.cumsum(np.concatenate([[0.0], rng.integers(2, 6, 5).astype(float)]))
        t = days - days[-1]
        k, _ = _iou_cov(t, t, prior.slope_sd, prior.tau)
        y = (
            rng.normal(-2.0, 0.5)
            + prior.drift * t
            + rng.multivariate_normal(np.zeros(t.size), k + 1e-12 * np.eye(t.size))
        )
        r = np.clip(from_latent(y) + rng.normal(0.0, MEASUREMENT_SD, t.size), 0.0, 1.0)
        out.append((days, r))
    return out


def test_default_prior_resolves() -> None:
    assert DEFAULT_PRIOR.drift < 0  # a self-limiting disease
    assert DEFAULT_PRIOR.tau > 0 and DEFAULT_PRIOR.slope_sd > 0 and "literature" in DEFAULT_PRIOR.source


def test_training_recovers_the_drift_of_courses_drawn_from_the_model() -> None:
    truth = dataclasses.replace(DEFAULT_PRIOR, drift=-0.15, slope_sd=0.2, tau=6.0)
    learnt = train_course_prior(_sample_courses(truth, 300, seed=0), source="test")
    assert learnt.n_courses == 300 and learnt.source == "test"
    assert learnt.drift == pytest.approx(truth.drift, abs=0.05)
    assert learnt.slope_sd == pytest.approx(truth.slope_sd, rel=0.4)
    rising = train_course_prior(_sample_courses(dataclasses.replace(truth, drift=0.1), 300, seed=1))
    assert rising.drift > learnt.drift + 0.1


def test_prior_round_trip_and_refusals(tmp_path: Path) -> None:
    p = dataclasses.replace(DEFAULT_PRIOR, drift=-0.1, tau_log_sd=0.7, source="x", n_courses=3)
    assert CoursePrior.load(p.save(tmp_path / "p.json")) == p
    (tmp_path / "bad.json").write_text('{"drift": 1}')
    with pytest.raises(InvalidInputError, match="not a covidet course prior"):
        CoursePrior.load(tmp_path / "bad.json")
    with pytest.raises(InvalidInputError, match="positive"):
        CoursePrior(drift=0.0, slope_sd=0.0, tau=5.0)
    with pytest.raises(InvalidInputError, match="at least 2 courses"):
        train_course_prior([([0.0, 1.0], [0.1, 0.2])])


def test_map_tau_stays_within_bounds_and_moves_towards_the_prior() -> None:
    days, ratios = [0.0, 2.0, 4.0, 6.0], [0.05, 0.08, 0.12, 0.18]
    ml = fit_course(days, ratios)
    tight = fit_course(days, ratios, prior=dataclasses.replace(DEFAULT_PRIOR, tau=2.5, tau_log_sd=0.1))
    assert 2.0 - 1e-9 <= tight.length_scale < ml.length_scale
    assert abs(math.log(tight.length_scale / 2.5)) < 0.3


def test_drift_is_the_forecast_far_beyond_the_memory() -> None:
    course = fit_course([0, 4, 8], [0.2, 0.2, 0.2])
    far = np.array([200.0, 201.0])
    mu, _ = course.latent(far)
    assert (mu[1] - mu[0]) == pytest.approx(DEFAULT_PRIOR.drift, abs=0.01)
    assert np.isfinite(to_latent([0.2])).all() and LEVEL_SD > 0


def test_read_courses_csv_and_the_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rows = ["patient,day,ratio"]
    for i, (days, ratios) in enumerate(_sample_courses(DEFAULT_PRIOR, 12, seed=2)):
        rows += [f"p{i},{d:g},{r:.5f}" for d, r in zip(days, ratios, strict=True)]
    csv_path = tmp_path / "courses.csv"
    csv_path.write_text("\n".join(rows) + "\n")
    courses = read_courses_csv(csv_path)
    assert len(courses) == 12 and all(d.size == 6 for d, _ in courses)
    out = tmp_path / "prior.json"
    assert main_train_course_prior([str(csv_path), "--out", str(out)]) == 0
    prior = CoursePrior.load(out)
    assert prior.n_courses == 12 and "courses.csv" in prior.source
    assert main_train_course_prior(["--synthetic", "8", "--out", str(tmp_path / "s.json")]) == 0
    assert "8 courses" in capsys.readouterr().out
    (tmp_path / "bad.csv").write_text("patient,day\np,1\n")
    with pytest.raises(InvalidInputError, match="missing column"):
        read_courses_csv(tmp_path / "bad.csv")
