"""The cpu-int8 profile served for real: Triton runs the int8 graphs and answers as in-process."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from covidet import _contract as C

pytestmark = pytest.mark.e2e


def test_int8_server_answers_like_in_process(
    int8_repository: Path,
    phantoms: dict[str, Any],
    diagnose_served: Callable[..., Any],
    diagnose_in_process: Callable[..., dict[str, np.ndarray]],
) -> None:
    ph = phantoms["COVID-19"]
    served = diagnose_served(int8_repository, ph)
    ref = diagnose_in_process(int8_repository, ph)
    assert served.provenance[C.LUNG_SEG.name]["precision"] == "int8"
    assert served.provenance[C.SLICE_CLASSIFIER.name]["precision"] == "float32"
    # the same int8 graphs; thread counts differ (1 per instance served, 2 in-process)
    np.testing.assert_allclose(served.lung_volume_ml, float(ref["LUNG_VOLUME_ML"][0]), rtol=1e-3)
    np.testing.assert_allclose(served.lesion_ratio, float(ref["LESION_RATIO"][0]), atol=1e-3)
    probs = [served.class_probs[name] for name in C.CLASS_NAMES]
    np.testing.assert_allclose(probs, ref["CLASS_PROBS"], atol=1e-3)
    assert served.predicted_class == "COVID-19"
