"""Preprocessing records: how a checkpoint's inputs must be prepared, as typed, validated data.

Standard library only (no torch, no numpy): the server-side pipeline and the checkpoint loader
both read it, and the pipeline's processes must not import torch for it.

A record travels with the weights (in the checkpoint's metadata JSON, under ``preprocessing``) and
is read back with `record_from_json`, which refuses a record that is incomplete, has unknown
fields or impossible values, so a wrong record fails at load rather than as a silently wrong
input. One record kind per input kind; the serving code reads attributes, never string keys.
The papers' settings are written once, in `default_records`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, TypeVar

from covidet import _contract as C
from covidet._fields import field_mismatch
from covidet.errors import ArtifactError

__all__ = [
    "SELECTION_RULES",
    "FeaturesRecord",
    "LesionRecord",
    "LungRecord",
    "PreprocessingRecord",
    "RecordError",
    "SliceRecord",
    "as_kind",
    "default_records",
    "record_from_json",
    "record_to_json",
]

#: How the classifier's slices are picked among the valid ones (`SliceRecord.selection`).
#: ``even``: ``n_slices`` spread evenly from the first to the last valid slice, so the lung bases
#: (where COVID-19 lesions mostly are) are always represented. ``jin_stride``: Jin et al.'s rule,
#: ``valid[0::max(n_valid // n_slices, 1)][:n_slices]``, which leaves out up to half of the lung at
#: its lower end; kept for reproducing their checkpoints.
SELECTION_RULES = ("even", "jin_stride")


class RecordError(ArtifactError):
    """A preprocessing record is incomplete or impossible: fix the checkpoint's metadata JSON."""


def _size(value: Any, where: str) -> tuple[int, int]:
    size = tuple(int(v) for v in value)
    if len(size) != 2 or min(size) < 1:
        raise RecordError(f"{where}: input_size must be two positive integers [height, width], got {value!r}")
    return (size[0], size[1])


def _window(value: Any, where: str) -> tuple[float, float]:
    lo, hi = (float(v) for v in value)
    if not lo < hi:
        raise RecordError(f"{where}: hu_window must be [low, high] with low < high, got {value!r}")
    return (lo, hi)


@dataclass(frozen=True)
class LungRecord:
    """Jin et al.'s lung U-Net input: max(HU, hu_min) / divisor, resized to input_size."""

    KIND: ClassVar[str] = "lung_unet"
    hu_min: float
    divisor: float
    input_size: tuple[int, int]

    def __post_init__(self) -> None:
        object.__setattr__(self, "input_size", _size(self.input_size, self.KIND))
        if float(self.divisor) == 0.0:
            raise RecordError(f"{self.KIND}: divisor must not be 0")


@dataclass(frozen=True)
class SliceRecord:
    """Jin et al.'s classifier slices: slices with more than ``min_lung_pixels`` lung pixels (at
    ``reference_pixels``' in-plane area), ``n_slices`` of them picked by ``selection``, window
    ``hu_window``, three channels resized to ``input_size``."""

    KIND: ClassVar[str] = "jin_slices"
    hu_window: tuple[float, float]
    input_size: tuple[int, int]
    min_lung_pixels: int
    reference_pixels: int
    n_slices: int
    selection: str = "even"

    def __post_init__(self) -> None:
        object.__setattr__(self, "hu_window", _window(self.hu_window, self.KIND))
        object.__setattr__(self, "input_size", _size(self.input_size, self.KIND))
        if self.n_slices < 1 or self.reference_pixels < 1 or self.min_lung_pixels < 0:
            raise RecordError(
                f"{self.KIND}: n_slices and reference_pixels must be >= 1 and min_lung_pixels >= 0, "
                f"got {self.n_slices}, {self.reference_pixels}, {self.min_lung_pixels}"
            )
        if self.selection not in SELECTION_RULES:
            raise RecordError(
                f"{self.KIND}: unknown selection rule {self.selection!r}; valid: {', '.join(SELECTION_RULES)}"
            )


@dataclass(frozen=True)
class LesionRecord:
    """The lesion model's input: ``hu_window`` scaled to [0, 1], resized to ``input_size``."""

    KIND: ClassVar[str] = "lung_window"
    hu_window: tuple[float, float]
    input_size: tuple[int, int]

    def __post_init__(self) -> None:
        object.__setattr__(self, "hu_window", _window(self.hu_window, self.KIND))
        object.__setattr__(self, "input_size", _size(self.input_size, self.KIND))


@dataclass(frozen=True)
class FeaturesRecord:
    """The GRU's input: the slice encoder's features, in slice order (nothing to prepare)."""

    KIND: ClassVar[str] = "features"


PreprocessingRecord = LungRecord | SliceRecord | LesionRecord | FeaturesRecord
_KINDS: dict[str, type[PreprocessingRecord]] = {
    cls.KIND: cls for cls in (LungRecord, SliceRecord, LesionRecord, FeaturesRecord)
}


R = TypeVar("R", LungRecord, SliceRecord, LesionRecord, FeaturesRecord)


def as_kind(record: PreprocessingRecord, kind: type[R], where: str = "record") -> R:
    """``record``, which must be a ``kind`` record (e.g. the lung model's must be a `LungRecord`)."""
    if not isinstance(record, kind):
        raise RecordError(f"{where}: expected a {kind.KIND} preprocessing record, got {record.KIND}")
    return record


def record_from_json(data: Mapping[str, Any]) -> PreprocessingRecord:
    """The typed record of a metadata JSON's ``preprocessing`` object, validated."""
    fields = dict(data)
    kind = fields.pop("kind", None)
    if kind not in _KINDS:
        raise RecordError(f"unknown preprocessing kind {kind!r}; valid: {', '.join(_KINDS)}")
    cls = _KINDS[kind]
    mismatch = field_mismatch(cls, fields)
    if mismatch:
        raise RecordError(f"{kind} record: {mismatch}")
    try:
        return cls(**fields)
    except (TypeError, ValueError) as exc:
        raise RecordError(f"{kind} record: {exc}") from exc


def record_to_json(record: PreprocessingRecord) -> dict[str, Any]:
    """The JSON object of a record (``kind`` first), as checkpoint metadata stores it."""
    out: dict[str, Any] = {"kind": record.KIND}
    for f in dataclasses.fields(record):
        value = getattr(record, f.name)
        out[f.name] = list(value) if isinstance(value, tuple) else value
    return out


def default_records() -> dict[str, PreprocessingRecord]:
    """The papers' record of each model, keyed by contract model name (the demo input sizes)."""
    slices = SliceRecord(
        # Jin et al.: lung > 500 px at 512x512, 35 slices, window -1200..500, 224x224
        hu_window=(-1200.0, 500.0),
        input_size=(224, 224),
        min_lung_pixels=500,
        reference_pixels=512 * 512,
        n_slices=35,
        # covidet's rule; "jin_stride" reproduces theirs
        selection="even",
    )
    return {
        # Jin et al.: lung U-Net input = max(HU, -1024) / 255 (demo input size 128; full 512)
        C.LUNG_SEG.name: LungRecord(hu_min=-1024.0, divisor=255.0, input_size=(128, 128)),
        C.SLICE_CLASSIFIER.name: slices,
        C.SLICE_ENCODER.name: slices,
        # ours (no public code exists): lung window scaled to [0, 1]
        C.LESION_SEG.name: LesionRecord(hu_window=(-1200.0, 300.0), input_size=(256, 256)),
        C.GRU_FUSION.name: FeaturesRecord(),
    }
