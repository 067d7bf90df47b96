"""The fast DICOM series reader gives exactly what the plain way gives.

The reference below is the reader as it was before it was made fast (issue 18): every file read
whole with ``pydicom.dcmread``, ``pixel_array`` per file, the rescale
``clip(rint(float32(stored) * slope + intercept))`` per slice, slices sorted along the normal. The
fast reader must match it bit for bit, volume and metadata, on every kind of fixture series.
"""

from __future__ import annotations

import builtins
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import highdicom as hd
import numpy as np
import pydicom
import pytest
from pydicom.errors import InvalidDicomError
from pydicom.uid import (
    DeflatedExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    JPEG2000Lossless,
    JPEGLSLossless,
    RLELossless,
    generate_uid,
)

from covidet.client import _dicom_pixels
from covidet.client._dicom import read_dicom_series
from covidet.client._volume import Volume, VolumeError
from covidet.phantom import make_phantom, write_dicom_series

# --- the reference: the plain, slow way --------------------------------------------------------


def _item(ds: Any, frame: int, name: str) -> Any:
    """A functional-group item of ``frame``: per-frame if there, else shared."""
    for seq_name, k in (("PerFrameFunctionalGroupsSequence", frame), ("SharedFunctionalGroupsSequence", 0)):
        seq = getattr(ds, seq_name, None)
        if seq and name in seq[k] and len(seq[k][name].value):
            return seq[k][name].value[0]
    return None


def _hu(stored: np.ndarray, rescale: Any) -> np.ndarray:
    slope = float(getattr(rescale, "RescaleSlope", 1) or 1)
    intercept = float(getattr(rescale, "RescaleIntercept", 0) or 0)
    return np.clip(np.rint(stored.astype(np.float32) * slope + intercept), -32768, 32767).astype(np.int16)


def _reference(folder: Path) -> Volume:
    planes: list[dict[str, Any]] = []
    for f in sorted(p for p in folder.rglob("*") if p.is_file()):
        try:
            ds = pydicom.dcmread(f)
        except InvalidDicomError:
            continue
        pixels = ds.pixel_array
        sop = str(getattr(ds, "SOPInstanceUID", "") or "")
        if int(getattr(ds, "NumberOfFrames", 1) or 1) > 1:
            for k in range(int(ds.NumberOfFrames)):
                meas = _item(ds, k, "PixelMeasuresSequence")
                planes.append(
                    {
                        "hu": _hu(pixels[k], _item(ds, k, "PixelValueTransformationSequence")),
                        "position": _item(ds, k, "PlanePositionSequence").ImagePositionPatient,
                        "orientation": _item(ds, k, "PlaneOrientationSequence").ImageOrientationPatient,
                        "spacing": meas.PixelSpacing,
                        "thickness": meas.SliceThickness,
                        "sop": sop,
                        "frame": k,
                        "description": str(getattr(ds, "SeriesDescription", "")),
                        "uid": str(ds.SeriesInstanceUID),
                    }
                )
        else:
            planes.append(
                {
                    "hu": _hu(pixels, ds),
                    "position": ds.ImagePositionPatient,
                    "orientation": ds.ImageOrientationPatient,
                    "spacing": ds.PixelSpacing,
                    "thickness": ds.SliceThickness,
                    "sop": sop,
                    "frame": None,
                    "description": str(getattr(ds, "SeriesDescription", "")),
                    "uid": str(ds.SeriesInstanceUID),
                }
            )
    orientation = np.array([float(v) for v in planes[0]["orientation"]])
    normal = np.cross(orientation[:3], orientation[3:])
    along = np.array([np.dot(normal, [float(v) for v in p["position"]]) for p in planes])
    order = np.argsort(-along, kind="stable")
    ordered = [planes[i] for i in order]
    steps = np.abs(np.diff(along[order]))
    dy, dx = (float(v) for v in planes[0]["spacing"])
    return Volume(
        hu=np.stack([p["hu"] for p in ordered]),
        spacing=(float(np.median(steps)) if steps.size else float(planes[0]["thickness"]), dy, dx),
        source=str(folder),
        series_uid=ordered[0]["uid"] or None,
        meta={
            "orientation": orientation.tolist(),
            "first_position": [float(v) for v in ordered[0]["position"]],
            "series_description": ordered[0]["description"],
            "sop_instance_uids": [p["sop"] for p in ordered],
            "source_frames": [p["frame"] for p in ordered] if ordered[0]["frame"] is not None else None,
        },
    )


def _assert_same(fast: Volume, ref: Volume) -> None:
    assert fast.hu.dtype == np.int16 and fast.hu.flags.c_contiguous
    np.testing.assert_array_equal(fast.hu, ref.hu)
    assert fast.spacing == ref.spacing  # exactly: the same floats from the same header values
    assert fast.series_uid == ref.series_uid
    for key, value in ref.meta.items():
        assert fast.meta[key] == value, key


