"""Pixel data of a DICOM series, fast: each file read once, native pixels taken straight from its
bytes, compressed ones decoded in a process pool, the HU rescale applied to the whole volume.

The reader's results are bit-identical to ``pydicom.dcmread(f).pixel_array`` rescaled per slice as
``clip(rint(float32(stored) * slope + intercept))`` to int16; ``tests/client/test_dicom_reader.py``
holds that reference and compares on every kind of fixture series.
"""

from __future__ import annotations

import functools
import io
import multiprocessing
import os
import struct
from collections.abc import Iterable, Sequence
from concurrent.futures import Future, ProcessPoolExecutor, ThreadPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from covidet.client._volume import VolumeError

__all__ = ["HEADER_TAGS", "DicomFile", "Plane", "assemble_hu", "read_files", "to_hu"]

#: The header elements the reader uses (geometry, policy, series choice, outputs, pixel layout).
#: Only these are parsed; the rest of each header is skipped over.
HEADER_TAGS: tuple[str, ...] = (
    "SOPClassUID",
    "SOPInstanceUID",
    "Modality",
    "SeriesInstanceUID",
    "SeriesDescription",
    "ImageType",
    "ImagePositionPatient",
    "ImageOrientationPatient",
    "PixelSpacing",
    "SliceThickness",
    "RescaleSlope",
    "RescaleIntercept",
    "Rows",
    "Columns",
    "NumberOfFrames",
    "SamplesPerPixel",
    "PhotometricInterpretation",
    "BitsAllocated",
    "BitsStored",
    "PixelRepresentation",
    "SharedFunctionalGroupsSequence",
    "PerFrameFunctionalGroupsSequence",
)

_IMPLICIT_LE = "1.2.840.10008.1.2"
_EXPLICIT_LE = "1.2.840.10008.1.2.1"
_PIXEL_DATA = 0x7FE00010
_UNDEFINED_LENGTH = 0xFFFFFFFF
_MONOCHROME = ("MONOCHROME1", "MONOCHROME2")

#: Below this many compressed pixels in a series, decoding inline beats starting worker processes.
_INLINE_MAX_PIXELS = 1 << 20

#: Files read ahead at once (see `read_files`).
_READ_THREADS = 2


@dataclass
class DicomFile:
    """One DICOM file read into memory with its parsed header (no pixel data element).

    ``pixel_offset`` is where the native pixel values start in ``data`` when they can be taken
    straight from the bytes (little endian, uncompressed, one sample, a length pydicom would
    accept as-is); otherwise None and pydicom decodes the file.
    """

    path: Path
    header: Any
    transfer_syntax: str
    data: bytes
    pixel_offset: int | None
    has_pixels: bool

    @property
    def frames(self) -> int:
        return int(getattr(self.header, "NumberOfFrames", 1) or 1)

    @property
    def shape(self) -> tuple[int, ...]:
        """The shape of ``pixel_array``: (rows, columns), or (frames, rows, columns)."""
        plane = (int(self.header.Rows), int(self.header.Columns))
        return (self.frames, *plane) if self.frames > 1 else plane

    @property
    def native_dtype(self) -> np.dtype[Any]:
        bits = int(self.header.BitsAllocated)
        signed = int(getattr(self.header, "PixelRepresentation", 0) or 0) == 1
        return np.dtype(f"<{'i' if signed else 'u'}{bits // 8}")

    @property
    def bits_stored(self) -> int:
        return int(getattr(self.header, "BitsStored", None) or self.header.BitsAllocated)


