"""``seg.dcm``: DICOM Segmentation (BINARY), segment 1 = lung, 2 = lesion, on the source CT slices."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from covidet import _contract as C
from covidet.client._outputs_common import DISCLAIMER, lo, model_info
from covidet.client._result import Diagnosis

__all__ = ["write_seg"]

_SERIES_NUMBER_SEG = 9701


def _algorithm(diagnosis: Diagnosis, model: str) -> Any:
    import highdicom as hd
    from pydicom.sr.codedict import codes

    info = model_info(diagnosis, model)
    params = {
        k: str(info[k])
        for k in ("architecture", "variant", "version", "sha256", "provenance")
        if info.get(k) is not None
    }
    return hd.AlgorithmIdentificationSequence(
        name=lo(f"covidet {model} ({info.get('architecture', '?')} {info.get('variant', '?')})"),
        family=codes.cid7162.ArtificialIntelligence,
        version=lo(str(info.get("version", "unknown"))),
        source=lo(str(info.get("provenance") or "covidet")),
        parameters=params or None,
    )


def write_seg(
    diagnosis: Diagnosis,
    sources: list[Any],
    lung: np.ndarray,
    lesion: np.ndarray,
    path: Path,
    source_frames: Sequence[int] | None = None,
) -> Any:
    import highdicom as hd
    from pydicom.sr.codedict import codes
    from pydicom.uid import generate_uid

    from covidet import __version__

    lung_region = [codes.SCT.Lung]
    segments = [
        hd.seg.SegmentDescription(
            segment_number=1,
            segment_label="lung",
            segmented_property_category=codes.SCT.AnatomicalStructure,
            segmented_property_type=codes.SCT.Lung,
            algorithm_type=hd.seg.SegmentAlgorithmTypeValues.AUTOMATIC,
            algorithm_identification=_algorithm(diagnosis, C.LUNG_SEG.name),
            tracking_uid=generate_uid(),
            tracking_id="covidet lung",
        ),
        hd.seg.SegmentDescription(
            segment_number=2,
            segment_label="lesion",
            segmented_property_category=codes.SCT.MorphologicallyAbnormalStructure,
            segmented_property_type=codes.SCT.Lesion,
            algorithm_type=hd.seg.SegmentAlgorithmTypeValues.AUTOMATIC,
            algorithm_identification=_algorithm(diagnosis, C.LESION_SEG.name),
            tracking_uid=generate_uid(),
            tracking_id="covidet lesion",
            anatomic_regions=lung_region,
        ),
    ]
    pixels = np.stack([lung, lesion], axis=-1).astype(np.uint8)  # [S, H, W, segment]
    if source_frames is not None:  # one multi-frame source: masks go back into its frame order
        by_frame = np.zeros((int(sources[0].NumberOfFrames), *pixels.shape[1:]), np.uint8)
        by_frame[np.asarray(source_frames, dtype=np.int64)] = pixels
        pixels = by_frame
    seg = hd.seg.Segmentation(
        source_images=sources,
        pixel_array=pixels,
        segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
        segment_descriptions=segments,
        series_instance_uid=generate_uid(),
        series_number=_SERIES_NUMBER_SEG,
        sop_instance_uid=generate_uid(),
        instance_number=1,
        manufacturer="covidet",
        manufacturer_model_name="covidet lung_seg + lesion_seg",
        software_versions=__version__,
        device_serial_number="none",
        content_label="COVIDET",
        content_description=lo(f"lung and lesion; {DISCLAIMER}"),
        series_description=lo("covidet lung and lesion segmentation"),
        # all-empty masks still give a valid (if dull) object with every frame present
        omit_empty_frames=bool(lung.any() or lesion.any()),
    )
    seg.save_as(path)
    return seg
