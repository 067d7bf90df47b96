"""Exceptions of the pipeline logic. All are ValueErrors: the caller's input was wrong."""

from __future__ import annotations

__all__ = ["NoLungError", "PipelineError", "ScanValidationError"]


class PipelineError(ValueError):
    """Root of the pipeline's input errors (mapped to INVALID_ARGUMENT by the server)."""


class ScanValidationError(PipelineError):
    """The CT volume or its spacing is malformed."""


class NoLungError(PipelineError):
    """No lung was found in the scan."""
