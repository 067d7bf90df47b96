"""ScanPipeline logic with stand-in slice models (no Triton, no ONNX): batching, outputs, errors."""

from __future__ import annotations

import asyncio
import json
from dataclasses import replace
from typing import Any

import numpy as np
import pytest

from covidet import _contract as C
from covidet import ensemble as P
from covidet.ensemble import PipelineConfig, ScanPipeline, StepUnavailableError, bls_error, classify_error
from covidet.metrics import dice
from covidet.preprocessing import RecordError, default_records, record_to_json


def _volume(s: int = 40, n: int = 96) -> tuple[np.ndarray, np.ndarray]:
    """Air, a body ellipse at 40 HU, two lung ellipsoids at -850 HU; returns (ct, lung truth)."""
    z, y, x = np.mgrid[0:s, 0:n, 0:n].astype(np.float32)
    ct = np.full((s, n, n), -1000, np.int16)
    body = ((y - n / 2) / (0.42 * n)) ** 2 + ((x - n / 2) / (0.47 * n)) ** 2 < 1
    ct[body] = 40
    lung = np.zeros((s, n, n), np.uint8)
    for cx in (0.3 * n, 0.7 * n):
        e = ((z - s / 2) / (0.45 * s)) ** 2 + ((y - n / 2) / (0.3 * n)) ** 2 + (
            (x - cx) / (0.15 * n)
        ) ** 2 < 1
        lung |= e.astype(np.uint8)
    ct[lung > 0] = -850
    return ct, lung


class FakeModels:
    """Deterministic stand-ins with the served models' input/output shapes; records batch sizes."""

    def __init__(self, feature_dim: int = 8) -> None:
        self.calls: list[tuple[str, int]] = []
        self.feature_dim = feature_dim
        self.map_requests = 0

    async def infer(self, model: str, x: np.ndarray, outputs: tuple[str, ...] | None = None) -> Any:
        if outputs is not None:  # the classifier's scores and class maps (peak at the centre)
            assert model == C.SLICE_CLASSIFIER.name and outputs == ("CLASS_PROBS", "CLASS_MAPS")
            self.map_requests += 1
            maps = np.full((x.shape[0], len(C.CLASS_NAMES), 7, 7), -1.0, np.float32)
            maps[:, :, 3, 3] = 5.0
            return await self.infer(model, x), maps
        self.calls.append((model, x.shape[0]))
        await asyncio.sleep(0)
        if model == C.LUNG_SEG.name:  # input = max(HU, -1024) / 255: lung HU -850 -> -3.33
            return ((x > -3.6) & (x < -2.5)).astype(np.float32)
        if model == C.LESION_SEG.name:
            return np.zeros_like(x)
        if model == C.SLICE_CLASSIFIER.name:
            probs = np.tile(np.array([0.1, 0.1, 0.1, 0.7], np.float32), (x.shape[0], 1))
            probs[:, 3] += np.linspace(0, 0.01, x.shape[0], dtype=np.float32)  # distinct top-K
            return probs / probs.sum(axis=1, keepdims=True)
        if model == C.SLICE_ENCODER.name:
            return np.ones((x.shape[0], self.feature_dim), np.float32)
        if model == C.GRU_FUSION.name:
            assert x.ndim == 2
            return np.array([0.8, 0.5], np.float32)
        raise KeyError(model)


def _config(slice_batch: int = 8) -> PipelineConfig:
    records = default_records()
    return PipelineConfig(
        models={
            name: {"preprocessing": record_to_json(rec), "architecture": name}
            for name, rec in records.items()
        },
        slice_batch=slice_batch,
    )


def test_outputs_follow_the_contract_and_masks_only_when_asked() -> None:
    ct, truth = _volume()
    fake = FakeModels()
    pipe = ScanPipeline(_config(), fake.infer)
    spacing = np.array([2.5, 0.8, 0.8], np.float32)
    out = asyncio.run(pipe.run(ct, spacing, return_masks=False))
    assert set(out) == {t.name for t in C.PIPELINE.outputs}
    for spec in C.PIPELINE.outputs:
        assert out[spec.name].dtype == np.dtype(spec.numpy_dtype), spec.name
        if -1 not in spec.dims:
            assert out[spec.name].shape == spec.dims, spec.name
    assert out["LUNG_MASK"].shape == (0, 0, 0)
    assert out["P_COVID_STEPWISE"][0] == pytest.approx(0.8 * 0.5)
    assert C.CLASS_NAMES[int(np.argmax(out["CLASS_PROBS"]))] == "COVID-19"
    assert json.loads(out["PROVENANCE"][0].decode())  # provenance travels with every answer

    masked = asyncio.run(pipe.run(ct, spacing, return_masks=True))
    lung = masked["LUNG_MASK"]
    assert lung.shape == ct.shape  # masks refer to the input's own voxel grid
    assert dice(lung, truth) > 0.95
    expected_ml = lung.sum() * 2.5 * 0.8 * 0.8 / 1000
    assert masked["LUNG_VOLUME_ML"][0] == pytest.approx(expected_ml, rel=1e-5)
    assert set(masked["TOPK_SLICES"].tolist()) <= set(np.flatnonzero(lung.any(axis=(1, 2))))


