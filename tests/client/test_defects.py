"""Series defects: each gives the right result or its specific error, never silent geometry."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pydicom
import pytest

from covidet.client import DuplicatePositionError, SeriesGeometryError, SliceSpacingError
from covidet.client._dicom import read_dicom_series
from covidet.client._volume import VolumeError
from covidet.phantom import make_phantom, write_dicom_series


@pytest.fixture
def series(tmp_path: Path) -> tuple[Path, list[Path], object]:
    ph = make_phantom("CAP", n_slices=10, size=32, seed=2)
    return tmp_path, write_dicom_series(ph, tmp_path), ph


def test_gap_is_reported_by_policy(series: tuple[Path, list[Path], object]) -> None:
    folder, files, _ = series
    files[4].unlink()
    with pytest.warns(UserWarning, match="gap in the series"):
        vol = read_dicom_series(folder)
    assert vol.n_slices == 9 and "gap" in vol.meta["defects"][0]
    with pytest.raises(SliceSpacingError, match="gap"):
        read_dicom_series(folder, policy="raise")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        read_dicom_series(folder, policy="ignore")


def test_load_volume_takes_the_policy_and_the_series(series: tuple[Path, list[Path], object]) -> None:
    import covidet.client as client

    folder, files, ph = series
    files[4].unlink()
    # the public API: a site that must not measure on a gapped series asks for the error
    with pytest.raises(client.SliceSpacingError, match="gap") as info:
        client.load_volume(folder, policy="raise")
    assert isinstance(info.value, client.SeriesGeometryError) and isinstance(info.value, client.VolumeError)
    with pytest.raises(client.SliceSpacingError):
        client.load_volume(sorted(folder.glob("*.dcm")), policy="raise")  # a list of files too
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        vol = client.load_volume(folder, policy="ignore")
    assert vol.series_uid is not None
    assert client.load_volume(folder, series_uid=vol.series_uid, policy="ignore").n_slices == 9
    with pytest.raises(VolumeError, match="series"):
        client.load_volume(folder, series_uid="1.2.3.4", policy="ignore")
    with pytest.raises(ValueError, match="policy must be one of"):
        client.load_volume(folder, policy="strict")
    from covidet.phantom import write_nifti

    nifti = write_nifti(ph.hu, folder.parent / "one.nii.gz", ph.spacing)  # type: ignore[attr-defined]
    with pytest.raises(VolumeError, match="a NIfTI file holds one volume"):
        client.load_volume(nifti, series_uid=vol.series_uid)


def test_duplicate_position_is_an_error(series: tuple[Path, list[Path], object]) -> None:
    folder, files, _ = series
    ds = pydicom.dcmread(files[3])
    ds.SOPInstanceUID = pydicom.uid.generate_uid()
    ds.save_as(folder / "copy.dcm")
    with pytest.raises(DuplicatePositionError, match="share the position"):
        read_dicom_series(folder)


def test_localizer_is_ignored_and_reported(series: tuple[Path, list[Path], object]) -> None:
    folder, files, ph = series
    ds = pydicom.dcmread(files[0])
    ds.ImageType = ["ORIGINAL", "PRIMARY", "LOCALIZER"]
    ds.SOPInstanceUID = pydicom.uid.generate_uid()
    ds.ImageOrientationPatient = [1, 0, 0, 0, 0, -1]
    ds.save_as(folder / "scout.dcm")
    vol = read_dicom_series(folder)
    np.testing.assert_array_equal(vol.hu, ph.hu)
    assert "localizer" in vol.meta["defects"][0]


def test_gantry_tilt_is_reported(series: tuple[Path, list[Path], object]) -> None:
    folder, files, _ = series
    for k, f in enumerate(files):
        ds = pydicom.dcmread(f)
        x, y, z = (float(v) for v in ds.ImagePositionPatient)
        ds.ImagePositionPatient = [x, y + 0.5 * k, z]  # sheared along y: a tilted gantry
        ds.save_as(f)
    with pytest.raises(SeriesGeometryError, match="gantry tilt"):
        read_dicom_series(folder, policy="raise")


def test_missing_uids_are_tolerated(series: tuple[Path, list[Path], object]) -> None:
    folder, files, ph = series
    for f in files:
        ds = pydicom.dcmread(f)
        ds.SeriesInstanceUID = ""
        ds.save_as(f)
    vol = read_dicom_series(folder)
    np.testing.assert_array_equal(vol.hu, ph.hu)
    assert vol.series_uid is None


def test_bad_policy(series: tuple[Path, list[Path], object]) -> None:
    with pytest.raises(ValueError, match="policy"):
        read_dicom_series(series[0], policy="maybe")


def test_dicomdir_is_followed(tmp_path: Path) -> None:
    from pydicom.fileset import FileSet

    ph = make_phantom("influenza", n_slices=5, size=32, seed=9)
    files = write_dicom_series(ph, tmp_path / "src")
    fs = FileSet()
    for f in files:
        fs.add(pydicom.dcmread(f))
    fs.write(tmp_path / "media")
    vol = read_dicom_series(tmp_path / "media" / "DICOMDIR")
    np.testing.assert_array_equal(vol.hu, ph.hu)


def test_an_explicit_list_of_files_is_one_series(series: tuple[Path, list[Path], object]) -> None:
    from covidet.client import load_volume

    folder, files, ph = series
    (folder / "other.txt").write_text("not DICOM, not listed")
    shuffled = [files[i] for i in (3, 0, 9, 5, 1, 8, 2, 7, 4, 6)]
    vol = load_volume([str(f) for f in shuffled])
    np.testing.assert_array_equal(vol.hu, ph.hu)  # sorted by position, not by list order
    part = read_dicom_series(files[:4] + files[5:8], policy="ignore")  # only the listed files count
    assert part.n_slices == 7 and "gap" in part.meta["defects"][0]
    with pytest.raises(VolumeError, match="do not exist"):
        read_dicom_series([*files[:3], folder / "missing.dcm"])
    with pytest.raises(VolumeError, match="empty list"):
        read_dicom_series([])
