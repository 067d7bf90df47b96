"""`covidet diagnose`, `covidet monitor` and `covidet deidentify`: the client-side commands."""

from __future__ import annotations

import argparse
import asyncio
import json
from pathlib import Path
from typing import Any

from covidet import _contract as C
from covidet.cli._options import DEFAULT_URL, add_server_options
from covidet.errors import InvalidInputError

__all__ = ["main_deidentify", "main_diagnose", "main_monitor"]


def _table(d: Any) -> Any:
    from rich.markup import escape
    from rich.table import Table

    t = Table(title=f"{d.source} ({d.n_slices} slices)", show_header=False)
    t.add_column("", style="bold")
    t.add_column("")
    if not d.usable:
        t.add_row("[red]NOT USABLE[/red]", "[red]a quality check failed: do not use this diagnosis[/red]")
    t.add_row("predicted (4-class, top-K)", d.predicted_class)
    for name in C.CLASS_NAMES:
        t.add_row(f"  P({name})", f"{d.class_probs[name]:.3f}")
    t.add_row("DL#1 P(viral pneumonia)", f"{d.p_viral:.3f}")
    t.add_row("DL#2 P(COVID-19 | viral)", f"{d.p_covid_given_viral:.3f}")
    t.add_row("stepwise P(COVID-19)", f"{d.p_covid_stepwise:.3f}")
    if d.p_svm is not None and d.p_covid_fused is not None:
        t.add_row("clinical SVM P(COVID-19)", f"{d.p_svm:.3f}")
        t.add_row("DL#3 fused P(COVID-19 | viral)", f"{d.p_covid_fused:.3f}")
    t.add_row("lung volume", f"{d.lung_volume_ml:.0f} mL")
    t.add_row("lesion volume", f"{d.lesion_volume_ml:.1f} mL")
    t.add_row("lesion / lung", f"{d.lesion_ratio:.4f}")
    t.add_row("top-K slices", ", ".join(str(i) for i in d.topk_slices))
    if d.slice_scores:  # explained: where the classifier looked, how much of it is lesion
        top = sorted(d.slice_scores, key=lambda s: -s.p_pneumonia)[: len(d.topk_slices)]
        t.add_row(
            "most pneumonic slices",
            ", ".join(f"{s.slice} (P {s.p_pneumonia:.2f}, {s.lesion_mm2:.0f} mm²)" for s in top),
        )
        for r in d.attention_regions:
            t.add_row(
                f"  attention region, slice {r.slice}",
                f"{r.area_mm2:.0f} mm², {100 * r.lesion_overlap:.0f}% inside the lesion mask",
            )
    t.add_row("latency", f"{d.latency_s:.2f} s")
    # the clinical SVM answered only if clinical data came with the scan
    used = {k: v for k, v in d.provenance.items() if k != C.CLINICAL_SVM.name or d.p_svm is not None}
    kinds = sorted({str(v.get("provenance")) for v in used.values()})
    t.add_row("models", "; ".join(kinds))
    colour = {"error": "red", "warning": "yellow", "info": "blue"}
    for flag in d.quality:
        c = colour.get(flag.severity, "white")
        t.add_row(f"[{c}]{flag.severity}: {flag.code}[/{c}]", escape(flag.message))
    return t


