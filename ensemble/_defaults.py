"""The papers' preprocessing settings, written once.

Checkpoints carry their own preprocessing record (copied from here when trained); the serving code
reads the record from the checkpoint metadata, never these constants directly.
"""

from __future__ import annotations

import copy
from typing import Any

from covidet import _contract as C

__all__ = ["default_records"]

#: Jin et al.: lung U-Net input = max(HU, -1024) / 255 (demo input size 128; full 512).
LUNG_RECORD: dict[str, Any] = {
    "kind": "lung_unet",
    "hu_min": -1024.0,
    "divisor": 255.0,
    "input_size": [128, 128],
}
#: Jin et al.: classifier slices (lung > 500 px at 512x512, 35 slices, window -1200..500, 224x224).
JIN_SLICES_RECORD: dict[str, Any] = {
    "kind": "jin_slices",
    "hu_window": [-1200.0, 500.0],
    "input_size": [224, 224],
    "min_lung_pixels": 500,
    "reference_pixels": 512 * 512,
    "n_slices": 35,
    # covidet's rule: 35 slices spread over all valid slices ("jin_stride" reproduces theirs)
    "selection": "even",
}
#: Lesion DeepLabV3+ input: lung window scaled to [0, 1] (ours: no public code exists).
LESION_RECORD: dict[str, Any] = {
    "kind": "lung_window",
    "hu_window": [-1200.0, 300.0],
    "input_size": [256, 256],
}
GRU_RECORD: dict[str, Any] = {"kind": "features"}


def default_records() -> dict[str, dict[str, Any]]:
    """A fresh copy of the default record of each model, keyed by contract model name."""
    return copy.deepcopy(
        {
            C.LUNG_SEG.name: LUNG_RECORD,
            C.SLICE_CLASSIFIER.name: JIN_SLICES_RECORD,
            C.SLICE_ENCODER.name: JIN_SLICES_RECORD,
            C.LESION_SEG.name: LESION_RECORD,
            C.GRU_FUSION.name: GRU_RECORD,
        }
    )
