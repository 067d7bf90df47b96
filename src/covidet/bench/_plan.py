"""bench's plan: its arguments turned into what to run (scans, levels, baselines, checkpoints, device)."""

from __future__ import annotations

import argparse
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from covidet import _contract as C
from covidet.bench._load import Scan
from covidet.export._render import TORCH_COMPILE_MODES

__all__ = ["Plan", "make_plan", "parse_args"]


def parse_args(
    argv: Sequence[str] | None, description: str | None, baselines: Sequence[str]
) -> argparse.Namespace:
    """bench's arguments; ``baselines``: the names --compare accepts."""
    p = argparse.ArgumentParser(prog="bench.py", description=description)
    p.add_argument("--url", default=None, help="server gRPC/HTTP address (default: start one)")
    p.add_argument("--protocol", choices=["grpc", "http"], default="grpc")
    p.add_argument("--profile", default="cpu", help="profile of the server started by bench")
    p.add_argument(
        "--checkpoints",
        type=Path,
        default=None,
        help="checkpoint folder (default: the demo models; `covidet init-checkpoints` writes full-size ones)",
    )
    p.add_argument(
        "--torch-compile",
        choices=TORCH_COMPILE_MODES,
        default="reduce-overhead",
        help="gpu-torch: torch.compile mode of the slice models (none: eager, no compile time)",
    )
    p.add_argument(
        "--torch-device",
        choices=["auto", "cpu", "cuda"],
        default="auto",
        help="device of the naive and torch baselines (auto: cuda for GPU profiles when present)",
    )
    p.add_argument(
        "--concurrency",
        default="1,2,4",
        help="closed-loop levels, e.g. 1,2,4,8,16 ('' with no --rate: no server)",
    )
    p.add_argument("--rate", default="", help="open-loop levels in scans/s, e.g. 0.5,1")
    p.add_argument("--duration", type=float, default=20.0, help="seconds per level")
    p.add_argument("--warmup", type=int, default=2, help="warm-up scans before measuring")
    p.add_argument("--slices", type=int, default=300)
    p.add_argument("--size", type=int, default=512)
    p.add_argument("--scans", type=int, default=4, help="distinct phantom scans in the workload")
    p.add_argument("--folder", default=None, help="use the DICOM/NIfTI scans in this folder instead")
    p.add_argument("--masks", action="store_true", help="request masks (more transfer)")
    p.add_argument("--explain", action="store_true", help="request the explanation (attention, slice scores)")
    p.add_argument(
        "--shared-memory",
        action="store_true",
        help="clients pass the CT through system shared memory (server on this machine)",
    )
    p.add_argument(
        "--end-to-end",
        action="store_true",
        help="each scan from its files on disk (--folder's, or phantom DICOM series written to a "
        "temporary folder): read + request timed apart, the request split into served and transfer",
    )
    p.add_argument(
        "--evict-cache",
        action="store_true",
        help="--end-to-end: drop each scan's files from the OS page cache before reading them",
    )
    p.add_argument(
        "--compression",
        default="none",
        choices=["none", "zstd"],
        help="--end-to-end: the client's CT compression (needs a client that has the option)",
    )
    p.add_argument("--compare", default="", help="baselines: " + ",".join(baselines))
    p.add_argument("--baseline-scans", type=int, default=3)
    p.add_argument("--flops", action="store_true", help="report FLOPs per scan and achieved FLOP/s")
    p.add_argument("--json", type=Path, default=None)
    p.add_argument("--csv", type=Path, default=None)
    p.add_argument("--png", type=Path, default=None)
    p.add_argument(
        "--server-log",
        type=Path,
        default=None,
        help="keep the log of the server bench starts here (its warnings: e.g. a GPU fallback)",
    )
    return p.parse_args(argv)


@dataclass(frozen=True)
class Plan:
    """What one bench run does."""

    args: argparse.Namespace
    command: str
    compare: list[str]  # --compare baselines, in the order given
    scans: list[Scan]
    levels: list[tuple[str, float]]  # ("closed", concurrency) then ("open", scans/s)
    checkpoints: Path
    device: str  # of the torch baselines
    profile: str  # of the rendered repository (a server given by --url is measured as "cpu")
    #: --end-to-end: each scan's DICOM folder or NIfTI file, and its first read's seconds (the page
    #: cache as the run found it; bench's own phantom series were just written, so cached)
    sources: list[Path] = field(default_factory=list)
    first_reads_s: list[float] = field(default_factory=list)
    #: --end-to-end without --folder: where the phantom series are written (removed by `cleanup`)
    series_dir: tempfile.TemporaryDirectory[str] | None = None

    def cleanup(self) -> None:
        if self.series_dir is not None:
            self.series_dir.cleanup()


