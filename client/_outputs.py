"""Files for one diagnosis: DICOM SEG and SR, result JSON, PNG key images.

`write_outputs` writes into ``out_dir``:

- ``seg.dcm``: DICOM Segmentation (BINARY) with segment 1 = lung, 2 = lesion, frame by frame on the
  source CT slices (only for a DICOM input with masks, i.e. ``return_masks=True``);
- ``sr.dcm``: Comprehensive 3D SR with a TID 1500 Measurement Report: a volumetric group per
  segment (lung volume; lesion volume and lesion/lung ratio) referencing ``seg.dcm``, and a
  scan-level group with DL#1, DL#2, the stepwise P(COVID-19), the top-K class probabilities and the
  predicted class (only for a DICOM input);
- ``result.json``: `Diagnosis.to_dict()`;
- ``keyimage_<k>.png`` for the k-th (1-based) of the top-K slices and ``coronal.png``.

The returned dict maps each written file's stem (``seg``, ``sr``, ``result``, ``keyimage_1``, ...,
``coronal``) to its path; a file that was not written has no key (and a log line says why).
Everything here runs in the light client: pydicom, highdicom, matplotlib; no torch, no scipy.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from covidet import _contract as C
from covidet.client._result import Diagnosis
from covidet.client._volume import Volume

__all__ = ["write_outputs"]

log = logging.getLogger(__name__)

#: Local coding scheme for concepts with no standard code (DICOM PS3.16: "99" prefix = private).
LOCAL_SCHEME = "99COVIDET"
#: Display window for key images (lung window).
LUNG_WINDOW = (-600.0, 1500.0)  # centre, width
_SERIES_NUMBER_SEG = 9701
_SERIES_NUMBER_SR = 9702
_DISCLAIMER = "covidet research software, not a medical device"


# --- helpers ----------------------------------------------------------------------------------


def _model_info(diagnosis: Diagnosis, model: str) -> dict[str, Any]:
    info = diagnosis.provenance.get(model) if isinstance(diagnosis.provenance, dict) else None
    return dict(info) if isinstance(info, dict) else {}


def _lo(text: str, n: int = 64) -> str:
    """Fit a string into a DICOM LO (64 chars), marking a cut with '...'."""
    text = " ".join(str(text).split()).replace("\\", "/")
    return text if len(text) <= n else text[: n - 3] + "..."


def _mask(diagnosis: Diagnosis, name: str, shape: tuple[int, ...]) -> np.ndarray | None:
    m = getattr(diagnosis, name)
    if m is None:
        return None
    m = np.asarray(m)
    if m.shape != shape:
        raise ValueError(f"diagnosis.{name} has shape {m.shape}, the volume {shape}")
    return m > 0


def _load_source_datasets(volume: Volume, source_datasets: Sequence[Any] | None) -> list[Any] | None:
    """The source CT datasets in the volume's slice order (matched by SOPInstanceUID), or None."""
    uids = [str(u) for u in volume.meta.get("sop_instance_uids") or []]
    if not uids or not all(uids) or len(uids) != volume.n_slices:
        return None
    if source_datasets is None:
        if volume.meta.get("format") != "dicom":
            return None
        from covidet.client._dicom import _files, _header, _map

        files = _files(Path(volume.source))
        source_datasets = [h for h in _map(_header, files) if h is not None]
    by_uid: dict[str, Any] = {}
    for ds in source_datasets:
        by_uid.setdefault(str(getattr(ds, "SOPInstanceUID", "")), ds)
    missing = [u for u in uids if u not in by_uid]
    if missing:
        raise ValueError(
            f"{len(missing)} of the volume's {len(uids)} source slices are not among the source "
            f"datasets (first missing SOPInstanceUID {missing[0]}); was {volume.source} changed?"
        )
    if volume.meta.get("source_frames") is not None:  # enhanced CT: frames of one instance
        if len(set(uids)) != 1:
            log.warning("an enhanced CT split over several instances: no seg.dcm, no sr.dcm")
            return None
        return [by_uid[uids[0]]]
    return [by_uid[u] for u in uids]


