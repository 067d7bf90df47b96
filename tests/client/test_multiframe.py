"""Enhanced (multi-frame) CT: read like the classic series it came from; SEG frames map back."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import highdicom as hd
import numpy as np
import pydicom
import pytest
from pydicom.uid import generate_uid
from test_outputs import _content_items, _diagnosis  # tests/client is on sys.path (prepend import mode)

from covidet import _contract as C
from covidet.client import SeriesGeometryError, load_volume
from covidet.client._dicom import read_dicom_series
from covidet.client._outputs import write_outputs
from covidet.phantom import make_phantom, write_dicom_series


@pytest.fixture(scope="module")
def series(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    root = tmp_path_factory.mktemp("multiframe")
    ph = make_phantom("COVID-19", n_slices=12, size=64, seed=33)
    files = write_dicom_series(ph, root / "classic")
    enhanced = hd.legacy.LegacyConvertedEnhancedCTImage(
        legacy_datasets=[pydicom.dcmread(f) for f in files],
        series_instance_uid=generate_uid(),
        series_number=7,
        sop_instance_uid=generate_uid(),
        instance_number=1,
    )
    # frame order != position order: shuffle the frames with their functional groups
    perm = np.random.default_rng(0).permutation(len(files))
    pixels = enhanced.pixel_array
    enhanced.PixelData = np.ascontiguousarray(pixels[perm]).tobytes()
    groups = list(enhanced.PerFrameFunctionalGroupsSequence)
    enhanced.PerFrameFunctionalGroupsSequence = [groups[i] for i in perm]
    (root / "enhanced").mkdir()
    enhanced.save_as(root / "enhanced" / "ct.dcm")
    return {"root": root, "phantom": ph, "classic": read_dicom_series(root / "classic")}


def test_enhanced_ct_reads_like_the_classic_series(series: dict[str, Any]) -> None:
    vol = load_volume(series["root"] / "enhanced")
    classic = series["classic"]
    np.testing.assert_array_equal(vol.hu, classic.hu)  # sorted by position, HU rescaled per frame
    assert vol.spacing == pytest.approx(classic.spacing)
    assert vol.meta["first_position"] == pytest.approx(classic.meta["first_position"])
    frames = vol.meta["source_frames"]
    assert sorted(frames) == list(range(12)) and frames != list(range(12))
    assert classic.meta["source_frames"] is None


def test_seg_frames_of_an_enhanced_source_land_on_their_frames(
    series: dict[str, Any], tmp_path: Path
) -> None:
    vol = load_volume(series["root"] / "enhanced")
    ph = series["phantom"]
    written = write_outputs(_diagnosis(ph, str(series["root"] / "enhanced")), vol, tmp_path)
    assert {"seg", "sr"} <= set(written)
    seg = hd.seg.segread(written["seg"])
    source = pydicom.dcmread(series["root"] / "enhanced" / "ct.dcm")
    frames = vol.meta["source_frames"]
    # highdicom's own lookup by source frame number (1-based) gives the masks in volume order
    lesion = seg.get_pixels_by_source_frame(
        source.SOPInstanceUID, [f + 1 for f in frames], segment_numbers=[2]
    )[..., 0]
    np.testing.assert_array_equal(lesion > 0, ph.lesion_mask > 0)


def test_the_sr_of_an_explained_enhanced_ct_references_the_explained_frames(
    series: dict[str, Any], tmp_path: Path
) -> None:
    vol = load_volume(series["root"] / "enhanced")
    base = _diagnosis(series["phantom"], str(series["root"] / "enhanced"))
    attention = np.zeros((len(base.topk_slices), *vol.hu.shape[1:]), np.uint8)
    explained = dataclasses.replace(base, attention=attention, explanation=C.Explanation("grad-cam"))
    written = write_outputs(explained, vol, tmp_path)
    assert "attention" not in written  # a parametric map needs one instance per slice
    sr = pydicom.dcmread(written["sr"])
    frames = vol.meta["source_frames"]
    referenced = [
        int(item.ReferencedSOPSequence[0].ReferencedFrameNumber)
        for item in _content_items(sr.ContentSequence)
        if item.ValueType == "IMAGE" and item.ConceptNameCodeSequence[0].CodeValue == "EXPLAINED_SLICE"
    ]
    assert referenced == [frames[i] + 1 for i in dict.fromkeys(base.topk_slices)]


def test_a_frame_without_geometry_is_a_named_error(series: dict[str, Any], tmp_path: Path) -> None:
    ds = pydicom.dcmread(series["root"] / "enhanced" / "ct.dcm")
    del ds.PerFrameFunctionalGroupsSequence[3].PlanePositionSequence
    ds.save_as(tmp_path / "broken.dcm")
    with pytest.raises(SeriesGeometryError, match="frame 4"):
        read_dicom_series(tmp_path / "broken.dcm")
