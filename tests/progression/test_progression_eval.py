"""The DL#5 fit-on-3, predict-the-interval evaluation and its CLI."""

from __future__ import annotations

import json

import numpy as np
import pytest

from covidet.cli._progression import main_eval_progression
from covidet.progression import PATTERNS, evaluate_progression


def test_evaluation_summary_is_consistent() -> None:
    res = evaluate_progression(8, seed=0, n_restarts=0)
    assert set(res) == {*PATTERNS, "all"}
    assert res["all"]["n"] == 8 and all(res[p]["n"] == 2 for p in PATTERNS)
    for s in res.values():
        for k in (4, 5):
            assert 0.0 <= s[f"reached_3to{k}"] <= 1.0
            assert s[f"mae_days_3to{k}"] >= 0 and s[f"actual_days_3to{k}"] >= 2
        # the 5th scan is later than the 4th
        assert s["actual_days_3to5"] > s["actual_days_3to4"]
    mae = np.mean([res[p]["mae_days_3to4"] for p in PATTERNS])
    assert res["all"]["mae_days_3to4"] == pytest.approx(mae)


def test_cli_json(capsys: pytest.CaptureFixture[str]) -> None:
    assert main_eval_progression(["--n", "4", "--restarts", "0", "--json"]) == 0
    res = json.loads(capsys.readouterr().out)
    assert res["all"]["n"] == 4