# --- DICOM SEG --------------------------------------------------------------------------------


def _algorithm(diagnosis: Diagnosis, model: str) -> Any:
    import highdicom as hd
    from pydicom.sr.codedict import codes

    info = _model_info(diagnosis, model)
    params = {
        k: str(info[k])
        for k in ("architecture", "variant", "version", "sha256", "provenance")
        if info.get(k) is not None
    }
    return hd.AlgorithmIdentificationSequence(
        name=_lo(f"covidet {model} ({info.get('architecture', '?')} {info.get('variant', '?')})"),
        family=codes.cid7162.ArtificialIntelligence,
        version=_lo(str(info.get("version", "unknown"))),
        source=_lo(str(info.get("provenance") or "covidet")),
        parameters=params or None,
    )


def _write_seg(
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
        content_description=_lo(f"lung and lesion; {_DISCLAIMER}"),
        series_description=_lo("covidet lung and lesion segmentation"),
        # all-empty masks still give a valid (if dull) object with every frame present
        omit_empty_frames=bool(lung.any() or lesion.any()),
    )
    seg.save_as(path)
    return seg


# --- DICOM SR ---------------------------------------------------------------------------------

_CLASS_CODES = {
    "non-pneumonia": ("NON_PNEUMONIA", LOCAL_SCHEME, "Non-pneumonia"),
    "CAP": ("385093006", "SCT", "Community acquired pneumonia"),
    "influenza": ("6142004", "SCT", "Influenza"),
    "COVID-19": ("840539006", "SCT", "Disease caused by SARS-CoV-2"),
}


def _local(value: str, meaning: str) -> Any:
    import highdicom as hd

    return hd.sr.CodedConcept(value=value, scheme_designator=LOCAL_SCHEME, meaning=meaning)


def _class_code(name: str) -> Any:
    import highdicom as hd

    value, scheme, meaning = _CLASS_CODES.get(name, (name.upper(), LOCAL_SCHEME, name))
    return hd.sr.CodedConcept(value=value, scheme_designator=scheme, meaning=meaning)


def _summary_text(diagnosis: Diagnosis) -> str:
    probs = ", ".join(f"{k} {v:.3f}" for k, v in diagnosis.class_probs.items())
    return (
        f"Predicted class (top-K fusion): {diagnosis.predicted_class} [{probs}]. "
        f"Stepwise P(COVID-19) = {diagnosis.p_covid_stepwise:.3f} "
        f"(DL#1 P(viral pneumonia) {diagnosis.p_viral:.3f} x DL#2 P(COVID-19 | viral) "
        f"{diagnosis.p_covid_given_viral:.3f}). Lung {diagnosis.lung_volume_ml:.1f} mL, lesion "
        f"{diagnosis.lesion_volume_ml:.1f} mL, lesion/lung ratio {diagnosis.lesion_ratio:.4f}. "
        f"Key slices {list(diagnosis.topk_slices)}. {_DISCLAIMER}; see each model's provenance."
    )


