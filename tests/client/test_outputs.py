"""Outputs of a diagnosis (SEG, SR, JSON, PNG) from a phantom DICOM series, without a server."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import highdicom as hd
import numpy as np
import pydicom
import pytest
from PIL import Image

from covidet import _contract as C
from covidet.client import load_volume
from covidet.client._dicom import read_dicom_series
from covidet.client._outputs import write_outputs
from covidet.client._result import Diagnosis, SliceScore
from covidet.phantom import make_phantom, write_dicom_series

PROVENANCE_TEXT = "demo: trained on synthetic phantoms by `covidet train-demo --seed 0`; NOT diagnostic"
LUNG_ML, LESION_ML = 2345.6, 78.9
QUALITY = (
    C.QualityFlag("LUNG_NOT_COVERED", "error", "lung reaches the first slice"),
    C.QualityFlag("DEMO_MODELS", "warning", "demo models"),
)


def _diagnosis(phantom: Any, source: str, *, masks: bool = True) -> Diagnosis:
    lesion_per_slice = phantom.lesion_mask.sum(axis=(1, 2), dtype=np.int64)
    topk = tuple(int(i) for i in np.argsort(-lesion_per_slice, kind="stable")[:3])
    return Diagnosis(
        p_viral=0.9,
        p_covid_given_viral=0.8,
        p_covid_stepwise=0.72,
        class_probs=dict(zip(C.CLASS_NAMES, (0.05, 0.1, 0.15, 0.7), strict=True)),
        topk_slices=topk,
        lung_volume_ml=LUNG_ML,
        lesion_volume_ml=LESION_ML,
        lesion_ratio=LESION_ML / LUNG_ML,
        n_slices_used=phantom.hu.shape[0],
        provenance={
            name: {
                "architecture": f"{name}_arch",
                "variant": "demo",
                "version": "1",
                "trained": True,
                "provenance": PROVENANCE_TEXT,
                "sha256": "0123456789abcdef",
            }
            for name in ("lung_seg", "slice_classifier", "slice_encoder", "lesion_seg", "gru_fusion")
        },
        quality=QUALITY,
        lung_mask=phantom.lung_mask.astype(np.uint8) if masks else None,
        lesion_mask=phantom.lesion_mask.astype(np.uint8) if masks else None,
        source=source,
        n_slices=phantom.hu.shape[0],
    )


@pytest.fixture(scope="module")
def case(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    root = tmp_path_factory.mktemp("outputs")
    phantom = make_phantom("COVID-19", n_slices=12, size=64, seed=3)
    assert phantom.lesion_mask.any() and not phantom.lesion_mask.all(axis=(1, 2)).any()
    files = write_dicom_series(phantom, root / "dicom", shuffle_filenames=True)
    volume = read_dicom_series(root / "dicom")
    diagnosis = _diagnosis(phantom, str(root / "dicom"))
    written = write_outputs(diagnosis, volume, root / "out")
    # truth slice of each source file, read straight from the files (the writer numbers slices 1..S
    # from superior to inferior), independently of the reader's sorting
    index_of = {}
    for f in files:
        ds = pydicom.dcmread(f, stop_before_pixels=True)
        index_of[str(ds.SOPInstanceUID)] = int(ds.InstanceNumber) - 1
    series_uid = str(pydicom.dcmread(files[0], stop_before_pixels=True).SeriesInstanceUID)
    return {
        "root": root,
        "phantom": phantom,
        "volume": volume,
        "diagnosis": diagnosis,
        "written": written,
        "index_of": index_of,
        "series_uid": series_uid,
    }


def _content_items(items: Any) -> list[Any]:
    out = []
    for item in items:
        out.append(item)
        if "ContentSequence" in item:
            out.extend(_content_items(item.ContentSequence))
    return out


def _num(items: list[Any], meaning: str) -> list[tuple[float, str]]:
    return [
        (
            float(i.MeasuredValueSequence[0].NumericValue),
            str(i.MeasuredValueSequence[0].MeasurementUnitsCodeSequence[0].CodeValue),
        )
        for i in items
        if i.ValueType == "NUM" and i.ConceptNameCodeSequence[0].CodeMeaning == meaning
    ]


def test_all_files_written(case: dict[str, Any]) -> None:
    written, out = case["written"], case["root"] / "out"
    assert set(written) == {"result", "seg", "sr", "keyimage_1", "keyimage_2", "keyimage_3", "coronal"}
    assert written["seg"] == out / "seg.dcm" and written["sr"] == out / "sr.dcm"
    assert written["result"] == out / "result.json" and written["coronal"] == out / "coronal.png"
    assert all(p.is_file() and p.stat().st_size > 0 for p in written.values())


def test_seg_segments_and_provenance(case: dict[str, Any]) -> None:
    seg = hd.seg.segread(case["written"]["seg"])
    assert seg.SegmentationType == "BINARY"
    assert seg.get_segment_numbers() == [1, 2]
    lung, lesion = seg.get_segment_description(1), seg.get_segment_description(2)
    assert (lung.segment_label, lesion.segment_label) == ("lung", "lesion")
    assert lung.segmented_property_type.value == "39607008"  # SCT Lung
    assert lesion.segmented_property_type.value == "52988006"  # SCT Lesion
    assert lesion.segmented_property_category.value == "49755003"  # morphologically abnormal
    for desc, model in ((lung, "lung_seg"), (lesion, "lesion_seg")):
        assert desc.algorithm_type == hd.seg.SegmentAlgorithmTypeValues.AUTOMATIC
        algo = desc.algorithm_identification[0]
        assert f"covidet {model}" in algo.AlgorithmName
        assert PROVENANCE_TEXT in algo.AlgorithmParameters
        assert str(algo.AlgorithmSource).startswith("demo: trained on synthetic phantoms")
    assert seg.ReferencedSeriesSequence[0].SeriesInstanceUID == case["series_uid"]
    assert (
        seg.FrameOfReferenceUID
        == pydicom.dcmread(
            next((case["root"] / "dicom").glob("*.dcm")), stop_before_pixels=True
        ).FrameOfReferenceUID
    )


def test_seg_frames_land_on_their_source_slices(case: dict[str, Any]) -> None:
    ds = pydicom.dcmread(case["written"]["seg"])
    phantom, index_of = case["phantom"], case["index_of"]
    truth = {1: phantom.lung_mask > 0, 2: phantom.lesion_mask > 0}
    frames = ds.pixel_array.reshape(int(ds.NumberOfFrames), int(ds.Rows), int(ds.Columns))
    seen: dict[int, set[int]] = {1: set(), 2: set()}
    for i, group in enumerate(ds.PerFrameFunctionalGroupsSequence):
        segment = int(group.SegmentIdentificationSequence[0].ReferencedSegmentNumber)
        uid = str(group.DerivationImageSequence[0].SourceImageSequence[0].ReferencedSOPInstanceUID)
        k = index_of[uid]
        np.testing.assert_array_equal(frames[i] > 0, truth[segment][k], err_msg=f"frame {i}")
        seen[segment].add(k)
    for segment, mask in truth.items():  # frames left out are exactly the empty slices
        assert seen[segment] == set(np.nonzero(mask.any(axis=(1, 2)))[0].tolist())

    # the same through highdicom's own lookup, in the reader's slice order
    seg = hd.seg.segread(case["written"]["seg"])
    uids = case["volume"].meta["sop_instance_uids"]
    lesion = seg.get_pixels_by_source_instance(uids, segment_numbers=[2])[..., 0]
    np.testing.assert_array_equal(lesion > 0, truth[2])


def test_sr_measurements_and_references(case: dict[str, Any]) -> None:
    ds = pydicom.dcmread(case["written"]["sr"])
    assert ds.SOPClassUID == "1.2.840.10008.5.1.4.1.1.88.34"  # Comprehensive 3D SR
    assert ds.ContentTemplateSequence[0].TemplateIdentifier == "1500"
    items = _content_items(ds.ContentSequence)
    assert _num(items, "Volume") == [(pytest.approx(LUNG_ML), "ml"), (pytest.approx(LESION_ML), "ml")]
    assert _num(items, "Lesion volume / lung volume") == [(pytest.approx(LESION_ML / LUNG_ML), "{ratio}")]
    assert _num(items, "Stepwise probability of COVID-19") == [(pytest.approx(0.72), "1")]
    codes = {
        i.ConceptNameCodeSequence[0].CodeMeaning: i.ConceptCodeSequence[0].CodeValue
        for i in items
        if i.ValueType == "CODE"
    }
    assert codes["Predicted class (top-K fusion)"] == "840539006"  # SCT COVID-19
    texts = [str(i.TextValue) for i in items if i.ValueType == "TEXT"]
    assert any("Stepwise P(COVID-19) = 0.720" in t and "not a medical device" in t for t in texts)
    assert any("NOT USABLE" in t for t in texts)  # the summary says so
    flags = [str(i.TextValue) for i in items if i.ConceptNameCodeSequence[0].CodeMeaning == "Quality check"]
    assert flags == [
        "error: LUNG_NOT_COVERED: lung reaches the first slice",
        "warning: DEMO_MODELS: demo models",
    ]

    seg = pydicom.dcmread(case["written"]["seg"], stop_before_pixels=True)
    sr = hd.sr.srread(case["written"]["sr"])
    groups = sr.content.get_volumetric_roi_measurement_groups()
    refs = [g.referenced_segment[0].ReferencedSOPSequence[0] for g in groups]
    assert [(r.ReferencedSOPInstanceUID, r.ReferencedSegmentNumber) for r in refs] == [
        (seg.SOPInstanceUID, 1),
        (seg.SOPInstanceUID, 2),
    ]
    assert [m.value for m in groups[0].get_measurements()] == [pytest.approx(LUNG_ML)]
    evidence = {
        s.SeriesInstanceUID: {i.ReferencedSOPInstanceUID for i in s.ReferencedSOPSequence}
        for study in ds.CurrentRequestedProcedureEvidenceSequence
        for s in study.ReferencedSeriesSequence
    }
    assert evidence[case["series_uid"]] == set(case["index_of"])
    assert evidence[seg.SeriesInstanceUID] == {seg.SOPInstanceUID}


def test_json_is_the_diagnosis(case: dict[str, Any]) -> None:
    data = json.loads(case["written"]["result"].read_text())
    assert data == json.loads(json.dumps(case["diagnosis"].to_dict()))
    assert data["predicted_class"] == "COVID-19" and data["lung_volume_ml"] == LUNG_ML
    assert data["usable"] is False and [f["code"] for f in data["quality"]] == [
        "LUNG_NOT_COVERED",
        "DEMO_MODELS",
    ]


def test_pngs_are_images_with_the_overlay(case: dict[str, Any]) -> None:
    for name in ("keyimage_1", "keyimage_2", "keyimage_3", "coronal"):
        with Image.open(case["written"][name]) as img:
            img.verify()
        with Image.open(case["written"][name]) as img:
            assert img.format == "PNG" and min(img.size) >= 200
            rgb = np.asarray(img.convert("RGB")).astype(int)
        r, g, b = rgb[..., 0], rgb[..., 1], rgb[..., 2]
        assert ((r - np.maximum(g, b)) > 60).sum() > 20, f"{name}: no red lesion overlay/outline"
        assert ((b - r) > 100).sum() > 20, f"{name}: no cyan lung outline"


def test_non_dicom_volume_skips_seg_and_sr(case: dict[str, Any], tmp_path: Path) -> None:
    phantom = case["phantom"]
    volume = load_volume(phantom.hu, spacing=phantom.spacing)
    written = write_outputs(_diagnosis(phantom, "array"), volume, tmp_path)
    assert "seg" not in written and "sr" not in written
    assert {"result", "coronal", "keyimage_1"} <= set(written)
    assert not (tmp_path / "seg.dcm").exists() and not (tmp_path / "sr.dcm").exists()


def test_without_masks_sr_only(case: dict[str, Any], tmp_path: Path) -> None:
    diagnosis = _diagnosis(case["phantom"], case["diagnosis"].source, masks=False)
    written = write_outputs(diagnosis, case["volume"], tmp_path)
    assert "seg" not in written and {"sr", "result", "coronal", "keyimage_1"} <= set(written)
    ds = pydicom.dcmread(written["sr"])
    items = _content_items(ds.ContentSequence)
    assert _num(items, "Volume") == [(pytest.approx(LUNG_ML), "ml"), (pytest.approx(LESION_ML), "ml")]
    assert not hd.sr.srread(written["sr"]).content.get_volumetric_roi_measurement_groups()


def test_empty_lesion_and_given_source_datasets(case: dict[str, Any], tmp_path: Path) -> None:
    diagnosis = dataclasses.replace(
        case["diagnosis"], lesion_mask=np.zeros_like(case["diagnosis"].lesion_mask)
    )
    files = sorted((case["root"] / "dicom").glob("*.dcm"))
    extra = make_phantom("CAP", n_slices=2, size=64, seed=9)
    other = write_dicom_series(extra, tmp_path / "other")
    datasets = [pydicom.dcmread(f, stop_before_pixels=True) for f in files + other][::-1]
    written = write_outputs(diagnosis, case["volume"], tmp_path / "out", source_datasets=datasets)
    seg = hd.seg.segread(written["seg"])
    assert seg.get_segment_numbers() == [1, 2]
    uids = case["volume"].meta["sop_instance_uids"]
    pixels = seg.get_pixels_by_source_instance(uids, segment_numbers=[1, 2])
    np.testing.assert_array_equal(pixels[..., 0] > 0, case["phantom"].lung_mask > 0)
    assert not pixels[..., 1].any()
    groups = hd.sr.srread(written["sr"]).content.get_volumetric_roi_measurement_groups()
    assert [g.referenced_segment[0].ReferencedSOPSequence[0].ReferencedSegmentNumber for g in groups] == [
        1,
        2,
    ]

    with pytest.raises(ValueError, match="not among the source datasets"):
        fewer = [d for d in datasets if d.SOPInstanceUID != uids[5]]
        write_outputs(diagnosis, case["volume"], tmp_path / "x", source_datasets=fewer)


def test_an_explained_diagnosis_writes_overlays_a_parametric_map_and_sr_references(
    case: dict[str, Any], tmp_path: Path
) -> None:
    phantom, volume = case["phantom"], case["volume"]
    base = _diagnosis(phantom, str(case["root"] / "dicom"))
    k = len(base.topk_slices)
    attention = np.zeros((k, *volume.hu.shape[1:]), np.uint8)
    attention[:, 20:40, 10:30] = 255
    region = C.AttentionRegion(base.topk_slices[0], 0, 400, 250.0, 120, 0.3, (29.5, 19.5), (20, 40, 10, 30))
    scores = tuple(SliceScore(i, 0.5, 10.0 * i) for i in range(volume.n_slices))
    explained = dataclasses.replace(
        base,
        attention=attention,
        explanation=C.Explanation("guided-grad-cam", (region,)),
        slice_scores=scores,
    )
    written = write_outputs(explained, volume, tmp_path / "out")
    assert {f"attention_{i}" for i in range(1, k + 1)} | {"attention", "sr"} <= set(written)
    for i in range(1, k + 1):
        image = np.asarray(Image.open(written[f"attention_{i}"]).convert("RGB"))
        assert image.std() > 10  # an image, not a blank
    pm = pydicom.dcmread(written["attention"])
    assert pm.SOPClassUID == "1.2.840.10008.5.1.4.1.1.30"  # Parametric Map Storage
    assert int(pm.NumberOfFrames) == len(set(base.topk_slices))
    referenced = {
        str(item.ReferencedSOPInstanceUID)
        for frame in pm.PerFrameFunctionalGroupsSequence
        for derivation in frame.DerivationImageSequence
        for item in derivation.SourceImageSequence
    }
    slice_uids = volume.meta["sop_instance_uids"]
    assert referenced == {str(slice_uids[i]) for i in base.topk_slices}
    sr = pydicom.dcmread(written["sr"])
    items = _content_items(sr.ContentSequence)
    images = [
        str(it.ReferencedSOPSequence[0].ReferencedSOPInstanceUID)
        for it in items
        if it.ValueType == "IMAGE" and it.ConceptNameCodeSequence[0].CodeValue == "EXPLAINED_SLICE"
    ]
    assert set(images) == {str(slice_uids[i]) for i in base.topk_slices}
    texts = [str(it.TextValue) for it in items if it.ValueType == "TEXT"]
    assert any("30% inside the lesion segmentation" in t for t in texts)
    series = {
        str(ref.ReferencedSOPInstanceUID)
        for study in sr.CurrentRequestedProcedureEvidenceSequence
        for s in study.ReferencedSeriesSequence
        for ref in s.ReferencedSOPSequence
    }
    assert str(pm.SOPInstanceUID) in series
    # a plain diagnosis writes none of it
    plain = write_outputs(base, volume, tmp_path / "plain")
    assert not any(stem.startswith("attention") for stem in plain)
