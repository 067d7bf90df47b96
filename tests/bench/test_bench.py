"""bench.py smoke test: a few seconds of load against the test server, JSON/CSV/PNG written."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from covidet import _contract as C
from covidet.bench import main
from covidet.bench._load import Scan, run_closed_loop, run_open_loop, server_stats_delta
from covidet.ensemble import FALLBACK_WARNING

pytestmark = pytest.mark.e2e


def test_bench_smoke(covidet_server: Any, tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    code = main(
        [
            "--url",
            covidet_server.grpc_url,
            "--concurrency",
            "1,2",
            "--rate",
            "2",
            "--duration",
            "3",
            "--warmup",
            "1",
            "--slices",
            "24",
            "--size",
            "128",
            "--scans",
            "2",
            "--compare",
            "onnx,naive,perf_analyzer,prepost",
            "--baseline-scans",
            "1",
            "--json",
            str(out),
            "--csv",
            str(tmp_path / "b.csv"),
            "--png",
            str(tmp_path / "b.png"),
        ]
    )
    assert code == 0
    report = json.loads(out.read_text())
    levels = [lv["summary"] for lv in report["levels"]]
    assert [(lv["mode"], lv["level"]) for lv in levels] == [("closed", 1), ("closed", 2), ("open", 2)]
    for lv in levels:
        assert lv["ok"] >= 1 and lv["errors"] == 0
        assert 0 < lv["latency_p50_s"] <= lv["latency_p99_s"]
        assert lv["slices_per_s"] == pytest.approx(lv["scans_per_s"] * 24, rel=1e-6)
    assert "lung_seg" in levels[0]["server"] and levels[0]["server"]["lung_seg"]["executions"] >= 1
    # a server on this machine that bench did not start is found by its port: memory and CPU too
    assert levels[0]["peak_server_own_pss_mib"] > 0 and levels[0]["server_cpu_s_per_scan"] > 0
    assert levels[0]["server_cpu_s_per_scan_by_process"]["lung_seg"] > 0
    modes = [b["summary"]["mode"] for b in report["baselines"]]
    assert modes == ["perf_analyzer", "perf_analyzer", "onnx-inprocess", "naive-torch", "prepost-1core"]
    assert all(b["summary"]["ok"] == 1 for b in report["baselines"][2:])
    for b in report["baselines"][2:]:  # in-process: where a scan's time goes, stage by stage
        stages = b["summary"]["stages_mean_s"]
        assert set(stages) == {"lung", "classify_and_lesion", "fusion", "total"}
        assert 0 < stages["lung"] < stages["total"] <= b["summary"]["latency_mean_s"]
    for pa, level in zip(report["baselines"][:2], (1, 2), strict=True):  # Triton's own load generator
        s = pa["summary"]
        assert s["level"] == level and s["scans_per_s"] > 0 and 0 < s["latency_p50_s"] <= s["latency_p99_s"]
    assert (tmp_path / "b.png").stat().st_size > 1000
    assert (tmp_path / "b.csv").read_text().startswith("mode,level")


def test_errors_are_counted_not_dropped() -> None:
    scans = [Scan(__import__("numpy").zeros((1, 16, 16), "int16"), (1.0, 1.0, 1.0), "x")]

    def make() -> Any:
        def fn(scan: Scan) -> None:
            raise RuntimeError("boom")

        return fn

    res = run_closed_loop(make, scans, 2, 0.2)
    s = res.summary()
    assert s["requests"] == s["errors"] > 0 and s["error_kinds"] == {"RuntimeError": s["errors"]}
    res = run_open_loop(make, scans, 50.0, 0.2)
    assert res.summary()["errors"] == len(res.samples) > 0


def test_stats_delta() -> None:
    def stats(req: int, exe: int, queue: int) -> dict[str, Any]:
        return {
            "model_stats": [
                {
                    "name": "lung_seg",
                    "inference_count": req * 10,
                    "execution_count": exe,
                    "inference_stats": {
                        "success": {"count": req, "ns": 0},
                        "queue": {"count": req, "ns": queue},
                    },
                }
            ]
        }

    d = server_stats_delta(stats(2, 1, 1_000_000), stats(6, 3, 9_000_000))
    assert d["lung_seg"]["requests"] == 4 and d["lung_seg"]["executions"] == 2
    assert d["lung_seg"]["avg_batch"] == 20.0 and d["lung_seg"]["queue_ms_per_request"] == 2.0


def test_soak_short_run(covidet_server: Any, tmp_path: Path) -> None:
    from covidet.bench._soak import main_soak

    out = tmp_path / "soak.json"
    code = main_soak(
        [
            "--url",
            covidet_server.grpc_url,
            "--minutes",
            "0.1",
            "--window",
            "3",
            "--concurrency",
            "2",
            "--slices",
            "16",
            "--size",
            "96",
            "--scans",
            "2",
            "--shared-memory",
            "--json",
            str(out),
        ]
    )
    report = json.loads(out.read_text())
    assert code == 0 and report["summary"]["failures"] == 0
    # a server on this machine given by --url: its memory is read, per process
    assert any(name.startswith("covidet_pipeline") for name in report["windows"][0]["processes"])
    assert report["summary"]["windows"] == 2 and report["summary"]["requests"] >= 2
    assert report["summary"]["latency_p50_first_s"] > 0


def test_prepost_of_a_gpu_profile_records_with_torch(tmp_path: Path) -> None:
    """gpu-torch has no ONNX graphs: its pre/post baseline records with the torch models, and
    replays with the profile's device path (torch; here on the CPU)."""
    out = tmp_path / "b.json"
    argv = ["--profile", "gpu-torch", "--torch-device", "cpu", "--concurrency", "", "--slices", "24"]
    argv += [
        "--size",
        "128",
        "--scans",
        "1",
        "--compare",
        "prepost",
        "--baseline-scans",
        "2",
        "--json",
        str(out),
    ]
    assert main(argv) == 0
    (baseline,) = json.loads(out.read_text())["baselines"]
    assert baseline["summary"]["mode"] == "prepost-1core-cpu" and baseline["summary"]["ok"] == 2


