"""DL#5 GP: forecasts that follow the trend, bands in [0, 1], bounded length scale, input checks."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from covidet.progression import (
    PATTERNS,
    ProgressionError,
    describe_crossing,
    fit_course,
    from_latent,
    generate_course,
    plot_course,
    to_latent,
)
from covidet.progression._gpr import MAX_LENGTH_SCALE, MEASUREMENT_SD

HORIZON = 30.0


def _after(course: object, horizon: float = HORIZON) -> np.ndarray:
    last = float(course.days[-1])  # type: ignore[attr-defined]
    return np.linspace(last, last + horizon, 301)


def test_issue_20_example_forecasts_the_fall() -> None:
    """Days 0, 4, 8 at 0.066, 0.074, 0.051: the ratio just fell by a third (issue 20)."""
    course = fit_course([0, 4, 8], [0.066, 0.074, 0.051])
    hit = course.crossing_days([0.05], horizon_days=HORIZON)[0.05]
    assert hit is not None and 8 < hit < 8 + HORIZON
    mean, _ = course.predict(_after(course))
    # no snapping back to a constant: the forecast keeps falling (until the lesions are gone)
    assert (np.diff(mean) <= 0).all() and (np.diff(mean)[mean[1:] > 0] < 0).all()
    assert mean[-1] < 0.6 * mean[0]


def test_clean_decaying_series_keeps_decaying_and_crosses() -> None:
    days = np.array([0.0, 3.0, 7.0, 10.0])
    course = fit_course(days, 0.30 * np.exp(-days / 6.0))
    mean, _ = course.predict(_after(course))
    # falls until the lesions are gone (the started logit reaches 0 in finite time)
    assert (np.diff(mean) <= 0).all() and (np.diff(mean)[mean[1:] > 0] < 0).all()
    hits = course.crossing_days([0.05, 0.02], horizon_days=HORIZON)
    assert hits[0.05] is not None and 10 < hits[0.05] < hits[0.02] < 10 + HORIZON  # type: ignore[operator]
    # near the truth (0.05 at day 6 ln 6 = 10.75 -> just after the last scan)
    assert hits[0.05] < 14


def test_rising_series_keeps_rising() -> None:
    """A steady rise goes on beyond the next scan interval (the trend is damped, not cut)."""
    course = fit_course([0, 4, 8], [0.05, 0.09, 0.16])
    mean, _ = course.predict(np.linspace(8.0, 12.0, 41))
    assert (np.diff(mean) > 0).all()
    assert mean[-1] > 0.16 + 0.5 * (0.16 - 0.09)  # by a real amount, not a flattening
    hit = course.crossing_days([0.2], horizon_days=HORIZON)[0.2]
    assert hit is not None and 8 < hit < 8 + HORIZON


def test_a_long_steady_rise_is_remembered_longer() -> None:
    """tau is the patient's own: five scans on one logistic rise keep rising for longer."""
    days = np.array([0.0, 3.0, 6.0, 9.0, 12.0])
    ratios = 0.9 / (1.0 + np.exp(-(days - 20.0) / 5.0))
    course = fit_course(days, ratios)
    assert course.length_scale > 10.0
    mean, _ = course.predict(np.linspace(12.0, 19.0, 36))
    assert (np.diff(mean) > 0).all()
    hit = course.crossing_days([float(0.9 / (1.0 + np.exp(-(17.0 - 20.0) / 5.0)))])
    assert next(iter(hit.values())) is not None


def test_rise_then_fall_forecasts_the_fall() -> None:
    """Rise, then a first fall (the phantom course of docs/evaluation.md): no further rise."""
    course = fit_course([0, 3, 6], [0.028, 0.056, 0.052])
    mean, _ = course.predict(_after(course))
    assert mean.max() < 0.056 + MEASUREMENT_SD
    hits = course.crossing_days([0.04, 0.028], horizon_days=HORIZON)
    assert hits[0.04] is not None and hits[0.028] is not None and 6 < hits[0.04] < hits[0.028]  # type: ignore[operator]


def test_a_rise_turns_and_resolves_beyond_its_memory() -> None:
    """The self-limiting prior: a rise seen now is forecast to peak, then resolve (even with the
    longest memory a steady rise gets, the slope relaxes to the negative drift)."""
    course = fit_course([0, 4, 8], [0.05, 0.09, 0.16])
    horizon = 6 * MAX_LENGTH_SCALE
    mean, _ = course.predict(_after(course, horizon))
    peak = int(np.argmax(mean))
    assert 0 < peak < mean.size - 1 and mean[-1] < 0.5 * mean[peak]
    assert course.crossing_days([0.16], horizon_days=horizon)[0.16] is not None  # back down


