"""Run a manifest's scans through a running server and append each result to ``results.jsonl``.

A scan already in the results file is skipped (``retry_failed`` runs the failed ones again), so
an interrupted run resumes where it stopped. A scan that fails (unreadable, no lung found, the
server's error, a timeout) is recorded with its error and counted; the run stops only when the
server cannot be reached at all (the results so far stay, and a re-run resumes).

Segmentation is scored here, where the masks are (they are not kept): Dice and the reference
volumes of each scan with reference masks. The course of each patient with serial scans is
forecast by the served GPR (DL#5) from the first `N_FIT` scans once all its scans are in.
"""

from __future__ import annotations

import asyncio
import datetime
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from covidet._contract import range_covers
from covidet.errors import CovidetError, RequestTimeoutError, ServerUnavailableError
from covidet.evaluate._manifest import ManifestRow
from covidet.evaluate._results import ResultsLog
from covidet.metrics import dice

__all__ = ["N_FIT", "RunSummary", "ScanClient", "load_mask", "run_courses", "run_scans"]

#: Scans of a course the forecast is fitted on; the later ones check it.
N_FIT = 3


class ScanClient(Protocol):
    """What the run needs of `covidet.client.AsyncClient` (a test passes a stand-in)."""

    async def diagnose(self, source: Any, *, return_masks: bool = ..., clinical: Any = ...) -> Any: ...

    async def forecast(self, days: Any, ratios: Any, query_days: Any = ..., *, levels: Any = ...) -> Any: ...


@dataclass
class RunSummary:
    """What one run did: scans diagnosed now, failed now, skipped (already in the results)."""

    done: int = 0
    failed: int = 0
    skipped: int = 0
    courses: int = 0


def _now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


def _error(exc: BaseException) -> dict[str, Any]:
    return {"type": type(exc).__name__, "code": getattr(exc, "code", None), "message": str(exc)}


def load_mask(path: Path, volume: Any, which: str = "") -> np.ndarray:
    """A reference mask on the scan's grid: NIfTI (read as the client reads a CT; any non-zero
    voxel counts) or a DICOM SEG of the scan's series (frames placed by their source SOP
    instances). Of a SEG with several segments, those whose label or property names ``which``
    ("lung", "lesion") are taken; a SEG with one segment is taken whole."""
    from covidet.client import load_volume
    from covidet.errors import VolumeError

    name = path.name.lower()
    if name.endswith((".nii", ".nii.gz")):
        mask = load_volume(path).hu > 0
    else:
        mask = _seg_mask(path, volume, which)
    if mask.shape != volume.hu.shape:
        raise VolumeError(f"{path}: mask shape {mask.shape} differs from the scan's {volume.hu.shape}")
    return mask


def _seg_mask(path: Path, volume: Any, which: str) -> np.ndarray:
    import highdicom as hd

    from covidet.errors import VolumeError

    uids = volume.meta.get("sop_instance_uids")
    if not uids:
        raise VolumeError(f"{path}: a DICOM SEG reference needs a DICOM series scan")
    try:
        seg = hd.seg.segread(str(path))
        numbers = list(seg.segment_numbers)
        if len(numbers) > 1:
            names = {
                n: f"{seg.get_segment_description(n).segment_label} "
                f"{seg.get_segment_description(n).segmented_property_type.meaning}".lower()
                for n in numbers
            }
            numbers = [n for n, text in names.items() if which and which in text]
            if not numbers:
                raise VolumeError(f"{path}: no segment names {which!r} (segments: {sorted(names.values())})")
        pixels = seg.get_pixels_by_source_instance(
            source_sop_instance_uids=list(uids),
            segment_numbers=numbers,
            combine_segments=False,
            ignore_spatial_locations=True,
            assert_missing_frames_are_empty=True,
        )
    except VolumeError:
        raise
    except Exception as exc:  # highdicom raises several types for a SEG that does not fit
        raise VolumeError(f"{path}: not a DICOM SEG of this series ({exc})") from exc
    return np.asarray(pixels).reshape(*np.shape(pixels)[:3], -1).any(axis=-1)


def _segmentation(row: ManifestRow, volume: Any, d: Any) -> dict[str, Any] | None:
    if row.lung_mask is None and row.lesion_mask is None:
        return None
    voxel_ml = float(np.prod(volume.spacing)) / 1000.0
    out: dict[str, Any] = {}
    try:
        if row.lung_mask is not None:
            ref = load_mask(row.lung_mask, volume, "lung")
            out["lung_dice"] = dice(np.asarray(d.lung_mask), ref)
            out["lung_volume_ref_ml"] = float(ref.sum()) * voxel_ml
        if row.lesion_mask is not None:
            ref_lesion = load_mask(row.lesion_mask, volume, "lesion")
            out["lesion_dice"] = dice(np.asarray(d.lesion_mask), ref_lesion)
            out["lesion_volume_ref_ml"] = float(ref_lesion.sum()) * voxel_ml
    except CovidetError as exc:
        out["error"] = _error(exc)
    return out


