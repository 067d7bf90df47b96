"""Write phantoms as a DICOM CT series (pydicom) and as NIfTI (nibabel)."""

from __future__ import annotations

import datetime
from pathlib import Path

import numpy as np

from covidet.phantom._generate import Phantom

__all__ = ["nifti_affine", "write_dicom_series", "write_nifti", "write_phantom_nifti"]

#: Stored pixel = HU - RESCALE_INTERCEPT (unsigned 16-bit).
RESCALE_INTERCEPT = -1024


def _origin(shape: tuple[int, int, int], spacing: tuple[float, float, float]) -> np.ndarray:
    """LPS position (mm) of voxel (0, 0, 0): the phantom is centred on the origin."""
    s, h, w = shape
    dz, dy, dx = spacing
    return np.array([-(w - 1) / 2 * dx, -(h - 1) / 2 * dy, (s - 1) / 2 * dz])


def nifti_affine(shape: tuple[int, int, int], spacing: tuple[float, float, float]) -> np.ndarray:
    """RAS affine for data stored as (column, row, slice) = our array transposed."""
    o = _origin(shape, spacing)
    dz, dy, dx = spacing
    aff = np.diag([-dx, -dy, -dz, 1.0])  # LPS -> RAS flips x and y; slices run superior -> inferior
    aff[:3, 3] = [-o[0], -o[1], o[2]]
    return aff


def write_nifti(volume: np.ndarray, path: str | Path, spacing: tuple[float, float, float]) -> Path:
    """Write a (slice, row, column) volume as NIfTI with a correct RAS affine."""
    import nibabel as nib

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    img = nib.Nifti1Image(
        np.ascontiguousarray(volume.transpose(2, 1, 0)),
        nifti_affine((volume.shape[0], volume.shape[1], volume.shape[2]), spacing),
    )
    img.header.set_xyzt_units("mm")
    nib.save(img, str(path))
    return path


def write_phantom_nifti(phantom: Phantom, folder: str | Path) -> dict[str, Path]:
    """ct.nii.gz, lung.nii.gz and lesion.nii.gz of a phantom."""
    folder = Path(folder)
    return {
        "ct": write_nifti(phantom.hu, folder / "ct.nii.gz", phantom.spacing),
        "lung": write_nifti(phantom.lung_mask, folder / "lung.nii.gz", phantom.spacing),
        "lesion": write_nifti(phantom.lesion_mask, folder / "lesion.nii.gz", phantom.spacing),
    }


def write_dicom_series(
    phantom: Phantom,
    folder: str | Path,
    *,
    patient_name: str = "PHANTOM^COVID",
    patient_id: str | None = None,
    study_uid: str | None = None,
    series_uid: str | None = None,
    shuffle_filenames: bool = False,
) -> list[Path]:
    """One CT Image Storage file per slice; geometry in LPS, slice 0 most superior."""
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    s, h, w = phantom.hu.shape
    dz, dy, dx = phantom.spacing
    origin = _origin((s, h, w), phantom.spacing)
    study_uid = study_uid or generate_uid()
    series_uid = series_uid or generate_uid()
    frame_uid = generate_uid()
    now = datetime.datetime(2026, 1, 1, 12, 0, 0)
    names = list(range(s))
    if shuffle_filenames:
        np.random.default_rng(phantom.seed).shuffle(names)
    paths = []
    stored = (phantom.hu.astype(np.int32) - RESCALE_INTERCEPT).clip(0, 65535).astype(np.uint16)
    for k in range(s):
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = CTImageStorage
        sop_uid = generate_uid()
        meta.MediaStorageSOPInstanceUID = sop_uid
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds = Dataset()
        ds.file_meta = meta
        ds.SOPClassUID, ds.SOPInstanceUID = CTImageStorage, sop_uid
        ds.StudyInstanceUID, ds.SeriesInstanceUID = study_uid, series_uid
        ds.FrameOfReferenceUID = frame_uid
        ds.Modality = "CT"
        ds.PatientName = patient_name
        ds.PatientID = patient_id or f"PH{phantom.seed:06d}"
        ds.PatientBirthDate = "19700101"
        ds.PatientSex = "O"
        ds.StudyDate = ds.SeriesDate = ds.ContentDate = now.strftime("%Y%m%d")
        ds.StudyTime = ds.SeriesTime = ds.ContentTime = now.strftime("%H%M%S")
        ds.AccessionNumber = f"ACC{phantom.seed:06d}"
        ds.StudyID = "1"
        ds.SeriesNumber = 1
        ds.InstanceNumber = k + 1
        ds.SeriesDescription = f"covidet phantom {phantom.kind} seed {phantom.seed}"
        ds.Manufacturer = "covidet phantom generator"
        ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
        ds.ImageOrientationPatient = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0]
        ds.ImagePositionPatient = [float(origin[0]), float(origin[1]), float(origin[2] - k * dz)]
        ds.SliceLocation = float(origin[2] - k * dz)
        ds.PixelSpacing = [float(dy), float(dx)]
        ds.SliceThickness = float(dz)
        ds.SpacingBetweenSlices = float(dz)
        ds.KVP = 120
        ds.RescaleIntercept, ds.RescaleSlope, ds.RescaleType = RESCALE_INTERCEPT, 1, "HU"
        ds.SamplesPerPixel = 1
        ds.PhotometricInterpretation = "MONOCHROME2"
        ds.Rows, ds.Columns = h, w
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 0
        ds.WindowCenter, ds.WindowWidth = -600, 1500
        ds.PixelData = stored[k].tobytes()
        path = folder / f"IM{names[k]:05d}.dcm"
        ds.save_as(path, enforce_file_format=True)
        paths.append(path)
    return paths
