"""What the output writers share: the disclaimer, each model's provenance, DICOM LO strings."""

from __future__ import annotations

from typing import Any

from covidet.client._result import Diagnosis

DISCLAIMER = "covidet research software, not a medical device"


def model_info(diagnosis: Diagnosis, model: str) -> dict[str, Any]:
    info = diagnosis.provenance.get(model) if isinstance(diagnosis.provenance, dict) else None
    return dict(info) if isinstance(info, dict) else {}


def lo(text: str, n: int = 64) -> str:
    """Fit a string into a DICOM LO (64 chars), marking a cut with '...'."""
    text = " ".join(str(text).split()).replace("\\", "/")
    return text if len(text) <= n else text[: n - 3] + "..."