def main_diagnose(argv: list[str]) -> int:
    from rich.console import Console
    from rich.progress import Progress

    from covidet.client import GEOMETRY_POLICIES, AsyncClient, load_volume
    from covidet.client._async import ordered_map

    p = argparse.ArgumentParser(prog="covidet diagnose", description="Diagnose CT scans.")
    p.add_argument("paths", nargs="*", help="DICOM folders/files/DICOMDIRs or NIfTI files, one scan each")
    p.add_argument(
        "--files-from",
        action="append",
        type=Path,
        default=[],
        metavar="LIST",
        help="a text file listing the DICOM files of one series, one path per line (repeatable)",
    )
    add_server_options(p)
    p.add_argument(
        "--balance",
        action="store_true",
        help="spread the scans over the --url replicas (round robin) instead of primary then backups",
    )
    p.add_argument("--timeout", type=float, default=300.0, help="seconds per scan")
    p.add_argument(
        "--compression",
        choices=["zstd"],
        default=None,
        help="send each CT as a lossless zstd frame: fewer bytes on a slow link, some CPU here",
    )
    p.add_argument(
        "--concurrency",
        type=int,
        default=1,
        help="scans in flight at once (read and sent while others run: the server batches their "
        "slices together); results still come in the order given",
    )
    p.add_argument(
        "--defects",
        choices=GEOMETRY_POLICIES,
        default="warn",
        help="a DICOM series with a gap or an uneven step between slices: warn and go on (default), "
        "raise (refuse the scan: no volume measured on it) or ignore",
    )
    p.add_argument("--json", action="store_true", help="print JSON, no table")
    p.add_argument("--masks-out", type=Path, default=None, help="save masks as .npz here")
    p.add_argument(
        "--out",
        type=Path,
        default=None,
        help="write DICOM SEG + SR (DICOM input), result.json and PNG key images per scan here",
    )
    p.add_argument(
        "--explain",
        action="store_true",
        help="also return what the classifier looked at: its attention on the top-K slices and "
        "every classified slice's scores; with --out, attention_<k>.png overlays and (DICOM "
        "input) attention.dcm, a Parametric Map",
    )
    args = p.parse_args(argv)
    scans: list[tuple[str, Any]] = [(path, path) for path in args.paths]
    for listing in args.files_from:
        lines = [ln.strip() for ln in listing.read_text().splitlines()]
        files = [Path(ln) if Path(ln).is_absolute() else listing.parent / ln for ln in lines if ln]
        scans.append((listing.stem, files))
    if not scans:
        p.error("give at least one scan: PATH... or --files-from LIST")
    if args.concurrency < 1:
        p.error(f"--concurrency must be >= 1, got {args.concurrency}")
    console = Console(stderr=args.json)
    want_masks = args.masks_out is not None or args.out is not None
    results = []

    def warn(message: str) -> None:  # e.g. why a DICOM input got no seg.dcm and sr.dcm
        console.print(f"warning: {message}", style="yellow", markup=False, soft_wrap=True)

    def report(path: str, volume: Any, d: Any) -> None:
        if args.out is not None:
            from covidet.client._outputs import write_outputs

            name = Path(path).name.replace(".nii.gz", "").replace(".nii", "") or "scan"
            written = write_outputs(d, volume, args.out / name, on_warning=warn)
            console.print(f"{path}: wrote {', '.join(sorted(written))} to {args.out / name}")
        if args.masks_out is not None:
            import numpy as np

            args.masks_out.mkdir(parents=True, exist_ok=True)
            out = args.masks_out / (Path(path).name.replace(".nii.gz", "") + "_masks.npz")
            np.savez_compressed(out, lung=np.asarray(d.lung_mask), lesion=np.asarray(d.lesion_mask))
        if not args.json:
            console.print(_table(d))

    async def run() -> None:
        urls = args.url or [DEFAULT_URL]
        client = AsyncClient(
            urls,
            protocol=args.protocol,
            timeout_s=args.timeout,
            balance=args.balance,
            compression=args.compression,
        )
        async with client:

            async def one(scan: tuple[str, Any]) -> tuple[str, Any, Any]:
                volume = await asyncio.to_thread(load_volume, scan[1], policy=args.defects)
                d = await client.diagnose(volume, return_masks=want_masks, explain=args.explain)
                return scan[0], volume, d

            with Progress(console=console, disable=len(scans) < 2 or args.json) as progress:
                task = progress.add_task("diagnosing", total=len(scans))
                async for path, volume, d in ordered_map(one, scans, args.concurrency):
                    results.append(d)
                    report(path, volume, d)
                    progress.advance(task)

    asyncio.run(run())
    if args.json:
        print(json.dumps([d.to_dict() for d in results], indent=2))
    return 0


