"""`covidet phantom --kind KIND|all --slices N --size N --seed N --format dicom|nifti|both --out DIR`,
and `covidet phantom --cohort N [--courses K] --out DIR`: a labelled cohort for `covidet evaluate`."""

from __future__ import annotations

import argparse
from pathlib import Path

from covidet import _contract as C
from covidet.phantom._generate import make_phantom
from covidet.phantom._write import write_dicom_series, write_phantom_nifti


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="covidet phantom", description="Write synthetic chest CTs.")
    parser.add_argument("--kind", default="all", choices=["all", *C.CLASS_NAMES])
    parser.add_argument("--slices", type=int, default=None, help="slices per scan (300; 64 with --cohort)")
    parser.add_argument("--size", type=int, default=None, help="rows = columns (512; 256 with --cohort)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--format", default="dicom", choices=["dicom", "nifti", "both"])
    parser.add_argument(
        "--cohort",
        type=int,
        default=None,
        metavar="N",
        help="write a labelled cohort of N DICOM series (the classes in turn) with reference masks "
        "and manifest.csv for `covidet evaluate` (--kind and --format do not apply)",
    )
    parser.add_argument(
        "--courses",
        type=int,
        default=0,
        metavar="K",
        help="with --cohort: add K COVID-19 patients with serial scans (patient id and day)",
    )
    parser.add_argument(
        "--no-clinical", action="store_true", help="with --cohort: no clinical features in the manifest"
    )
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    if args.cohort is not None:
        return _cohort(args, parser)
    if args.courses:
        parser.error("--courses needs --cohort")
    slices = 300 if args.slices is None else args.slices
    size = 512 if args.size is None else args.size
    kinds = C.CLASS_NAMES if args.kind == "all" else (args.kind,)
    for i, kind in enumerate(kinds):
        ph = make_phantom(kind, n_slices=slices, size=size, seed=args.seed + i)
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


def _cohort(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    from rich.progress import Progress

    from covidet.phantom._cohort import COURSE_DAYS, write_cohort

    if args.cohort < 0 or args.courses < 0 or args.cohort + args.courses == 0:
        parser.error("--cohort N and --courses K must be >= 0 and give at least one scan")
    total = args.cohort + args.courses * len(COURSE_DAYS)
    with Progress() as progress:
        task = progress.add_task("writing the cohort", total=total)
        manifest = write_cohort(
            args.cohort,
            args.out,
            n_slices=64 if args.slices is None else args.slices,
            size=256 if args.size is None else args.size,
            seed=args.seed,
            courses=args.courses,
            clinical=not args.no_clinical,
            on_scan=lambda _: progress.advance(task),
        )
    print(f"{total} scans written; manifest: {manifest}")
    return 0
