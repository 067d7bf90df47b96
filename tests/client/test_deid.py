"""De-identified copies keep pixels and geometry and lose every identifier; the wire carries none."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pydicom

from covidet import _contract as C
from covidet.client._core import build_inputs
from covidet.client._deid import write_deidentified_copy
from covidet.client._dicom import read_dicom_series
from covidet.phantom import make_phantom, write_dicom_series

IDENTIFIERS = ["DOE^JANE", "ID-4711", "19610203", "ACC-99", "St Elsewhere"]


def _series(folder: Path):
    ph = make_phantom("COVID-19", n_slices=6, size=32, seed=8)
    for f in write_dicom_series(ph, folder, patient_name="DOE^JANE", patient_id="ID-4711"):
        ds = pydicom.dcmread(f)
        ds.PatientBirthDate = "19610203"
        ds.AccessionNumber = "ACC-99"
        ds.InstitutionName = "St Elsewhere"
        ds.add_new(0x00091010, "LO", "private ID-4711")
        ds.save_as(f)
    return ph


def test_copy_has_no_identifiers_and_same_image(tmp_path: Path) -> None:
    ph = _series(tmp_path / "in")
    files = write_deidentified_copy(tmp_path / "in", tmp_path / "out", seed="s")
    assert len(files) == 6
    for f in files:
        raw = f.read_bytes()
        assert not any(s.encode() in raw for s in IDENTIFIERS), f
        ds = pydicom.dcmread(f)
        assert ds.PatientIdentityRemoved == "YES"
    vol = read_dicom_series(tmp_path / "out")
    np.testing.assert_array_equal(vol.hu, ph.hu)
    assert len({pydicom.dcmread(f).SeriesInstanceUID for f in files}) == 1


def test_only_pixels_and_geometry_cross_the_wire() -> None:
    hu = np.zeros((2, 16, 16), np.int16)
    inputs = build_inputs(hu, (1.0, 1.0, 1.0), False, "grpc")
    names = [i.name() for i in inputs]
    assert names == [t.name for t in C.ENSEMBLE.inputs[:3]]
    assert all(i.datatype() in ("INT16", "FP32", "BOOL") for i in inputs)
