"""Server-side runtime: the scan pipeline and the slice-model runtimes used by the Triton models.

Importable and unit-testable without Triton; the `model.py` files in `model_repository/` only
adapt tensors to these classes.
"""

from __future__ import annotations

from covidet.serving._metrics import PipelineMetrics
from covidet.serving._orchestrator import (
    PIPELINE_CONFIG_FILE,
    InferFn,
    PipelineConfig,
    ScanOutputs,
    ScanPipeline,
)
from covidet.serving._runtime import InProcessModels, OnnxRunner, Runner, TorchRunner, make_runner

__all__ = [
    "PIPELINE_CONFIG_FILE",
    "InProcessModels",
    "InferFn",
    "OnnxRunner",
    "PipelineConfig",
    "PipelineMetrics",
    "Runner",
    "ScanOutputs",
    "ScanPipeline",
    "TorchRunner",
    "classify_error",
    "make_runner",
]


def classify_error(exc: BaseException) -> tuple[str, str]:
    """Map a pipeline exception to a Triton error code name and a message for the caller.

    Input problems (``ValueError``: validation, no lung found) are the caller's to fix and map to
    INVALID_ARG; anything else is the server's fault (INTERNAL) and says so.
    """
    if isinstance(exc, ValueError):
        return "INVALID_ARG", str(exc)
    return "INTERNAL", (
        f"internal error in the covidet pipeline ({type(exc).__name__}: {exc}); "
        "the request was not processed — retry, and report it if it persists"
    )
