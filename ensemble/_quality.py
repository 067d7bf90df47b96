"""Quality checks on every answer: when a result must not be used, and why.

Each check looks at what the pipeline measured anyway (the lung envelope's extent and volume, its
mean density, the lesion burden, the acquisition's spacing, the models' provenance) and raises a
flag with a severity: ``error`` means the diagnosis must not be used, ``warning`` that it needs a
look, ``info`` is context. The thresholds are deliberately wide: a flag should mean something is
wrong with the scan or the answer, not that the patient is unusual.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from covidet._contract import QualityFlag, quality_from_json, quality_to_json
from covidet.errors import InvalidInputError

__all__ = ["QUALITY_CODES", "ScanMeasures", "check_quality", "with_step_model"]

#: Every code a flag can carry, with what it means (docs/architecture.md lists them too).
QUALITY_CODES: Mapping[str, str] = {
    "LUNG_NOT_COVERED": "the lung touches the first or last slice: the scan does not cover the lungs",
    "NOT_CHEST_CT": "most slices hold no lung: this does not look like a chest CT",
    "LUNG_VOLUME_OUT_OF_RANGE": "the lung volume is outside the adult range",
    "LUNG_DENSITY_HIGH": "the mean HU inside the lung mask is too high for aerated lung",
    "LESION_RATIO_IMPLAUSIBLE": "the lesion burden is implausible for the lung volume",
    "THICK_SLICES": "slices thicker than 5 mm: small lesions are lost to partial volume",
    "COARSE_PIXELS": "pixel spacing over 1.5 mm: the in-plane resolution is too low",
    "DEMO_MODELS": "demo or untrained models answered: not a diagnostic result",
}

#: Adult lung volumes at inspiration on CT, in mL: outside the first range the segmentation or
#: the scan is wrong (error); outside the second it needs a look (warning).
LUNG_ML_ERROR = (1000.0, 10000.0)
LUNG_ML_WARNING = (2000.0, 8500.0)
#: Mean HU of the lung envelope: aerated lung is about -850..-700 HU; even extensive
#: consolidation leaves the mean well below this, so above it the "lung" is mostly soft tissue.
LUNG_MEAN_HU_ERROR = -400.0
LUNG_MEAN_HU_WARNING = -600.0
#: Lung area in an end slice (a fraction of the largest slice's) above which the lung is cut off.
END_SLICE_FRACTION = 0.02
#: Fraction of slices with lung below which the scan is not a chest CT (a chest-abdomen CT
#: still has the lungs in over a third of its slices).
MIN_LUNG_SLICE_FRACTION = 0.35
#: Lesion / lung ratio above which the burden is not credible (the lung model would have missed
#: so much consolidated lung that its envelope is not the lung any more).
MAX_LESION_RATIO = 0.75
#: A lesion ratio above this in a small lung (below LUNG_ML_WARNING's lower bound) is suspect too.
SMALL_LUNG_MAX_RATIO = 0.4
MAX_SLICE_THICKNESS_MM = 5.0
MAX_PIXEL_SPACING_MM = 1.5


@dataclass(frozen=True)
class ScanMeasures:
    """What the checks look at, all measured by the pipeline on the input grid."""

    lung_counts: np.ndarray  #: int [S]: lung envelope pixels per slice
    spacing: tuple[float, float, float]  #: mm: slice, row, column
    lung_ml: float
    lesion_ratio: float
    lung_mean_hu: float  #: NaN when there is no lung
    models: Mapping[str, Mapping[str, Any]]  #: checkpoint metadata by model name


def check_quality(m: ScanMeasures) -> list[QualityFlag]:
    """The flags of one scan, errors first."""
    flags = [
        *_coverage(m.lung_counts),
        *_volume(m.lung_ml),
        *_density(m.lung_mean_hu),
        *_burden(m.lesion_ratio, m.lung_ml),
        *_acquisition(m.spacing),
        *_models(m.models),
    ]
    return _ordered(flags)


def _ordered(flags: list[QualityFlag]) -> list[QualityFlag]:
    """Errors first, then warnings, then info (stable within each)."""
    order = {"error": 0, "warning": 1, "info": 2}
    return sorted(flags, key=lambda f: order[f.severity])


def with_step_model(
    quality: bytes | str | None,
    provenance: bytes | str | None,
    name: str,
    identity: Mapping[str, Any],
    *,
    answered: bool,
) -> bytes:
    """The QUALITY of an answer that a later step (the clinical SVM) added its model to.

    ``quality`` and ``provenance`` are the imaging step's QUALITY and PROVENANCE values (both or
    neither: a step called alone has none); ``identity`` is the later step's model as
    PROVENANCE's entries describe one. Where that model ``answered`` (it changed the answer),
    DEMO_MODELS is made again over all the models, so that one flag names every demo or untrained
    model; otherwise the flags pass unchanged. A malformed input raises `InvalidInputError`.
    """
    if (quality is None) != (provenance is None):
        raise InvalidInputError(
            "QUALITY and PROVENANCE are the imaging step's outputs and come together: send both "
            "(as the covidet ensemble does) or neither"
        )
    try:
        flags = list(quality_from_json(quality)) if quality is not None else []
        models = json.loads(provenance) if provenance is not None else {}
    except (ValueError, KeyError, TypeError) as exc:
        raise InvalidInputError(f"QUALITY and PROVENANCE must be the imaging step's JSON: {exc}") from exc
    if not isinstance(models, dict) or not all(isinstance(v, dict) for v in models.values()):
        raise InvalidInputError("PROVENANCE must be a JSON object of model entries, as the imaging step's")
    if answered:
        rest = [f for f in flags if f.code != "DEMO_MODELS"]
        flags = _ordered([*rest, *_models({**models, name: identity})])
    return quality_to_json(flags)


def _coverage(counts: np.ndarray) -> list[QualityFlag]:
    flags: list[QualityFlag] = []
    peak = int(counts.max()) if counts.size else 0
    if peak == 0:
        return flags
    ends = [name for name, c in (("first", counts[0]), ("last", counts[-1])) if c > END_SLICE_FRACTION * peak]
    if ends:
        flags.append(
            QualityFlag(
                "LUNG_NOT_COVERED",
                "error",
                f"lung reaches the {' and the '.join(ends)} slice: the scan does not cover the whole "
                "lung, so its volume, lesion burden and diagnosis are incomplete; send a scan from "
                "above the apices to below the bases",
            )
        )
    fraction = float(np.count_nonzero(counts)) / counts.size
    if fraction < MIN_LUNG_SLICE_FRACTION:
        flags.append(
            QualityFlag(
                "NOT_CHEST_CT",
                "error",
                f"only {fraction:.0%} of the slices hold lung: this does not look like a chest CT; "
                "check the series sent (body part, scan range)",
            )
        )
    return flags


def _volume(lung_ml: float) -> list[QualityFlag]:
    for severity, (lo, hi) in (("error", LUNG_ML_ERROR), ("warning", LUNG_ML_WARNING)):
        if not lo <= lung_ml <= hi:
            return [
                QualityFlag(
                    "LUNG_VOLUME_OUT_OF_RANGE",
                    severity,
                    f"lung volume {lung_ml:.0f} mL is outside the adult range "
                    f"{lo:.0f}-{hi:.0f} mL: check the lung mask, the scan's coverage and its spacing",
                )
            ]
    return []


def _density(mean_hu: float) -> list[QualityFlag]:
    if not np.isfinite(mean_hu):
        return []
    for severity, limit in (("error", LUNG_MEAN_HU_ERROR), ("warning", LUNG_MEAN_HU_WARNING)):
        if mean_hu > limit:
            return [
                QualityFlag(
                    "LUNG_DENSITY_HIGH",
                    severity,
                    f"mean density inside the lung mask is {mean_hu:.0f} HU, above {limit:.0f} HU: "
                    "the mask covers other tissue than aerated lung, or the values are not HU",
                )
            ]
    return []


def _burden(ratio: float, lung_ml: float) -> list[QualityFlag]:
    small = lung_ml < LUNG_ML_WARNING[0]
    if ratio > MAX_LESION_RATIO or (small and ratio > SMALL_LUNG_MAX_RATIO):
        return [
            QualityFlag(
                "LESION_RATIO_IMPLAUSIBLE",
                "error",
                f"lesion ratio {ratio:.2f} in a lung of {lung_ml:.0f} mL is implausible: the lung "
                "or lesion segmentation failed on this scan; review it by eye",
            )
        ]
    return []


def _acquisition(spacing: tuple[float, float, float]) -> list[QualityFlag]:
    flags: list[QualityFlag] = []
    if spacing[0] > MAX_SLICE_THICKNESS_MM:
        flags.append(
            QualityFlag(
                "THICK_SLICES",
                "warning",
                f"slice spacing {spacing[0]:.1f} mm is over {MAX_SLICE_THICKNESS_MM:.0f} mm: small "
                "and ground-glass lesions are lost to partial volume; send a thin-slice reconstruction",
            )
        )
    if max(spacing[1], spacing[2]) > MAX_PIXEL_SPACING_MM:
        flags.append(
            QualityFlag(
                "COARSE_PIXELS",
                "warning",
                f"pixel spacing {max(spacing[1], spacing[2]):.2f} mm is over {MAX_PIXEL_SPACING_MM} mm: "
                "send the scan at its acquired resolution",
            )
        )
    return flags


def _models(models: Mapping[str, Mapping[str, Any]]) -> list[QualityFlag]:
    weak = sorted(
        name
        for name, meta in models.items()
        if meta.get("variant") == "demo" or not meta.get("trained", True)
    )
    if not weak:
        return []
    return [
        QualityFlag(
            "DEMO_MODELS",
            "warning",
            f"{', '.join(weak)}: demo or untrained models (see PROVENANCE); the answer shows the "
            "system working, it is not a diagnosis",
        )
    ]