# --- fixture series -------------------------------------------------------------------------------


def _rewrite(folder: Path, change: Callable[[pydicom.Dataset, int], None]) -> None:
    """Apply ``change(ds, position index)`` to every file of ``folder`` and save it back."""
    files = sorted(folder.iterdir(), key=lambda f: -float(pydicom.dcmread(f).ImagePositionPatient[2]))
    for k, f in enumerate(files):
        ds = pydicom.dcmread(f)
        change(ds, k)
        ds.save_as(f, enforce_file_format=True)


def _compress(syntax: str) -> Callable[[pydicom.Dataset, int], None]:
    def change(ds: pydicom.Dataset, k: int) -> None:
        ds.compress(syntax)

    return change


def _syntax(syntax: str) -> Callable[[pydicom.Dataset, int], None]:
    def change(ds: pydicom.Dataset, k: int) -> None:
        ds.file_meta.TransferSyntaxUID = pydicom.uid.UID(syntax)

    return change


def _rescales(ds: pydicom.Dataset, k: int) -> None:
    """Slices in runs of different rescales and stored types (runs, the table, the bit shift)."""
    if k < 3:  # signed, 12 of 16 bits used: pydicom sign-extends bit 11
        ds.PixelRepresentation, ds.BitsStored, ds.HighBit = 1, 12, 11
        ds.RescaleSlope, ds.RescaleIntercept = 1, -1024
    elif k < 5:
        ds.RescaleSlope, ds.RescaleIntercept = "0.5", "-1024.25"
    elif k < 7:
        ds.RescaleSlope, ds.RescaleIntercept = 1, -40000  # clips at the bottom of int16
    elif k == 7:
        ds.RescaleSlope, ds.RescaleIntercept = 3, 20000  # and at the top


def _tilt(ds: pydicom.Dataset, k: int) -> None:
    x, y, z = (float(v) for v in ds.ImagePositionPatient)
    ds.ImagePositionPatient = [x, y + 0.4 * k, z]


def _enhanced(root: Path, name: str, syntax: str | None) -> Path:
    classic = root / f"{name}-source"
    files = write_dicom_series(make_phantom("COVID-19", n_slices=9, size=48, seed=21), classic)
    enhanced = hd.legacy.LegacyConvertedEnhancedCTImage(
        legacy_datasets=[pydicom.dcmread(f) for f in files],
        series_instance_uid=generate_uid(),
        series_number=7,
        sop_instance_uid=generate_uid(),
        instance_number=1,
    )
    perm = np.random.default_rng(1).permutation(len(files))  # frame order != position order
    enhanced.PixelData = np.ascontiguousarray(enhanced.pixel_array[perm]).tobytes()
    groups = list(enhanced.PerFrameFunctionalGroupsSequence)
    enhanced.PerFrameFunctionalGroupsSequence = [groups[i] for i in perm]
    if syntax is not None:
        enhanced.compress(syntax)
    (root / name).mkdir()
    enhanced.save_as(root / name / "ct.dcm")
    return root / name


SERIES = [
    "uncompressed",
    "rescales",
    "implicit-vr",
    "deflated",
    "rle",
    "jpeg-ls",
    "jpeg2000",
    "enhanced",
    "enhanced-rle",
    "tilted",
]


