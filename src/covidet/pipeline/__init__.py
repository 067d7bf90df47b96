"""The pipeline's logic as plain numpy/torch functions (no Triton needed).

Windowing and resizing, Jin et al. slice selection and top-K fusion, CoviDet's stepwise
probability, lesion statistics and request validation. Settings come from the checkpoints'
preprocessing records (see `default_records`).
"""

from __future__ import annotations

from covidet.pipeline._defaults import default_records
from covidet.pipeline._errors import NoLungError, PipelineError, ScanValidationError
from covidet.pipeline._fusion import (
    FusionResult,
    LesionStats,
    dice,
    lesion_statistics,
    stepwise_covid,
    topk_fusion,
    volume_ml,
    voxels_ml,
)
from covidet.pipeline._preprocess import (
    chunks,
    lesion_input,
    lung_input,
    on_device,
    on_host,
    prob_to_mask,
    resize_slices,
    upsample_mask,
)
from covidet.pipeline._selection import (
    MaskSummary,
    SliceSelection,
    classifier_input,
    clean_lung_mask,
    fold_lesions,
    select_slices,
)
from covidet.pipeline._validate import validate_scan

__all__ = [
    "FusionResult",
    "LesionStats",
    "MaskSummary",
    "NoLungError",
    "PipelineError",
    "ScanValidationError",
    "SliceSelection",
    "chunks",
    "classifier_input",
    "clean_lung_mask",
    "default_records",
    "dice",
    "fold_lesions",
    "lesion_input",
    "lesion_statistics",
    "lung_input",
    "on_device",
    "on_host",
    "prob_to_mask",
    "resize_slices",
    "select_slices",
    "stepwise_covid",
    "topk_fusion",
    "upsample_mask",
    "validate_scan",
    "volume_ml",
    "voxels_ml",
]
