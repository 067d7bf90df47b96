#!/usr/bin/env python
"""Time reading one DICOM CT series from disk: covidet's reader, a naive pydicom loop and SimpleITK.

    python benchmarks/read_bench.py --slices 300 --size 512 --repeats 5 \
        --json benchmarks/results/read-cpu-2core.json

It writes one phantom series (covidet's phantom, shuffled file names) to a temporary folder,
uncompressed and re-encoded with pydicom's encoders as JPEG 2000 lossless, JPEG-LS lossless and RLE
lossless, then times every reader on the same files, the readers taking turns within each repeat so
that a busy machine slows them alike; the best of ``--repeats`` counts. Every reader's volume is
checked against the phantom. ``--old-reader FILE`` also times another version of covidet's
``client/_dicom.py`` (e.g. ``git show REV:client/_dicom.py > /tmp/old_dicom.py``). SimpleITK is
optional (the ``dev`` extra): without it its column says so. See benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

#: name -> (transfer syntax UID, what it is); "uncompressed" is the phantom writer's own syntax.
SYNTAXES: dict[str, tuple[str, str]] = {
    "uncompressed": ("1.2.840.10008.1.2.1", "Explicit VR Little Endian"),
    "jpeg2000": ("1.2.840.10008.1.2.4.90", "JPEG 2000 lossless"),
    "jpegls": ("1.2.840.10008.1.2.4.80", "JPEG-LS lossless"),
    "rle": ("1.2.840.10008.1.2.5", "RLE lossless"),
}
READERS = ("covidet", "covidet-old", "pydicom", "simpleitk")

#: A reader returns the volume as an array, or an object numpy turns into one (np.asarray).
Reader = Callable[[Path], Any]


@dataclass
class Series:
    name: str
    folder: Path | None
    note: str  # why it is missing, when folder is None


def _write_series(root: Path, slices: int, size: int, seed: int, names: Sequence[str]) -> list[Series]:
    """The phantom series, uncompressed and in each compressed syntax whose encoder is installed."""
    import pydicom
    from pydicom.pixels import get_encoder

    from covidet.phantom import make_phantom, write_dicom_series

    phantom = make_phantom("COVID-19", n_slices=slices, size=size, seed=seed)
    np.save(root / "phantom_hu.npy", phantom.hu)
    plain = root / "uncompressed"
    files = write_dicom_series(phantom, plain, shuffle_filenames=True)
    out = []
    for name in names:
        if name == "uncompressed":
            out.append(Series(name, plain, ""))
            continue
        uid = SYNTAXES[name][0]
        encoder = get_encoder(uid)
        if not encoder.is_available:
            missing = ", ".join(encoder.missing_dependencies) or "an encoding plugin"
            out.append(Series(name, None, f"no {SYNTAXES[name][1]} encoder in pydicom here ({missing})"))
            continue
        folder = root / name
        folder.mkdir()
        for f in files:
            ds = pydicom.dcmread(f)
            ds.compress(uid)
            ds.save_as(folder / f.name, enforce_file_format=True)
        out.append(Series(name, folder, ""))
    return out


def _covidet(folder: Path) -> np.ndarray:
    from covidet.client import load_volume

    return load_volume(folder).hu


def _old_covidet(path: Path) -> Reader:
    """``read_dicom_series`` of another version of client/_dicom.py, loaded from ``path``."""
    spec = importlib.util.spec_from_file_location("covidet_old_dicom", path)
    if spec is None or spec.loader is None:
        raise SystemExit(f"--old-reader {path}: not a Python file; expected a copy of client/_dicom.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the file runs
    spec.loader.exec_module(module)

    def read(folder: Path) -> np.ndarray:
        return np.asarray(module.read_dicom_series(folder).hu)

    return read


def _pydicom_loop(folder: Path) -> np.ndarray:
    """What research code does: read every file whole, sort by position, rescale slice by slice."""
    import pydicom

    datasets = [pydicom.dcmread(f) for f in sorted(folder.iterdir())]
    datasets.sort(key=lambda ds: -float(ds.ImagePositionPatient[2]))
    return np.stack(
        [
            (ds.pixel_array * float(ds.RescaleSlope) + float(ds.RescaleIntercept)).astype(np.int16)
            for ds in datasets
        ]
    )


class _ImageView:
    """A numpy view of a SimpleITK image that keeps the image alive (the view does not)."""

    def __init__(self, image: Any) -> None:
        import SimpleITK as sitk

        self.image = image
        self.view = sitk.GetArrayViewFromImage(image)

    def __array__(self, dtype: Any = None) -> np.ndarray:
        return self.view if dtype is None else self.view.astype(dtype)


def _simpleitk(folder: Path) -> Any:
    import SimpleITK as sitk

    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(reader.GetGDCMSeriesFileNames(str(folder)))
    return _ImageView(reader.Execute())  # a view: no copy to numpy counted against SimpleITK


def _simpleitk_version() -> str | None:
    try:
        import SimpleITK as sitk
    except ImportError:
        return None
    return str(sitk.Version_VersionString())


def _matches(volume: np.ndarray, hu: np.ndarray) -> bool:
    """Same HU, slice 0 most superior (SimpleITK stacks inferior first: compare either way)."""
    if volume.shape != hu.shape:
        return False
    return bool(np.array_equal(volume, hu) or np.array_equal(volume[::-1], hu))


def _time(reader: Reader, folder: Path) -> tuple[float, Any]:
    start = time.perf_counter()
    volume = reader(folder)
    return time.perf_counter() - start, volume


def _versions() -> dict[str, str | None]:
    from importlib.metadata import PackageNotFoundError, version

    out: dict[str, str | None] = {"python": platform.python_version()}
    for name in ("numpy", "pydicom", "pylibjpeg", "pylibjpeg-openjpeg", "pylibjpeg-libjpeg", "pyjpegls"):
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            out[name] = None
    out["SimpleITK"] = _simpleitk_version()
    return out


def _decoders() -> dict[str, list[str]]:
    """pydicom's installed decoding plugins per compressed syntax (covidet and the loop use them)."""
    from pydicom.pixels import get_decoder

    return {
        name: sorted(get_decoder(uid).available_plugins)
        for name, (uid, _) in SYNTAXES.items()
        if name != "uncompressed"
    }


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def run(args: argparse.Namespace) -> dict[str, Any]:
    names = [n.strip() for n in args.syntaxes.split(",") if n.strip()]
    unknown = sorted(set(names) - set(SYNTAXES))
    if unknown:
        raise SystemExit(f"--syntaxes: unknown {unknown}; choose from {', '.join(SYNTAXES)}")
    readers: dict[str, Reader] = {"covidet": _covidet}
    if args.old_reader:
        readers["covidet-old"] = _old_covidet(Path(args.old_reader))
    readers["pydicom"] = _pydicom_loop
    absent: dict[str, str] = {}
    if _simpleitk_version() is None:
        absent["simpleitk"] = "SimpleITK is not installed: pip install 'covidet[dev]' (or SimpleITK)"
        print(f"note: {absent['simpleitk']}; its column is left out", file=sys.stderr)
    else:
        readers["simpleitk"] = _simpleitk
    with tempfile.TemporaryDirectory(prefix="covidet-read-bench-", dir=args.tmpdir) as tmp:
        root = Path(tmp)
        print(
            f"writing a {args.slices}x{args.size}x{args.size} phantom series in {root} ...", file=sys.stderr
        )
        series = _write_series(root, args.slices, args.size, args.seed, names)
        hu = np.load(root / "phantom_hu.npy")
        results = []
        for s in series:
            entry: dict[str, Any] = {"syntax": s.name, "transfer_syntax_uid": SYNTAXES[s.name][0]}
            if s.folder is None:
                entry["skipped"] = s.note
                print(f"{s.name}: skipped, {s.note}", file=sys.stderr)
                results.append(entry)
                continue
            entry["bytes_on_disk"] = sum(f.stat().st_size for f in s.folder.iterdir())
            times: dict[str, list[float]] = {r: [] for r in readers}
            match: dict[str, bool] = {}
            for _ in range(args.repeats):
                for name, reader in readers.items():  # taking turns: load on the machine hits all
                    seconds, volume = _time(reader, s.folder)
                    times[name].append(seconds)
                    match.setdefault(name, _matches(np.asarray(volume), hu))
                    del volume
            entry["readers"] = {
                name: {
                    "best_s": min(t),
                    "median_s": statistics.median(t),
                    "times_s": t,
                    "matches_phantom": match[name],
                }
                for name, t in times.items()
            }
            best = {name: min(t) for name, t in times.items()}
            entry["speedup_of_covidet"] = {
                f"vs_{name}": best[name] / best["covidet"] for name in best if name != "covidet"
            }
            results.append(entry)
            print(_row(entry, list(readers)), file=sys.stderr)
    return {
        "benchmark": "read a DICOM series from disk",
        "command": " ".join(["python", "benchmarks/read_bench.py", *args.argv]),
        "date": time.strftime("%Y-%m-%d"),
        "series": {"slices": args.slices, "rows": args.size, "columns": args.size, "seed": args.seed},
        "repeats": args.repeats,
        "statistic": "best of repeats, readers taking turns within each repeat",
        "machine": {"cpu": _cpu_model(), "cores": os.cpu_count(), "platform": platform.platform()},
        "versions": _versions(),
        "pydicom_decoders": _decoders(),
        "readers_absent": absent,
        "results": results,
    }


