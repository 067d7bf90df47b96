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
from covidet.ensemble._explain import GuidedGradCam, attention_on_grid, attention_regions
from covidet.ensemble._fusion import FusionResult, LesionStats, stepwise_covid, topk_fusion
from covidet.ensemble._preprocess import chunks, lesion_input, lung_input, on_device, on_host
from covidet.ensemble._quality import ScanMeasures, check_quality
from covidet.ensemble._selection import (
    MaskSummary,
    SliceSelection,
    classifier_input,
    clean_lung_mask,
    closing_radius,
    fold_lesions,
    select_slices,
)
from covidet.ensemble._validate import validate_scan
from covidet.preprocessing import (
    LesionRecord,
    LungRecord,
    PreprocessingRecord,
    RecordError,
    SliceRecord,
    as_kind,
    record_from_json,
)

__all__ = [
    "DEFAULT_INFLIGHT_CHUNKS",
    "PIPELINE_CONFIG_FILE",
    "InferFn",
    "PipelineConfig",
    "ScanOutputs",
    "ScanPipeline",
]

#: The pipeline step's configuration file in its version folder of a rendered repository.
PIPELINE_CONFIG_FILE = "pipeline.json"

#: Chunks of one scan in flight per slice model unless the pipeline config says otherwise.
DEFAULT_INFLIGHT_CHUNKS = 4

#: ``await infer(model_name, batch)`` returns the model's first output for the batch: numpy
#: arrays, or with `PipelineConfig.device_tensors` torch tensors on the device too.
#: ``await infer(model_name, batch, outputs)`` (contract names) returns a tuple of those outputs.
InferFn = Callable[..., Awaitable[Any]]

#: What the pipeline asks the slice classifier for when a scan is explained.
_EXPLAIN_CLASSIFIER_OUTPUTS = tuple(t.name for t in C.SLICE_CLASSIFIER.outputs)


@dataclass(frozen=True)
class PipelineConfig:
    """Preprocessing records and provenance of the deployed models (from checkpoint metadata)."""

    #: contract model name -> checkpoint metadata dict (architecture, variant, preprocessing, ...)
    models: Mapping[str, Mapping[str, Any]]
    slice_batch: int = C.SLICE_BATCH
    #: chunks of one scan in flight per slice model at a time. Each chunk's input is built just
    #: before it is sent and its output folded in as it comes back, so a scan never holds more
    #: than this many chunks (and the BLS shared-memory pool never grows past them). A few are
    #: enough to keep CPU instances busy; GPUs want more slices queued.
    max_inflight_chunks: int = DEFAULT_INFLIGHT_CHUNKS
    top_k: int = C.TOP_K
    #: torch device of the heavy pre/post-processing (windowing and resizing the model inputs,
    #: up-sampling the masks onto the input grid); None: numpy and torch on the CPU. The GPU
    #: profiles say "cuda": on the CPU a scan's pre/post alone would take a GPU node's host cores
    #: at the target rate (figures in benchmarks/README.md).
    device: str | None = None
    #: with ``device``: the slice models' inputs are handed to ``infer`` as torch tensors on the
    #: device, and their outputs may come back as tensors there (DLPack through BLS: the GPU
    #: profiles), instead of both making a round trip through host memory (a full-size 300x512x512
    #: scan's lung input and output are 315 MB each)
    device_tensors: bool = False
    #: the slice classifier's checkpoint (its stem), for Guided Grad-CAM when a request asks for
    #: an explanation: torch runs it in the pipeline's process, on ``device``. None: the
    #: explanation's attention is the served class maps' Grad-CAM.
    explain_checkpoint: str | None = None
    #: the largest scan (its int16 bytes) this server admits: with the queue bound of the
    #: pipeline's config it bounds the input bytes in flight (`covidet.export._admission`).
    #: None: no limit beyond the contract's shape limits.
    max_scan_bytes: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def record(self, model: str) -> PreprocessingRecord:
        """The model's preprocessing record, typed and validated (a bad record fails at load)."""
        try:
            data = self.models[model]["preprocessing"]
        except KeyError as exc:
            valid = ", ".join(sorted(self.models))
            raise KeyError(f"no checkpoint metadata for model {model!r}; have: {valid}") from exc
        return record_from_json(data)

    @classmethod
    def from_json(cls, text: str) -> PipelineConfig:
        data = json.loads(text)
        return cls(
            models=data["models"],
            slice_batch=int(data.get("slice_batch", C.SLICE_BATCH)),
            max_inflight_chunks=int(data.get("max_inflight_chunks", DEFAULT_INFLIGHT_CHUNKS)),
            device=data.get("device") or None,
            device_tensors=bool(data.get("device_tensors", False)),
            explain_checkpoint=data.get("explain_checkpoint") or None,
            max_scan_bytes=int(data["max_scan_bytes"]) if data.get("max_scan_bytes") else None,
        )

    @classmethod
    def from_repository(cls, repository: Path) -> PipelineConfig:
        """The configuration rendered into ``repository`` for the pipeline step."""
        return cls.from_json((repository / C.PIPELINE.name / "1" / PIPELINE_CONFIG_FILE).read_text())

    def to_json(self) -> str:
        return json.dumps(
            {
                "models": self.models,
                "slice_batch": self.slice_batch,
                "max_inflight_chunks": self.max_inflight_chunks,
                "device": self.device,
                "device_tensors": self.device_tensors,
                "explain_checkpoint": self.explain_checkpoint,
                "max_scan_bytes": self.max_scan_bytes,
            },
            indent=2,
        )

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
                "precision": meta.get("precision"),
            }
            for name, meta in self.models.items()
        }


