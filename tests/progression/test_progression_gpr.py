"""DL#5 GP: hand-checked fits, crossings, input cleaning and errors, plot."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from covidet.progression import ProgressionError, fit_course, generate_course, plot_course


def test_noise_free_line_is_interpolated_and_crossing_found() -> None:
    days = np.array([0.0, 2.0, 4.0, 6.0, 8.0])
    ratios = 0.1 + 0.02 * days  # 0.10 ... 0.26
    course = fit_course(days, ratios)
    mean, std = course.predict(days)
    np.testing.assert_allclose(mean, ratios, atol=2e-3)
    assert (std < 0.01).all()
    # between the points the mean follows the line
    mid, _ = course.predict([1.0, 3.0, 5.0, 7.0])
    np.testing.assert_allclose(mid, 0.1 + 0.02 * np.array([1.0, 3.0, 5.0, 7.0]), atol=5e-3)
    # just beyond the last scan the line goes on: 0.27 is reached at day 8.5
    hit = course.crossing_days([0.27], horizon_days=10)[0.27]
    assert hit is not None and abs(hit - 8.5) < 0.15
    # a level at the last observed value is reached on the last scan day; 0.9 never is
    out = course.crossing_days([float(mean[-1]), 0.9], horizon_days=10)
    assert out[0.9] is None and out[float(mean[-1])] == pytest.approx(8.0)


def test_crossing_is_linear_interpolation_of_the_mean() -> None:
    course = fit_course([0, 3, 6, 9], [0.05, 0.20, 0.30, 0.32])
    level = 0.25
    hit = course.crossing_days([level], horizon_days=20, step_days=0.5)[level]
    if hit is None:  # mean never returns to 0.25 within 20 days: check that it truly does not
        grid = np.linspace(9, 29, 401)
        m, _ = course.predict(grid)
        assert ((m - level) * (m[0] - level) > 0).all()
    else:
        m, _ = course.predict([hit])
        assert abs(m[0] - level) < 2e-3


def test_band_contains_mean_and_is_clipped() -> None:
    course = fit_course([0, 4, 8], [0.02, 0.3, 0.1])
    t = np.linspace(0, 20, 50)
    lo, hi = course.band(t)
    mean, _ = course.predict(t)
    assert ((lo <= np.clip(mean, 0, 1) + 1e-12) & (np.clip(mean, 0, 1) <= hi + 1e-12)).all()
    assert lo.min() >= 0.0 and hi.max() <= 1.0
    lo1, hi1 = course.band(t, z=1.0)
    assert ((hi1 - lo1) <= (hi - lo) + 1e-12).all()


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
    out = plot_course(course, (d[3:], r[3:]), tmp_path / "course.png")
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and out.stat().st_size > 5000
