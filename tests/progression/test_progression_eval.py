"""The DL#5 fit-on-3, predict-the-interval evaluation: GPR against the line, in one run; its CLI."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from covidet.cli._progression import main_eval_progression
from covidet.progression import DEFAULT_PRIOR, METHODS, PATTERNS, TRUTH, evaluate_progression, line_crossing


def test_line_crossing_by_hand() -> None:
    days, ratios = [0.0, 4.0, 8.0], [0.3, 0.2, 0.1]  # the line through the last two: -0.025 / day
    assert line_crossing(days, ratios, 0.05) == pytest.approx(10.0)
    assert line_crossing(days, ratios, 0.1) == pytest.approx(8.0)
    assert line_crossing(days, ratios, 0.15) is None  # behind the last scan
    assert line_crossing(days, ratios, 0.3) is None  # the wrong way
    assert line_crossing(days, ratios, 0.0, horizon_days=3.0) is None  # day 12 > 8 + 3
    assert line_crossing([0, 4, 8], [0.1, 0.2, 0.2], 0.1) is None  # flat


def test_evaluation_reports_both_methods_and_is_consistent() -> None:
    res = evaluate_progression(8, seed=0, n_restarts=0)
    assert set(res) == {*PATTERNS, "all"}
    assert res["all"]["n"] == 8 and all(res[p]["n"] == 2 for p in PATTERNS)
    for s in res.values():
        assert set(METHODS) <= set(s)
        for m in METHODS:
            ms = s[m]
            for k in (4, 5):
                assert 0.0 <= ms[f"no_crossing_3to{k}"] <= 1.0
                assert ms[f"mae_days_3to{k}"] >= 0
                n_crossed = ms[f"n_crossed_3to{k}"]
                assert n_crossed == pytest.approx(s["n"] * (1 - ms[f"no_crossing_3to{k}"]))
                if n_crossed:  # the paper's comparison over the crossed courses
                    assert ms[f"bias_3to{k}"] == pytest.approx(
                        ms[f"pred_mean_3to{k}"] - ms[f"actual_mean_3to{k}"]
                    )
                    assert ms[f"mae_days_crossed_3to{k}"] <= ms[f"mae_days_3to{k}"] + 30
    for m in METHODS:
        mae = np.mean([res[p][m]["mae_days_3to4"] for p in PATTERNS])
        assert res["all"][m]["mae_days_3to4"] == pytest.approx(mae)
    for m in ("gpr", "gpr_mean_path"):  # "possible" is reported apart: only where it does not cross
        g = res["all"][m]
        for k in (4, 5):
            assert 0.0 <= g[f"possible_only_3to{k}"] <= g[f"no_crossing_3to{k}"] + 1e-12
            assert 0.0 <= g[f"range_coverage_3to{k}"] <= 1.0 and 0.0 <= g[f"range_closed_3to{k}"] <= 1.0
    # the noise-free course as a reference forecast (this project's generator knows it)
    assert res["all"][TRUTH]["mae_ratio_4"] < res["all"]["line"]["mae_ratio_4"]


def test_the_prior_is_used(tmp_path: Path) -> None:
    import dataclasses

    rising = dataclasses.replace(DEFAULT_PRIOR, drift=0.3)
    a = evaluate_progression(8, seed=0, n_restarts=0)["all"]["gpr"]
    b = evaluate_progression(8, seed=0, n_restarts=0, prior=rising)["all"]["gpr"]
    assert a["mae_ratio_5"] != b["mae_ratio_5"]
    path = rising.save(tmp_path / "prior.json")
    assert main_eval_progression(["--n", "4", "--restarts", "0", "--json", "--prior", str(path)]) == 0


def test_a_missing_crossing_counts_as_the_horizon() -> None:
    """A flat generator: the line never crosses a different level, so its MAE is horizon - actual."""

    def flat_then_jump(pattern: str, seed: int, n_points: int) -> tuple[np.ndarray, np.ndarray]:
        days = np.array([0.0, 3.0, 6.0, 10.0, 15.0])[:n_points]
        return days, np.array([0.2, 0.2, 0.2, 0.4, 0.5])[:n_points]

    res = evaluate_progression(
        2, horizon_days=30.0, n_restarts=0, generator=flat_then_jump, patterns=("flat", "jump")
    )
    assert set(res) == {"flat", "jump", "all"}  # another generator's own pattern names
    assert TRUTH not in res["all"]  # another generator: no true course to compare with
    line = res["all"]["line"]
    assert line["no_crossing_3to4"] == 1.0 and line["n_crossed_3to4"] == 0
    assert line["mae_days_3to4"] == pytest.approx(30.0 - 4.0)
    assert line["mae_days_3to5"] == pytest.approx(30.0 - 9.0)
    assert np.isnan(line["p_paired_3to4"])


def test_paired_test_on_a_known_case() -> None:
    """Exactly linear courses: the line finds every interval, p is undefined (no differences)."""

    def linear(pattern: str, seed: int, n_points: int) -> tuple[np.ndarray, np.ndarray]:
        days = np.cumsum([0.0, 3.0, 3.0 + seed % 3, 4.0, 2.0 + seed % 2])[:n_points]
        return days, (0.4 - 0.015 * days)[:n_points]

    res = evaluate_progression(6, n_restarts=0, generator=linear)
    line = res["all"]["line"]
    assert line["mae_days_3to4"] == pytest.approx(0.0, abs=1e-9)
    assert line["bias_3to5"] == pytest.approx(0.0, abs=1e-9) and np.isnan(line["p_paired_3to5"])
    gpr = res["all"]["gpr"]
    assert gpr["no_crossing_3to4"] == 0.0 and gpr["mae_days_3to4"] < 2.0
    assert 0.0 <= gpr["p_paired_3to4"] <= 1.0


def test_cli_json(capsys: pytest.CaptureFixture[str]) -> None:
    assert main_eval_progression(["--n", "4", "--restarts", "0", "--json"]) == 0
    res = json.loads(capsys.readouterr().out)
    assert res["all"]["n"] == 4 and {"gpr", "line"} <= set(res["all"])


def test_cli_table_has_the_baseline_and_the_paper(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COLUMNS", "250")  # one line per row
    assert main_eval_progression(["--n", "4", "--restarts", "0"]) == 0
    out = capsys.readouterr().out
    assert "line 2-3" in out and "no crossing" in out and "true course" in out
    assert "GPR (served)" in out and "GPR mean path" in out
    assert "band does" in out and "likely courses reach" in out and "course prior: built-in" in out
    assert "95% ranges of the day" in out
    assert "5.00 ± 5.08" in out and "paired" in out


def _write_courses(
    path: Path, courses: list[tuple[str, str, np.ndarray, np.ndarray]], shuffle: bool = True
) -> Path:
    rows = [(p, g, d, r) for p, g, days, ratios in courses for d, r in zip(days, ratios, strict=True)]
    if shuffle:  # any row order
        rows = [rows[i] for i in np.random.default_rng(0).permutation(len(rows))]
    lines = ["patient,group,day,ratio"] + [f"{p},{g},{d!r},{r!r}" for p, g, d, r in rows]
    path.write_text("\n".join(lines) + "\n")
    return path


def test_a_hospitals_courses_are_judged_as_the_synthetic_ones(tmp_path: Path) -> None:
    from covidet.progression import evaluate_courses, generate_course, read_course_table

    n = 8
    synthetic = evaluate_progression(n, seed=3, n_restarts=0)
    courses = []
    for i in range(n):  # the same courses, in the same order, written as a hospital would
        pattern = PATTERNS[i % len(PATTERNS)]
        days, ratios = generate_course(pattern, 3 * 1_000_003 + i, 5)
        courses.append((f"p{i}", pattern, days, ratios))
    table = read_course_table(_write_courses(tmp_path / "c.csv", courses))
    assert sorted((p, g) for p, g, _, _ in table) == sorted((p, g) for p, g, _, _ in courses)
    res = evaluate_courses(table, n_restarts=0)  # in another order: no restarts, so no seed matters
    assert set(res) == {*PATTERNS, "all"} and TRUTH not in res["all"]  # no truth for real courses
    for group in (*PATTERNS, "all"):
        for m in METHODS:
            for key, value in synthetic[group][m].items():
                assert res[group][m][key] == pytest.approx(value, nan_ok=True), (group, m, key)


def test_short_courses_are_left_out_or_judged_on_the_4th_alone(tmp_path: Path) -> None:
    from covidet.progression import ProgressionError, evaluate_courses

    four = (np.array([0.0, 3.0, 6.0, 10.0]), np.array([0.2, 0.15, 0.1, 0.06]))
    five = (np.array([0.0, 3.0, 6.0, 10.0, 14.0]), np.array([0.2, 0.15, 0.1, 0.06, 0.03]))
    three = (np.array([0.0, 3.0, 6.0]), np.array([0.2, 0.15, 0.1]))
    res = evaluate_courses([("a", "x", *four), ("b", "x", *five), ("c", "x", *three)], n_restarts=0)
    s = res["all"]
    assert s["n"] == 2 and s["n_skipped"] == 1
    assert s["gpr"]["n_3to4"] == 2 and s["gpr"]["n_3to5"] == 1
    assert s["gpr"]["no_crossing_3to4"] == 0.0  # a clean decay: both forecasts reach the 4th level
    with pytest.raises(ProgressionError, match="course 'bad'"):
        evaluate_courses([("bad", "x", five[0], np.array([0.2, 1.5, 0.1, 0.06, 0.03]))], n_restarts=0)


def test_cli_on_a_courses_csv(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from covidet.errors import InvalidInputError

    days = np.array([0.0, 4.0, 8.0, 12.0, 16.0])
    courses = [
        ("p1", "ward", days, np.array([0.30, 0.25, 0.19, 0.14, 0.10])),
        ("p2", "icu", days, np.array([0.05, 0.09, 0.16, 0.25, 0.33])),
        ("p3", "", days[:3], np.array([0.1, 0.1, 0.1])),  # too short: left out
    ]
    path = _write_courses(tmp_path / "courses.csv", courses)
    assert main_eval_progression(["--courses", str(path), "--restarts", "0", "--json"]) == 0
    res = json.loads(capsys.readouterr().out)
    assert set(res) == {"ward", "icu", "all"} and res["all"]["n"] == 2 and res["all"]["n_skipped"] == 1
    monkeypatch.setenv("COLUMNS", "250")
    assert main_eval_progression(["--courses", str(path), "--restarts", "0"]) == 0
    out = capsys.readouterr().out
    assert "2 courses of courses.csv" in out and "1 courses with fewer than 4 scans left out" in out
    assert "ward" in out and "icu" in out and "true course" not in out and "5.00 ± 5.08" in out
    short = _write_courses(tmp_path / "short.csv", courses[2:])
    with pytest.raises(InvalidInputError, match="none of its 1 courses has 4 or more scans"):
        main_eval_progression(["--courses", str(short)])
    clash = tmp_path / "clash.csv"
    clash.write_text("patient,group,day,ratio\np1,a,0,0.1\np1,b,3,0.1\n")
    with pytest.raises(InvalidInputError, match="give each patient one group"):
        main_eval_progression(["--courses", str(clash)])


def test_range_coverage_counts_an_open_end_as_covering() -> None:
    from covidet._contract import range_covers as _in_range

    assert _in_range(10.0, 8.0, 12.0) and _in_range(10.0, 10.0, 10.0)
    assert not _in_range(13.0, 8.0, 12.0) and not _in_range(7.0, 8.0, 12.0)
    assert _in_range(40.0, 8.0, None)  # "may take longer than the horizon"
    assert not _in_range(10.0, None, None)  # not within the horizon: no range


def test_ranges_of_a_jump_the_forecast_cannot_see_do_not_cover_it() -> None:
    """A flat course that jumps far up: the 95 % ranges of the day cannot contain day 4 after
    the 3rd scan, so coverage must fall (a check that the figure is not always 1)."""

    def flat_then_jump(pattern: str, seed: int, n_points: int) -> tuple[np.ndarray, np.ndarray]:
        days = np.array([0.0, 3.0, 6.0, 10.0, 15.0])[:n_points]
        return days, np.array([0.02, 0.02, 0.02, 0.9, 0.95])[:n_points]

    res = evaluate_progression(2, n_restarts=0, generator=flat_then_jump, patterns=("a", "b"))
    g = res["all"]["gpr"]
    assert g["range_coverage_3to4"] == 0.0 and g["no_crossing_3to4"] == 1.0