def main_monitor(argv: list[str]) -> int:
    import csv

    from rich.console import Console
    from rich.table import Table

    from covidet.client import AsyncClient, plot_forecast

    p = argparse.ArgumentParser(
        prog="covidet monitor",
        description="Forecast a patient's course (GPR, DL#5) from serial scans and/or earlier ratios.",
    )
    p.add_argument("scans", nargs="*", help="DICOM folders / NIfTI files of the patient's scans")
    p.add_argument("--days", default="", help="comma-separated day of each scan, in order")
    p.add_argument("--history", type=Path, default=None, help="CSV with columns day,ratio")
    p.add_argument("--levels", default="0.05,0.01", help="ratio levels: when is each reached")
    p.add_argument(
        "--horizon",
        type=float,
        default=14.0,
        help="days forecast after the last scan (at least: the plot runs on to the last predicted crossing)",
    )
    add_server_options(p)
    p.add_argument("--out", type=Path, default=Path("monitor_out"), help="course.png + course.json")
    p.add_argument("--json", action="store_true")
    args = p.parse_args(argv)
    scan_days = [float(d) for d in args.days.split(",") if d.strip()]
    if len(scan_days) != len(args.scans):
        raise InvalidInputError(
            f"--days needs one day per scan: {len(args.scans)} scans, {len(scan_days)} days given"
        )
    days: list[float] = []
    ratios: list[float] = []
    if args.history is not None:
        with args.history.open() as fh:
            for row in csv.DictReader(fh):
                days.append(float(row["day"]))
                ratios.append(float(row["ratio"]))
    console = Console(stderr=args.json)
    levels = [float(v) for v in args.levels.split(",") if v.strip()]

    async def run() -> Any:
        async with AsyncClient(args.url or [DEFAULT_URL], protocol=args.protocol) as client:
            # the patient's scans in flight together (the server batches their slices), in order
            many = client.diagnose_many(args.scans, concurrency=max(1, len(args.scans)))
            diagnoses = [d async for d in many]
            for day, scan, d in zip(scan_days, args.scans, diagnoses, strict=True):
                console.print(f"day {day:g}: {scan} lesion/lung ratio {d.lesion_ratio:.4f}")
                days.append(day)
                ratios.append(d.lesion_ratio)
            fc = await client.forecast(days, ratios, levels=levels, horizon_days=args.horizon)
            # a crossing predicted past the days asked for is still drawn: ask again up to it
            # (the fit and its drawn courses are deterministic, so the days are the same)
            end = fc.shown_until()
            if fc.query_days.size and end > float(fc.query_days.max()):
                horizon = end - max(days)
                fc = await client.forecast(days, ratios, levels=levels, horizon_days=horizon)
            return fc

    fc = asyncio.run(run())
    args.out.mkdir(parents=True, exist_ok=True)
    plot_forecast(fc, args.out / "course.png")
    (args.out / "course.json").write_text(json.dumps(fc.to_dict(), indent=2))
    if args.json:
        print(json.dumps(fc.to_dict(), indent=2))
        return 0
    t = Table(
        title="disease course (GPR over the lesion/lung ratio): when each level is reached\n"
        "day = half of the patient's likely courses have reached it; range = 2.5-97.5 % of them"
    )
    t.add_column("level")
    t.add_column("forecast day", justify="right")
    t.add_column("in words")
    t.add_column("likely courses reaching it", justify="right")
    for level, crossing in fc.crossing_days.items():
        day = "-" if crossing is None else f"{crossing:.1f}"
        p_reach = fc.reach_probability.get(level)
        share = "-" if p_reach is None else f"{100 * p_reach:.0f}%"
        t.add_row(f"{level:g}", day, fc.describe(level), share)
    console.print(t)
    console.print(f"wrote {args.out / 'course.png'} and {args.out / 'course.json'}")
    return 0


def main_deidentify(argv: list[str]) -> int:
    from covidet.client._deid import write_deidentified_copy

    p = argparse.ArgumentParser(
        prog="covidet deidentify",
        description="Write a de-identified copy of a DICOM series (PS3.15 basic profile).",
    )
    p.add_argument("source", type=Path)
    p.add_argument("out", type=Path)
    p.add_argument("--seed", default=None, help="makes the replaced values reproducible")
    args = p.parse_args(argv)
    files = write_deidentified_copy(args.source, args.out, seed=args.seed)
    print(f"{len(files)} de-identified files written to {args.out}")
    return 0