def make_plan(args: argparse.Namespace, argv: Sequence[str] | None, baselines: Sequence[str]) -> Plan:
    compare = [c for c in args.compare.split(",") if c]
    unknown = sorted(set(compare) - set(baselines))
    if unknown:
        raise SystemExit(f"unknown baseline(s) {unknown}; choose from {', '.join(baselines)}")
    levels = [("closed", float(c)) for c in args.concurrency.split(",") if c]
    levels += [("open", float(r)) for r in args.rate.split(",") if r]
    _check_end_to_end(args, levels)
    series_dir = None
    sources: list[Path] = []
    first_reads: list[float] = []
    if args.end_to_end:
        scans, sources, first_reads, series_dir = _e2e_scans(args)
    else:
        scans = _scans(args)
    from covidet.export._render import default_checkpoints, get_profile

    return Plan(
        args=args,
        command="bench.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        compare=compare,
        scans=scans,
        levels=levels,
        checkpoints=args.checkpoints or default_checkpoints(),
        device=_torch_device(args.torch_device, get_profile(args.profile).device == "cuda"),
        # the served repository (its pipeline.json also configures the in-process baselines); the
        # ONNX baseline needs ONNX graphs, which only the CPU profiles have
        profile=args.profile if not args.url else "cpu",
        sources=sources,
        first_reads_s=first_reads,
        series_dir=series_dir,
    )


def _check_end_to_end(args: argparse.Namespace, levels: list[tuple[str, float]]) -> None:
    if not args.end_to_end:
        if args.evict_cache or args.compression != "none":
            raise SystemExit("--evict-cache and --compression belong to --end-to-end")
        return
    if any(mode == "open" for mode, _ in levels):
        raise SystemExit("--end-to-end runs closed-loop levels only (--concurrency), not --rate")
    if args.compression != "none" and args.shared_memory:
        raise SystemExit("--compression and --shared-memory exclude each other: nothing crosses a wire")


def _folder_sources(folder: str) -> list[Path]:
    return sorted(p for p in Path(folder).iterdir() if p.is_dir() or p.name.endswith(".nii.gz"))


def _e2e_scans(
    args: argparse.Namespace,
) -> tuple[list[Scan], list[Path], list[float], tempfile.TemporaryDirectory[str] | None]:
    """--end-to-end: (scans in memory for the baselines, their paths on disk, each path's first
    read in seconds, the temporary folder of bench's own phantom series)."""
    from covidet.bench._e2e import read_timed, write_phantom_series

    series_dir = None
    if args.folder:
        paths = _folder_sources(args.folder)
    else:
        series_dir = tempfile.TemporaryDirectory(prefix="covidet-bench-e2e-")
        paths = write_phantom_series(_phantoms(args), Path(series_dir.name))
    if not paths:
        raise SystemExit(f"--end-to-end: no DICOM folder or .nii.gz file in {args.folder}")
    scans, first = [], []
    for path in paths:
        vol, seconds = read_timed(path, args.evict_cache)
        scans.append(Scan(vol.hu, vol.spacing, path.name))
        first.append(seconds)
    return scans, paths, first, series_dir


def _scans(args: argparse.Namespace) -> list[Scan]:
    if args.folder:
        from covidet.client import load_volume

        paths = _folder_sources(args.folder)
        vols = [load_volume(p) for p in paths]
        return [Scan(v.hu, v.spacing, v.source) for v in vols]
    return [Scan(ph.hu, ph.spacing, f"{ph.kind}-{args.slices}x{args.size}") for ph in _phantoms(args)]


def _phantoms(args: argparse.Namespace) -> list[Any]:
    from covidet.phantom import make_phantom

    return [
        make_phantom(C.CLASS_NAMES[i % 4], n_slices=args.slices, size=args.size, seed=900 + i)
        for i in range(args.scans)
    ]


def _torch_device(choice: str, gpu_profile: bool) -> str:
    """Device of the torch baselines: as asked, or (auto) CUDA for GPU profiles when present."""
    if choice != "auto":
        return choice
    if not gpu_profile:
        return "cpu"
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"
