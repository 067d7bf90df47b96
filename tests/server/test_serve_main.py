"""`covidet serve` options that do not need a running server: --dry-run shows the Triton command."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest

from covidet.server import serve_main


def _command(capsys: pytest.CaptureFixture[str], *argv: str) -> list[str]:
    assert serve_main(list(argv)) == 0
    return list(json.loads(capsys.readouterr().out.strip().splitlines()[-1]))


def test_admin_apis_are_locked_by_default_with_a_private_token(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    token_file = tmp_path / "token"
    cmd = _command(
        capsys, "--model-repository", str(tmp_path), "--admin-token-file", str(token_file), "--dry-run"
    )
    token = token_file.read_text().strip()
    assert token_file.stat().st_mode & 0o077 == 0
    locks = [a for a in cmd if a.startswith(("--grpc-restricted-protocol=", "--http-restricted-api="))]
    assert len(locks) == 2 and all(a.endswith(f":covidet-admin-key={token}") for a in locks)
    assert "model-repository" in locks[0] and "inference" not in locks[0]
    assert "--model-control-mode=explicit" in cmd and "--load-model=*" in cmd


def test_arguments_after_double_dash_reach_tritonserver_last(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cmd = _command(
        capsys,
        "--model-repository",
        str(tmp_path),
        "--unlocked",
        "--dry-run",
        "--",
        "--log-verbose=2",
        "--id=x",
    )
    assert cmd[-2:] == ["--log-verbose=2", "--id=x"]  # after covidet's own flags, so they win
    assert not any("restricted" in a for a in cmd)


def test_a_lock_passed_through_replaces_covidets_own(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COVIDET_ADMIN_TOKEN", "from-the-environment-0123456789")
    own = "--http-restricted-api=model-repository:my-header=abc0123456789abcdef"
    cmd = _command(capsys, "--model-repository", str(tmp_path), "--dry-run", "--", own)
    assert [a for a in cmd if "restricted" in a] == [own]


def test_gpu_tensors_through_bls_get_a_cuda_memory_pool_sized_for_the_chunks_in_flight(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from covidet import _contract as C
    from covidet.ensemble import PIPELINE_CONFIG_FILE, PipelineConfig
    from covidet.preprocessing import default_records, record_to_json
    from covidet.server._server import MIN_CUDA_POOL_BYTES

    def pool(device: str | None, tensors: bool, lung: int = 0, instances: int = 0) -> list[str]:
        repo = tmp_path / f"{device}-{tensors}-{lung}-{instances}"
        (repo / C.PIPELINE.name / "1").mkdir(parents=True)
        models: dict = {}
        if lung:
            recs = default_records()  # lesion 256x256, classifier and encoder 224x224, 35 slices
            recs[C.LUNG_SEG.name] = replace(recs[C.LUNG_SEG.name], input_size=(lung, lung))  # type: ignore[arg-type]
            models = {name: {"preprocessing": record_to_json(rec)} for name, rec in recs.items()}
        text = PipelineConfig(models=models, device=device, device_tensors=tensors).to_json()
        (repo / C.PIPELINE.name / "1" / PIPELINE_CONFIG_FILE).write_text(text)
        if instances:
            (repo / C.PIPELINE.name / "config.pbtxt").write_text(
                f"instance_group [\n  {{\n    count: {instances}\n    kind: KIND_CPU\n  }}\n]\n"
            )
        cmd = _command(capsys, "--model-repository", str(repo), "--unlocked", "--dry-run")
        return [a for a in cmd if a.startswith("--cuda-memory-pool-byte-size")]

    # 8 instances x 4 chunks x 32 slices of a 512x512 lung: (2 inputs + 1 output) x 1 MiB each, +25%
    assert pool("cuda", True, lung=512, instances=8) == [f"--cuda-memory-pool-byte-size=0:{15 * 2**28}"]
    # 128x128 lung: the lesion stage is the larger (4 x 32 256x256 slices, 2 x 35 classifier inputs)
    demo = 8 * (128 * 3 * 256 * 256 * 4 + 70 * 2 * 3 * 224 * 224 * 4) * 1.25
    assert pool("cuda", True, lung=128, instances=8) == [
        f"--cuda-memory-pool-byte-size=0:{-(-int(demo) // 2**20) * 2**20}"
    ]
    assert pool("cuda", True) == [f"--cuda-memory-pool-byte-size=0:{MIN_CUDA_POOL_BYTES}"]
    assert pool("cuda:1", True) == [f"--cuda-memory-pool-byte-size=1:{MIN_CUDA_POOL_BYTES}"]
    assert pool("cuda", False) == [] and pool("cpu", True) == [] and pool(None, False) == []