def test_explain_adds_the_attention_and_changes_nothing_else() -> None:
    ct, truth = _volume()
    fake = FakeModels()
    pipe = ScanPipeline(_config(), fake.infer)
    spacing = np.array([2.5, 0.8, 0.8], np.float32)
    plain = asyncio.run(pipe.run(ct, spacing))
    assert fake.map_requests == 0  # no maps computed unless asked for
    for name in C.EXPLAIN_OUTPUTS:  # empty, not missing
        assert plain[name].size == (1 if name == "EXPLANATION" else 0), name
    assert C.Explanation.from_json(plain["EXPLANATION"][0]) is None

    explained = asyncio.run(pipe.run(ct, spacing, explain=True))
    assert fake.map_requests > 0
    for name, value in plain.items():
        if name not in C.EXPLAIN_OUTPUTS:
            np.testing.assert_array_equal(explained[name], value, err_msg=name)
    attention = explained["ATTENTION"]
    assert attention.dtype == np.uint8 and attention.shape == (C.TOP_K, *ct.shape[1:])
    assert attention.max() == 255
    # the map's peak (its grid's centre) lands in the middle of the lung box of the input grid
    rows, cols = np.nonzero(truth.any(axis=0))
    peak = np.unravel_index(int(np.argmax(attention[0])), attention.shape[1:])
    assert abs(peak[0] - (rows.min() + rows.max()) / 2) <= 8
    assert abs(peak[1] - (cols.min() + cols.max()) / 2) <= 8
    n = int(explained["N_SLICES_USED"][0])
    selected = explained["SELECTED_SLICES"]
    assert selected.shape == (n,) and set(explained["TOPK_SLICES"].tolist()) <= set(selected.tolist())
    assert explained["SLICE_SCORES"] == pytest.approx(np.full(n, 0.9, np.float32), abs=0.01)
    np.testing.assert_array_equal(explained["SLICE_LESION_MM2"], np.zeros(n, np.float32))  # no lesions
    explanation = C.Explanation.from_json(explained["EXPLANATION"][0])
    assert explanation is not None and explanation.method == "grad-cam"  # no checkpoint configured
    regions = explanation.regions
    assert regions and {r.slice for r in regions} <= set(explained["TOPK_SLICES"].tolist())
    assert all(r.lesion_overlap_px == 0 and r.area_px > 0 for r in regions)


def test_slices_are_split_into_bounded_batches() -> None:
    ct, _ = _volume(s=50)
    fake = FakeModels()
    asyncio.run(ScanPipeline(_config(slice_batch=8), fake.infer).run(ct, np.ones(3, np.float32)))
    lung_batches = [n for m, n in fake.calls if m == C.LUNG_SEG.name]
    assert sum(lung_batches) == 50 and max(lung_batches) <= 8
    assert all(n <= 8 for m, n in fake.calls if m != C.GRU_FUSION.name)


def test_no_lung_is_an_input_error() -> None:
    ct = np.full((10, 64, 64), -1000, np.int16)
    pipe = ScanPipeline(_config(), FakeModels().infer)
    with pytest.raises(ValueError, match="no lung"):
        asyncio.run(pipe.run(ct, np.ones(3, np.float32)))


def test_bad_spacing_is_an_input_error_and_maps_to_invalid_arg() -> None:
    ct, _ = _volume(s=4)
    pipe = ScanPipeline(_config(), FakeModels().infer)
    with pytest.raises(ValueError) as info:
        asyncio.run(pipe.run(ct, np.array([1.0, -1.0, 1.0], np.float32)))
    assert classify_error(info.value)[0] == "INVALID_ARG"
    assert classify_error(RuntimeError("boom"))[0] == "INTERNAL"