def _write_sr(diagnosis: Diagnosis, sources: list[Any], seg: Any | None, path: Path) -> Any:
    import highdicom as hd
    from pydicom.sr.codedict import codes
    from pydicom.uid import generate_uid

    from covidet import __version__

    ml = hd.sr.CodedConcept(value="ml", scheme_designator="UCUM", meaning="milliliter")
    volume_code = codes.SCT.Volume
    lung_site = [hd.sr.FindingSite(anatomic_location=codes.SCT.Lung)]

    def algo(model: str) -> Any:
        info = _model_info(diagnosis, model)
        keys = ("architecture", "variant", "sha256", "provenance")
        params = [f"{k}={info[k]}" for k in keys if info.get(k)]
        return hd.sr.AlgorithmIdentification(
            name=_lo(f"covidet {model}"),
            version=_lo(str(info.get("version", "unknown"))),
            parameters=params or None,
        )

    def tracking(label: str) -> Any:
        return hd.sr.TrackingIdentifier(uid=generate_uid(), identifier=f"covidet {label}")

    def segment_ref(number: int) -> Any | None:
        if seg is None:
            return None
        try:
            return hd.sr.ReferencedSegment.from_segmentation(seg, number)
        except (ValueError, AttributeError, IndexError):  # e.g. a segment with no frames
            return hd.sr.ReferencedSegment(
                sop_class_uid=seg.SOPClassUID,
                sop_instance_uid=seg.SOPInstanceUID,
                segment_number=number,
                source_series=hd.sr.SourceSeriesForSegmentation(sources[0].SeriesInstanceUID),
            )

    lung_m = hd.sr.Measurement(
        name=volume_code,
        value=float(diagnosis.lung_volume_ml),
        unit=ml,
        algorithm_id=algo(C.LUNG_SEG.name),
    )
    lesion_m = hd.sr.Measurement(
        name=volume_code,
        value=float(diagnosis.lesion_volume_ml),
        unit=ml,
        algorithm_id=algo(C.LESION_SEG.name),
    )
    ratio_m = hd.sr.Measurement(
        name=_local("LESION_RATIO", "Lesion volume / lung volume"),
        value=float(diagnosis.lesion_ratio),
        unit=codes.UCUM.Ratio,
        algorithm_id=algo(C.LESION_SEG.name),
    )
    groups: list[Any] = []
    for label, finding, measurements, number in (
        ("lung", codes.SCT.Lung, [lung_m], 1),
        ("lesion", codes.SCT.Lesion, [lesion_m, ratio_m], 2),
    ):
        ref = segment_ref(number)
        common = dict(
            tracking_identifier=tracking(label),
            finding_type=finding,
            finding_sites=lung_site if label == "lesion" else None,
            measurements=measurements,
        )
        if ref is not None:
            groups.append(
                hd.sr.VolumetricROIMeasurementsAndQualitativeEvaluations(referenced_segment=ref, **common)
            )
        else:
            groups.append(hd.sr.MeasurementsAndQualitativeEvaluations(**common))

    no_units = codes.UCUM.NoUnits
    gru, cls = C.GRU_FUSION.name, C.SLICE_CLASSIFIER.name
    scan_measurements = [
        hd.sr.Measurement(
            name=_local("P_VIRAL", "DL#1 probability of viral pneumonia"),
            value=float(diagnosis.p_viral),
            unit=no_units,
            algorithm_id=algo(gru),
        ),
        hd.sr.Measurement(
            name=_local("P_COVID_GIVEN_VIRAL", "DL#2 probability of COVID-19 given viral"),
            value=float(diagnosis.p_covid_given_viral),
            unit=no_units,
            algorithm_id=algo(gru),
        ),
        hd.sr.Measurement(
            name=_local("P_COVID_STEPWISE", "Stepwise probability of COVID-19"),
            value=float(diagnosis.p_covid_stepwise),
            unit=no_units,
            algorithm_id=algo(gru),
        ),
    ] + [
        hd.sr.Measurement(
            name=_local(f"P_CLASS_{i}", _lo(f"Top-K fusion probability of {name}")),
            value=float(diagnosis.class_probs[name]),
            unit=no_units,
            algorithm_id=algo(cls),
        )
        for i, name in enumerate(C.CLASS_NAMES)
        if name in diagnosis.class_probs
    ]
    scan_group = hd.sr.MeasurementsAndQualitativeEvaluations(
        tracking_identifier=tracking("diagnosis"),
        finding_sites=lung_site,
        algorithm_id=hd.sr.AlgorithmIdentification(name="covidet", version=__version__),
        measurements=scan_measurements,
        qualitative_evaluations=[
            hd.sr.QualitativeEvaluation(
                name=_local("PREDICTED_CLASS", "Predicted class (top-K fusion)"),
                value=_class_code(diagnosis.predicted_class),
            )
        ],
    )
    # TID 1501 row "Qualitative Evaluations" may also be TEXT: a readable summary
    scan_group[0].ContentSequence.append(
        hd.sr.TextContentItem(
            name=hd.sr.CodedConcept("C0034375", "UMLS", "Qualitative Evaluations"),
            value=_summary_text(diagnosis),
            relationship_type=hd.sr.RelationshipTypeValues.CONTAINS,
        )
    )
    groups.append(scan_group)

    observer = hd.sr.ObserverContext(
        observer_type=codes.DCM.Device,
        observer_identifying_attributes=hd.sr.DeviceObserverIdentifyingAttributes(
            uid=generate_uid(),
            name="covidet",
            manufacturer_name="covidet",
            model_name=_lo(f"covidet {__version__}"),
        ),
    )
    report = hd.sr.MeasurementReport(
        observation_context=hd.sr.ObservationContext(observer_device_context=observer),
        procedure_reported=hd.sr.CodedConcept("169069000", "SCT", "Computed tomography of chest"),
        imaging_measurements=groups,
    )
    evidence = list(sources) + ([seg] if seg is not None else [])
    sr = hd.sr.Comprehensive3DSR(
        evidence=evidence,
        content=report,
        series_instance_uid=generate_uid(),
        series_number=_SERIES_NUMBER_SR,
        sop_instance_uid=generate_uid(),
        instance_number=1,
        manufacturer="covidet",
        series_description=_lo("covidet measurement report"),
        is_complete=True,
    )
    sr.save_as(path)
    return sr