@pytest.fixture(scope="module")
def series(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("reader")
    out: dict[str, Path] = {}
    changes: dict[str, Callable[[pydicom.Dataset, int], None] | None] = {
        "uncompressed": None,
        "rescales": _rescales,
        "implicit-vr": _syntax(ImplicitVRLittleEndian),
        "deflated": _syntax(DeflatedExplicitVRLittleEndian),
        "rle": _compress(RLELossless),
        "jpeg-ls": _compress(JPEGLSLossless),
        "jpeg2000": _compress(JPEG2000Lossless),
        "tilted": _tilt,
    }
    for k, (name, change) in enumerate(changes.items()):
        ph = make_phantom("CAP", n_slices=10, size=48, seed=100 + k)
        write_dicom_series(ph, root / name, shuffle_filenames=True)
        if change is not None:
            _rewrite(root / name, change)
        out[name] = root / name
    out["enhanced"] = _enhanced(root, "enhanced", None)
    out["enhanced-rle"] = _enhanced(root, "enhanced-rle", RLELossless)
    return out


def _read(folder: Path) -> Volume:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the tilted series warns; the other checks are elsewhere
        return read_dicom_series(folder, policy="ignore")


@pytest.mark.parametrize("name", SERIES)
def test_the_fast_reader_matches_the_plain_way(series: dict[str, Path], name: str) -> None:
    _assert_same(_read(series[name]), _reference(series[name]))


@pytest.mark.parametrize("name", ["rle", "jpeg2000", "enhanced-rle", "rescales"])
def test_decoding_in_worker_processes_matches_too(
    series: dict[str, Path], name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Force the process pool (small series decode inline): frames split over two workers."""
    monkeypatch.setattr(_dicom_pixels, "_INLINE_MAX_PIXELS", 0)
    monkeypatch.setattr(_dicom_pixels, "_cores", lambda: 2)
    _assert_same(_read(series[name]), _reference(series[name]))


def test_the_tilt_is_still_reported(series: dict[str, Path]) -> None:
    with pytest.warns(UserWarning, match="gantry tilt"):
        vol = read_dicom_series(series["tilted"])
    assert any("gantry tilt" in d for d in vol.meta["defects"])


def test_each_file_is_opened_once(series: dict[str, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    opened: list[Path] = []
    real_open = builtins.open

    def counting_open(file: Any, *args: Any, **kwargs: Any) -> Any:
        opened.append(Path(file))
        return real_open(file, *args, **kwargs)

    monkeypatch.setattr(_dicom_pixels, "open", counting_open, raising=False)
    for name in ("uncompressed", "jpeg-ls"):
        opened.clear()
        vol = read_dicom_series(series[name])
        files = sorted(series[name].iterdir())
        assert sorted(opened) == files and vol.n_slices == len(files)


class _SpyPool:
    """Records the pools the reader starts (their size), runs the work in this process."""

    sizes: list[int] = []  # noqa: RUF012 - shared on purpose: the test reads what was started

    def __init__(self, max_workers: int) -> None:
        self.sizes.append(max_workers)

    def __enter__(self) -> _SpyPool:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def submit(self, fn: Callable[..., Any], *args: Any) -> Any:
        from concurrent.futures import Future

        fut: Future[Any] = Future()
        try:
            fut.set_result(fn(*args))
        except Exception as exc:
            fut.set_exception(exc)
        return fut


def test_a_pool_only_for_compressed_files_and_sized_to_the_cores(
    series: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_dicom_pixels, "ProcessPoolExecutor", _SpyPool)
    monkeypatch.setattr(_dicom_pixels, "_INLINE_MAX_PIXELS", 0)
    _SpyPool.sizes.clear()
    monkeypatch.setattr(_dicom_pixels, "_cores", lambda: 4)
    read_dicom_series(series["uncompressed"])
    assert _SpyPool.sizes == []  # nothing to decode: no pool
    read_dicom_series(series["rle"])
    assert _SpyPool.sizes == [4]  # min(cores, files)
    monkeypatch.setattr(_dicom_pixels, "_cores", lambda: 64)
    read_dicom_series(series["rle"])
    assert _SpyPool.sizes == [4, 10]
    monkeypatch.setattr(_dicom_pixels, "_INLINE_MAX_PIXELS", 1 << 20)
    read_dicom_series(series["rle"])
    assert _SpyPool.sizes == [4, 10]  # a small series decodes inline


@pytest.mark.parametrize("pool", [False, True], ids=["inline", "pool"])
def test_undecodable_pixel_data_is_a_volume_error(
    series: dict[str, Path], tmp_path: Path, pool: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    if pool:
        monkeypatch.setattr(_dicom_pixels, "_INLINE_MAX_PIXELS", 0)
        monkeypatch.setattr(_dicom_pixels, "_cores", lambda: 2)
    for f in sorted(series["jpeg-ls"].iterdir()):
        (tmp_path / f.name).write_bytes(f.read_bytes())
    broken = sorted(tmp_path.iterdir())[3]
    ds = pydicom.dcmread(broken)
    ds.PixelData = pydicom.encaps.encapsulate([b"\xff\xd8\xff\xf7" + b"\x00" * 40])  # a JPEG-LS stub
    ds.save_as(broken)
    with pytest.raises(VolumeError, match=rf"{broken.name}: its pixel data \(JPEG-LS"):
        read_dicom_series(tmp_path)


def test_an_image_without_pixel_data_is_a_volume_error(series: dict[str, Path], tmp_path: Path) -> None:
    for f in sorted(series["uncompressed"].iterdir()):
        (tmp_path / f.name).write_bytes(f.read_bytes())
    broken = sorted(tmp_path.iterdir())[2]
    ds = pydicom.dcmread(broken)
    del ds.PixelData
    ds.save_as(broken)
    with pytest.raises(VolumeError, match="no pixel data"):
        read_dicom_series(tmp_path)


@pytest.mark.parametrize(
    ("name", "direct"),
    [("uncompressed", True), ("rescales", True), ("implicit-vr", True), ("deflated", False), ("rle", False)],
)
def test_native_pixels_come_straight_from_the_file_bytes(
    series: dict[str, Path], name: str, direct: bool
) -> None:
    """Uncompressed little-endian pixels are used where they lie; the rest goes to pydicom."""
    files = [f for f in _dicom_pixels.read_files(sorted(series[name].iterdir())) if f is not None]
    assert len(files) == 10
    assert all((f.pixel_offset is not None) == direct for f in files)