def test_bench_baselines_only_on_other_checkpoints(tmp_path: Path) -> None:
    """No levels: no server, only the in-process baselines, on untrained checkpoints."""
    from covidet.train import write_untrained

    write_untrained(tmp_path / "ckpt", variant="demo", seed=3)
    out = tmp_path / "b.json"
    argv = ["--concurrency", "", "--checkpoints", str(tmp_path / "ckpt"), "--slices", "6", "--size", "64"]
    argv += ["--scans", "1", "--compare", "torch,naive", "--baseline-scans", "1", "--json", str(out)]
    assert main(argv) == 0
    report = json.loads(out.read_text())
    assert report["levels"] == []
    assert [b["summary"]["mode"] for b in report["baselines"]] == ["torch-inprocess-cpu", "naive-torch"]
    assert all(b["summary"]["ok"] == 1 for b in report["baselines"])
    assert report["server"]["checkpoints"]["lung_seg"] == "demo"
    assert report["server"]["torch_baseline_device"] == "cpu" and "cpu_model" in report["machine"]


def test_replayed_models_leave_the_pipeline_s_own_work(repository: Path, phantoms: dict[str, Any]) -> None:
    import asyncio

    import numpy as np

    from covidet.bench._baselines import _Replay
    from covidet.ensemble import InProcessModels, PipelineConfig, ScanPipeline

    scan = phantoms["COVID-19"]
    models = InProcessModels(repository)
    try:
        replay = _Replay(models.infer)
        pipe = ScanPipeline(PipelineConfig.from_repository(repository), replay.infer)
        spacing = np.asarray(scan.spacing, np.float32)
        replay.start(0, recording=True)
        want = asyncio.run(pipe.run(scan.hu, spacing))
        replay.start(0, recording=False)
        got = asyncio.run(pipe.run(scan.hu, spacing))  # no model runs: every output replayed
        for name, value in want.items():
            np.testing.assert_array_equal(got[name], value)
        replay.start(0, recording=False)
        with pytest.raises(RuntimeError, match="recorded"):  # another scan's calls do not fit
            asyncio.run(pipe.run(scan.hu[:-8], spacing))
    finally:
        models.close()


