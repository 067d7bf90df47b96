"""bench.py --end-to-end: scans read from disk, then served; the JSON splits each scan's time."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from covidet.bench import main

pytestmark = pytest.mark.e2e

SLICES, SIZE = 16, 64


def _run(server: Any, out: Path, *extra: str) -> dict[str, Any]:
    argv = ["--url", server.grpc_url, "--end-to-end", "--duration", "3", "--warmup", "1"]
    argv += ["--slices", str(SLICES), "--size", str(SIZE), "--scans", "2", "--json", str(out), *extra]
    assert main(argv) == 0
    return dict(json.loads(out.read_text()))


def test_end_to_end_phantom_series(covidet_server: Any, tmp_path: Path) -> None:
    report = _run(covidet_server, tmp_path / "e2e.json", "--concurrency", "1,2")
    workload = report["workload"]
    assert workload["end_to_end"] and len(workload["first_read_s"]) == 2
    assert all(v > 0 for v in workload["first_read_s"].values())
    assert not any(Path(p).exists() for p in workload["source_paths"])  # bench's series removed
    one, two = (lv["summary"] for lv in report["levels"])
    for lv in (one, two):
        e = lv["end_to_end"]
        assert lv["ok"] >= 1 and lv["errors"] == 0 and e["scans"] == lv["ok"]
        for part in ("read_s", "request_s", "total_s"):
            assert 0 < e[part]["p50"] <= e[part]["p95"]
        # the level's latency is the whole way, file to answer
        assert lv["latency_p50_s"] == pytest.approx(e["total_s"]["p50"])
        # the uncompressed CT on the wire: 2 bytes a voxel (and the spacing)
        assert SLICES * SIZE * SIZE * 2 <= e["request_bytes_per_scan"] < SLICES * SIZE * SIZE * 2 + 1024
        assert e["response_bytes_per_scan"] > 0
    # one request in flight: each one's served time from Triton's statistics, the rest transfer
    e = one["end_to_end"]
    assert e["split"].startswith("per request")
    assert 0 < e["served_s"]["p50"] <= e["request_s"]["p50"] and e["transfer_s"]["p50"] >= 0
    for sample in report["levels"][0]["samples"]:
        parts = sample["parts"]
        assert parts["total_s"] == pytest.approx(parts["read_s"] + parts["request_s"])
        assert parts["request_s"] == pytest.approx(parts["served_s"] + parts["transfer_s"])
    # two in flight overlap in the statistics: the level's means only
    e = two["end_to_end"]
    assert e["split"].startswith("level means") and set(e["served_s"]) == {"mean"}
    assert 0 < e["served_s"]["mean"] <= e["request_s"]["mean"]


def test_end_to_end_folder_cold_reads(covidet_server: Any, tmp_path: Path) -> None:
    """--folder with a DICOM series and a NIfTI file, each dropped from the page cache before
    every read."""
    from covidet.phantom import make_phantom, write_dicom_series, write_nifti

    folder = tmp_path / "scans"
    ph = make_phantom("COVID-19", n_slices=SLICES, size=SIZE, seed=7)
    write_dicom_series(ph, folder / "series")
    write_nifti(ph.hu, folder / "ct.nii.gz", ph.spacing)
    report = _run(covidet_server, tmp_path / "e2e.json", "--concurrency", "1", "--folder", str(folder))
    assert report["workload"]["evict_cache"] is False
    assert sorted(report["workload"]["first_read_s"]) == ["ct.nii.gz", "series"]
    report = _run(
        covidet_server, tmp_path / "cold.json", "--concurrency", "1", "--folder", str(folder), "--evict-cache"
    )
    (level,) = report["levels"]
    e = level["summary"]["end_to_end"]
    assert level["summary"]["errors"] == 0 and "dropped from the page cache" in e["read_from"]
    assert {s["slices"] for s in level["samples"]} == {SLICES}
    assert (folder / "series").exists()  # a given folder is left alone


def test_end_to_end_compression(covidet_server: Any, tmp_path: Path) -> None:
    report = _run(covidet_server, tmp_path / "z.json", "--concurrency", "1", "--compression", "zstd")
    (level,) = report["levels"]
    e = level["summary"]["end_to_end"]
    assert level["summary"]["errors"] == 0 and e["compression"] == "zstd"
    assert 0 < e["request_bytes_per_scan"] < SLICES * SIZE * SIZE * 2


def test_end_to_end_refuses_what_it_cannot_measure(tmp_path: Path) -> None:
    with pytest.raises(SystemExit, match="closed-loop"):
        main(["--end-to-end", "--url", "127.0.0.1:1", "--concurrency", "", "--rate", "1"])
    with pytest.raises(SystemExit, match="--end-to-end"):
        main(["--evict-cache", "--concurrency", ""])
