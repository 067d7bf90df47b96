"""The explanation points at the lesions: the pointing game on pneumonia phantoms, in-process
through the serving pipeline and the rendered demo models (Guided Grad-CAM, as served)."""

from __future__ import annotations

from pathlib import Path

import pytest

from covidet import _contract as C
from covidet.phantom import make_phantom
from covidet.train import evaluate_phantoms


@pytest.mark.parametrize("seed", [2000])
def test_the_attention_points_at_the_lesions_of_pneumonia_phantoms(repository: Path, seed: int) -> None:
    kinds = [k for k in C.CLASS_NAMES if k != "non-pneumonia"]
    phantoms = [make_phantom(kind, n_slices=48, size=192, seed=seed + i) for i, kind in enumerate(kinds)]
    report = evaluate_phantoms(repository, phantoms, threads=2)
    summary = report.summary()
    # the target: the attention's peak inside the (dilated) lesion on >= 80% of top-K slices
    assert summary["pointing_game"] >= 0.8, [(s.kind, s.pointing_hits, s.k) for s in report.scans]
    assert summary["topk_slices_with_lesion"] >= 0.8
    assert all(s.pointing_hits is not None for s in report.scans)


def test_without_explain_nothing_is_scored(repository: Path) -> None:
    ph = make_phantom("COVID-19", n_slices=32, size=128, seed=7)
    (scan,) = evaluate_phantoms(repository, [ph], threads=2, explain=False).scans
    assert scan.pointing_hits is None and scan.topk_lesion_hits is None
