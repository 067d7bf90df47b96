"""``sr.dcm``: Comprehensive 3D SR with a TID 1500 Measurement Report of one diagnosis."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from covidet import _contract as C
from covidet.client._outputs_common import DISCLAIMER, lo, model_info
from covidet.client._result import Diagnosis

__all__ = ["write_sr"]

#: Local coding scheme for concepts with no standard code (DICOM PS3.16: "99" prefix = private).
LOCAL_SCHEME = "99COVIDET"
_SERIES_NUMBER_SR = 9702

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
        f"Key slices {list(diagnosis.topk_slices)}. {DISCLAIMER}; see each model's provenance."
        + ("" if diagnosis.usable else " NOT USABLE: a quality check failed (see the quality checks).")
    )


def write_sr(
    diagnosis: Diagnosis,
    sources: list[Any],
    seg: Any | None,
    path: Path,
    attention: Any | None = None,
    source_frames: Sequence[int] | None = None,
) -> Any:
    import highdicom as hd
    from pydicom.sr.codedict import codes
    from pydicom.uid import generate_uid

    from covidet import __version__

    ml = hd.sr.CodedConcept(value="ml", scheme_designator="UCUM", meaning="milliliter")
    volume_code = codes.SCT.Volume
    lung_site = [hd.sr.FindingSite(anatomic_location=codes.SCT.Lung)]

    def algo(model: str) -> Any:
        info = model_info(diagnosis, model)
        keys = ("architecture", "variant", "sha256", "provenance")
        params = [f"{k}={info[k]}" for k in keys if info.get(k)]
        return hd.sr.AlgorithmIdentification(
            name=lo(f"covidet {model}"),
            version=lo(str(info.get("version", "unknown"))),
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
            name=_local(f"P_CLASS_{i}", lo(f"Top-K fusion probability of {name}")),
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
    # The answer's quality flags, each a TEXT row: an "error" says the diagnosis must not be used
    for flag in diagnosis.quality:
        scan_group[0].ContentSequence.append(
            hd.sr.TextContentItem(
                name=_local("QUALITY_FLAG", "Quality check"),
                value=f"{flag.severity}: {flag.code}: {flag.message}",
                relationship_type=hd.sr.RelationshipTypeValues.CONTAINS,
            )
        )
    # An explained diagnosis: the slices the attention map explains, and its regions
    if diagnosis.attention is not None:
        scan_group[0].ContentSequence.extend(_explained(diagnosis, sources, source_frames))
    groups.append(scan_group)

    observer = hd.sr.ObserverContext(
        observer_type=codes.DCM.Device,
        observer_identifying_attributes=hd.sr.DeviceObserverIdentifyingAttributes(
            uid=generate_uid(),
            name="covidet",
            manufacturer_name="covidet",
            model_name=lo(f"covidet {__version__}"),
        ),
    )
    report = hd.sr.MeasurementReport(
        observation_context=hd.sr.ObservationContext(observer_device_context=observer),
        procedure_reported=hd.sr.CodedConcept("169069000", "SCT", "Computed tomography of chest"),
        imaging_measurements=groups,
    )
    evidence = list(sources) + [d for d in (seg, attention) if d is not None]
    sr = hd.sr.Comprehensive3DSR(
        evidence=evidence,
        content=report,
        series_instance_uid=generate_uid(),
        series_number=_SERIES_NUMBER_SR,
        sop_instance_uid=generate_uid(),
        instance_number=1,
        manufacturer="covidet",
        series_description=lo("covidet measurement report"),
        is_complete=True,
    )
    sr.save_as(path)
    return sr


def _explained(diagnosis: Diagnosis, sources: list[Any], source_frames: Sequence[int] | None) -> list[Any]:
    """Content items of an explained diagnosis: an IMAGE reference to each explained slice's
    source (its instance; for an enhanced CT, ``source_frames`` given, the one instance's frame),
    and a TEXT row per attention region with its area and lesion overlap."""
    import highdicom as hd

    items: list[Any] = []
    contains = hd.sr.RelationshipTypeValues.CONTAINS
    for k, idx in enumerate(dict.fromkeys(diagnosis.topk_slices), start=1):
        if source_frames is not None:
            ds, frame = sources[0], int(source_frames[idx]) + 1
        else:
            ds, frame = sources[idx], None
        items.append(
            hd.sr.ImageContentItem(
                name=_local("EXPLAINED_SLICE", f"Key slice {k} explained by the attention map"),
                referenced_sop_class_uid=ds.SOPClassUID,
                referenced_sop_instance_uid=ds.SOPInstanceUID,
                referenced_frame_numbers=frame,
                relationship_type=contains,
            )
        )
    for region in diagnosis.attention_regions:
        r0, r1, c0, c1 = region.bbox
        items.append(
            hd.sr.TextContentItem(
                name=_local("ATTENTION_REGION", "Attention region"),
                value=(
                    f"slice {region.slice}: {region.area_mm2:.0f} mm2 at rows {r0}-{r1}, columns "
                    f"{c0}-{c1}; {100 * region.lesion_overlap:.0f}% inside the lesion segmentation"
                ),
                relationship_type=contains,
            )
        )
    return items