class ScanPipeline:
    """Runs the whole per-scan pipeline given an async slice-model `infer` function."""

    def __init__(self, config: PipelineConfig, infer: InferFn) -> None:
        self.config = config
        self._infer = infer
        self._lung = as_kind(config.record(C.LUNG_SEG.name), LungRecord, C.LUNG_SEG.name)
        self._cls = as_kind(config.record(C.SLICE_CLASSIFIER.name), SliceRecord, C.SLICE_CLASSIFIER.name)
        encoder = as_kind(config.record(C.SLICE_ENCODER.name), SliceRecord, C.SLICE_ENCODER.name)
        if encoder != self._cls:  # one set of selected slices feeds both models
            raise RecordError(
                f"{C.SLICE_CLASSIFIER.name} and {C.SLICE_ENCODER.name} take the same slices, but their "
                f"checkpoints' preprocessing records differ ({self._cls} vs {encoder}): retrain or "
                "re-export one of them with the other's record"
            )
        self._lesion = as_kind(config.record(C.LESION_SEG.name), LesionRecord, C.LESION_SEG.name)
        self._provenance = json.dumps(config.provenance(), sort_keys=True)
        self._device = config.device
        #: model inputs built on the device stay there as torch tensors
        self._tensors = config.device is not None and config.device_tensors
        if config.device is not None:
            _check_device(config.device)
        self._guided = (
            GuidedGradCam(config.explain_checkpoint, config.device) if config.explain_checkpoint else None
        )

    async def _batched(self, model: str, x: np.ndarray, outputs: tuple[str, ...] = ()) -> Any:
        """Run a (small) slice stack through ``model`` in chunks; the output concatenated, or with
        ``outputs`` (contract names) a tuple of those outputs concatenated."""
        outs: dict[int, tuple[np.ndarray, ...]] = {}

        def keep(part: slice, y: Any) -> None:  # per-slice scores, features and maps: small
            outs[part.start] = tuple(on_host(t) for t in y) if outputs else (on_host(y),)

        await self._stream(model, x.shape[0], lambda part: x[part], keep, outputs)
        got = tuple(np.concatenate([outs[s][i] for s in sorted(outs)]) for i in range(max(1, len(outputs))))
        return got if outputs else got[0]

    async def _stream(
        self,
        model: str,
        n: int,
        make: Callable[[slice], Any],
        fold: Callable[[slice, Any], None],
        outputs: tuple[str, ...] = (),
    ) -> None:
        """Run ``n`` slices through ``model`` in chunks of at most ``slice_batch``.

        Each chunk's input is built by ``make(part)`` just before it is sent, at most
        ``max_inflight_chunks`` chunks are in flight, and each output is handed to
        ``fold(part, output)`` as it arrives: one scan's memory stays bounded whatever its length.
        """
        if n == 0:
            raise ValueError(f"{model}: empty slice batch")
        gate = asyncio.Semaphore(max(1, self.config.max_inflight_chunks))

        async def one(part: slice) -> None:
            async with gate:
                x = make(part)
                x = np.ascontiguousarray(x) if isinstance(x, np.ndarray) else x.contiguous()
                y = await (self._infer(model, x, outputs) if outputs else self._infer(model, x))
                fold(part, y)

        await asyncio.gather(*(one(p) for p in chunks(n, self.config.slice_batch)))

    async def _lung_prob(self, ct: Any, spacing: tuple[float, float, float]) -> Any:
        """Lung probabilities at the model's resolution, [S,h,w], made the lung envelope's (3D
        clean-up, in-plane closing, holes filled). ``ct``: the HU volume, or its tensor on the
        pre/post device; the probabilities are then a float32 tensor there too, each chunk copied
        over as it comes back."""
        h, w = self._lung.input_size
        shape = (ct.shape[0], int(h), int(w))
        device = self._device
        if device is None:
            prob: Any = np.empty(shape, np.float32)
        else:
            import torch

            prob = torch.empty(shape, dtype=torch.float32, device=ct.device)

        def put(part: slice, y: Any) -> None:
            prob[part] = y[:, 0] if device is None else on_device(y[:, 0], device)

        def make(p: slice) -> Any:
            return lung_input(ct[p], self._lung, device=device, tensor=self._tensors)

        await self._stream(C.LUNG_SEG.name, ct.shape[0], make, put)
        closing = closing_radius(spacing, (ct.shape[1], ct.shape[2]), (int(h), int(w)))
        # Connected components and hole filling at the model's resolution (16x cheaper than on the
        # input grid); the cleaned probability is what gets up-sampled onto the input grid.
        if device is not None:  # on the device: scipy's labelling would cost host CPU at full size
            keep_t = clean_lung_mask(prob > 0.5, closing=closing, device=device)
            return torch.where(keep_t, prob.clamp(min=0.51), prob.clamp(max=0.49))
        keep = clean_lung_mask(prob > 0.5, closing=closing).view(bool)
        # in place, no full-size float temporaries (a 300x512x512 grid is 315 MB of float32)
        np.maximum(prob, np.float32(0.51), out=prob, where=keep)
        np.minimum(prob, np.float32(0.49), out=prob, where=~keep)
        return prob

    def _lung_summary(self, prob: Any, hw: tuple[int, int]) -> MaskSummary:
        """The lung mask on the input grid, up-sampled slab by slab, kept bit-packed. ``prob``:
        as `_lung_prob` returns it."""
        summary = MaskSummary.empty((prob.shape[0], *hw))
        # A slice whose probabilities are all <= 0.5 has an empty mask at any resolution
        # (bilinear values stay within the input's range): only lung slices are up-sampled.
        flat = prob.reshape(prob.shape[0], -1)
        peak = flat.max(axis=1) if self._device is None else flat.amax(dim=1).cpu().numpy()
        lit = np.flatnonzero(peak > 0.5)
        for part in chunks(lit.size, self.config.slice_batch):
            summary.add_probabilities(lit[part], prob[lit[part]], device=self._device)
        return summary

    async def _lesions(
        self,
        ct: Any,
        summary: MaskSummary,
        masks: tuple[np.ndarray, np.ndarray] | None,
        lesions: MaskSummary | None = None,
    ) -> tuple[int, int, float]:
        """Lesions on the lung slices, streamed: returns the lung and lesion voxel counts and the
        HU sum over the lung voxels.

        Lesions are cut to the lung envelope that ``summary`` holds (`fold_lesions`). With
        ``masks`` (full-size uint8 lung, lesion) the final masks are written there as chunks
        arrive. With ``lesions`` (an empty `MaskSummary` of the scan's shape) the lesion masks are
        kept there, bit-packed with their per-slice areas (the explanation's overlaps and areas).
        """
        idx = np.flatnonzero(summary.counts > 0)
        if idx.size == 0:
            return 0, 0, 0.0
        totals = [0, 0, 0.0]

        def fold(part: slice, prob: Any) -> None:
            rows = idx[part]
            want = masks is not None or lesions is not None
            got = fold_lesions(summary, rows, prob[:, 0], ct, want_masks=want, device=self._device)
            totals[0] += got.n_lung
            totals[1] += got.n_lesion
            totals[2] += got.lung_hu_sum
            if masks is not None:
                masks[0][rows], masks[1][rows] = got.lung, got.lesion
            if lesions is not None and got.lesion is not None:
                lesions.add(rows, got.lesion)

        await self._stream(
            C.LESION_SEG.name,
            idx.size,
            lambda p: lesion_input(ct, self._lesion, rows=idx[p], device=self._device, tensor=self._tensors),
            fold,
        )
        return int(totals[0]), int(totals[1]), float(totals[2])

    async def run(
        self,
        ct: np.ndarray,
        spacing: np.ndarray | None,
        *,
        return_masks: bool = False,
        explain: bool = False,
        timings: dict[str, float] | None = None,
    ) -> dict[str, np.ndarray]:
        """Diagnose one scan; returns the contract's output tensors by name. With ``explain`` the
        explanation's outputs (`covidet._contract.EXPLAIN_OUTPUTS`) are filled in too; without,
        they are empty and nothing else changes.

        Raises `covidet.ensemble.ScanValidationError` / `NoLungError` (both ValueError) for bad
        input — the Triton step turns them into INVALID_ARGUMENT.
        """
        t0 = time.perf_counter()
        validate_scan(ct, spacing, max_bytes=self.config.max_scan_bytes)  # also: no SPACING
        assert spacing is not None
        sp = (float(spacing[0]), float(spacing[1]), float(spacing[2]))
        hw = (int(ct.shape[1]), int(ct.shape[2]))
        # the GPU profiles copy the CT to their device once, for the lung and the lesion inputs
        hu = ct if self._device is None else on_device(ct, self._device)
        lung_prob = await self._lung_prob(hu, sp)
        summary = self._lung_summary(lung_prob, hw)
        t_lung = time.perf_counter()
        selection = select_slices(summary, self._cls)
        selected = summary.masks(selection.indices, device=self._device)
        cls_in = classifier_input(
            hu, selected, selection, self._cls, device=self._device, tensor=self._tensors
        )
        del lung_prob

        masks = (np.zeros(ct.shape, np.uint8), np.zeros(ct.shape, np.uint8)) if return_masks else None
        # explaining asks the classifier for its class maps too, and keeps the lesion masks
        # packed (the lung's are the envelope's, in `summary`); otherwise exactly the work of a
        # plain diagnosis
        cls_outputs = _EXPLAIN_CLASSIFIER_OUTPUTS if explain else ()
        lesions = MaskSummary.empty(summary.shape) if explain else None
        probs_t = self._batched(C.SLICE_CLASSIFIER.name, cls_in, cls_outputs)
        feats_t = self._batched(C.SLICE_ENCODER.name, cls_in)
        lesion_t = self._lesions(hu, summary, masks, lesions)
        cls_out, feats, (lung_voxels, lesion_voxels, lung_hu_sum) = await asyncio.gather(
            probs_t, feats_t, lesion_t
        )
        slice_probs, class_maps = cls_out if explain else (cls_out, None)
        t_slices = time.perf_counter()
        stepwise = (await self._infer(C.GRU_FUSION.name, feats.astype(np.float32))).reshape(-1)
        p_viral, p_cgv = float(stepwise[0]), float(stepwise[1])

        fused = topk_fusion(slice_probs, self.config.top_k)
        stats = LesionStats.from_counts(lung_voxels, lesion_voxels, sp)
        flags = check_quality(
            ScanMeasures(
                lung_counts=summary.counts,
                spacing=sp,
                lung_ml=stats.lung_ml,
                lesion_ratio=stats.ratio,
                lung_mean_hu=lung_hu_sum / lung_voxels if lung_voxels else float("nan"),
                models=self.config.models,
            )
        )
        explained = (
            await self._explain(fused, selection, cls_in, class_maps, summary, lesions, slice_probs, sp)
            if class_maps is not None and lesions is not None
            else {}
        )
        empty = np.zeros((0, 0, 0), np.uint8)
        if timings is not None:  # per-stage wall time, for the server's metrics
            end = time.perf_counter()
            timings.update(
                lung=t_lung - t0, classify_and_lesion=t_slices - t_lung, fusion=end - t_slices, total=end - t0
            )
        out = ScanOutputs(
            p_viral=p_viral,
            p_covid_given_viral=p_cgv,
            p_covid_stepwise=stepwise_covid(p_viral, p_cgv),
            class_probs=fused.class_probs,
            topk_slices=selection.indices[fused.topk],
            lung_volume_ml=stats.lung_ml,
            lesion_volume_ml=stats.lesion_ml,
            lesion_ratio=stats.ratio,
            n_slices_used=len(selection.indices),
            lung_mask=masks[0] if masks is not None else empty,
            lesion_mask=masks[1] if masks is not None else empty,
            provenance=self._provenance.encode(),
            quality=C.quality_to_json(flags),
            **explained,
        )
        return out.to_tensors()

    async def _explain(
        self,
        fused: FusionResult,
        selection: SliceSelection,
        cls_in: Any,
        class_maps: np.ndarray,
        lung: MaskSummary,
        lesions: MaskSummary,
        slice_probs: np.ndarray,
        spacing: tuple[float, float, float],
    ) -> dict[str, Any]:
        """The explanation's outputs (`ScanOutputs` fields) of one scan: the predicted class's
        Guided Grad-CAM on the top-K slices where the pipeline has the classifier's checkpoint
        (else its Grad-CAM, from the served class maps), and Jin et al.'s regions of the Grad-CAM."""
        topk, predicted = fused.topk, int(np.argmax(fused.class_probs))
        _, _, y0, y1, x0, x1 = selection.bbox
        box = (int(y0), int(y1), int(x0), int(x1))
        slices = selection.indices[topk]
        hw = lung.shape[1:]
        grad_cam = attention_on_grid(class_maps[topk, predicted], box, hw)
        if self._guided is not None:
            guided = await asyncio.to_thread(self._guided, cls_in[topk], predicted)
            attention, method = attention_on_grid(guided, box, hw), "guided-grad-cam"
        else:
            attention, method = grad_cam, "grad-cam"
        h, w = self._cls.input_size
        regions = attention_regions(
            grad_cam, slices, lung.masks(slices), lesions.masks(slices), spacing[1:], (int(h), int(w)), box
        )
        lesion_mm2 = lesions.counts[selection.indices] * (spacing[1] * spacing[2])
        return {
            "attention": attention,
            "explanation": C.Explanation(method, tuple(regions)).to_json(),
            "selected_slices": selection.indices.astype(np.int32),
            # a slice's P(pneumonia): every class but non-pneumonia (CLASS_NAMES[0])
            "slice_scores": (1.0 - slice_probs[:, 0]).astype(np.float32),
            "slice_lesion_mm2": np.asarray(lesion_mm2, np.float32),
        }


def _check_device(device: str) -> None:
    """Refuse a pre/post device this process cannot use, at load rather than at the first scan."""
    import torch

    fix = (
        f'serve a CPU profile (cpu, cpu-int8), or set "device" in {PIPELINE_CONFIG_FILE} to null '
        '(numpy on the CPU) or "cpu"'
    )
    try:
        kind = torch.device(device).type
    except RuntimeError as exc:
        raise RuntimeError(f"pre/post device {device!r} is not a torch device ({exc}); {fix}") from exc
    if kind == "cuda" and not torch.cuda.is_available():
        raise RuntimeError(f"pre/post device {device!r}: no CUDA GPU is visible to this process; {fix}")


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
    quality: bytes
    # the explanation (EXPLAIN): empty unless asked for
    attention: np.ndarray = field(default_factory=lambda: np.zeros((0, 0, 0), np.uint8))
    explanation: bytes = b"{}"
    selected_slices: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int32))
    slice_scores: np.ndarray = field(default_factory=lambda: np.zeros(0, np.float32))
    slice_lesion_mm2: np.ndarray = field(default_factory=lambda: np.zeros(0, np.float32))

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
