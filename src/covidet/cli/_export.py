"""`covidet export`: checkpoints -> a model repository for a profile (ONNX / int8 / TensorRT)."""

from __future__ import annotations

import argparse
from pathlib import Path

__all__ = ["main_export"]


def main_export(argv: list[str]) -> int:
    from covidet.export._admission import add_admission_options
    from covidet.export._render import PROFILES, TORCH_COMPILE_MODES, Calibration, render_repository

    p = argparse.ArgumentParser(
        prog="covidet export",
        description="Export checkpoints (ONNX verified against PyTorch; int8 ONNX checked against "
        "float with --profile cpu-int8; TensorRT plans with --profile gpu, on a GPU node).",
    )
    p.add_argument("--profile", default="cpu", choices=PROFILES)
    p.add_argument("--checkpoints", type=Path, default=None)
    p.add_argument("--out", type=Path, default=Path("build/model_repository"))
    p.add_argument(
        "--calibration",
        type=Path,
        nargs="+",
        default=None,
        metavar="SCAN",
        help="cpu-int8: scans (DICOM folder, NIfTI) like the ones to be served; the first half "
        "calibrates the int8 ranges, the second half checks the masks (default: phantoms)",
    )
    p.add_argument(
        "--torch-compile",
        choices=TORCH_COMPILE_MODES,
        default="reduce-overhead",
        help="gpu-torch: torch.compile mode of the slice models (none: eager)",
    )
    add_admission_options(p)
    args = p.parse_args(argv)
    calibration = None
    if args.calibration:
        if not PROFILES[args.profile].int8_models:
            p.error(f"--calibration is for --profile cpu-int8 (got --profile {args.profile})")
        from covidet.client import load_volume

        calibration = Calibration.from_scans(load_volume(path).hu for path in args.calibration)
    repo = render_repository(
        args.profile,
        args.out,
        args.checkpoints,
        calibration=calibration,
        torch_compile=args.torch_compile,
        max_inflight_bytes=args.max_inflight_bytes,
        max_scan_bytes=args.max_scan_bytes,
    )
    print(f"model repository for profile {args.profile}: {repo}")
    return 0
