"""The scan pipeline: one CT in, the covidet outputs out.

`ScanPipeline` holds the logic of the ``covidet_pipeline`` Triton step. It never talks to Triton
itself: it is given an async ``infer(model_name, array) -> array`` callable. Inside Triton that
callable issues BLS requests (so slices of concurrent scans meet in the slice models' dynamic
batchers); in-process (tests, baselines, evaluation) it runs the models directly.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from covidet import _contract as C
from covidet import pipeline as P

__all__ = ["PIPELINE_CONFIG_FILE", "InferFn", "PipelineConfig", "ScanOutputs", "ScanPipeline"]

#: The pipeline step's configuration file in its version folder of a rendered repository.
PIPELINE_CONFIG_FILE = "pipeline.json"

#: ``await infer(model_name, batch)`` returns the model's single output for the batch.
InferFn = Callable[[str, np.ndarray], Awaitable[np.ndarray]]


@dataclass(frozen=True)
class PipelineConfig:
    """Preprocessing records and provenance of the deployed models (from checkpoint metadata)."""

    #: contract model name -> checkpoint metadata dict (architecture, variant, preprocessing, ...)
    models: Mapping[str, Mapping[str, Any]]
    slice_batch: int = C.SLICE_BATCH
    top_k: int = C.TOP_K
    extra: dict[str, Any] = field(default_factory=dict)

    def record(self, model: str) -> Mapping[str, Any]:
        try:
            return self.models[model]["preprocessing"]
        except KeyError as exc:
            valid = ", ".join(sorted(self.models))
            raise KeyError(f"no checkpoint metadata for model {model!r}; have: {valid}") from exc

    @classmethod
    def from_json(cls, text: str) -> PipelineConfig:
        data = json.loads(text)
        return cls(models=data["models"], slice_batch=int(data.get("slice_batch", C.SLICE_BATCH)))

    @classmethod
    def from_repository(cls, repository: Path) -> PipelineConfig:
        """The configuration rendered into ``repository`` for the pipeline step."""
        return cls.from_json((repository / C.PIPELINE.name / "1" / PIPELINE_CONFIG_FILE).read_text())

    def to_json(self) -> str:
        return json.dumps({"models": self.models, "slice_batch": self.slice_batch}, indent=2)

    def provenance(self) -> dict[str, Any]:
        """Model versions and checkpoint provenance, returned with every answer."""
        return {
            name: {
                "architecture": meta.get("architecture"),
                "variant": meta.get("variant"),
                "version": meta.get("version"),
                "trained": meta.get("trained"),
                "provenance": meta.get("provenance"),
                "sha256": str(meta.get("sha256", ""))[:16],
            }
            for name, meta in self.models.items()
        }


class ScanPipeline:
    """Runs the whole per-scan pipeline given an async slice-model `infer` function."""

    def __init__(self, config: PipelineConfig, infer: InferFn) -> None:
        self.config = config
        self._infer = infer
        self._lung = config.record(C.LUNG_SEG.name)
        self._cls = config.record(C.SLICE_CLASSIFIER.name)
        self._lesion = config.record(C.LESION_SEG.name)
        self._provenance = json.dumps(config.provenance(), sort_keys=True)

    async def _batched(self, model: str, x: np.ndarray) -> np.ndarray:
        """Split a slice stack into batches of at most ``slice_batch`` and run them concurrently."""
        if x.shape[0] == 0:
            raise ValueError(f"{model}: empty slice batch")
        parts = P.chunks(x.shape[0], self.config.slice_batch)
        outs = await asyncio.gather(*(self._infer(model, np.ascontiguousarray(x[p])) for p in parts))
        return np.concatenate(outs, axis=0)

    async def _lung_mask(self, ct: np.ndarray) -> np.ndarray:
        x = P.lung_input(ct, self._lung)
        prob = (await self._batched(C.LUNG_SEG.name, x))[:, 0]
        # Connected components and hole filling at the model's resolution (16x cheaper than on the
        # input grid), then the cleaned probability is up-sampled onto the input grid.
        keep = P.clean_lung_mask((prob > 0.5).astype(np.uint8))
        prob = np.where(keep > 0, np.maximum(prob, 0.51), np.minimum(prob, 0.49)).astype(np.float32)
        return P.prob_to_mask(prob, (ct.shape[1], ct.shape[2]))

    async def _lesion_mask(
        self, ct: np.ndarray, lung: np.ndarray, bbox: tuple[int, int, int, int, int, int]
    ) -> np.ndarray:
        """Lesions on the lung slices, kept inside the lung's bounding box (plus a margin).

        Dense consolidation at the pleura is often missed by lung segmentation; the caller adds
        the lesion to the lung mask, so that the lesion is always inside the lung.
        """
        lesion = np.zeros_like(lung)
        idx = np.flatnonzero(lung.reshape(lung.shape[0], -1).any(axis=1))
        if idx.size == 0:
            return lesion
        prob = await self._batched(C.LESION_SEG.name, P.lesion_input(ct, self._lesion, rows=idx))
        P.prob_to_mask(prob, (ct.shape[1], ct.shape[2]), out=lesion, rows=idx)
        _, _, y0, y1, x0, x1 = bbox
        my, mx = max(2, (y1 - y0) // 20), max(2, (x1 - x0) // 20)
        keep = np.zeros(lung.shape[1:], bool)
        keep[max(0, y0 - my) : y1 + my, max(0, x0 - mx) : x1 + mx] = True
        lesion &= keep.astype(np.uint8)
        return lesion

    async def run(
        self,
        ct: np.ndarray,
        spacing: np.ndarray,
        *,
        return_masks: bool = False,
        timings: dict[str, float] | None = None,
    ) -> dict[str, np.ndarray]:
        """Diagnose one scan; returns the contract's output tensors by name.

        Raises `covidet.pipeline.ScanValidationError` / `NoLungError` (both ValueError) for bad
        input — the Triton step turns them into INVALID_ARGUMENT.
        """
        t0 = time.perf_counter()
        P.validate_scan(ct, spacing)
        sp = (float(spacing[0]), float(spacing[1]), float(spacing[2]))
        lung = await self._lung_mask(ct)
        t_lung = time.perf_counter()
        selection = P.select_slices(lung, self._cls)
        cls_in = P.classifier_input(ct, lung, selection, self._cls)

        probs_t = self._batched(C.SLICE_CLASSIFIER.name, cls_in)
        feats_t = self._batched(C.SLICE_ENCODER.name, cls_in)
        lesion_t = self._lesion_mask(ct, lung, selection.bbox)
        slice_probs, feats, lesion = await asyncio.gather(probs_t, feats_t, lesion_t)
        lung |= lesion
        t_slices = time.perf_counter()
        stepwise = (await self._infer(C.GRU_FUSION.name, feats.astype(np.float32))).reshape(-1)
        p_viral, p_cgv = float(stepwise[0]), float(stepwise[1])

        fused = P.topk_fusion(slice_probs, self.config.top_k)
        stats = P.lesion_statistics(lung, lesion, sp)
        empty = np.zeros((0, 0, 0), np.uint8)
        if timings is not None:  # per-stage wall time, for the server's metrics
            end = time.perf_counter()
            timings.update(
                lung=t_lung - t0, classify_and_lesion=t_slices - t_lung, fusion=end - t_slices, total=end - t0
            )
        out = ScanOutputs(
            p_viral=p_viral,
            p_covid_given_viral=p_cgv,
            p_covid_stepwise=P.stepwise_covid(p_viral, p_cgv),
            class_probs=fused.class_probs,
            topk_slices=selection.indices[fused.topk],
            lung_volume_ml=stats.lung_ml,
            lesion_volume_ml=stats.lesion_ml,
            lesion_ratio=stats.ratio,
            n_slices_used=len(selection.indices),
            lung_mask=lung if return_masks else empty,
            lesion_mask=lesion if return_masks else empty,
            provenance=self._provenance.encode(),
        )
        return out.to_tensors()


@dataclass(frozen=True)
class ScanOutputs:
    """One scan's results; field ``x`` is the contract's output tensor ``X`` (upper case)."""

    p_viral: float
    p_covid_given_viral: float
    p_covid_stepwise: float
    class_probs: np.ndarray
    topk_slices: np.ndarray
    lung_volume_ml: float
    lesion_volume_ml: float
    lesion_ratio: float
    n_slices_used: int
    lung_mask: np.ndarray
    lesion_mask: np.ndarray
    provenance: bytes

    def to_tensors(self) -> dict[str, np.ndarray]:
        """The output tensors by contract name, with the contract's dtypes and ranks."""
        tensors: dict[str, np.ndarray] = {}
        for spec in C.PIPELINE.outputs:
            value = getattr(self, spec.name.lower())
            if spec.dtype == "BYTES":
                arr = np.array([value], dtype=object)
            else:
                arr = np.asarray(value, dtype=spec.numpy_dtype).reshape(
                    (1,) if spec.dims == (1,) else np.shape(value)
                )
            tensors[spec.name] = arr
        return tensors
