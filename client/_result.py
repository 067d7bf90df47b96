"""The typed result of a diagnosis."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from covidet import _contract as C

__all__ = ["Diagnosis", "SliceScore", "parse_outputs"]


@dataclass(frozen=True)
class SliceScore:
    """One classified slice of an explained diagnosis: how much it looks infected."""

    slice: int  #: input slice index
    p_pneumonia: float  #: the classifier's P(any pneumonia class) for the slice
    lesion_mm2: float  #: lesion area the lesion model found in the slice, mm^2


@dataclass(frozen=True)
class Diagnosis:
    """One scan's answer. Field ``x`` comes from the contract's output tensor ``X``."""

    p_viral: float
    p_covid_given_viral: float
    p_covid_stepwise: float
    class_probs: dict[str, float]
    topk_slices: tuple[int, ...]
    lung_volume_ml: float
    lesion_volume_ml: float
    lesion_ratio: float
    n_slices_used: int
    provenance: dict[str, Any]
    #: what the server's quality checks found, errors first (`covidet._contract.QualityFlag`)
    quality: tuple[C.QualityFlag, ...] = ()
    p_svm: float | None = None
    p_covid_fused: float | None = None
    lung_mask: np.ndarray | None = field(default=None, repr=False)
    lesion_mask: np.ndarray | None = field(default=None, repr=False)
    #: with ``explain``: the predicted class's attention on ``topk_slices`` (K x H x W, 0-255)
    attention: np.ndarray | None = field(default=None, repr=False)
    #: with ``explain``: how ``attention`` was computed (``method``) and Jin et al.'s binarised
    #: attention regions, with their lesion overlap (``regions``)
    explanation: C.Explanation | None = None
    #: with ``explain``: every classified slice's scores, in slice order
    slice_scores: tuple[SliceScore, ...] = ()
    latency_s: float = 0.0
    source: str = ""
    n_slices: int = 0

    @property
    def predicted_class(self) -> str:
        return max(self.class_probs, key=self.class_probs.__getitem__)

    @property
    def attention_regions(self) -> tuple[C.AttentionRegion, ...]:
        """The explanation's attention regions (none for an unexplained answer)."""
        return self.explanation.regions if self.explanation is not None else ()

    @property
    def usable(self) -> bool:
        """False when a quality flag of severity ``error`` says the diagnosis must not be used."""
        return not any(f.severity == "error" for f in self.quality)

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe summary (no masks)."""
        return {
            "source": self.source,
            "n_slices": self.n_slices,
            "predicted_class": self.predicted_class,
            "class_probs": self.class_probs,
            "p_viral": self.p_viral,
            "p_covid_given_viral": self.p_covid_given_viral,
            "p_covid_stepwise": self.p_covid_stepwise,
            "topk_slices": list(self.topk_slices),
            "lung_volume_ml": self.lung_volume_ml,
            "lesion_volume_ml": self.lesion_volume_ml,
            "lesion_ratio": self.lesion_ratio,
            "p_svm": self.p_svm,
            "p_covid_fused": self.p_covid_fused,
            "n_slices_used": self.n_slices_used,
            "latency_s": self.latency_s,
            "provenance": self.provenance,
            "usable": self.usable,
            "quality": [f.to_json() for f in self.quality],
            **(
                {
                    "attention_method": self.explanation.method,
                    "attention_regions": [r.to_json() for r in self.explanation.regions],
                    "slice_scores": [asdict(s) for s in self.slice_scores],
                }
                if self.explanation is not None
                else {}
            ),
        }


#: The flag of an answer from a server that ran no quality checks (an older covidet).
_UNCHECKED = C.QualityFlag(
    "NO_QUALITY_CHECKS",
    "warning",
    "the server returned no QUALITY output, so nothing checked whether this answer may be used; "
    "upgrade the covidet server",
)


def parse_outputs(
    as_numpy: Callable[[str], np.ndarray | None], *, latency_s: float, source: str, n_slices: int
) -> Diagnosis:
    """Build a `Diagnosis` from a result's ``as_numpy(name)`` (tritonclient gRPC or HTTP)."""
    values: dict[str, Any] = {"slice_scores": _slice_scores(as_numpy)}
    provenance: dict[str | None, Any] = {}
    for spec in C.ENSEMBLE.outputs:
        if spec.name in _SCORE_OUTPUTS:
            continue
        arr = as_numpy(spec.name)
        key = spec.name.lower()
        if spec.name in _PROVENANCE_OUTPUTS:
            if arr is not None:
                raw = arr.reshape(-1)[0]
                text = raw.decode() if isinstance(raw, bytes) else str(raw)
                provenance[_PROVENANCE_OUTPUTS[spec.name]] = json.loads(text)
        elif spec.name == "EXPLANATION":
            values[key] = None if arr is None else C.Explanation.from_json(arr.reshape(-1)[0])
        elif arr is None and spec.name == "QUALITY":  # a server older than the quality checks
            values[key] = (_UNCHECKED,)
        elif arr is None:
            values[key] = None
        elif spec.name == "CLASS_PROBS":
            values[key] = {n: float(p) for n, p in zip(C.CLASS_NAMES, arr.reshape(-1), strict=True)}
        elif spec.name == "TOPK_SLICES":
            values[key] = tuple(int(i) for i in arr.reshape(-1))
        elif spec.name == "QUALITY":
            values[key] = C.quality_from_json(arr.reshape(-1)[0])
        elif spec.dtype == "UINT8":
            values[key] = arr if arr.size else None
        elif spec.dtype == "INT32":
            values[key] = int(arr.reshape(-1)[0])
        else:
            value = float(arr.reshape(-1)[0])
            values[key] = None if np.isnan(value) else value
    # the pipeline's models, and the clinical SVM under its model name (a server older than
    # SVM_PROVENANCE answers without it)
    pipeline = provenance.pop(None, None)
    values["provenance"] = {**(pipeline if isinstance(pipeline, dict) else {}), **provenance}
    return Diagnosis(**values, latency_s=latency_s, source=source, n_slices=n_slices)


#: Outputs that each give the provenance of some models: None = a dict of them by model name
#: (the pipeline's), a name = that one model's.
_PROVENANCE_OUTPUTS: dict[str, str | None] = {"PROVENANCE": None, "SVM_PROVENANCE": C.CLINICAL_SVM.name}


#: The explanation's per-slice outputs, gathered into `Diagnosis.slice_scores`.
_SCORE_OUTPUTS = ("SELECTED_SLICES", "SLICE_SCORES", "SLICE_LESION_MM2")


def _slice_scores(as_numpy: Callable[[str], np.ndarray | None]) -> tuple[SliceScore, ...]:
    arrays = [as_numpy(name) for name in _SCORE_OUTPUTS]
    if any(a is None for a in arrays):
        return ()
    slices, scores, areas = (np.asarray(a).reshape(-1) for a in arrays)  # type: ignore[arg-type]
    return tuple(
        SliceScore(int(i), float(p), float(a)) for i, p, a in zip(slices, scores, areas, strict=True)
    )
