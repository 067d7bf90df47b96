"""End to end: the real Triton server, real gRPC/HTTP, real DICOM, the demo models on phantoms."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from covidet import _contract as C
from covidet.client import Client, InvalidInputError, ModelNotFoundError, NoLungFoundError
from covidet.metrics import dice
from covidet.phantom import make_phantom, write_dicom_series

pytestmark = pytest.mark.e2e

VIRAL = {"influenza", "COVID-19"}


def _client(server: Any, protocol: str) -> Client:
    url = server.grpc_url if protocol == "grpc" else server.http_url
    return Client(url, protocol=protocol, timeout_s=600)


@pytest.mark.parametrize("protocol", ["grpc", "http"])
@pytest.mark.parametrize("kind", C.CLASS_NAMES)
def test_each_class_is_diagnosed_with_accurate_masks(
    covidet_server: Any, phantoms: dict[str, Any], kind: str, protocol: str
) -> None:
    ph = phantoms[kind]
    with _client(covidet_server, protocol) as client:
        d = client.diagnose(ph.hu, spacing=ph.spacing, return_masks=True)
    assert d.lung_mask is not None and d.lung_mask.shape == ph.hu.shape
    assert dice(d.lung_mask, ph.lung_mask) >= 0.90
    if ph.lesion_mask.any():
        assert dice(d.lesion_mask, ph.lesion_mask) >= 0.70
    assert d.predicted_class == kind
    assert (d.p_viral > 0.5) == (kind in VIRAL)
    if kind in VIRAL:
        assert (d.p_covid_given_viral > 0.5) == (kind == "COVID-19")
    assert d.p_covid_stepwise == pytest.approx(d.p_viral * d.p_covid_given_viral, rel=1e-5)
    assert sum(d.class_probs.values()) == pytest.approx(1.0, abs=1e-5)
    voxel_ml = float(np.prod(ph.spacing)) / 1000
    assert d.lung_volume_ml == pytest.approx(d.lung_mask.sum() * voxel_ml, rel=1e-4)
    assert d.lesion_ratio == pytest.approx(d.lesion_volume_ml / d.lung_volume_ml, rel=1e-4)
    assert len(d.topk_slices) == C.TOP_K and all(0 <= i < ph.hu.shape[0] for i in d.topk_slices)
    imaging = {k: v for k, v in d.provenance.items() if k != C.CLINICAL_SVM.name}
    assert set(imaging) == {
        C.LUNG_SEG.name,
        C.LESION_SEG.name,
        C.SLICE_CLASSIFIER.name,
        C.SLICE_ENCODER.name,
        C.GRU_FUSION.name,
    }
    assert all(v["trained"] and "synthetic phantoms" in v["provenance"] for v in imaging.values())
    # the clinical SVM that fused P_COVID_FUSED says which file it is, beside them
    svm = d.provenance[C.CLINICAL_SVM.name]
    assert svm["architecture"].startswith("svm-") and len(svm["sha256"]) == 16
    assert svm["provenance"].startswith("demo: trained on") and "synthetic patients" in svm["provenance"]


@pytest.mark.parametrize("protocol", ["grpc", "http"])
def test_explain_adds_the_attention_and_leaves_the_diagnosis_alone(
    covidet_server: Any, phantoms: dict[str, Any], protocol: str
) -> None:
    ph = phantoms["COVID-19"]
    with _client(covidet_server, protocol) as client:
        plain = client.diagnose(ph.hu, spacing=ph.spacing, return_masks=True)
        explained = client.diagnose(ph.hu, spacing=ph.spacing, return_masks=True, explain=True)
    assert plain.attention is None and plain.slice_scores == () and plain.attention_regions == ()
    # the same diagnosis, bit for bit: explaining only adds outputs
    assert explained.class_probs == plain.class_probs and explained.topk_slices == plain.topk_slices
    assert (explained.p_viral, explained.p_covid_given_viral) == (plain.p_viral, plain.p_covid_given_viral)
    np.testing.assert_array_equal(explained.lesion_mask, plain.lesion_mask)
    # the served explanation is Guided Grad-CAM: the render gives the pipeline the checkpoint
    assert explained.explanation is not None and explained.explanation.method == "guided-grad-cam"
    attention = explained.attention
    assert attention is not None and attention.dtype == np.uint8
    assert attention.shape == (C.TOP_K, *ph.hu.shape[1:]) and attention.max() == 255
    assert len(explained.slice_scores) == explained.n_slices_used
    assert set(explained.topk_slices) <= {s.slice for s in explained.slice_scores}
    assert all(0 <= s.p_pneumonia <= 1 and s.lesion_mm2 >= 0 for s in explained.slice_scores)
    area = float(ph.spacing[1] * ph.spacing[2])
    for s in explained.slice_scores:  # the lesion model's area per slice, from its own mask
        assert s.lesion_mm2 == pytest.approx(explained.lesion_mask[s.slice].sum() * area, rel=1e-5)
    for region in explained.attention_regions:
        assert region.slice in explained.topk_slices and region.area_px > 0
        assert 0 <= region.lesion_overlap <= 1


@pytest.mark.parametrize("protocol", ["grpc", "http"])
def test_a_compressed_ct_gives_the_same_answer(
    covidet_server: Any, phantoms: dict[str, Any], protocol: str
) -> None:
    ph = phantoms["CAP"]
    url = covidet_server.grpc_url if protocol == "grpc" else covidet_server.http_url
    with _client(covidet_server, protocol) as plain_client:
        plain = plain_client.diagnose(ph.hu, spacing=ph.spacing, return_masks=True)
    with Client(url, protocol=protocol, timeout_s=600, compression="zstd") as client:
        packed = client.diagnose(ph.hu, spacing=ph.spacing, return_masks=True)
    # lossless: the server decodes the very voxels, so every output is the same
    assert packed.class_probs == plain.class_probs and packed.topk_slices == plain.topk_slices
    assert packed.lung_volume_ml == plain.lung_volume_ml
    np.testing.assert_array_equal(packed.lung_mask, plain.lung_mask)
    np.testing.assert_array_equal(packed.lesion_mask, plain.lesion_mask)


def test_masks_are_returned_only_when_asked(covidet_server: Any, phantoms: dict[str, Any]) -> None:
    ph = phantoms["CAP"]
    with _client(covidet_server, "grpc") as client:
        d = client.diagnose(ph.hu, spacing=ph.spacing)
    assert d.lung_mask is None and d.lesion_mask is None
    assert d.lung_volume_ml > 0


def test_dicom_series_with_shuffled_file_names(covidet_server: Any, tmp_path: Path) -> None:
    ph = make_phantom("COVID-19", n_slices=40, size=256, seed=60_001)
    write_dicom_series(ph, tmp_path / "series", shuffle_filenames=True)
    with _client(covidet_server, "grpc") as client:
        from_dicom = client.diagnose(tmp_path / "series", return_masks=True)
        from_array = client.diagnose(ph.hu, spacing=ph.spacing, return_masks=True)
    assert from_dicom.n_slices == 40
    # only pixels and geometry cross the wire: no identifier reaches the server's log
    log = covidet_server.log_file.read_text(errors="replace")
    assert "PHANTOM" not in log and f"PH{ph.seed:06d}" not in log
    np.testing.assert_array_equal(from_dicom.lung_mask, from_array.lung_mask)
    assert from_dicom.lesion_ratio == pytest.approx(from_array.lesion_ratio, rel=1e-5)


@pytest.mark.parametrize(("n_slices", "size"), [(1, 128), (1000, 64)])
def test_any_scan_length_works(covidet_server: Any, n_slices: int, size: int) -> None:
    ph = make_phantom("influenza", n_slices=max(n_slices, 80), size=size, seed=60_002)
    hu, lung = (ph.hu[40:41], ph.lung_mask[40:41]) if n_slices == 1 else (ph.hu, ph.lung_mask)
    with _client(covidet_server, "grpc") as client:
        d = client.diagnose(hu, spacing=ph.spacing, return_masks=True)
    assert d.lung_mask.shape == hu.shape and d.n_slices_used == min(35, n_slices)
    assert dice(d.lung_mask, lung) > 0.8


def test_slices_of_concurrent_callers_share_batches(covidet_server: Any) -> None:
    """Slice requests from different scans (callers) are merged by lung_seg's dynamic batcher, and a
    batched slice gets the same answer as when it runs alone. (Through the pipeline, a 300-slice scan
    sends 10 chunks at once and bench.py sees batches of ~30; with the CPU profile's 2 pipeline and 2
    lung_seg instances, small scans rarely queue, so this drives the model directly.)"""
    import tritonclient.grpc as grpcclient

    rng = np.random.default_rng(0)
    batches = [rng.random((8, 1, 128, 128), dtype=np.float32) for _ in range(12)]
    name, (inp,), (out,) = C.LUNG_SEG.name, C.LUNG_SEG.inputs, C.LUNG_SEG.outputs
    stats = grpcclient.InferenceServerClient(covidet_server.grpc_url)

    def counts() -> tuple[int, int]:
        s = stats.get_inference_statistics(model_name=name, as_json=True)
        m = s["model_stats"][0]
        return int(m["inference_stats"]["success"].get("count", 0)), int(m.get("execution_count", 0))

    def one(x: np.ndarray) -> np.ndarray:
        client = grpcclient.InferenceServerClient(covidet_server.grpc_url)
        i = grpcclient.InferInput(inp.name, list(x.shape), inp.dtype)
        i.set_data_from_numpy(x)
        return np.asarray(client.infer(name, [i]).as_numpy(out.name))

    req0, exe0 = counts()
    with ThreadPoolExecutor(len(batches)) as pool:
        together = list(pool.map(one, batches))
    # Triton records a request's statistics after it has sent the response, so a client can hold all
    # its answers before the counters move: wait (bounded) for them to catch up.
    deadline = time.monotonic() + 30.0
    req1, exe1 = counts()
    while req1 - req0 < len(batches) and time.monotonic() < deadline:
        time.sleep(0.05)
        req1, exe1 = counts()
    requests, executions = req1 - req0, exe1 - exe0
    assert requests == len(batches)
    assert executions < requests, f"{executions} executions for {requests} requests: no batching"
    np.testing.assert_allclose(one(batches[5]), together[5], atol=1e-5)  # alone == batched


def test_no_lung_is_a_clear_invalid_argument(covidet_server: Any, phantoms: dict[str, Any]) -> None:
    air = np.full((8, 64, 64), -1000, np.int16)
    for protocol in ("grpc", "http"):
        with _client(covidet_server, protocol) as client:
            with pytest.raises(NoLungFoundError, match="no lung found"):
                client.diagnose(air, spacing=(1.0, 1.0, 1.0))
            with pytest.raises(InvalidInputError, match="spacing"):
                client.diagnose(air, spacing=(1.0, -1.0, 1.0))
            ph = phantoms["non-pneumonia"]  # the server keeps serving
            assert client.diagnose(ph.hu, spacing=ph.spacing).lung_volume_ml > 0


def test_unknown_model_is_reported(covidet_server: Any, phantoms: dict[str, Any]) -> None:
    ph = phantoms["non-pneumonia"]
    with _client(covidet_server, "grpc") as client:
        with pytest.raises(ModelNotFoundError):
            client.diagnose(ph.hu[:4], spacing=ph.spacing, model="no_such_model")


def test_clinical_data_is_fused_and_optional(covidet_server: Any, phantoms: dict[str, Any]) -> None:
    from covidet.clinical import demo_model_path, generate_clinical, load_svm

    ph = phantoms["COVID-19"]
    x, _ = generate_clinical(1, seed=5, covid_fraction=1.0)
    svm = load_svm(demo_model_path())
    with _client(covidet_server, "grpc") as client:
        plain = client.diagnose(ph.hu, spacing=ph.spacing)
        fused = client.diagnose(ph.hu, spacing=ph.spacing, clinical=x[0])
        with pytest.raises(InvalidInputError, match="14 values"):
            client.diagnose(ph.hu, spacing=ph.spacing, clinical=x[0][:13])
    assert plain.p_svm is None and plain.p_covid_fused == pytest.approx(plain.p_covid_given_viral)
    assert fused.p_svm == pytest.approx(float(svm.p_covid(x)[0]), abs=1e-5)
    expected = float(svm.fused(np.array([fused.p_covid_given_viral]), x)[0])
    assert fused.p_covid_fused == pytest.approx(expected, abs=1e-5)
    # one DEMO_MODELS flag, naming the demo SVM only where it fused the answer; the rest the same
    (demo,) = [f for f in fused.quality if f.code == "DEMO_MODELS"]
    (demo_plain,) = [f for f in plain.quality if f.code == "DEMO_MODELS"]
    assert C.CLINICAL_SVM.name in demo.message and C.CLINICAL_SVM.name not in demo_plain.message
    assert fused.provenance[C.CLINICAL_SVM.name]["variant"] == "demo"
    others = [f for f in fused.quality if f.code != "DEMO_MODELS"]
    assert others == [f for f in plain.quality if f.code != "DEMO_MODELS"]


def test_forecast_through_the_served_gpr(covidet_server: Any) -> None:
    from covidet.client import ServerError

    with _client(covidet_server, "http") as client:
        fc = client.forecast([0, 2, 4, 6], [0.10, 0.20, 0.30, 0.40], [1, 3, 5], levels=[0.5, 0.9])
        with pytest.raises((InvalidInputError, ServerError), match="3"):
            client.forecast([0, 1], [0.1, 0.2], [2])
    # noise-free straight line: the GP mean interpolates it between the scans
    np.testing.assert_allclose(fc.mean, [0.15, 0.25, 0.35], atol=0.02)
    assert fc.crossing_days[0.5] is not None and fc.crossing_days[0.5] > 6


def test_pipeline_metrics_are_exported(covidet_server: Any, phantoms: dict[str, Any]) -> None:
    import urllib.request

    ph = phantoms["influenza"]
    with _client(covidet_server, "grpc") as client:
        client.diagnose(ph.hu, spacing=ph.spacing)
    text = urllib.request.urlopen(covidet_server.metrics_url, timeout=5).read().decode()
    assert 'covidet_scans_total{result="ok"}' in text
    assert "covidet_device_fallbacks_total 0" in text  # the CPU profile never tries the device path
    assert "covidet_slices_per_scan_bucket" in text and 'stage="total"' in text
    assert "nv_inference_request_success" in text