@pytest.mark.parametrize("pattern", ["peak_recovery", "relapse", "plateau", "deterioration"])
def test_length_scale_never_below_the_scan_spacing(pattern: str) -> None:
    for seed in range(4):
        d, r = generate_course(pattern, seed, n_points=5)
        for n in (3, 5):
            course = fit_course(d[:n], r[:n], seed=seed)
            assert course.length_scale >= np.diff(d[:n]).min() - 1e-9
            assert course.length_scale >= course.min_length_scale - 1e-9
            assert course.length_scale <= max(MAX_LENGTH_SCALE, 2 * course.min_length_scale) + 1e-9
    # even when maximum likelihood wants wiggles between close scans
    course = fit_course([0, 1, 2, 3, 4], [0.1, 0.3, 0.05, 0.3, 0.1])
    assert course.length_scale >= 1.0 - 1e-9


@pytest.mark.parametrize(
    "ratios",
    [[0.0, 0.0, 0.001], [0.99, 1.0, 1.0], [0.02, 0.3, 0.1], [0.4, 0.1, 0.0], [0.0, 0.5, 1.0]],
)
def test_forecast_and_band_stay_in_0_1(ratios: list[float]) -> None:
    course = fit_course([0, 4, 8], ratios)
    t = np.linspace(0, 60, 121)
    mean, std = course.predict(t)
    lo, hi = course.band(t)
    for a in (mean, std, lo, hi):
        assert np.isfinite(a).all() and a.min() >= 0.0 and a.max() <= 1.0
    assert (lo <= mean + 1e-12).all() and (mean <= hi + 1e-12).all()
    lo1, hi1 = course.band(t, z=1.0)
    assert ((hi1 - lo1) <= (hi - lo) + 1e-12).all()


def test_started_logit_round_trip() -> None:
    r = np.array([0.0, 1e-4, 0.01, 0.05, 0.5, 0.99, 1.0])
    np.testing.assert_allclose(from_latent(to_latent(r)), r, atol=1e-12)
    assert np.isfinite(to_latent(r)).all()
    assert from_latent([-1e3, 1e3]).tolist() == [0.0, 1.0]


def test_clean_line_is_followed_within_the_measurement_error() -> None:
    days = np.array([0.0, 2.0, 4.0, 6.0, 8.0])
    ratios = 0.1 + 0.02 * days  # 0.10 ... 0.26
    course = fit_course(days, ratios)
    mean, _ = course.predict(days)
    np.testing.assert_allclose(mean, ratios, atol=MEASUREMENT_SD)
    mid, std = course.predict([1.0, 3.0, 5.0, 7.0])
    np.testing.assert_allclose(mid, 0.1 + 0.02 * np.array([1.0, 3.0, 5.0, 7.0]), atol=MEASUREMENT_SD)
    assert (std < 2 * MEASUREMENT_SD).all()
    # just beyond the last scan the rise goes on: 0.27 is reached around day 8.5
    hit = course.crossing_days([0.27], horizon_days=10)[0.27]
    assert hit is not None and 8.0 < hit < 9.5
    out = course.crossing_days([0.0], horizon_days=10)
    assert out[0.0] is None


def test_mean_path_crossings_bracket_the_crossing() -> None:
    course = fit_course([0, 4, 8], [0.066, 0.074, 0.051])
    for level, (day, early, late) in course.mean_path_crossings([0.05, 0.04, 0.01, 0.2]).items():
        if day is not None:
            assert early is not None and early <= day
            assert late is None or day <= late
            m, _ = course.predict([day])
            assert abs(m[0] - level) < 1e-3
    # the level the forecast sits at on the last scan day is reached that day
    m8, _ = course.predict([8.0])
    level = float(m8[0])
    assert course.mean_path_crossings([level])[level][0] == pytest.approx(8.0)
    assert course.crossing_days([level])[level] == pytest.approx(8.0)


@pytest.mark.parametrize("pattern", PATTERNS)
def test_first_passage_against_the_mean_path_and_the_band(pattern: str) -> None:
    """What must hold of the median first passage, whatever the draws (up to a Monte Carlo margin
    of about 3 SE for 2000 draws): it is reproducible; its range brackets it; where the mean path
    (the pointwise median) reaches a level, at least half the courses have reached it by then; at
    least as many courses reach a level within the horizon as are past it at the horizon's end."""
    from scipy.stats import norm

    for seed in range(3):
        d, r = generate_course(pattern, seed)
        course = fit_course(d[:3], r[:3])
        levels = [float(v) for v in r[3:5]] + [0.05, 0.01, 0.3]
        passage = course.first_passage(levels, horizon_days=HORIZON)
        assert passage == course.first_passage(levels, horizon_days=HORIZON)  # reproducible
        mean_path = course.mean_path_crossings(levels, horizon_days=HORIZON)
        end = course.t_ref + HORIZON
        mu, sd = course.latent([course.t_ref, end])
        for level, fp in passage.items():
            assert 0.0 <= fp.p_reach <= 1.0
            assert (fp.median is None) == (fp.p_reach < 0.5)
            if fp.median is not None:
                assert fp.earliest is not None and course.t_ref <= fp.earliest <= fp.median
                assert fp.latest is None or fp.median <= fp.latest <= end
            day = mean_path[level][0]
            if day is not None and day > course.t_ref:  # half of the draws, up to Monte Carlo error
                by_then = course.first_passage([level], horizon_days=day - course.t_ref)[level]
                assert by_then.p_reach >= 0.5 - 0.04
            z = (to_latent([level])[0] - mu[1]) / sd[1]
            past_at_end = norm.cdf(z) if from_latent(mu[:1])[0] >= level else norm.sf(z)
            assert fp.p_reach >= past_at_end - 0.04  # 2000 draws: a Monte Carlo margin


