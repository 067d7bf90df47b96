"""Triton Python-backend model `covidet_pipeline`: the per-scan BLS orchestrator.

All logic lives in `covidet.ensemble.ScanPipeline`; this file only adapts tensors. Slices go to the
slice models as async BLS requests of at most SLICE_BATCH slices, so slices of concurrent scans
share the slice models' dynamic batches and scans of any length work.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import triton_python_backend_utils as pb_utils

from covidet import _contract as C
from covidet.ensemble import (
    PIPELINE_CONFIG_FILE,
    BlsInfer,
    PipelineConfig,
    PipelineMetrics,
    ScanPipeline,
    admission_capacity,
    classify_error,
    limit_torch_threads,
    release_free_memory,
    scan_volume,
)

_CT, _CT_COMPRESSED, _SPACING, _RETURN_MASKS, _EXPLAIN = (
    C.PIPELINE.input(n).name for n in ("CT", "CT_COMPRESSED", "SPACING", "RETURN_MASKS", "EXPLAIN")
)
_QUALITY = C.PIPELINE.output("QUALITY").name


class TritonPythonModel:
    def initialize(self, args: dict) -> None:
        config = json.loads(args["model_config"])
        params = {k: v["string_value"] for k, v in config.get("parameters", {}).items()}
        version_dir = Path(args["model_repository"]) / args["model_version"]
        text = (version_dir / params.get("pipeline_config", PIPELINE_CONFIG_FILE)).read_text()
        if params.get("torch_threads"):
            limit_torch_threads(int(params["torch_threads"]))
        setup = PipelineConfig.from_json(text)
        self.logger = pb_utils.Logger
        self.metrics = PipelineMetrics(pb_utils, self.logger)
        self.metrics.admission_capacity(*admission_capacity(config))
        # slices to the slice models as async BLS requests; on the GPU profiles as GPU tensors
        bls = BlsInfer(
            pb_utils,
            device=setup.device,
            device_tensors=setup.device_tensors,
            on_fallback=self.metrics.device_fallback,
        )
        self.pipeline = ScanPipeline(setup, bls)
        self.max_scan_bytes = setup.max_scan_bytes

    async def execute(self, requests: list) -> list:
        responses = list(await asyncio.gather(*(self._one(r) for r in requests)))
        release_free_memory()  # the scan's temporaries go back to the OS, not to a fat heap
        return responses

    async def _one(self, request) -> object:
        # refusals of Triton's queue bound this scan met before (reported by covidet's client)
        self.metrics.admission_refused(C.refused_count(request.parameters()))
        try:
            ct = scan_volume(
                _array(request, _CT), _array(request, _CT_COMPRESSED), max_bytes=self.max_scan_bytes
            )
            spacing = _array(request, _SPACING)
            masks, explain = (_flag(request, name) for name in (_RETURN_MASKS, _EXPLAIN))
            timings: dict[str, float] = {}
            outputs = await self.pipeline.run(
                ct, spacing, return_masks=masks, explain=explain, timings=timings
            )
        except Exception as exc:
            code, message = classify_error(exc)
            self.metrics.scan("invalid" if code == "INVALID_ARG" else "error")
            # No patient data in logs: the message names shapes and rules, never pixel values.
            self.logger.log_warn(f"covidet_pipeline: request failed ({code}): {message}")
            err = pb_utils.TritonError(message, getattr(pb_utils.TritonError, code))
            return pb_utils.InferenceResponse(error=err)
        self.metrics.scan("ok", slices=int(ct.shape[0]), timings=timings)
        flags = C.quality_from_json(outputs[_QUALITY].reshape(-1)[0])
        self.metrics.quality((f.code, f.severity) for f in flags)
        return pb_utils.InferenceResponse(
            output_tensors=[pb_utils.Tensor(name, arr) for name, arr in outputs.items()]
        )


def _array(request, name: str):
    """An optional input's array; None when the request leaves it out."""
    tensor = pb_utils.get_input_tensor_by_name(request, name)
    return None if tensor is None else tensor.as_numpy()


def _flag(request, name: str) -> bool:
    """An optional BOOL input: False when the request leaves it out."""
    tensor = pb_utils.get_input_tensor_by_name(request, name)
    return bool(tensor is not None and tensor.as_numpy().reshape(-1)[:1].any())
