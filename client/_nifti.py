"""NIfTI input through nibabel, reoriented to covidet's (slice S->I, row A->P, column R->L)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from covidet.client._volume import Volume, VolumeError, _as_int16

__all__ = ["read_nifti"]


def read_nifti(path: str | Path) -> Volume:
    """Read a NIfTI CT; the returned axes match the DICOM reader's for the same data.

    The image is brought to RAS+ (``as_closest_canonical``): data axes (i: towards Right,
    j: towards Anterior, k: towards Superior). covidet's axes are all three reversed and
    transposed: slice = superior first, row = anterior first, column = patient right first.
    """
    import nibabel as nib

    path = Path(path)
    try:
        img = nib.as_closest_canonical(nib.load(str(path)))
    except Exception as exc:  # nibabel raises several types for unreadable files
        raise VolumeError(f"{path}: not a readable NIfTI file ({exc})") from exc
    if len(img.shape) != 3:
        raise VolumeError(f"{path}: expected a 3D image, got shape {img.shape}")
    data = np.asanyarray(img.dataobj)
    hu = _as_int16(np.ascontiguousarray(data[::-1, ::-1, ::-1].transpose(2, 1, 0)), str(path))
    zi, zj, zk = (float(z) for z in img.header.get_zooms()[:3])
    return Volume(
        hu=hu,
        spacing=(zk, zj, zi),
        source=str(path),
        meta={"format": "nifti", "orientation": "RAS canonical", "affine": img.affine.tolist()},
    )
