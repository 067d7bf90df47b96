"""read_bench.py at a tiny size: every reader on every syntax, the phantom read back, its JSON."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _read_bench() -> ModuleType:
    spec = importlib.util.spec_from_file_location("read_bench", ROOT / "benchmarks" / "read_bench.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look the module up
    spec.loader.exec_module(module)
    return module


def test_read_bench_at_a_tiny_size(tmp_path: Path) -> None:
    bench = _read_bench()
    out = tmp_path / "read.json"
    old = tmp_path / "old_dicom.py"
    old.write_text((ROOT / "client" / "_dicom.py").read_text())  # stands in for an older version
    argv = ["--slices", "8", "--size", "64", "--repeats", "2", "--old-reader", str(old)]
    assert bench.main([*argv, "--tmpdir", str(tmp_path), "--json", str(out)]) == 0
    report = json.loads(out.read_text())
    assert report["series"] == {"slices": 8, "rows": 64, "columns": 64, "seed": 1}
    assert report["command"].startswith("python benchmarks/read_bench.py --slices 8 --size 64")
    assert [r["syntax"] for r in report["results"]] == ["uncompressed", "jpeg2000", "jpegls", "rle"]
    readers = {"covidet", "covidet-old", "pydicom"}
    if report["versions"]["SimpleITK"]:
        readers.add("simpleitk")
    else:
        assert "SimpleITK" in report["readers_absent"]["simpleitk"]
    for result in report["results"]:
        if "skipped" in result:  # an encoder not installed here: said, not silently dropped
            assert "encoder" in result["skipped"]
            continue
        assert set(result["readers"]) == readers
        assert result["bytes_on_disk"] > 0
        for timing in result["readers"].values():
            assert timing["matches_phantom"]
            assert len(timing["times_s"]) == 2 and timing["best_s"] == min(timing["times_s"]) > 0
        assert set(result["speedup_of_covidet"]) == {f"vs_{r}" for r in readers - {"covidet"}}
    assert not list(tmp_path.glob("covidet-read-bench-*"))  # the series is cleaned up


def test_without_simpleitk_the_bench_says_so(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    bench = _read_bench()
    monkeypatch.setattr(bench, "_simpleitk_version", lambda: None)
    out = tmp_path / "read.json"
    argv = ["--slices", "4", "--size", "32", "--repeats", "1", "--syntaxes", "uncompressed"]
    assert bench.main([*argv, "--tmpdir", str(tmp_path), "--json", str(out)]) == 0
    report = json.loads(out.read_text())
    assert set(report["results"][0]["readers"]) == {"covidet", "pydicom"}
    assert "pip install" in report["readers_absent"]["simpleitk"]
    assert "SimpleITK is not installed" in capsys.readouterr().err


def test_a_missing_encoder_is_reported_not_skipped_silently(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from pydicom.pixels import get_encoder

    bench = _read_bench()
    encoder = get_encoder("1.2.840.10008.1.2.5")
    monkeypatch.setattr(type(encoder), "is_available", property(lambda self: False))
    out = tmp_path / "read.json"
    argv = ["--slices", "4", "--size", "32", "--repeats", "1", "--syntaxes", "uncompressed,rle"]
    assert bench.main([*argv, "--tmpdir", str(tmp_path), "--json", str(out)]) == 0
    rle = json.loads(out.read_text())["results"][1]
    assert rle["syntax"] == "rle" and "no RLE lossless encoder" in rle["skipped"]
