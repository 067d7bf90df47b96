"""Compressed transfer syntaxes decode through the pylibjpeg/pyjpegls plugins; pydicom's own CT."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.data import get_testdata_file
from pydicom.uid import JPEG2000Lossless, JPEGLSLossless, RLELossless

from covidet.client import load_volume
from covidet.client._dicom import read_dicom_series
from covidet.phantom import make_phantom, write_dicom_series


@pytest.mark.parametrize("syntax", [RLELossless, JPEGLSLossless, JPEG2000Lossless], ids=str)
def test_compressed_series_decode_exactly(tmp_path: Path, syntax: pydicom.uid.UID) -> None:
    ph = make_phantom("COVID-19", n_slices=6, size=64, seed=3)
    for f in write_dicom_series(ph, tmp_path, shuffle_filenames=True):
        ds = pydicom.dcmread(f)
        ds.compress(syntax)
        ds.save_as(f)
    assert pydicom.dcmread(next(tmp_path.glob("*.dcm"))).file_meta.TransferSyntaxUID == syntax
    vol = read_dicom_series(tmp_path)
    np.testing.assert_array_equal(vol.hu, ph.hu)


def test_pydicom_ct_small_reads_as_hu(tmp_path: Path) -> None:
    path = Path(str(get_testdata_file("CT_small.dcm")))
    ds = pydicom.dcmread(path)
    vol = load_volume(path)
    assert vol.hu.shape == (1, int(ds.Rows), int(ds.Columns))
    expected = ds.pixel_array * float(ds.RescaleSlope) + float(ds.RescaleIntercept)
    np.testing.assert_array_equal(vol.hu[0], expected.astype(np.int16))
    assert vol.spacing[1:] == pytest.approx(tuple(float(v) for v in ds.PixelSpacing))
