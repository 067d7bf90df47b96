"""The client's Forecast of a served answer (built here as `progression_gpr` builds it), in words and
as a plot."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

from covidet import _contract as C
from covidet.client import Forecast, plot_forecast
from covidet.client._forecast import ForecastRequest
from covidet.progression import forecast_outputs


def _served(days: list[float], ratios: list[float], levels: list[float], horizon: float = 14.0) -> Forecast:
    req = ForecastRequest.of(days, ratios, levels=levels, horizon_days=horizon)
    answer = forecast_outputs(req.days, req.ratios, req.query_days, np.asarray(req.levels))
    assert set(answer) == {s.name for s in C.PROGRESSION_GPR.outputs}
    return req.result(answer.get)


def test_issue_20_example_in_words() -> None:
    fc = _served([0, 4, 8], [0.066, 0.074, 0.051], [0.05, 0.01])
    day = fc.crossing_days[0.05]
    assert day is not None and day > 8
    early, late = fc.crossing_ranges[0.05]
    assert early is not None and early <= day and (late is None or late >= day)
    text = fc.describe(0.05)
    span = r"(\d+-\d+|from day \d+; \d+% of the likely courses not within the horizon)"
    pattern = r"reaches 0\.05 around day \d+ \(" + span + r"\)"
    assert re.fullmatch(pattern, text), text
    assert "0.01" in fc.describe(0.01)
    d = fc.to_dict()
    assert d["crossing_text"]["0.05"] == text
    assert all(0 <= f["low"] <= f["mean"] <= f["high"] <= 1 for f in d["forecast"])


def test_band_and_mean_within_0_1_for_a_steep_rise() -> None:
    fc = _served([0, 2, 4], [0.2, 0.5, 0.9], [0.95])
    for a in (fc.mean, fc.lower, fc.upper):
        assert a.min() >= 0.0 and a.max() <= 1.0
    assert (fc.lower <= fc.mean + 1e-6).all() and (fc.mean <= fc.upper + 1e-6).all()


def test_describe_without_a_crossing() -> None:
    fc = _served([0, 4, 8], [0.05, 0.09, 0.16], [0.01])
    assert fc.crossing_days[0.01] is None
    assert fc.describe(0.01).startswith("not expected to reach 0.01")


def test_plot_marks_the_crossings(tmp_path: Path) -> None:
    fc = _served([0, 4, 8], [0.066, 0.074, 0.051], [0.05, 0.01], horizon=20.0)
    out = plot_forecast(fc, tmp_path / "course.png")
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and out.stat().st_size > 10_000


@pytest.mark.parametrize("levels", [[], [0.3]])
def test_plot_without_or_beyond_crossings(tmp_path: Path, levels: list[float]) -> None:
    fc = _served([0, 3, 6, 9], [0.1, 0.2, 0.25, 0.22], levels, horizon=5.0)
    assert plot_forecast(fc, tmp_path / "c.png").stat().st_size > 5000


def test_shown_until_reaches_every_predicted_crossing() -> None:
    short = _served([0, 4, 8], [0.066, 0.074, 0.051], [0.05, 0.01], horizon=3.0)
    crossed = [d for d in short.crossing_days.values() if d is not None]
    assert crossed and max(crossed) > short.query_days.max()  # the server looks past the grid
    end = short.shown_until()
    assert end >= max(crossed) + 2.0
    longer = _served([0, 4, 8], [0.066, 0.074, 0.051], [0.05, 0.01], horizon=end - 8.0)
    assert longer.crossing_days == short.crossing_days  # the same fit: the same crossings
    assert longer.shown_until() == pytest.approx(end)
    assert longer.query_days.max() == pytest.approx(end)


def test_shown_until_without_crossings_is_the_forecasts_end() -> None:
    fc = _served([0, 4, 8], [0.05, 0.09, 0.16], [0.01], horizon=10.0)
    assert fc.shown_until() == pytest.approx(18.0)


def test_the_forecast_day_is_the_median_first_passage_and_an_older_server_is_read() -> None:
    fc = _served([0, 4, 8], [0.066, 0.074, 0.051], [0.05, 0.5])
    day = fc.crossing_days[0.05]
    assert day is not None and day >= 8.0 and (fc.reach_probability[0.05] or 0.0) >= 0.5
    # the plotted mean path is not the forecast day: where it crosses, half of the likely
    # courses have reached the level by then already (the mean is their pointwise median)
    mean_day = fc.mean_crossing_days[0.05]
    assert mean_day is not None and day <= mean_day + 0.1
    assert fc.crossing_days[0.5] is None and (fc.reach_probability[0.5] or 0.0) < 0.5
    assert re.fullmatch(
        r"not expected to reach 0\.5 within the horizon \(\d+% of the likely courses do(, from day \d+)?\)",
        fc.describe(0.5),
    ), fc.describe(0.5)
    d = fc.to_dict()
    assert d["crossing_days"]["0.05"] == day and d["mean_crossing_days"]["0.05"] == mean_day
    assert d["reach_probability"]["0.05"] == fc.reach_probability[0.05]
    req = ForecastRequest.of([0, 4, 8], [0.066, 0.074, 0.051], levels=[0.05])
    answer = forecast_outputs(req.days, req.ratios, req.query_days, np.asarray(req.levels))
    older = {k: v for k, v in answer.items() if k not in ("REACH_PROBABILITY", "MEAN_CROSSING_DAYS")}
    fc_old = req.result(older.get)
    assert fc_old.reach_probability == {} and fc_old.mean_crossing_days == {}
    assert fc_old.crossing_days == {0.05: day}
    assert fc_old.describe(0.05).startswith(f"reaches 0.05 around day {day:.0f} (")
