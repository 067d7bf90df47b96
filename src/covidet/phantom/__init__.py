"""Synthetic chest-CT phantoms with ground truth, and writers to NIfTI and DICOM."""

from __future__ import annotations

from covidet.phantom._cohort import write_cohort
from covidet.phantom._generate import Phantom, make_phantom, make_phantom_set
from covidet.phantom._write import (
    nifti_affine,
    write_dicom_series,
    write_nifti,
    write_phantom_nifti,
)

__all__ = [
    "Phantom",
    "make_phantom",
    "make_phantom_set",
    "nifti_affine",
    "write_cohort",
    "write_dicom_series",
    "write_nifti",
    "write_phantom_nifti",
]
