"""A real CT through the served pipeline (tests/data/example_ct.nii.gz: an abdominal CT with only
the lung bases at its upper end; see tests/data/README.md).

Whatever the models make of it, the answer must keep lesions inside the lung envelope, say that
the scan does not cover the lungs, and be marked not usable.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from covidet.client import Client, load_volume
from covidet.client._outputs import write_outputs

pytestmark = pytest.mark.e2e

REAL_CT = Path(__file__).resolve().parent.parent / "data" / "example_ct.nii.gz"


@pytest.fixture(scope="module")
def answer(covidet_server: Any) -> tuple[Any, Any]:
    volume = load_volume(REAL_CT)
    with Client(covidet_server.grpc_url, timeout_s=600) as client:
        return volume, client.diagnose(volume, return_masks=True)


def test_no_lesion_outside_the_lung_envelope(answer: tuple[Any, Any]) -> None:
    volume, d = answer
    assert d.lung_mask is not None and d.lung_mask.shape == volume.hu.shape
    assert d.lesion_mask is not None
    outside = (d.lesion_mask > 0) & (d.lung_mask == 0)
    assert int(outside.sum()) == 0
    voxel_ml = float(np.prod(volume.spacing)) / 1000
    assert d.lung_volume_ml == pytest.approx(float(d.lung_mask.sum()) * voxel_ml, rel=1e-4)


def test_the_answer_says_the_lungs_are_not_covered_and_is_not_usable(answer: tuple[Any, Any]) -> None:
    _, d = answer
    codes = {f.code: f.severity for f in d.quality}
    assert codes.get("LUNG_NOT_COVERED") == "error", d.quality
    assert codes.get("DEMO_MODELS") == "warning"  # the demo checkpoints always say so
    assert not d.usable
    assert d.to_dict()["usable"] is False


def test_outputs_are_written_for_it(answer: tuple[Any, Any], tmp_path: Path) -> None:
    volume, d = answer
    written = write_outputs(d, volume, tmp_path)
    assert written["result"].is_file()
    assert {"keyimage_1", "coronal"} <= set(written)
