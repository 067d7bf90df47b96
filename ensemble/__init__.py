"""What runs inside Triton: the scan pipeline and its logic, importable and testable without Triton.

The pipeline's logic as plain numpy/torch functions (windowing and resizing, Jin et al. slice
selection and top-K fusion, CoviDet's stepwise probability, lesion statistics, request
validation), the per-scan orchestrator that calls the slice models through BLS, and the
slice-model runtimes (ONNX Runtime, torch). The `model.py` files in `model_repository/` only adapt
tensors to these. Settings come from the checkpoints' preprocessing records.
"""

from __future__ import annotations

from covidet.ensemble._bls import FALLBACK_WARNING, BlsInfer
from covidet.ensemble._errors import (
    NoLungError,
    PipelineError,
    ScanValidationError,
    StepFailedError,
    StepUnavailableError,
    bls_error,
    classify_error,
    error_code,
)
from covidet.ensemble._fusion import (
    FusionResult,
    LesionStats,
    lesion_statistics,
    stepwise_covid,
    topk_fusion,
    volume_ml,
    voxels_ml,
)
from covidet.ensemble._memory import (
    limit_torch_threads,
    memory_limit_bytes,
    release_free_memory,
    usable_cores,
)
from covidet.ensemble._metrics import PipelineMetrics, admission_capacity
from covidet.ensemble._orchestrator import (
    DEFAULT_INFLIGHT_CHUNKS,
    PIPELINE_CONFIG_FILE,
    InferFn,
    PipelineConfig,
    ScanOutputs,
    ScanPipeline,
)
from covidet.ensemble._preprocess import (
    chunks,
    lesion_input,
    lung_input,
    on_device,
    on_host,
    prob_to_mask,
    resize_slices,
    upsample_mask,
)
from covidet.ensemble._quality import QUALITY_CODES, ScanMeasures, check_quality, with_step_model
from covidet.ensemble._runtime import (
    COMPILE_BUCKETS,
    InProcessModels,
    OnnxRunner,
    Runner,
    TorchRunner,
    make_runner,
    run_sequence,
)
from covidet.ensemble._selection import (
    ENVELOPE_CLOSING_MM,
    MAX_HOLE_FRACTION,
    FoldedLesions,
    MaskSummary,
    SliceSelection,
    classifier_input,
    clean_lung_mask,
    closing_radius,
    fold_lesions,
    pick_slices,
    select_slices,
)
from covidet.ensemble._slice_model import SliceModel
from covidet.ensemble._validate import scan_volume, validate_scan

__all__ = [
    "COMPILE_BUCKETS",
    "DEFAULT_INFLIGHT_CHUNKS",
    "ENVELOPE_CLOSING_MM",
    "FALLBACK_WARNING",
    "MAX_HOLE_FRACTION",
    "PIPELINE_CONFIG_FILE",
    "QUALITY_CODES",
    "BlsInfer",
    "FoldedLesions",
    "FusionResult",
    "InProcessModels",
    "InferFn",
    "LesionStats",
    "MaskSummary",
    "NoLungError",
    "OnnxRunner",
    "PipelineConfig",
    "PipelineError",
    "PipelineMetrics",
    "Runner",
    "ScanMeasures",
    "ScanOutputs",
    "ScanPipeline",
    "ScanValidationError",
    "SliceModel",
    "SliceSelection",
    "StepFailedError",
    "StepUnavailableError",
    "TorchRunner",
    "admission_capacity",
    "bls_error",
    "check_quality",
    "chunks",
    "classifier_input",
    "classify_error",
    "clean_lung_mask",
    "closing_radius",
    "error_code",
    "fold_lesions",
    "lesion_input",
    "lesion_statistics",
    "limit_torch_threads",
    "lung_input",
    "make_runner",
    "memory_limit_bytes",
    "on_device",
    "on_host",
    "pick_slices",
    "prob_to_mask",
    "release_free_memory",
    "resize_slices",
    "run_sequence",
    "scan_volume",
    "select_slices",
    "stepwise_covid",
    "topk_fusion",
    "upsample_mask",
    "usable_cores",
    "validate_scan",
    "volume_ml",
    "voxels_ml",
    "with_step_model",
]
