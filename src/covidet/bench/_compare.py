"""The table of bench's baselines (``--compare``): each name, what it runs, whether it needs the server."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from rich.console import Console

    from covidet.bench._plan import Plan

__all__ = ["BASELINES", "TABLE", "Baseline", "BaselineRun", "run_baselines"]


@dataclass(frozen=True)
class BaselineRun:
    """What a baseline runs on: the plan, the served profile's repository, a scratch folder and,
    while it serves, the server."""

    plan: Plan
    repo: Path
    workdir: Path
    url: str | None = None


@dataclass(frozen=True)
class Baseline:
    """One ``--compare`` entry: ``run`` gives its report rows (``{"summary": ..., "samples": ...}``)."""

    name: str
    run: Callable[[BaselineRun], list[dict[str, Any]]]
    needs_server: bool = False  # run against the server, before bench stops it


def _naive(run: BaselineRun) -> list[dict[str, Any]]:
    """(a) PyTorch eager per slice, in-process."""
    from covidet.bench._baselines import run_naive

    p = run.plan
    return [run_naive(p.checkpoints, run.repo, p.scans, p.args.baseline_scans, device=p.device).to_json()]


def _onnx(run: BaselineRun) -> list[dict[str, Any]]:
    """(b) ONNX Runtime in-process: the served profile's ONNX graphs, or (a profile without them)
    the same checkpoints' ONNX graphs rendered for the CPU."""
    from covidet.bench._baselines import run_onnx
    from covidet.export._render import get_profile, render_repository

    p = run.plan
    onnx = get_profile(p.profile).slice_runtime == "onnxruntime"
    repo = run.repo if onnx else render_repository("cpu", run.workdir / "cpu", p.checkpoints)
    return [run_onnx(repo, p.scans, p.args.baseline_scans).to_json()]


def _perf_analyzer(run: BaselineRun) -> list[dict[str, Any]]:
    """(c) Triton's perf_analyzer against the server, at the closed-loop levels (or 1)."""
    from covidet.bench._perf_analyzer import run_perf_analyzer

    p = run.plan
    assert run.url is not None
    closed = [int(level) for mode, level in p.levels if mode == "closed"] or [1]
    rows = run_perf_analyzer(run.url, p.scans[0], closed, protocol=p.args.protocol, window_s=p.args.duration)
    return [{"summary": row, "samples": []} for row in rows]


def _torch(run: BaselineRun) -> list[dict[str, Any]]:
    """PyTorch batched in-process (FP16 on CUDA): the GPU profiles' floor."""
    from covidet.bench._baselines import run_torch

    p = run.plan
    return [run_torch(p.checkpoints, run.repo, p.scans, p.args.baseline_scans, device=p.device).to_json()]


def _prepost(run: BaselineRun) -> list[dict[str, Any]]:
    """The pipeline's own pre/post-processing on one core (model outputs replayed): the CPU a GPU
    node needs per scan/s. The served profile's; GPU ones record with torch."""
    from covidet.bench._baselines import run_prepost
    from covidet.export._render import get_profile

    p = run.plan
    checkpoints = p.checkpoints if get_profile(p.profile).pipeline_device is not None else None
    res = run_prepost(run.repo, p.scans, p.args.baseline_scans, checkpoints=checkpoints, device=p.device)
    return [res.to_json()]


TABLE: dict[str, Baseline] = {
    b.name: b
    for b in (
        Baseline("naive", _naive),
        Baseline("onnx", _onnx),
        Baseline("perf_analyzer", _perf_analyzer, needs_server=True),
        Baseline("torch", _torch),
        Baseline("prepost", _prepost),
    )
}
BASELINES = tuple(TABLE)


def run_baselines(run: BaselineRun, console: Console, *, serving: bool) -> list[dict[str, Any]]:
    """The ``--compare`` baselines that need the server (``serving``: each once, while it runs) or
    that run in-process (``not serving``: in the order given); their report rows."""
    names = list(dict.fromkeys(run.plan.compare)) if serving else run.plan.compare
    rows: list[dict[str, Any]] = []
    for name in names:
        if TABLE[name].needs_server != serving:
            continue
        with console.status(f"baseline {name}..."):
            rows.extend(TABLE[name].run(run))
    return rows
