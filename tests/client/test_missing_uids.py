"""A DICOM series whose instances lack SOPInstanceUID (issue 14 item 8): no SEG/SR, and it says so."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pydicom
import pytest
from test_outputs import _diagnosis  # tests/client is on sys.path (pytest prepend import mode)

import covidet.client
from covidet.cli._diagnose import main_diagnose
from covidet.client._dicom import read_dicom_series
from covidet.client._outputs import write_outputs
from covidet.phantom import make_phantom, write_dicom_series


@pytest.fixture(scope="module")
def series(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    root = tmp_path_factory.mktemp("nouid")
    phantom = make_phantom("COVID-19", n_slices=6, size=48, seed=7)
    for f in write_dicom_series(phantom, root / "dicom"):
        ds = pydicom.dcmread(f)
        del ds.SOPInstanceUID
        ds.save_as(f)
    return {"root": root / "dicom", "phantom": phantom}


def test_warning_says_why_and_what_to_do(
    series: dict[str, Any], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    volume = read_dicom_series(series["root"])
    assert volume.meta["format"] == "dicom" and not any(volume.meta["sop_instance_uids"])
    told: list[str] = []
    with caplog.at_level(logging.INFO, logger="covidet.client"):
        written = write_outputs(
            _diagnosis(series["phantom"], volume.source), volume, tmp_path, on_warning=told.append
        )
    assert "seg" not in written and "sr" not in written
    assert {"result", "coronal", "keyimage_1"} <= set(written)
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and told == warnings
    assert "6 of its 6 slices" in warnings[0] and "without a SOPInstanceUID" in warnings[0]
    assert "no seg.dcm, no sr.dcm" in warnings[0] and "covidet deidentify SRC OUT" in warnings[0]
    assert not any("not a DICOM series" in r.getMessage() for r in caplog.records)


def test_non_dicom_input_stays_quiet(
    series: dict[str, Any], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    phantom = series["phantom"]
    volume = covidet.client.load_volume(phantom.hu, spacing=phantom.spacing)
    told: list[str] = []
    with caplog.at_level(logging.INFO, logger="covidet.client"):
        write_outputs(_diagnosis(phantom, "array"), volume, tmp_path, on_warning=told.append)
    assert not told and not [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert any("not a DICOM series" in r.getMessage() for r in caplog.records)


class _FakeClient:
    """Stands in for `AsyncClient`: answers every scan with the phantom's diagnosis."""

    diagnosis: Any = None

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        pass

    async def __aenter__(self) -> _FakeClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        return None

    async def diagnose(self, volume: Any, **kwargs: Any) -> Any:
        return self.diagnosis


def test_cli_prints_the_warning(
    series: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    _FakeClient.diagnosis = _diagnosis(series["phantom"], str(series["root"]))
    monkeypatch.setattr(covidet.client, "AsyncClient", _FakeClient)
    assert main_diagnose([str(series["root"]), "--out", str(tmp_path / "out")]) == 0
    out = capsys.readouterr().out
    line = next(ln for ln in out.splitlines() if ln.startswith("warning:"))
    assert "without a SOPInstanceUID" in line and "no seg.dcm, no sr.dcm" in line
    assert ": wrote coronal, keyimage_1, keyimage_2, keyimage_3, result to " in " ".join(out.split())
    assert not (tmp_path / "out" / "dicom" / "seg.dcm").exists()


def test_deidentify_gives_every_instance_a_uid_and_then_seg_and_sr_are_written(
    series: dict[str, Any], tmp_path: Path
) -> None:
    from covidet.client._deid import write_deidentified_copy

    files = write_deidentified_copy(series["root"], tmp_path / "copy", seed="s")
    headers = [pydicom.dcmread(f, stop_before_pixels=True) for f in files]
    uids = [str(ds.SOPInstanceUID) for ds in headers]
    assert len(set(uids)) == len(files) == 6 and all(uids)
    assert all(ds.file_meta.MediaStorageSOPInstanceUID == ds.SOPInstanceUID for ds in headers)
    again = write_deidentified_copy(series["root"], tmp_path / "again", seed="s")
    assert [str(pydicom.dcmread(f).SOPInstanceUID) for f in again] == uids  # reproducible with a seed
    volume = read_dicom_series(tmp_path / "copy")
    written = write_outputs(_diagnosis(series["phantom"], volume.source), volume, tmp_path / "out")
    assert {"seg", "sr"} <= set(written)