@pytest.mark.parametrize(
    ("message", "code"),
    [
        ("Stub process 'lung_seg_0_0' is not healthy.", "UNAVAILABLE"),
        ("Request for unknown model: 'lung_seg' is not found", "UNAVAILABLE"),
        ("model 'lung_seg' version 1 is not ready", "UNAVAILABLE"),
        ("Model gru_fusion - Error when running inference: Server not ready", "UNAVAILABLE"),
        ("onnxruntime: Got invalid dimensions for input", "INTERNAL"),
    ],
)
def test_a_failed_step_is_retryable_only_when_it_is_restarting(message: str, code: str) -> None:
    exc = bls_error(C.LUNG_SEG.name, message)
    assert isinstance(exc, StepUnavailableError) == (code == "UNAVAILABLE")
    got, text = classify_error(exc)
    assert got == code and C.LUNG_SEG.name in text and message in text


def test_a_step_failing_mid_scan_fails_the_scan_with_its_error() -> None:
    ct, _ = _volume()
    fake = FakeModels()
    real_infer = fake.infer

    async def infer(model: str, x: np.ndarray) -> np.ndarray:
        if model == C.LESION_SEG.name:
            raise bls_error(model, "Stub process 'lesion_seg_0_0' is not healthy.")
        return await real_infer(model, x)

    with pytest.raises(StepUnavailableError, match="lesion_seg is restarting"):
        asyncio.run(ScanPipeline(_config(), infer).run(ct, np.ones(3, np.float32)))


def test_lesions_stay_inside_the_lung_envelope() -> None:
    ct, _ = _volume()
    fake = FakeModels()
    real_infer = fake.infer

    async def infer(model: str, x: np.ndarray) -> np.ndarray:
        if model == C.LESION_SEG.name:  # "lesion" wherever the tissue is dense (body included)
            return (x > 0.8).astype(np.float32)
        return await real_infer(model, x)

    out = asyncio.run(ScanPipeline(_config(), infer).run(ct, np.ones(3, np.float32), return_masks=True))
    lung, lesion = out["LUNG_MASK"], out["LESION_MASK"]
    assert lesion.any()
    assert not (lesion & (1 - lung)).any()  # the lesion is inside the lung envelope
    body = (ct > -500) & (lung == 0)  # marked "lesion" by the stand-in model, outside the lung
    assert body.sum() > 10 * lesion.sum() and not (lesion & body).any()


def _whole_volume_reference(
    pipe: ScanPipeline, ct: np.ndarray, spacing: tuple[float, float, float], infer_sync: dict[str, np.ndarray]
) -> tuple[np.ndarray, np.ndarray, P.SliceSelection]:
    """The pipeline computed on whole volumes, with full-size masks at every step."""
    lung_rec = pipe.config.record(C.LUNG_SEG.name)
    prob = infer_sync[C.LUNG_SEG.name][:, 0]
    closing = P.closing_radius(spacing, ct.shape[1:], lung_rec.input_size)
    keep = P.clean_lung_mask((prob > 0.5).astype(np.uint8), closing=closing)
    prob = np.where(keep > 0, np.maximum(prob, 0.51), np.minimum(prob, 0.49)).astype(np.float32)
    lung = P.prob_to_mask(prob, ct.shape[1:])
    selection = P.select_slices(lung, pipe.config.record(C.SLICE_CLASSIFIER.name))
    idx = np.flatnonzero(lung.any(axis=(1, 2)))
    lesion = np.zeros_like(lung)
    P.prob_to_mask(infer_sync[C.LESION_SEG.name], ct.shape[1:], out=lesion, rows=idx)
    lesion &= lung  # cut to the lung envelope, which stays as it is
    return lung, lesion, selection