def _native_offset(header: Any, syntax: str, data: bytes, at: int) -> tuple[bool, int | None]:
    """(has pixel data, offset of values that can be used as-is) for the element starting at ``at``
    (-1: not known, pydicom decodes the file and says whether it has pixel data)."""
    if at < 0:
        return True, None
    if at + 8 > len(data):
        return False, None
    group, element = struct.unpack_from("<HH", data, at)
    if (group << 16 | element) != _PIXEL_DATA:
        return True, None  # float pixel data or an unusual layout: pydicom decides
    if syntax == _EXPLICIT_LE:
        if data[at + 4 : at + 6] not in (b"OB", b"OW") or at + 12 > len(data):
            return True, None
        (length,) = struct.unpack_from("<I", data, at + 8)
        start = at + 12
    elif syntax == _IMPLICIT_LE:
        (length,) = struct.unpack_from("<I", data, at + 4)
        start = at + 8
    else:
        return True, None
    try:
        rows, cols = int(header.Rows), int(header.Columns)
        frames = int(getattr(header, "NumberOfFrames", 1) or 1)
        bits = int(header.BitsAllocated)
        stored = int(getattr(header, "BitsStored", None) or bits)
        samples = int(getattr(header, "SamplesPerPixel", 1) or 1)
        photometric = str(getattr(header, "PhotometricInterpretation", "MONOCHROME2"))
    except (AttributeError, TypeError, ValueError):
        return True, None
    expected = rows * cols * frames * bits // 8
    simple = (
        bits in (8, 16, 32)
        and 1 <= stored <= bits
        and samples == 1
        and photometric in _MONOCHROME
        and length != _UNDEFINED_LENGTH
        # exactly the frames (or one padding byte): any other length pydicom handles its own way
        and length in (expected, expected + expected % 2)
        and start + expected <= len(data)
    )
    return True, start if simple else None


def _read_bytes(path: Path) -> bytes | None:
    """The bytes of ``path`` if it is a DICOM file ('DICM' after the preamble), else None.

    Other files are recognised from their first bytes, without reading them whole.
    """
    try:
        with open(path, "rb") as f:
            if f.read(132)[128:132] != b"DICM":
                return None
            f.seek(0)
            return f.read()
    except OSError:
        return None


#: Explicit-VR elements with a 4-byte length (PS3.5 7.1.2); the others have a 2-byte length.
_LONG_VRS = frozenset(b"OB OD OF OL OV OW SQ SV UC UN UR UT UV".split())


def _file_meta(data: bytes) -> tuple[str, int] | None:
    """(transfer syntax UID, offset of the data set) from the file meta group (explicit VR little
    endian by definition, PS3.10 7.1); None when it is unusual, and pydicom then reads the file."""
    pos, syntax = 132, ""
    while pos + 8 <= len(data):
        group, element = struct.unpack_from("<HH", data, pos)
        if group != 0x0002:
            break
        vr = data[pos + 4 : pos + 6]
        if not (vr.isalpha() and vr.isupper()):
            return None  # an implicit VR file meta: pydicom copes with it
        if vr in _LONG_VRS:
            (length,) = struct.unpack_from("<I", data, pos + 8)
            value = pos + 12
        else:
            (length,) = struct.unpack_from("<H", data, pos + 6)
            value = pos + 8
        if length == _UNDEFINED_LENGTH:
            return None
        if element == 0x0010:
            syntax = data[value : value + length].decode("ascii", "replace").rstrip("\0 ")
        pos = value + length
    if not syntax or pos + 8 > len(data) or data[pos : pos + 2] == b"\0\0":
        return None  # no syntax, no data set, or a command set (group 0000) after the meta
    return syntax, pos


@functools.lru_cache(maxsize=64)
def _implicit_vr(syntax: str) -> bool | None:
    """Whether the data set of ``syntax`` is implicit VR, for the little-endian, not deflated
    syntaxes pydicom knows; None for the others (pydicom's dcmread handles those itself)."""
    from pydicom.uid import UID, PrivateTransferSyntaxes

    uid = UID(syntax)
    if not uid.is_transfer_syntax or uid in PrivateTransferSyntaxes:
        return None
    if uid.is_deflated or not uid.is_little_endian:
        return None
    return bool(uid.is_implicit_VR)


def _at_pixel_data(tag: int, vr: str | None, length: int) -> bool:
    """Stop before Pixel Data, Float or Double Float Pixel Data, as pydicom's stop_before_pixels."""
    return tag in (0x7FE00010, 0x7FE00008, 0x7FE00009)