def test_a_course_that_may_go_either_way_reaches_a_near_level_its_mean_path_misses() -> None:
    # a plateau: the mean path drifts down (the population's resolution), so it never reaches a
    # level just above; most of the possible courses wander up to it before they resolve
    course = fit_course([0, 4, 8], [0.1, 0.1, 0.1])
    assert course.mean_path_crossings([0.11], horizon_days=HORIZON)[0.11][0] is None
    fp = course.first_passage([0.11], horizon_days=HORIZON)[0.11]
    assert fp.p_reach > 0.5 and fp.median is not None and 8.0 < fp.median < 8.0 + HORIZON
    assert course.crossing_days([0.11], horizon_days=HORIZON)[0.11] == fp.median


def test_unsorted_and_duplicate_days_are_sorted_and_averaged() -> None:
    course = fit_course([6.0, 0.0, 3.0, 3.0], [0.3, 0.1, 0.15, 0.25])
    np.testing.assert_array_equal(course.days, [0.0, 3.0, 6.0])
    np.testing.assert_allclose(course.ratios, [0.1, 0.2, 0.3])


@pytest.mark.parametrize(
    ("days", "ratios", "message"),
    [
        ([0, 1], [0.1, 0.2], "at least 3 scans on distinct days, got 2"),
        ([0, 1, 1], [0.1, 0.2, 0.3], "got 2 distinct day"),
        ([0, 1, 2], [0.1, 0.2], "3 days and 2 ratios"),
        ([0, 1, np.nan], [0.1, 0.2, 0.3], "finite"),
        ([0, 1, 2], [0.1, np.inf, 0.3], "finite"),
        ([-1, 1, 2], [0.1, 0.2, 0.3], ">= 0"),
        ([0, 1, 2], [0.1, 1.2, 0.3], r"\[0, 1\]"),
    ],
)
def test_bad_series_are_refused(days: list[float], ratios: list[float], message: str) -> None:
    with pytest.raises(ProgressionError, match=message):
        fit_course(days, ratios)


def test_generated_courses_follow_their_pattern() -> None:
    for seed in range(3):
        d, r = generate_course("deterioration", seed)
        assert (np.diff(d) >= 2).all() and r[-1] > r[0]
        d, r = generate_course("peak_recovery", seed, n_points=8)
        assert r[-1] < r.max()  # past the peak by the 8th scan
    with pytest.raises(ValueError, match="unknown course pattern"):
        generate_course("sideways", 0)


def test_plot_course_writes_a_png(tmp_path: Path) -> None:
    d, r = generate_course("relapse", 1)
    course = fit_course(d[:3], r[:3])
    out = plot_course(course, (d[3:], r[3:]), tmp_path / "course.png", levels=[0.05, float(r[3])])
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and out.stat().st_size > 5000


def test_crossings_in_words() -> None:
    assert describe_crossing(0.05, 14.2, 11.4, 19.3, 8.0) == "reaches 0.05 around day 14 (11-19)"
    assert "may take longer" in describe_crossing(0.05, 14.2, 11.4, None, 8.0)
    assert describe_crossing(0.05, 9.2, 8.0, None, 8.0, 0.89) == (
        "reaches 0.05 around day 9 (from day 8; 11% of the likely courses not within the horizon)"
    )
    assert describe_crossing(0.3, None, None, None, 8.0) == "not expected to reach 0.3 within the horizon"
    assert "possible from day 12" in describe_crossing(0.3, None, 12.0, None, 8.0)
    assert (
        describe_crossing(0.3, None, 12.0, None, 8.0, 0.31)
        == "not expected to reach 0.3 within the horizon (31% of the likely courses do, from day 12)"
    )
    assert describe_crossing(0.3, None, None, None, 8.0, 0.0) == (
        "not expected to reach 0.3 within the horizon (0% of the likely courses do)"
    )
    assert "by the last scan" in describe_crossing(0.1, 8.0, 8.0, 8.0, 8.0)