# --- PNG key images ---------------------------------------------------------------------------


def _window(hu: np.ndarray) -> np.ndarray:
    centre, width = LUNG_WINDOW
    return np.clip((hu.astype(np.float32) - (centre - width / 2)) / width, 0.0, 1.0)


def _red(mask: np.ndarray, alpha: float = 0.45) -> np.ndarray:
    rgba = np.zeros((*mask.shape, 4), dtype=np.float32)
    rgba[mask] = (1.0, 0.0, 0.0, alpha)
    return rgba


def _outline(ax: Any, mask: np.ndarray | None, color: str, width: float = 0.9) -> None:
    if mask is not None and mask.any() and min(mask.shape) > 1:
        ax.contour(mask.astype(np.float32), levels=[0.5], colors=[color], linewidths=width)


def _figure(image_hw: tuple[int, int], aspect: float) -> tuple[Any, Any]:
    from matplotlib.figure import Figure

    h, w = image_hw
    height_in = 6.0
    width_in = float(np.clip(height_in * w / max(h * aspect, 1e-6), 3.0, 12.0))
    fig = Figure(figsize=(width_in, height_in + 0.6), dpi=100)
    ax = fig.add_axes((0.0, 0.0, 1.0, height_in / (height_in + 0.6)))
    ax.set_axis_off()
    return fig, ax


def _axial_ok(volume: Volume) -> bool:
    orient = volume.meta.get("orientation")
    return orient is not None and np.allclose(orient, [1, 0, 0, 0, 1, 0], atol=1e-3)