@functools.lru_cache(maxsize=1)
def _header_tags() -> list[int]:
    from pydicom.tag import Tag

    return [int(Tag(keyword)) for keyword in HEADER_TAGS]


def _read_header(data: bytes) -> tuple[Any, str, int]:
    """(header without pixel data, transfer syntax, offset where the pixel data element starts or
    -1 if that is not an offset in ``data``).

    The common case (little endian, not deflated) parses only the data set, with pydicom's
    ``read_dataset`` over the tags the reader needs; ``dcmread`` with the same tags handles the rest.
    """
    import pydicom
    from pydicom.filereader import read_dataset

    meta = _file_meta(data)
    implicit = _implicit_vr(meta[0]) if meta is not None else None
    if meta is not None and implicit is not None:
        fp = io.BytesIO(data)  # shares the bytes, no copy
        fp.seek(meta[1])
        try:
            header = read_dataset(fp, implicit, True, stop_when=_at_pixel_data, specific_tags=_header_tags())
        except Exception:  # anything odd: the full dcmread below decides
            pass
        else:
            return header, meta[0], fp.tell()  # read_dataset stops at the element's start
    header = pydicom.dcmread(io.BytesIO(data), stop_before_pixels=True, specific_tags=_header_tags())
    syntax = str(getattr(header.file_meta, "TransferSyntaxUID", "") or "")
    return header, syntax, -1  # e.g. a deflated data set: its offsets are not the file's


def _parse(path: Path, data: bytes | None) -> DicomFile | None:
    """The header of a file read into ``data``; None if it is not a readable DICOM file."""
    from pydicom.errors import InvalidDicomError

    if data is None:
        return None
    try:
        header, syntax, at = _read_header(data)
    except (InvalidDicomError, OSError, ValueError, struct.error):
        return None
    has_pixels, offset = _native_offset(header, syntax, data, at)
    return DicomFile(path, header, syntax, data, offset, has_pixels)


def read_files(paths: Sequence[Path]) -> list[DicomFile | None]:
    """Each of ``paths`` read once and its header parsed (None for a file that is not DICOM).

    Threads read the files ahead, while this thread parses the headers in order: reading waits on
    the disk (or a network share) without holding the GIL, parsing needs it.
    """
    if len(paths) < 2 * _READ_THREADS:
        return [_parse(p, _read_bytes(p)) for p in paths]
    with ThreadPoolExecutor(max_workers=_READ_THREADS) as pool:
        return [_parse(p, data) for p, data in zip(paths, pool.map(_read_bytes, paths), strict=True)]


# --- decoding compressed (or otherwise non-native) pixel data ---------------------------------


def _decode(data: bytes, frames: tuple[int, int] | None) -> np.ndarray:
    """pydicom's ``pixel_array`` of a file's bytes: all of it, or frames [start, stop).

    Module level, so that worker processes can run it whatever their start method.
    """
    import pydicom
    from pydicom.pixels import pixel_array

    ds = pydicom.dcmread(io.BytesIO(data))
    indices: list[int | None] = [None] if frames is None else list(range(*frames))
    plugin = _fastest_plugin(str(ds.file_meta.TransferSyntaxUID))
    if plugin:
        try:
            return _stack([pixel_array(ds, index=k, decoding_plugin=plugin) for k in indices])
        except Exception:  # that plugin failed on this file: pydicom's own choice decides below
            pass
    return _stack([pixel_array(ds, index=k) for k in indices])


def _stack(arrays: list[np.ndarray]) -> np.ndarray:
    return np.asarray(arrays[0]) if len(arrays) == 1 else np.stack(arrays)


#: Decoding plugins used first, where pydicom's default order starts with a slower one: for
#: JPEG-LS, CharLS (pyjpegls) decodes the same lossless values several times faster than libjpeg.
_FASTEST_PLUGIN = {
    "1.2.840.10008.1.2.4.80": "pyjpegls",  # JPEG-LS lossless
    "1.2.840.10008.1.2.4.81": "pyjpegls",  # JPEG-LS near-lossless
}


