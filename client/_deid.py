"""De-identified copies of DICOM series for research use (PS3.15 basic profile, via dicognito).

The client never sends identifiers to the server (only pixels and geometry); this is for sharing
the series themselves.
"""

from __future__ import annotations

from pathlib import Path

__all__ = ["DEID_METHOD", "write_deidentified_copy"]

DEID_METHOD = "covidet+dicognito: PS3.15 basic profile, private tags removed"


def write_deidentified_copy(
    source: str | Path, out_dir: str | Path, *, seed: str | None = None
) -> list[Path]:
    """Write a de-identified copy of every DICOM file under ``source`` into ``out_dir``.

    Names, IDs, dates, institutions and the like are replaced consistently across the files (so
    the copy is still one study/series with valid, re-mapped UIDs); private tags are removed;
    PatientIdentityRemoved is set. ``seed`` makes the replacement reproducible.
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
        anonymizer.anonymize(ds)
        ds.remove_private_tags()
        ds.PatientIdentityRemoved = "YES"
        ds.DeidentificationMethod = DEID_METHOD
        target = out / f"IM{i:05d}.dcm"
        ds.save_as(target, enforce_file_format=True)
        written.append(target)
    return written
