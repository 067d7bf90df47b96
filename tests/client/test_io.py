"""DICOM and NIfTI input: round trips of phantoms, sorting by position, refusals."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pydicom
import pytest

from covidet.client import NotCTError, SeriesGeometryError, VolumeError, load_volume
from covidet.client._dicom import read_dicom_series
from covidet.phantom import make_phantom, write_dicom_series, write_nifti


@pytest.fixture(scope="module")
def phantom():
    return make_phantom("CAP", n_slices=12, size=64, seed=4)


def test_dicom_round_trip_sorts_by_position(tmp_path: Path, phantom) -> None:
    files = write_dicom_series(phantom, tmp_path, shuffle_filenames=True)
    # InstanceNumber lies too: reverse it, the reader must not care
    for f in files:
        ds = pydicom.dcmread(f)
        ds.InstanceNumber = 100 - int(ds.InstanceNumber)
        ds.save_as(f)
    vol = read_dicom_series(tmp_path)
    np.testing.assert_array_equal(vol.hu, phantom.hu)
    assert vol.spacing == pytest.approx(phantom.spacing)
    assert vol.meta["series_choice"] == "only series"
    assert "PatientName" not in str(vol.meta) and "PHANTOM" not in str(vol.meta)


def test_largest_series_is_taken(tmp_path: Path, phantom) -> None:
    write_dicom_series(phantom, tmp_path / "a")
    small = make_phantom("CAP", n_slices=3, size=64, seed=5)
    write_dicom_series(small, tmp_path / "b")
    vol = read_dicom_series(tmp_path)
    assert vol.n_slices == 12 and "most slices of 2 series" in vol.meta["series_choice"]


def test_non_ct_is_refused(tmp_path: Path, phantom) -> None:
    for f in write_dicom_series(phantom, tmp_path):
        ds = pydicom.dcmread(f)
        ds.Modality = "MR"
        ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.4"
        ds.save_as(f)
    with pytest.raises(NotCTError, match="not CT"):
        read_dicom_series(tmp_path)


def test_mixed_sizes_are_refused(tmp_path: Path, phantom) -> None:
    write_dicom_series(phantom, tmp_path)
    other = make_phantom("CAP", n_slices=1, size=32, seed=4)
    files = write_dicom_series(other, tmp_path / "x")
    ds = pydicom.dcmread(files[0])
    ds.SeriesInstanceUID = pydicom.dcmread(next(tmp_path.glob("*.dcm"))).SeriesInstanceUID
    ds.save_as(files[0])
    with pytest.raises(SeriesGeometryError, match="slice size"):
        read_dicom_series(tmp_path)


def test_nifti_round_trip_matches_dicom_axes(tmp_path: Path, phantom) -> None:
    write_nifti(phantom.hu, tmp_path / "ct.nii.gz", phantom.spacing)
    vol = load_volume(tmp_path / "ct.nii.gz")
    np.testing.assert_array_equal(vol.hu, phantom.hu)
    assert vol.spacing == pytest.approx(phantom.spacing)


def test_array_input_checks() -> None:
    with pytest.raises(VolumeError, match="needs spacing"):
        load_volume(np.zeros((2, 16, 16)))
    with pytest.raises(VolumeError, match="NaN"):
        load_volume(np.full((2, 16, 16), np.nan), spacing=(1, 1, 1))
    with pytest.raises(VolumeError, match="no such file"):
        load_volume("/nonexistent/scan")
    vol = load_volume(np.full((2, 16, 16), -1000.4), spacing=(1, 1, 1))
    assert vol.hu.dtype == np.int16 and vol.hu[0, 0, 0] == -1000
