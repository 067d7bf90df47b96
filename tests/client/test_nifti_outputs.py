"""Outputs of a NIfTI scan (issue 14 item 7): orientation from the affine, files written, no crash."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np
import pytest
from test_outputs import _diagnosis  # tests/client is on sys.path (pytest prepend import mode)

from covidet.client import Volume, load_volume
from covidet.client._outputs import write_outputs
from covidet.client._png import AXIAL, _axial_ok, _orientation
from covidet.phantom import make_phantom


@pytest.fixture(scope="module")
def phantom() -> Any:
    return make_phantom("COVID-19", n_slices=10, size=48, seed=5)


def _write(hu: np.ndarray, spacing: tuple[float, float, float], path: Path, storage: str) -> Path:
    """``hu`` [slice S->I, row A->P, column R->L] stored with LPS or RAS data axes (i, j, k)."""
    dz, dy, dx = spacing
    if storage == "LPS":  # i to the patient's left, j posterior, k superior (DICOM-like)
        data, affine = hu.transpose(2, 1, 0)[:, :, ::-1], np.diag([-dx, -dy, dz, 1.0])
    else:  # RAS: i to the right, j anterior, k superior
        data, affine = hu[::-1, ::-1, ::-1].transpose(2, 1, 0), np.diag([dx, dy, dz, 1.0])
    nib.save(nib.Nifti1Image(np.ascontiguousarray(data), affine), str(path))
    return path


@pytest.mark.parametrize("storage", ["LPS", "RAS"])
def test_nifti_outputs_written_with_orientation_from_the_affine(
    phantom: Any, tmp_path: Path, storage: str
) -> None:
    hu = phantom.hu.copy()
    hu[:, 20:28, 2:6] = 900  # a dense marker on the patient's right: image left, low columns
    volume = load_volume(_write(hu, phantom.spacing, tmp_path / f"ct_{storage}.nii.gz", storage))
    np.testing.assert_array_equal(volume.hu, hu)
    assert volume.meta["orientation"] == "RAS canonical"  # what the reader stores: a name, no cosines
    np.testing.assert_allclose(_orientation(volume), AXIAL, atol=1e-9)
    assert _axial_ok(volume)

    written = write_outputs(_diagnosis(phantom, volume.source), volume, tmp_path / "out")
    assert set(written) == {"result", "keyimage_1", "keyimage_2", "keyimage_3", "coronal"}
    assert all(p.is_file() and p.stat().st_size > 0 for p in written.values())


def test_oblique_nifti_gets_no_left_right_labels_but_its_outputs(phantom: Any, tmp_path: Path) -> None:
    dz, dy, dx = phantom.spacing
    c, s = np.cos(np.radians(30)), np.sin(np.radians(30))
    affine = np.diag([dx, dy, dz, 1.0])
    affine[:2, :2] = np.array([[c, -s], [s, c]]) @ np.diag([dx, dy])  # rotated 30 degrees about z
    data = phantom.hu[::-1, ::-1, ::-1].transpose(2, 1, 0)
    nib.save(nib.Nifti1Image(np.ascontiguousarray(data), affine), str(tmp_path / "oblique.nii.gz"))
    volume = load_volume(tmp_path / "oblique.nii.gz")
    orient = _orientation(volume)
    assert orient is not None and np.allclose(orient, [c, s, 0, -s, c, 0], atol=1e-9)
    assert not _axial_ok(volume)
    written = write_outputs(_diagnosis(phantom, volume.source), volume, tmp_path / "out")
    assert {"result", "coronal", "keyimage_1"} <= set(written)


@pytest.mark.parametrize(
    ("meta", "axial"),
    [
        ({"orientation": [1, 0, 0, 0, 1, 0]}, True),  # DICOM ImageOrientationPatient
        ({"orientation": [-1, 0, 0, 0, 1, 0]}, False),  # columns run to the patient's right
        ({"orientation": "RAS canonical"}, False),  # no affine: orientation unknown
        ({"orientation": "RAS canonical", "affine": [[1, 0], [0, 1]]}, False),
        ({"orientation": "something else", "affine": np.eye(4).tolist()}, False),
        ({"orientation": ["a", "b"]}, False),
        ({}, False),
    ],
)
def test_orientation_of_what_readers_store(meta: dict[str, Any], axial: bool) -> None:
    volume = Volume(np.zeros((2, 8, 8), np.int16), (1.0, 1.0, 1.0), meta=meta)
    assert _axial_ok(volume) is axial
