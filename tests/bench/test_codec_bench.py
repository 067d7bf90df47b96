"""codec_bench.py at a tiny size: every phantom class and a NIfTI scan round-trip, and its JSON."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_codec_bench_at_a_tiny_size(tmp_path: Path) -> None:
    spec = importlib.util.spec_from_file_location("codec_bench", ROOT / "benchmarks" / "codec_bench.py")
    assert spec is not None and spec.loader is not None
    bench = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = bench
    spec.loader.exec_module(bench)
    out = tmp_path / "codec.json"
    nifti = ROOT / "tests" / "data" / "example_ct.nii.gz"
    argv = ["--slices", "8", "--size", "64", "--repeats", "1", "--nifti", str(nifti), "--json", str(out)]
    assert bench.main(argv) == 0
    report = json.loads(out.read_text())
    assert [r["scan"] for r in report["results"]][-1] == "example_ct.nii.gz"
    assert len(report["results"]) == 5
    for row in report["results"]:
        assert row["frame_bytes"] < row["raw_bytes"] and row["ratio"] > 1
        assert row["encode_s"] > 0 and row["decode_s"] > 0
