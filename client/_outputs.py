"""Files for one diagnosis: DICOM SEG and SR, result JSON, PNG key images.

`write_outputs` writes into ``out_dir``:

- ``seg.dcm``: DICOM Segmentation (BINARY) with segment 1 = lung, 2 = lesion, frame by frame on the
  source CT slices (only for a DICOM input with masks, i.e. ``return_masks=True``);
- ``sr.dcm``: Comprehensive 3D SR with a TID 1500 Measurement Report: a volumetric group per
  segment (lung volume; lesion volume and lesion/lung ratio) referencing ``seg.dcm``, and a
  scan-level group with DL#1, DL#2, the stepwise P(COVID-19), the top-K class probabilities and the
  predicted class (only for a DICOM input);
- ``result.json``: `Diagnosis.to_dict()`;
- ``keyimage_<k>.png`` for the k-th (1-based) of the top-K slices and ``coronal.png``;
- with an explained diagnosis (``explain=True``): ``attention_<k>.png`` overlays and, for a DICOM
  input, ``attention.dcm`` (a Parametric Map), which the SR references (see `_attention`).

The returned dict maps each written file's stem (``seg``, ``sr``, ``result``, ``keyimage_1``, ...,
``coronal``) to its path; a file that was not written has no key (and a log line says why: a
warning where a DICOM input gets no SEG and SR, e.g. instances without a SOPInstanceUID).
Everything here runs in the light client: pydicom, highdicom, matplotlib; no torch, no scipy.
The writers live in `_seg`, `_sr` and `_png`; this module matches the source datasets and calls them.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from covidet.client._attention import write_attention_map, write_attention_pngs
from covidet.client._png import write_pngs
from covidet.client._result import Diagnosis
from covidet.client._seg import write_seg
from covidet.client._sr import write_sr
from covidet.client._volume import Volume

__all__ = ["write_outputs"]

log = logging.getLogger(__name__)


# --- masks and source datasets ----------------------------------------------------------------


def _mask(diagnosis: Diagnosis, name: str, shape: tuple[int, ...]) -> np.ndarray | None:
    m = getattr(diagnosis, name)
    if m is None:
        return None
    m = np.asarray(m)
    if m.shape != shape:
        raise ValueError(f"diagnosis.{name} has shape {m.shape}, the volume {shape}")
    return m > 0


def _load_source_datasets(
    volume: Volume, source_datasets: Sequence[Any] | None, warn: Callable[[str], None]
) -> list[Any] | None:
    """The source CT datasets in the volume's slice order (matched by SOPInstanceUID), or None
    (a DICOM input then says why through ``warn``)."""
    dicom = volume.meta.get("format") == "dicom"
    uids = [str(u) for u in volume.meta.get("sop_instance_uids") or []]
    complete = bool(uids) and all(uids) and len(uids) == volume.n_slices
    if dicom and not complete:
        n_missing = volume.n_slices - sum(1 for u in uids if u)
        warn(
            f"{volume.source}: {n_missing} of its {volume.n_slices} slices come from DICOM instances "
            "without a SOPInstanceUID, which a SEG and an SR need to reference their source: no "
            "seg.dcm, no sr.dcm. `covidet deidentify SRC OUT` writes a copy that has them (a "
            "de-identified one); or give every instance a SOPInstanceUID (pydicom.uid.generate_uid(), "
            "also as the file meta's MediaStorageSOPInstanceUID) and run again"
        )
        return None
    if not complete or (source_datasets is None and not dicom):
        log.info("%s is not a DICOM series: no seg.dcm, no sr.dcm", volume.source)
        return None
    if source_datasets is None:
        from covidet.client._dicom import _files, _header, _map

        files = _files(Path(volume.source))
        source_datasets = [h for h in _map(_header, files) if h is not None]
    by_uid: dict[str, Any] = {}
    for ds in source_datasets:
        by_uid.setdefault(str(getattr(ds, "SOPInstanceUID", "")), ds)
    missing = [u for u in uids if u not in by_uid]
    if missing:
        raise ValueError(
            f"{len(missing)} of the volume's {len(uids)} source slices are not among the source "
            f"datasets (first missing SOPInstanceUID {missing[0]}); was {volume.source} changed?"
        )
    if volume.meta.get("source_frames") is not None:  # enhanced CT: frames of one instance
        if len(set(uids)) != 1:
            warn(f"{volume.source}: an enhanced CT split over several instances: no seg.dcm, no sr.dcm")
            return None
        return [by_uid[uids[0]]]
    return [by_uid[u] for u in uids]


# --- entry point ------------------------------------------------------------------------------


def _json_default(obj: Any) -> Any:
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    raise TypeError(f"{type(obj).__name__} is not JSON serializable")


def write_outputs(
    diagnosis: Diagnosis,
    volume: Volume,
    out_dir: Path,
    *,
    source_datasets: list[Any] | None = None,
    on_warning: Callable[[str], None] | None = None,
) -> dict[str, Path]:
    """Write SEG, SR, JSON and PNG outputs of ``diagnosis`` for ``volume`` into ``out_dir``.

    ``source_datasets``: the source CT datasets (headers suffice), in any order; by default they
    are read from ``volume.source``. They are matched to the volume's slices by SOPInstanceUID
    (``volume.meta['sop_instance_uids']``), so frame i of the SEG lies on the volume's slice i.
    SEG needs a DICOM input and masks (``return_masks=True``); SR needs a DICOM input. Returns
    ``{file stem: path}`` for every file written; skipped files have no key. Why a DICOM input got
    no SEG and SR is logged as a warning and, given ``on_warning``, passed to it too (for a CLI).
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    shape = tuple(volume.hu.shape)
    lung = _mask(diagnosis, "lung_mask", shape)
    lesion = _mask(diagnosis, "lesion_mask", shape)
    written: dict[str, Path] = {}

    result = out_dir / "result.json"
    result.write_text(json.dumps(diagnosis.to_dict(), indent=2, default=_json_default) + "\n")
    written[result.stem] = result

    def warn(message: str) -> None:
        log.warning("%s", message)
        if on_warning is not None:
            on_warning(message)

    sources = _load_source_datasets(volume, source_datasets, warn)
    if sources is not None:
        seg = None
        frames = volume.meta.get("source_frames")  # an enhanced CT: the volume's slices' frames
        if lung is None or lesion is None:
            log.info("no masks in the diagnosis (return_masks=False): no seg.dcm")
        else:
            seg = write_seg(diagnosis, sources, lung, lesion, out_dir / "seg.dcm", frames)
            written["seg"] = out_dir / "seg.dcm"
        attention = None
        if diagnosis.attention is not None and frames is None:
            attention = write_attention_map(diagnosis, sources, out_dir / "attention.dcm")
            if attention is not None:
                written["attention"] = out_dir / "attention.dcm"
        write_sr(diagnosis, sources, seg, out_dir / "sr.dcm", attention, frames)
        written["sr"] = out_dir / "sr.dcm"

    written.update(write_pngs(diagnosis, volume, lung, lesion, out_dir))
    written.update(write_attention_pngs(diagnosis, volume, lesion, out_dir))
    return written
