"""De-identified copies of DICOM series for research use (PS3.15 basic profile, via dicognito).

The client never sends identifiers to the server (only pixels and geometry); this is for sharing
the series themselves.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

__all__ = ["DEID_METHOD", "write_deidentified_copy"]

DEID_METHOD = "covidet+dicognito: PS3.15 basic profile, private tags removed"


def write_deidentified_copy(
    source: str | Path, out_dir: str | Path, *, seed: str | None = None
) -> list[Path]:
    """Write a de-identified copy of every DICOM file under ``source`` into ``out_dir``.

    Names, IDs, dates, institutions and the like are replaced consistently across the files (so
    the copy is still one study/series with valid, re-mapped UIDs); private tags are removed;
    PatientIdentityRemoved is set. An instance without a SOPInstanceUID gets one (also as its file
    meta's MediaStorageSOPInstanceUID), so that results (SEG, SR) can reference every slice of
    the copy. ``seed`` makes the replacement reproducible.
    """
    import pydicom
    from dicognito.anonymizer import Anonymizer
    from pydicom.errors import InvalidDicomError

    from covidet.client._dicom import _files

    anonymizer = Anonymizer(seed=seed)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for i, path in enumerate(_files(Path(source))):
        try:
            ds = pydicom.dcmread(path)
        except (InvalidDicomError, OSError):
            continue
        _ensure_instance_uid(ds, seed, i)
        anonymizer.anonymize(ds)
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        ds.remove_private_tags()
        ds.PatientIdentityRemoved = "YES"
        ds.DeidentificationMethod = DEID_METHOD
        target = out / f"IM{i:05d}.dcm"
        ds.save_as(target, enforce_file_format=True)
        written.append(target)
    return written


def _ensure_instance_uid(ds: Any, seed: str | None, index: int) -> None:
    """Give ``ds`` a SOPInstanceUID where it has none (reproducible with ``seed``)."""
    from pydicom.dataset import FileMetaDataset
    from pydicom.uid import generate_uid

    if not str(getattr(ds, "SOPInstanceUID", "") or ""):
        entropy = None if seed is None else [seed, str(index), str(getattr(ds, "InstanceNumber", ""))]
        ds.SOPInstanceUID = generate_uid(entropy_srcs=entropy)
    if getattr(ds, "file_meta", None) is None:
        ds.file_meta = FileMetaDataset()