@functools.lru_cache(maxsize=64)
def _fastest_plugin(syntax: str) -> str:
    """The plugin to try first for ``syntax`` if installed; "" for pydicom's default order."""
    from pydicom.pixels import get_decoder

    plugin = _FASTEST_PLUGIN.get(syntax, "")
    try:
        return plugin if plugin and plugin in get_decoder(syntax).available_plugins else ""
    except NotImplementedError:  # no decoder for the syntax at all: pydicom says so when decoding
        return ""


def _cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def _decode_error(f: DicomFile, exc: BaseException) -> VolumeError:
    import pydicom.uid

    name = pydicom.uid.UID(f.transfer_syntax).name if f.transfer_syntax else "unknown transfer syntax"
    return VolumeError(
        f"{f.path}: its pixel data ({name}) could not be decoded: {exc}. Check that the file is "
        "complete; for a compressed transfer syntax install the decoder pydicom names "
        "(pip install 'covidet[client]' brings pylibjpeg, openjpeg and pyjpegls)"
    )


def _decode_files(files: Sequence[DicomFile]) -> dict[Path, np.ndarray]:
    """Decoded pixel arrays of ``files``: inline for a few pixels, else in a process pool.

    Decoders hold the GIL, so threads would not help: the pool has one process per core at most,
    and a multi-frame file is split into frame ranges so that its frames spread over them.
    """
    if not files:
        return {}
    pixels = sum(f.frames * int(f.header.Rows) * int(f.header.Columns) for f in files)
    workers = min(_cores(), sum(f.frames for f in files))
    inline = workers < 2 or pixels <= _INLINE_MAX_PIXELS or multiprocessing.current_process().daemon
    if inline:
        out: dict[Path, np.ndarray] = {}
        for f in files:
            try:
                out[f.path] = _decode(f.data, None)
            except Exception as exc:  # pydicom and its plugins raise many types for bad data
                raise _decode_error(f, exc) from exc
        return out
    tasks: list[tuple[DicomFile, tuple[int, int] | None]] = []
    for f in files:
        if f.frames > 1:
            step = -(-f.frames // workers)
            tasks += [(f, (a, min(a + step, f.frames))) for a in range(0, f.frames, step)]
        else:
            tasks.append((f, None))
    parts: dict[Path, list[np.ndarray]] = {}
    with ProcessPoolExecutor(max_workers=min(workers, len(tasks))) as pool:
        futures: list[Future[np.ndarray]] = [pool.submit(_decode, f.data, frames) for f, frames in tasks]
        for (f, _), fut in zip(tasks, futures, strict=True):
            try:
                parts.setdefault(f.path, []).append(fut.result())
            except BrokenProcessPool as exc:
                raise VolumeError(
                    f"{f.path}: a pixel decoding process stopped unexpectedly ({exc}); it may have "
                    "run out of memory or crashed on a malformed file. Read the series with fewer "
                    "processes running, or check the file with pydicom"
                ) from exc
            except Exception as exc:  # the worker's own error, re-raised here by the pool
                raise _decode_error(f, exc) from exc
    return {path: p[0] if len(p) == 1 else np.concatenate(p) for path, p in parts.items()}


# --- HU volume ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Plane:
    """One volume slice: a file, its frame (None for a single-frame instance) and HU rescale."""

    file: DicomFile
    frame: int | None
    slope: float
    intercept: float


def to_hu(stored: np.ndarray, slope: float, intercept: float) -> np.ndarray:
    """The reference rescale: stored values -> HU, rounded and clipped to int16."""
    return np.clip(np.rint(stored.astype(np.float32) * slope + intercept), -32768, 32767).astype(np.int16)


def _rescale_16bit(raw: np.ndarray, slope: float, intercept: float, out: np.ndarray) -> None:
    """`to_hu` of 16-bit ``raw`` (a view of ``out``'s memory), in place, over the whole block."""
    info = np.iinfo(raw.dtype)
    bits = out.view(np.uint16)
    if slope == 1.0 and intercept.is_integer() and abs(intercept) < 2**23:
        # float32 holds stored + intercept exactly here, so the rescale is integer arithmetic:
        # clip the stored values to those that land inside int16, then add the intercept modulo
        # 2**16, which gives the exact int16 result for every value inside the range.
        b = int(intercept)
        lo, hi = max(int(info.min), -32768 - b), min(int(info.max), 32767 - b)
        if lo <= hi:
            np.clip(raw, lo, hi, out=raw)
            np.add(bits, np.uint16(b % 65536), out=bits)
            return
    # any other rescale: a table of to_hu over all 65536 stored values, looked up in slabs
    table = to_hu(np.arange(65536, dtype=np.uint16).view(raw.dtype), slope, intercept)
    flat, dest = bits.reshape(-1), out.reshape(-1)
    step = 1 << 20
    for a in range(0, flat.size, step):
        dest[a : a + step] = np.take(table, flat[a : a + step])


def _stored(plane: Plane, decoded: dict[Path, np.ndarray]) -> np.ndarray:
    f = plane.file
    if f.pixel_offset is not None:
        arr = np.frombuffer(f.data, f.native_dtype, int(np.prod(f.shape)), f.pixel_offset).reshape(f.shape)
    else:
        arr = decoded[f.path]
    if plane.frame is not None:
        arr = arr[plane.frame]
    elif f.frames > 1:
        raise VolumeError(
            f"{f.path}: a multi-frame instance ({f.frames} frames) without per-frame functional "
            "groups: its frames have no positions to stack them by. Export the series as "
            "single-frame CT images or as an enhanced CT"
        )
    plane_shape = (int(f.header.Rows), int(f.header.Columns))
    if arr.shape != plane_shape:
        raise VolumeError(
            f"{f.path}: pixel data of shape {arr.shape}, expected one grey plane of "
            f"{plane_shape[0]}x{plane_shape[1]} (SamplesPerPixel 1); covidet reads greyscale CT only"
        )
    return arr


def _runs(keys: list[tuple[Any, ...]]) -> Iterable[tuple[int, int]]:
    """[start, stop) of each run of equal consecutive keys."""
    start = 0
    for k in range(1, len(keys) + 1):
        if k == len(keys) or keys[k] != keys[start]:
            yield start, k
            start = k


def assemble_hu(planes: Sequence[Plane]) -> np.ndarray:
    """The int16 HU volume of ``planes`` in the given order.

    Files needing a decoder are decoded first (see `_decode_files`); the stored values are then
    gathered into the output array and rescaled in place, one vectorised pass per run of slices
    that share the stored type and rescale (usually the whole volume).
    """
    missing = [p.file.path for p in planes if not p.file.has_pixels]
    if missing:
        raise VolumeError(
            f"{missing[0]}: an image with position and spacing but no pixel data "
            f"({len(missing)} such file(s)); remove it from the series folder"
        )
    to_decode = list({p.file.path: p.file for p in planes if p.file.pixel_offset is None}.values())
    decoded = _decode_files(to_decode)
    stored = [_stored(p, decoded) for p in planes]
    rows, cols = stored[0].shape
    out = np.empty((len(planes), rows, cols), np.int16)

    def key(k: int) -> tuple[Any, ...]:
        f = planes[k].file
        # pydicom drops the bits above BitsStored of native data (sign-extending signed data)
        shift = 8 * f.native_dtype.itemsize - f.bits_stored if f.pixel_offset is not None else 0
        return (stored[k].dtype, shift, planes[k].slope, planes[k].intercept)

    keys = [key(k) for k in range(len(planes))]
    for a, b in _runs(keys):
        dtype, shift, slope, intercept = keys[a]
        if dtype.itemsize == 2:
            raw = out[a:b].view(dtype)
            for k in range(a, b):
                raw[k - a] = stored[k]
            if shift:
                np.left_shift(raw, shift, out=raw)
                np.right_shift(raw, shift, out=raw)
            _rescale_16bit(raw, slope, intercept, out[a:b])
        else:
            block = np.stack(stored[a:b])
            if shift:
                np.left_shift(block, shift, out=block)
                np.right_shift(block, shift, out=block)
            out[a:b] = to_hu(block, slope, intercept)
    return out