def _write_pngs(
    diagnosis: Diagnosis,
    volume: Volume,
    lung: np.ndarray | None,
    lesion: np.ndarray | None,
    out_dir: Path,
) -> dict[str, Path]:
    dz, dy, dx = volume.spacing
    hu = volume.hu
    s, h, w = hu.shape
    label_lr = _axial_ok(volume)  # image left = patient right for the standard axial orientation
    headline = (
        f"{diagnosis.predicted_class} {diagnosis.class_probs.get(diagnosis.predicted_class, 0):.2f}"
        f" | P(COVID-19) stepwise {diagnosis.p_covid_stepwise:.2f}"
        f" | lesion/lung {diagnosis.lesion_ratio:.3f}"
    )
    written: dict[str, Path] = {}
    topk = [int(i) for i in diagnosis.topk_slices if 0 <= int(i) < s]
    for k, idx in enumerate(topk, start=1):
        fig, ax = _figure((h, w), dy / dx)
        ax.imshow(_window(hu[idx]), cmap="gray", vmin=0, vmax=1, aspect=dy / dx, interpolation="nearest")
        if lesion is not None:
            ax.imshow(_red(lesion[idx]), aspect=dy / dx, interpolation="nearest")
        _outline(ax, lung[idx] if lung is not None else None, "#00e5ff")
        if label_lr:
            ax.text(0.01, 0.97, "R", color="yellow", transform=ax.transAxes, va="top")
            ax.text(0.98, 0.97, "L", color="yellow", transform=ax.transAxes, va="top")
        fig.suptitle(f"key image {k}/{len(topk)}: slice {idx} of {s}\n{headline}", fontsize=9, y=0.995)
        fig.text(0.01, 0.005, _DISCLAIMER, fontsize=6, color="gray")
        path = out_dir / f"keyimage_{k}.png"
        fig.savefig(path)
        written[path.stem] = path

    # coronal reformat through the lung's centre (row of the lung centroid)
    if lung is not None and lung.any():
        counts = lung.sum(axis=(0, 2), dtype=np.int64)
        row = round(float((counts * np.arange(h)).sum() / counts.sum()))
    else:
        row = h // 2
    top = "superior" if label_lr else "slice 0"
    fig, ax = _figure((s, w), dz / dx)
    ax.imshow(_window(hu[:, row, :]), cmap="gray", vmin=0, vmax=1, aspect=dz / dx, interpolation="nearest")
    _outline(ax, lung[:, row, :] if lung is not None else None, "#00e5ff")
    _outline(ax, lesion[:, row, :] if lesion is not None else None, "red", 1.1)
    for k, idx in enumerate(topk, start=1):
        ax.axhline(idx, xmin=0.0, xmax=0.04, color="yellow", linewidth=1.2)
        ax.text(0.045 * w, idx, str(k), color="yellow", fontsize=7, va="center")
    if label_lr:
        ax.text(0.01, 0.97, "R", color="yellow", transform=ax.transAxes, va="top")
        ax.text(0.98, 0.97, "L", color="yellow", transform=ax.transAxes, va="top")
    fig.suptitle(f"coronal through row {row} of {h} ({top} at top)\n{headline}", fontsize=9, y=0.995)
    fig.text(0.01, 0.005, _DISCLAIMER + "; ticks: key slices", fontsize=6, color="gray")
    path = out_dir / "coronal.png"
    fig.savefig(path)
    written[path.stem] = path
    return written


# --- entry point ------------------------------------------------------------------------------


def _json_default(obj: Any) -> Any:
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    raise TypeError(f"{type(obj).__name__} is not JSON serializable")


def write_outputs(
    diagnosis: Diagnosis,
    volume: Volume,
    out_dir: Path,
    *,
    source_datasets: list[Any] | None = None,
) -> dict[str, Path]:
    """Write SEG, SR, JSON and PNG outputs of ``diagnosis`` for ``volume`` into ``out_dir``.

    ``source_datasets``: the source CT datasets (headers suffice), in any order; by default they
    are read from ``volume.source``. They are matched to the volume's slices by SOPInstanceUID
    (``volume.meta['sop_instance_uids']``), so frame i of the SEG lies on the volume's slice i.
    SEG needs a DICOM input and masks (``return_masks=True``); SR needs a DICOM input. Returns
    ``{file stem: path}`` for every file written; skipped files have no key.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    shape = tuple(volume.hu.shape)
    lung = _mask(diagnosis, "lung_mask", shape)
    lesion = _mask(diagnosis, "lesion_mask", shape)
    written: dict[str, Path] = {}

    result = out_dir / "result.json"
    result.write_text(json.dumps(diagnosis.to_dict(), indent=2, default=_json_default) + "\n")
    written[result.stem] = result

    sources = _load_source_datasets(volume, source_datasets)
    if sources is None:
        log.info("%s is not a DICOM series: no seg.dcm, no sr.dcm", volume.source)
    else:
        seg = None
        if lung is None or lesion is None:
            log.info("no masks in the diagnosis (return_masks=False): no seg.dcm")
        else:
            frames = volume.meta.get("source_frames")
            seg = _write_seg(diagnosis, sources, lung, lesion, out_dir / "seg.dcm", frames)
            written["seg"] = out_dir / "seg.dcm"
        _write_sr(diagnosis, sources, seg, out_dir / "sr.dcm")
        written["sr"] = out_dir / "sr.dcm"

    written.update(_write_pngs(diagnosis, volume, lung, lesion, out_dir))
    return written