async def _one(row: ManifestRow, client: ScanClient) -> dict[str, Any]:
    from covidet.client import load_volume

    rec: dict[str, Any] = {
        "kind": "scan",
        "key": row.scan_id,
        "scan_id": row.scan_id,
        "path": str(row.path),
        "label": row.label_name,
        "patient_id": row.patient_id,
        "day": row.day,
        "has_clinical": row.clinical is not None,
    }
    want_masks = row.lung_mask is not None or row.lesion_mask is not None
    try:
        volume = await asyncio.to_thread(load_volume, row.path)
        clinical = None if row.clinical is None else np.asarray(row.clinical, np.float32)
        d = await client.diagnose(volume, return_masks=want_masks, clinical=clinical)
    except RequestTimeoutError as exc:  # this scan took too long: its failure, not the server's
        return rec | {"status": "error", "error": _error(exc), "finished_at": _now()}
    except ServerUnavailableError:
        raise
    except CovidetError as exc:
        return rec | {"status": "error", "error": _error(exc), "finished_at": _now()}
    seg = await asyncio.to_thread(_segmentation, row, volume, d) if want_masks else None
    return rec | {
        "status": "ok",
        "error": None,
        "diagnosis": d.to_dict(),
        "segmentation": seg,
        "finished_at": _now(),
    }


async def run_scans(
    rows: Sequence[ManifestRow],
    client: ScanClient,
    log: ResultsLog,
    *,
    concurrency: int = 1,
    retry_failed: bool = False,
    on_result: Callable[[dict[str, Any]], None] | None = None,
) -> RunSummary:
    """Diagnose the rows not yet in ``log`` with up to ``concurrency`` in flight; each record is
    appended as soon as it arrives (in completion order). Raises `ServerUnavailableError` when the
    server cannot be reached (after the client's retries)."""
    if concurrency < 1:
        raise ValueError(f"concurrency must be >= 1, got {concurrency}")
    summary = RunSummary()
    todo: list[ManifestRow] = []
    for row in rows:
        prev = log.record("scan", row.scan_id)
        if prev is not None and (prev.get("status") == "ok" or not retry_failed):
            summary.skipped += 1
        else:
            todo.append(row)
    queue = list(reversed(todo))

    async def worker() -> None:
        while queue:
            rec = await _one(queue.pop(), client)
            log.append(rec)
            if rec["status"] == "ok":
                summary.done += 1
            else:
                summary.failed += 1
            if on_result is not None:
                on_result(rec)

    tasks = [asyncio.ensure_future(worker()) for _ in range(min(concurrency, len(todo)))]
    try:
        await asyncio.gather(*tasks)
    finally:
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    return summary


async def run_courses(rows: Sequence[ManifestRow], client: ScanClient, log: ResultsLog) -> int:
    """Forecast each patient's course from the first `N_FIT` diagnosed scans (served GPR) and check
    it against the later ones: for each later scan k, the forecast day the lesion ratio measured at
    k is reached (the served crossing day, the median first passage of the patient's possible
    courses), against k's real day. Returns the courses written now (a course already in ``log``
    with the same scans is skipped)."""
    by_patient: dict[str, list[ManifestRow]] = {}
    for row in rows:
        if row.patient_id and row.day is not None:
            by_patient.setdefault(row.patient_id, []).append(row)
    written = 0
    for patient, prow in sorted(by_patient.items()):
        points = []
        for row in prow:
            scan = log.record("scan", row.scan_id)
            if scan is not None and scan.get("status") == "ok":
                points.append((float(row.day or 0.0), float(scan["diagnosis"]["lesion_ratio"]), row.scan_id))
        points.sort()
        if len({p[0] for p in points}) < N_FIT + 1:
            continue
        scan_ids = [p[2] for p in points]
        prev = log.record("course", patient)
        if prev is not None and prev.get("scan_ids") == scan_ids and prev.get("status") == "ok":
            continue
        days = [p[0] for p in points]
        ratios = [p[1] for p in points]
        later = list(range(N_FIT, len(points)))
        rec: dict[str, Any] = {
            "kind": "course",
            "key": patient,
            "patient_id": patient,
            "scan_ids": scan_ids,
            "days": days,
            "ratios": ratios,
            "n_fit": N_FIT,
        }
        try:
            fc = await client.forecast(
                days[:N_FIT],
                ratios[:N_FIT],
                [days[k] for k in later],
                levels=[ratios[k] for k in later],
            )
        except ServerUnavailableError:
            raise
        except CovidetError as exc:
            log.append(rec | {"status": "error", "error": _error(exc), "finished_at": _now()})
            written += 1
            continue
        checks = []
        last_fit = days[N_FIT - 1]
        for j, k in enumerate(later):
            level = float(ratios[k])
            cross = fc.crossing_days.get(level)
            earliest, latest = fc.crossing_ranges.get(level, (None, None))
            mean = float(fc.mean[j])
            checks.append(
                {
                    "scan_id": scan_ids[k],
                    "point": k + 1,
                    "day": days[k],
                    "ratio": ratios[k],
                    "interval_actual_days": days[k] - last_fit,
                    "crossing_day": cross,
                    "interval_predicted_days": None if cross is None else cross - last_fit,
                    "crossing_error_days": None if cross is None else cross - days[k],
                    # the stated 95 % range of the day (an open end: past the server's horizon)
                    "crossing_range": [earliest, latest],
                    "in_range": range_covers(days[k], earliest, latest),
                    "reach_probability": fc.reach_probability.get(level),
                    "mean_at_day": mean,
                    "ratio_error": mean - ratios[k],
                }
            )
        log.append(rec | {"status": "ok", "error": None, "checks": checks, "finished_at": _now()})
        written += 1
    return written
