"""`covidet phantom --kind KIND|all --slices N --size N --seed N --format dicom|nifti|both --out DIR`."""

from __future__ import annotations

import argparse
from pathlib import Path

from covidet import _contract as C
from covidet.phantom._generate import make_phantom
from covidet.phantom._write import write_dicom_series, write_phantom_nifti


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="covidet phantom", description="Write synthetic chest CTs.")
    parser.add_argument("--kind", default="all", choices=["all", *C.CLASS_NAMES])
    parser.add_argument("--slices", type=int, default=300)
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--format", default="dicom", choices=["dicom", "nifti", "both"])
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    kinds = C.CLASS_NAMES if args.kind == "all" else (args.kind,)
    for i, kind in enumerate(kinds):
        ph = make_phantom(kind, n_slices=args.slices, size=args.size, seed=args.seed + i)
        base = args.out / kind
        if args.format in ("dicom", "both"):
            files = write_dicom_series(ph, base / "dicom")
            print(
                f"{kind}: {len(files)} DICOM files in {base / 'dicom'} (lesion ratio {ph.lesion_ratio:.3f})"
            )
        if args.format in ("nifti", "both"):
            paths = write_phantom_nifti(ph, base / "nifti")
            print(f"{kind}: {paths['ct']} + lung/lesion truth (lesion ratio {ph.lesion_ratio:.3f})")
    return 0
