"""The CT_COMPRESSED frame: an int16 HU volume, lossless, for clients far from the server.

A CT volume is mostly air and soft tissue: its int16 voxels' high bytes take a handful of values,
their low bytes vary. Byte-shuffling (all low bytes, then all high bytes) puts the predictable
half together, and zstd then shrinks the volume several fold at a speed above a hospital link's.

Frame layout (little-endian)::

    b"CVZ1"                  magic and version
    uint8  dtype             1 = int16 (the only one)
    uint8  ndim              3
    uint16 reserved          0
    uint32 shape[3]          slices, rows, columns
    ...                      one zstd frame of the byte-shuffled voxels (its content size set)

Decoding checks the header against the caller's limits *before* decompressing, and never lets
zstd write more than the header's size: a frame cannot make the server allocate more than a valid
volume of the stated shape. Nothing here is unpickled; the frame is plain bytes and numbers.
"""

from __future__ import annotations

import struct

import numpy as np

from covidet.errors import VolumeError

__all__ = ["CODECS", "MAGIC", "FrameError", "decode_volume", "encode_volume", "frame_shape"]

#: Compressions a client may ask for (``compression=``).
CODECS: tuple[str, ...] = ("zstd",)
MAGIC = b"CVZ1"
_HEADER = struct.Struct("<4sBBH3I")
_INT16 = 1
#: voxels un-shuffled at a time: two planes' blocks and their interleaved copy fit in the cache
_BLOCK = 1 << 16
#: zstd level of the client's encoder: the fastest levels already give most of the ratio on CT,
#: and the encoder must beat the link it saves time on.
DEFAULT_LEVEL = 1


class FrameError(VolumeError):
    """A CT_COMPRESSED frame is malformed: what is wrong with it and what to send instead."""


def encode_volume(hu: np.ndarray, *, level: int = DEFAULT_LEVEL, threads: int = -1) -> bytes:
    """The CT_COMPRESSED frame of an int16 ``[slices, rows, columns]`` volume.

    ``threads``: zstd worker threads (-1: one per core; 0: none).
    """
    import zstandard

    vol = np.asarray(hu)
    if vol.dtype != np.int16 or vol.ndim != 3:
        raise FrameError(
            f"a frame holds an int16 [slices, rows, columns] volume, got {vol.dtype} {vol.shape}"
        )
    raw = np.ascontiguousarray(vol).view(np.uint8).reshape(-1, 2)
    shuffled = np.ascontiguousarray(raw.T)  # low bytes, then high bytes (little-endian int16)
    header = _HEADER.pack(MAGIC, _INT16, 3, 0, *vol.shape)
    compressor = zstandard.ZstdCompressor(level=level, threads=threads, write_content_size=True)
    return header + compressor.compress(shuffled.data)


def frame_shape(frame: bytes | bytearray | memoryview) -> tuple[int, int, int]:
    """The volume shape a frame's header states (checked before anything is decompressed)."""
    if len(frame) < _HEADER.size:
        raise FrameError(
            f"CT_COMPRESSED is {len(frame)} bytes, shorter than a frame's {_HEADER.size}-byte header; "
            "send a frame made by covidet's client (compression='zstd')"
        )
    magic, dtype, ndim, _, s, h, w = _HEADER.unpack_from(frame)
    if magic != MAGIC:
        raise FrameError(
            f"CT_COMPRESSED does not start with {MAGIC!r} (got {bytes(magic)!r}): not a covidet frame, "
            "or a version this server does not read; send it with covidet's client"
        )
    if dtype != _INT16 or ndim != 3:
        raise FrameError(f"CT_COMPRESSED states dtype code {dtype}, rank {ndim}; only int16 (1), rank 3")
    return int(s), int(h), int(w)


def decode_volume(frame: bytes | bytearray | memoryview, *, max_voxels: int) -> np.ndarray:
    """The int16 volume of a frame; `FrameError` for a malformed one, or one whose stated size
    is over ``max_voxels`` (checked before decompressing)."""
    import zstandard

    shape = frame_shape(frame)
    voxels = shape[0] * shape[1] * shape[2]
    if voxels == 0 or voxels > max_voxels:
        raise FrameError(
            f"CT_COMPRESSED states a volume of shape {list(shape)}; at most {max_voxels} voxels and "
            "none empty are accepted"
        )
    expected = 2 * voxels
    try:
        raw = zstandard.ZstdDecompressor().decompress(
            bytes(memoryview(frame)[_HEADER.size :]), max_output_size=expected
        )
    except zstandard.ZstdError as exc:
        raise FrameError(f"CT_COMPRESSED's zstd data is corrupt ({exc}); send the frame again") from exc
    if len(raw) != expected:
        raise FrameError(
            f"CT_COMPRESSED decompresses to {len(raw)} bytes, its header's shape {list(shape)} needs "
            f"{expected}; the frame is truncated or not covidet's"
        )
    planes = np.frombuffer(raw, np.uint8).reshape(2, voxels)
    out = np.empty(voxels, np.int16)
    pairs = out.view(np.uint8).reshape(voxels, 2)
    # interleaved back block by block: a whole-volume transpose writes with a stride across
    # hundreds of MB and runs several times slower than blocks that stay in the cache
    for start in range(0, voxels, _BLOCK):
        stop = min(start + _BLOCK, voxels)
        pairs[start:stop, 0] = planes[0, start:stop]
        pairs[start:stop, 1] = planes[1, start:stop]
    return out.reshape(shape)