def _row(entry: dict[str, Any], readers: list[str]) -> str:
    if "skipped" in entry:
        return f"{entry['syntax']:<13} skipped: {entry['skipped']}"
    cells = []
    for name in readers:
        r = entry["readers"][name]
        cells.append(f"{name} {r['best_s']:.3f} s{'' if r['matches_phantom'] else ' (WRONG VOLUME)'}")
    return f"{entry['syntax']:<13} " + " | ".join(cells)


def table(report: dict[str, Any]) -> str:
    """A markdown table of best times and covidet's speed-ups."""
    readers = [r for r in READERS if any(r in e.get("readers", {}) for e in report["results"])]
    head = "| series | " + " | ".join(readers) + " | " + " | ".join(f"covidet vs {r}" for r in readers[1:])
    lines = [head + " |", "|---" * (2 * len(readers)) + "|"]
    for e in report["results"]:
        if "skipped" in e:
            lines.append(f"| {e['syntax']} | skipped: {e['skipped']} |")
            continue
        times = [f"{e['readers'][r]['best_s']:.3f} s" if r in e["readers"] else "—" for r in readers]
        ratios = [
            f"{e['speedup_of_covidet'][f'vs_{r}']:.2f}×" if f"vs_{r}" in e["speedup_of_covidet"] else "—"
            for r in readers[1:]
        ]
        lines.append(f"| {e['syntax']} | " + " | ".join(times + ratios) + " |")
    return "\n".join(lines)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--slices", type=int, default=300, help="slices of the phantom series (default 300)")
    p.add_argument("--size", type=int, default=512, help="rows = columns of each slice (default 512)")
    p.add_argument("--repeats", type=int, default=5, help="timed reads per reader and series; best counts")
    p.add_argument(
        "--syntaxes",
        default=",".join(SYNTAXES),
        help=f"comma-separated, of {', '.join(SYNTAXES)} (default all)",
    )
    p.add_argument(
        "--old-reader", metavar="FILE", help="another client/_dicom.py to time beside (before/after)"
    )
    p.add_argument("--seed", type=int, default=1, help="phantom seed")
    p.add_argument("--tmpdir", help="where to write the series (default: the system's temp folder)")
    p.add_argument("--json", metavar="OUT", help="write the full report here")
    args = p.parse_args(argv)
    if args.slices < 1 or args.size < 16 or args.repeats < 1:
        p.error("--slices and --repeats must be >= 1, --size >= 16")
    args.argv = list(sys.argv[1:] if argv is None else argv)
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    report = run(args)
    print(table(report))
    if args.json:
        out = Path(args.json)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(report, indent=2) + "\n")
        print(f"wrote {out}", file=sys.stderr)
    wrong = [
        f"{e['syntax']}/{name}"
        for e in report["results"]
        for name, r in e.get("readers", {}).items()
        if not r["matches_phantom"]
    ]
    if wrong:
        print(f"error: these reads did not give the phantom's volume: {', '.join(wrong)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
