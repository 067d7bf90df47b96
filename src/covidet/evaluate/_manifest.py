"""The evaluation manifest: one CSV row per scan.

Columns (a header row is required; only ``path`` and ``label`` must be there):

- ``scan_id``: a unique name (default: the path);
- ``path``: the DICOM folder/file or NIfTI, relative to the manifest's folder or absolute;
- ``label``: the 4-class label, a class name of `covidet._contract.CLASS_NAMES` (case and
  ``-``/``_``/space ignored) or its index 0-3;
- ``lung_mask``, ``lesion_mask``: optional reference masks (NIfTI on the scan's grid, or a DICOM
  SEG of the series);
- ``patient_id``, ``day``: optional, for the course (serial scans of one patient);
- clinical features: columns named as in `covidet.clinical.CLINICAL_SCHEMA` (an empty cell is
  missing; a row with none of them has no clinical data).
"""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass
from pathlib import Path

from covidet import _contract as C
from covidet.errors import InvalidInputError

__all__ = ["ManifestError", "ManifestRow", "read_manifest"]


class ManifestError(InvalidInputError):
    """The manifest cannot be read: a missing column, an unknown label, a duplicate scan id."""


@dataclass(frozen=True)
class ManifestRow:
    """One scan to evaluate."""

    scan_id: str
    path: Path
    label: int
    lung_mask: Path | None = None
    lesion_mask: Path | None = None
    patient_id: str = ""
    day: float | None = None
    clinical: tuple[float, ...] | None = None

    @property
    def label_name(self) -> str:
        return C.CLASS_NAMES[self.label]


def _norm(name: str) -> str:
    return "".join(ch for ch in name.lower() if ch.isalnum())


_LABELS = {_norm(n): i for i, n in enumerate(C.CLASS_NAMES)}


def parse_label(text: str, where: str) -> int:
    t = text.strip()
    if t.isdigit() and int(t) < len(C.CLASS_NAMES):
        return int(t)
    if _norm(t) in _LABELS:
        return _LABELS[_norm(t)]
    raise ManifestError(f"{where}: unknown label {text!r}; use one of {', '.join(C.CLASS_NAMES)} or 0-3")


def _float(text: str, where: str, column: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise ManifestError(f"{where}: {column} must be a number, got {text!r}") from None


def read_manifest(path: str | Path) -> list[ManifestRow]:
    """The rows of a manifest CSV, paths resolved against its folder."""
    from covidet.clinical._schema import FEATURE_NAMES

    path = Path(path)
    if not path.is_file():
        raise ManifestError(f"{path}: no such manifest file")
    base = path.resolve().parent
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        columns = [c.strip() for c in reader.fieldnames or []]
        missing = {"path", "label"} - set(columns)
        if missing:
            raise ManifestError(f"{path}: the header lacks {', '.join(sorted(missing))} (has {columns})")
        has_clinical = [n for n in FEATURE_NAMES if n in columns]
        rows: list[ManifestRow] = []
        seen: set[str] = set()
        for line, raw in enumerate(reader, start=2):
            rec = {(k or "").strip(): (v or "").strip() for k, v in raw.items()}
            where = f"{path.name} line {line}"
            if not rec.get("path"):
                raise ManifestError(f"{where}: empty path")
            scan_path = _resolve(base, rec["path"])
            scan_id = rec.get("scan_id") or rec["path"]
            if scan_id in seen:
                raise ManifestError(f"{where}: scan id {scan_id!r} appears twice")
            seen.add(scan_id)
            day = _float(rec["day"], where, "day") if rec.get("day") else None
            clinical: tuple[float, ...] | None = None
            if has_clinical and any(rec.get(n) for n in has_clinical):
                clinical = tuple(_float(rec[n], where, n) if rec.get(n) else math.nan for n in FEATURE_NAMES)
            rows.append(
                ManifestRow(
                    scan_id=scan_id,
                    path=scan_path,
                    label=parse_label(rec["label"], where),
                    lung_mask=_resolve(base, rec["lung_mask"]) if rec.get("lung_mask") else None,
                    lesion_mask=_resolve(base, rec["lesion_mask"]) if rec.get("lesion_mask") else None,
                    patient_id=rec.get("patient_id", ""),
                    day=day,
                    clinical=clinical,
                )
            )
    if not rows:
        raise ManifestError(f"{path}: no scans")
    return rows


def _resolve(base: Path, text: str) -> Path:
    p = Path(text).expanduser()
    return p if p.is_absolute() else base / p
