"""deploy/Dockerfile checked statically (no Docker engine here), deploy/entrypoint.sh run for real."""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
ENTRYPOINT = DEPLOY / "entrypoint.sh"
CHECKPOINTS = ROOT / "src" / "covidet" / "checkpoints" / "demo"


def instructions(path: Path = DEPLOY / "Dockerfile") -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs: comments dropped, continuation lines joined."""
    out: list[tuple[str, str]] = []
    pending = ""
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if line.startswith("#"):  # a comment inside a continued instruction
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        full = (pending + line).strip()
        pending = ""
        word, _, rest = full.partition(" ")
        out.append((word.upper(), rest.strip()))
    assert not pending, "Dockerfile ends inside a continued line"
    return out


@pytest.fixture(scope="module")
def dockerfile() -> list[tuple[str, str]]:
    return instructions()


def test_base_image_pinned_by_arg(dockerfile: list[tuple[str, str]]) -> None:
    args = {
        a.split("=", 1)[0]: a.split("=", 1)[1].strip('"') for k, a in dockerfile if k == "ARG" and "=" in a
    }
    froms = [a for k, a in dockerfile if k == "FROM"]
    assert froms == ["nvcr.io/nvidia/tritonserver:${TRITON_VERSION}-py3"]
    assert re.fullmatch(r"2[4-9]\.\d\d", args["TRITON_VERSION"]), "pin a Triton release, not latest"
    assert re.fullmatch(r"\d+\.\d+\.\d+", args["TENSORRT_PIP_VERSION"])
    # the ARG used in FROM must come before it
    assert dockerfile.index(("ARG", "TRITON_VERSION=" + args["TRITON_VERSION"])) < dockerfile.index(
        ("FROM", froms[0])
    )


def test_runs_as_non_root(dockerfile: list[tuple[str, str]]) -> None:
    users = [a for k, a in dockerfile if k == "USER"]
    assert users, "no USER: the image would run as root"
    uid = users[-1].split(":")[0]
    assert uid.isdigit() and int(uid) != 0, f"last USER {users[-1]!r} must be a numeric non-root uid"
    # nothing runs as root after the switch
    last_user = max(i for i, (k, _) in enumerate(dockerfile) if k == "USER")
    assert not [k for k, _ in dockerfile[last_user:] if k == "RUN"]
    # the Helm chart's securityContext runs the same uid
    values = (DEPLOY / "helm" / "covidet" / "values.yaml").read_text()
    assert f"runAsUser: {uid}" in values


def test_healthcheck_and_entrypoint(dockerfile: list[tuple[str, str]]) -> None:
    checks = [a for k, a in dockerfile if k == "HEALTHCHECK"]
    assert len(checks) == 1 and "/v2/health/ready" in checks[0]
    (entry,) = [a for k, a in dockerfile if k == "ENTRYPOINT"]
    assert json.loads(entry)[-1] == "/opt/covidet/entrypoint.sh"
    assert "8000 8001 8002" in [a for k, a in dockerfile if k == "EXPOSE"]


def test_installs_server_extra_with_numpy_below_2(dockerfile: list[tuple[str, str]]) -> None:
    runs = " ".join(a for k, a in dockerfile if k == "RUN")
    assert '".[server]"' in runs and '"numpy<2"' in runs
    assert "tensorrt-cu12==${TENSORRT_PIP_VERSION}" in runs
    pyproject = (ROOT / "pyproject.toml").read_text()  # (no tomllib: Python 3.10 is supported)
    section = pyproject.split("[project.optional-dependencies]", 1)[1].split("\n[", 1)[0]
    assert re.search(r"^server = \[", section, re.M), "pyproject.toml has no `server` extra"


def test_copy_sources_exist_and_are_not_ignored(dockerfile: list[tuple[str, str]]) -> None:
    ignore = (DEPLOY / "Dockerfile.dockerignore").read_text().splitlines()
    allowed = [line[1:].rstrip("/") for line in ignore if line.startswith("!")]
    for kind, rest in dockerfile:
        if kind == "ADD":
            pytest.fail(f"ADD {rest}: use COPY (ADD fetches URLs and unpacks archives)")
        if kind != "COPY":
            continue
        parts = [p for p in shlex.split(rest) if not p.startswith("--")]
        for src in parts[:-1]:
            assert (ROOT / src).exists(), f"COPY source {src} does not exist"
            assert any(src == a or src.startswith(a + "/") for a in allowed), (
                f"COPY source {src} is excluded by Dockerfile.dockerignore"
            )


def test_no_secrets_baked_in(dockerfile: list[tuple[str, str]]) -> None:
    secretish = re.compile(r"(secret|password|passwd|token|api[_-]?key|private[_-]?key)", re.I)
    for kind, rest in dockerfile:
        if kind in {"ENV", "ARG", "LABEL"}:
            for name in re.findall(r"([A-Za-z_][A-Za-z0-9_.-]*)=", rest):
                assert not secretish.search(name), f"{kind} {name}: secrets do not belong in an image"
    text = (DEPLOY / "Dockerfile").read_text()
    assert "BEGIN" not in text and "PRIVATE KEY" not in text
    for pattern in ("**/*.key", "**/*.pem", "**/.venv", "**/*.plan"):
        assert pattern in (DEPLOY / "Dockerfile.dockerignore").read_text()


# --- the entrypoint ---------------------------------------------------------------------------------


def test_entrypoint_shell_syntax() -> None:
    assert os.access(ENTRYPOINT, os.X_OK), "deploy/entrypoint.sh must be executable"
    subprocess.run(["bash", "-n", str(ENTRYPOINT)], check=True)
    text = ENTRYPOINT.read_text()
    assert text.startswith("#!/usr/bin/env bash\n") and "set -euo pipefail" in text


def _run(env: dict[str, str], *args: str, tmp: Path) -> subprocess.CompletedProcess[str]:
    base = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(tmp),
        "COVIDET_PYTHON": sys.executable,
        "COVIDET_CHECKPOINTS": str(CHECKPOINTS),
        "COVIDET_CACHE_DIR": str(tmp / "cache"),
        "COVIDET_DRY_RUN": "1",
    }
    return subprocess.run(
        ["bash", str(ENTRYPOINT), *args],
        env={**base, **env},
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_entrypoint_renders_once_then_reuses(tmp_path: Path) -> None:
    """cpu profile for real: `covidet export` renders the repository, a second start reuses it."""
    from covidet.export._render import PROFILES

    assert {"cpu", "gpu", "gpu-torch"} <= set(PROFILES)
    env = {"COVIDET_PROFILE": "cpu", "COVIDET_HTTP_PORT": "18000", "COVIDET_EXIT_TIMEOUT_S": "7"}
    first = _run(env, "--grpc-restricted-protocol=statistics:k=v", tmp=tmp_path)
    assert first.returncode == 0, first.stderr
    assert "rendering the cpu model repository" in first.stderr
    cmd = json.loads(first.stdout.strip().splitlines()[-1])
    (repo_arg,) = [a for a in cmd if a.startswith("--model-repository=")]
    repo = Path(repo_arg.split("=", 1)[1])
    assert (repo / "covidet" / "config.pbtxt").is_file()
    assert (repo / "lung_seg" / "1" / "model.onnx").is_file()
    assert "profile=cpu" in (repo / ".covidet-fingerprint").read_text()
    assert {"--http-port=18000", "--http-address=0.0.0.0", "--grpc-address=0.0.0.0"} <= set(cmd)
    assert "--exit-timeout-secs=7" in cmd
    assert cmd[-1] == "--grpc-restricted-protocol=statistics:k=v"  # chart args pass through
    assert Path(cmd[0]).name == "tritonserver"

    second = _run(env, tmp=tmp_path)
    assert second.returncode == 0, second.stderr
    assert "reusing" in second.stderr and "rendering" not in second.stderr
    assert json.loads(second.stdout.strip().splitlines()[-1])[1] == repo_arg
    assert sorted(p.name for p in (tmp_path / "cache").iterdir()) == [
        "admin-token",
        repo.name,
    ]  # no temp dirs left
    # without the chart's lock, covidet serve locks the admin APIs with a generated token
    token_file = tmp_path / "cache" / "admin-token"
    assert token_file.stat().st_mode & 0o077 == 0
    token = token_file.read_text().strip()
    cmd2 = json.loads(second.stdout.strip().splitlines()[-1])
    assert any(
        a.startswith("--http-restricted-api=") and a.endswith(f"covidet-admin-key={token}") for a in cmd2
    )
    assert "--model-control-mode=explicit" in cmd2  # the stub watchdog reloads through it
    unlocked = _run({**env, "COVIDET_UNLOCKED": "1"}, tmp=tmp_path)
    assert not any("restricted" in a for a in json.loads(unlocked.stdout.strip().splitlines()[-1]))


def test_entrypoint_refuses_bad_settings(tmp_path: Path) -> None:
    bad_profile = _run({"COVIDET_PROFILE": "tpu"}, tmp=tmp_path)
    from covidet.export._render import PROFILES

    names = list(PROFILES)
    expected = "expected " + ", ".join(names[:-1]) + f" or {names[-1]}"  # in step with covidet
    assert bad_profile.returncode != 0 and expected in bad_profile.stderr
    no_ckpt = _run({"COVIDET_PROFILE": "cpu", "COVIDET_CHECKPOINTS": str(tmp_path / "none")}, tmp=tmp_path)
    assert no_ckpt.returncode != 0 and "does not exist" in no_ckpt.stderr
    blocker = tmp_path / "a-file"
    blocker.write_text("")  # a cache folder below a file can be neither made nor written, even by root
    ro = _run({"COVIDET_PROFILE": "cpu", "COVIDET_CACHE_DIR": str(blocker / "cache")}, tmp=tmp_path)
    assert ro.returncode != 0 and "not writable" in ro.stderr


def test_entrypoint_gpu_checks_tensorrt_version(tmp_path: Path) -> None:
    """gpu profile: a tensorrt package that differs from Triton's libnvinfer is refused up front."""
    fake = tmp_path / "fake"
    (fake / "tensorrt").mkdir(parents=True)
    (fake / "tensorrt" / "__init__.py").write_text('__version__ = "10.6.0.post1"\n')
    lib = fake / "libnvinfer.so.10.5.0"
    lib.write_text("")
    bin_dir = fake / "bin"
    bin_dir.mkdir()
    smi = bin_dir / "nvidia-smi"
    smi.write_text("#!/bin/sh\necho 'NVIDIA H100 80GB HBM3, 9.0'\n")
    smi.chmod(0o755)
    env = {
        "COVIDET_PROFILE": "gpu",
        "PYTHONPATH": str(fake),
        "COVIDET_NVINFER_LIB": str(lib),
        "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}",
    }
    mismatch = _run(env, tmp=tmp_path)
    assert mismatch.returncode != 0
    assert "differs from Triton's TensorRT 10.5.0" in mismatch.stderr
    assert "TENSORRT_PIP_VERSION=10.5.0" in mismatch.stderr
    # matching versions get past the check to the engine build, which needs a real GPU here
    (fake / "tensorrt" / "__init__.py").write_text('__version__ = "10.5.0"\n')
    matched = _run(env, tmp=tmp_path)
    assert "differs" not in matched.stderr
    assert "building TensorRT engines for this GPU" in matched.stderr
    assert matched.returncode != 0  # no CUDA GPU on this machine: `covidet export` says so
    assert list((tmp_path / "cache").iterdir()) == []  # nothing half-built is kept