def test_bench_starts_its_own_server_and_keeps_its_log(tmp_path: Path) -> None:
    """Without --url bench renders the profile, starts Triton on free ports and stops it after."""
    out, log = tmp_path / "own.json", tmp_path / "logs" / "triton.log"
    argv = ["--profile", "cpu", "--concurrency", "1", "--duration", "2", "--warmup", "0"]
    argv += ["--slices", "16", "--size", "96", "--scans", "1", "--json", str(out), "--server-log", str(log)]
    assert main(argv) == 0
    (level,) = json.loads(out.read_text())["levels"]
    summary = level["summary"]
    assert summary["ok"] >= 1 and summary["errors"] == 0
    # the server's CPU per scan, by process: the pipeline and the slice models did the work
    by = summary["server_cpu_s_per_scan_by_process"]
    assert {C.PIPELINE.name, C.LUNG_SEG.name, C.LESION_SEG.name, "tritonserver"} <= set(by)
    assert by[C.PIPELINE.name] > 0 and by[C.LUNG_SEG.name] > 0
    assert summary["server_cpu_s_per_scan"] == pytest.approx(sum(by.values()), abs=1e-3)
    text = log.read_text(errors="replace")
    assert "covidet_pipeline" in text and FALLBACK_WARNING not in text


def test_soak_memory_slope_is_fitted_after_warm_up_and_per_process() -> None:
    from covidet.bench._soak import memory_slope, soak_report

    t = [60.0 * (i + 1) for i in range(30)]
    # a leak of 10 MiB per 10 min on top of 1000 MiB, after a warm-up that grows 200 MiB
    leaking = [1000.0 + (t_ - 600) / 60 if t_ >= 600 else 800 + t_ / 3 for t_ in t]
    flat = [500.0 + (5.0 if i % 2 else -5.0) for i in range(30)]  # noise, no trend
    slope = memory_slope(t, leaking, warmup_s=600)
    assert slope is not None
    assert abs(slope["mib_per_10min"] - 10.0) < 1e-6 and abs(slope["pct_per_10min"] - 1.0) < 1e-6
    assert memory_slope(t, leaking, warmup_s=t[-2]) is None  # too few windows after warm-up
    windows = [
        {
            "requests": 4,
            "errors": 0,
            "ok": 4,
            "latency_p50_s": 1.0,
            "t_end_s": t_,
            "rss_mib": a + b,
            "pss_mib": a + b,
            "own_pss_mib": a + b,
            "processes": {
                "tritonserver": {"rss_mib": a, "own_pss_mib": a},
                "covidet_pipeline_0_0": {"rss_mib": b, "own_pss_mib": b},
            },
        }
        for t_, a, b in zip(t, leaking, flat, strict=True)
    ]
    report = soak_report(windows, warmup_s=600)
    per = report["slope_per_process"]
    assert abs(per["tritonserver"]["own_pss_mib"]["mib_per_10min"] - 10.0) < 1e-6
    assert abs(per["covidet_pipeline_0_0"]["own_pss_mib"]["mib_per_10min"]) < 1.0
    assert report["failures"] == 0 and report["slope"]["pss_mib"]["mib_per_10min"] > 9.0


def test_soak_names_admission_refusals_and_what_to_do() -> None:
    from covidet.bench._soak import refusal_hint

    assert (
        refusal_hint([{"errors": 0, "error_kinds": {}}, {"errors": 1, "error_kinds": {"TimeoutError": 1}}])
        is None
    )
    hint = refusal_hint([{"error_kinds": {"ServerBusyError": 3}}, {"error_kinds": {"ServerBusyError": 2}}])
    assert hint is not None and hint.startswith("5 scans were refused") and "--max-scan-bytes" in hint