@pytest.mark.parametrize(("device", "tensors"), [(None, False), ("cpu", False), ("cpu", True)])
def test_streamed_scan_equals_the_whole_volume_computation(device: str | None, tensors: bool) -> None:
    """Chunks folded in as they arrive give exactly the masks, volumes and selection of the
    computation on whole volumes — with and without masks returned, with the CPU path (None)
    and with the GPU profiles' torch device path (run here on the CPU), whose model inputs and
    outputs may stay torch tensors on the device (``device_tensors``)."""
    import torch

    ct, _ = _volume(s=45)
    ct[20:26, 40:50, 22:32] = -300  # a dense "lesion" inside the left lung
    fake = FakeModels()
    seen: dict[str, list[np.ndarray]] = {}

    async def infer(model: str, x: Any) -> Any:
        on_device = isinstance(x, torch.Tensor)
        # the GRU's features are the host's; every slice model gets the device's tensors
        assert on_device == (tensors and model != C.GRU_FUSION.name), model
        x = x.numpy() if on_device else x
        if model == C.LESION_SEG.name:
            y = (x > 0.45).astype(np.float32)
        else:
            y = await fake.infer(model, x)
        seen.setdefault(model, []).append(y)
        return torch.from_numpy(y) if on_device else y

    config = replace(_config(slice_batch=4), device=device, device_tensors=tensors)
    pipe = ScanPipeline(config, infer)
    spacing = np.array([2.0, 0.7, 0.7], np.float32)
    out = asyncio.run(pipe.run(ct, spacing, return_masks=True))
    # Whole-volume outputs of the same stand-in models (chunk outputs in slice order).
    order = {m: np.concatenate(v) for m, v in seen.items()}
    lung, lesion, selection = _whole_volume_reference(pipe, ct, tuple(spacing), order)
    assert lesion.any()
    np.testing.assert_array_equal(out["LUNG_MASK"], lung)
    np.testing.assert_array_equal(out["LESION_MASK"], lesion)
    assert out["N_SLICES_USED"][0] == len(selection.indices)
    stats = P.lesion_statistics(lung, lesion, tuple(spacing))
    assert out["LUNG_VOLUME_ML"][0] == pytest.approx(stats.lung_ml, rel=1e-6)
    assert out["LESION_VOLUME_ML"][0] == pytest.approx(stats.lesion_ml, rel=1e-6)
    assert out["LESION_RATIO"][0] == pytest.approx(stats.ratio, rel=1e-6)

    plain = asyncio.run(pipe.run(ct, spacing, return_masks=False))
    for name in ("LUNG_VOLUME_ML", "LESION_VOLUME_ML", "LESION_RATIO", "CLASS_PROBS", "TOPK_SLICES"):
        np.testing.assert_array_equal(plain[name], out[name])


@pytest.mark.parametrize("inflight", [1, 3])
def test_a_scan_keeps_at_most_max_inflight_chunks_per_model(inflight: int) -> None:
    ct, _ = _volume(s=60)
    fake = FakeModels()
    now: dict[str, int] = {}
    peak: dict[str, int] = {}

    async def infer(model: str, x: np.ndarray) -> np.ndarray:
        now[model] = now.get(model, 0) + 1
        peak[model] = max(peak.get(model, 0), now[model])
        await asyncio.sleep(0.001)
        try:
            return await fake.infer(model, x)
        finally:
            now[model] -= 1

    config = PipelineConfig(models=_config().models, slice_batch=4, max_inflight_chunks=inflight)
    asyncio.run(ScanPipeline(config, infer).run(ct, np.ones(3, np.float32)))
    assert peak[C.LUNG_SEG.name] == inflight  # 15 chunks of 4, never more than `inflight` at once
    assert all(v <= inflight for v in peak.values())


def test_pipeline_config_round_trips_through_json() -> None:
    config = PipelineConfig(
        models=_config().models, slice_batch=16, max_inflight_chunks=7, device="cuda", device_tensors=True
    )
    back = PipelineConfig.from_json(config.to_json())
    assert (back.slice_batch, back.max_inflight_chunks, dict(back.models)) == (16, 7, dict(config.models))
    assert back.device == "cuda" and back.device_tensors
    default = PipelineConfig.from_json(_config().to_json())
    assert default.device is None and not default.device_tensors


def test_a_pre_post_device_it_cannot_use_is_refused_at_load() -> None:
    import torch

    with pytest.raises(RuntimeError, match=r"'tpu' is not a torch device.*serve a CPU profile"):
        ScanPipeline(replace(_config(), device="tpu"), FakeModels().infer)
    if not torch.cuda.is_available():
        with pytest.raises(RuntimeError, match="no CUDA GPU is visible"):
            ScanPipeline(replace(_config(), device="cuda"), FakeModels().infer)


def test_classifier_and_encoder_records_must_agree() -> None:
    """One set of selected slices feeds both models: records that disagree are refused at load."""
    config = _config()
    models = {name: dict(meta) for name, meta in config.models.items()}
    encoder = dict(models[C.SLICE_ENCODER.name]["preprocessing"], selection="jin_stride")
    models[C.SLICE_ENCODER.name]["preprocessing"] = encoder
    with pytest.raises(RecordError, match="take the same slices"):
        ScanPipeline(replace(config, models=models), FakeModels().infer)
