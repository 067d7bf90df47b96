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
    g = res["all"]["gpr"]
    for k in (4, 5):  # the band is reported apart: only where the mean does not cross
        assert 0.0 <= g[f"band_only_3to{k}"] <= g[f"no_crossing_3to{k}"] + 1e-12
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

    res = evaluate_progression(2, horizon_days=30.0, n_restarts=0, generator=flat_then_jump)
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
    assert "line (scans 2-3)" in out and "no crossing" in out and "true course" in out
    assert "band does" in out and "course prior: built-in" in out
    assert "5.00 ± 5.08" in out and "paired" in out
