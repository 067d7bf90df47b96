#!/usr/bin/env python
"""Measure CT_COMPRESSED: the compression ratio and the encode/decode speed of covidet's frame.

    python benchmarks/codec_bench.py --slices 300 --size 512 \
        --nifti ../shared/data/real-ct/example_ct.nii.gz --json benchmarks/results/codec-cpu-2core.json

One phantom per class (covidet's phantom, at ``--slices`` x ``--size``^2) and every ``--nifti``
scan given (read with covidet's reader), each encoded with `covidet._codec` (byte-shuffled
zstd) and decoded back, best of ``--repeats``; the round trip must give the very voxels. The
report adds what the frame saves on a link of ``--link-gbps``: the raw int16 volume's wire time
against the frame's plus its encode and decode time. See benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np


def _best(fn: Any, repeats: int) -> tuple[float, Any]:
    best, out = float("inf"), None
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t0)
    return best, out


def measure(name: str, hu: np.ndarray, *, repeats: int, level: int, link_gbps: float) -> dict[str, Any]:
    """One volume's ratio, speeds and wire time (the round trip checked)."""
    from covidet._codec import decode_volume, encode_volume

    hu = np.ascontiguousarray(hu, dtype=np.int16)
    t_enc, frame = _best(lambda: encode_volume(hu, level=level), repeats)
    t_dec, back = _best(lambda: decode_volume(frame, max_voxels=hu.size), repeats)
    if not np.array_equal(back, hu):
        raise SystemExit(f"{name}: the frame did not give the same voxels back")
    link = link_gbps * 1e9 / 8  # bytes per second
    return {
        "scan": name,
        "shape": list(hu.shape),
        "raw_bytes": hu.nbytes,
        "frame_bytes": len(frame),
        "ratio": hu.nbytes / len(frame),
        "encode_s": t_enc,
        "decode_s": t_dec,
        "encode_mb_s": hu.nbytes / t_enc / 1e6,
        "decode_mb_s": hu.nbytes / t_dec / 1e6,
        "wire_raw_s": hu.nbytes / link,
        "wire_frame_s": len(frame) / link,
        # what the frame costs end to end on that link: encode, send, decode (no overlap assumed)
        "frame_total_s": t_enc + len(frame) / link + t_dec,
    }


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--slices", type=int, default=300)
    p.add_argument("--size", type=int, default=512)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--nifti", type=Path, action="append", default=[], help="a real scan (repeatable)")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--level", type=int, default=None, help="zstd level (default: the client's)")
    p.add_argument("--link-gbps", type=float, default=1.0, help="the link the wire times assume")
    p.add_argument("--json", type=Path, default=None)
    args = p.parse_args(argv)

    import zstandard

    from covidet import _contract as C
    from covidet._codec import DEFAULT_LEVEL
    from covidet.client import load_volume
    from covidet.phantom import make_phantom

    level = DEFAULT_LEVEL if args.level is None else args.level
    rows = []
    for i, kind in enumerate(C.CLASS_NAMES):
        ph = make_phantom(kind, n_slices=args.slices, size=args.size, seed=args.seed + i)
        rows.append(
            measure(f"phantom {kind}", ph.hu, repeats=args.repeats, level=level, link_gbps=args.link_gbps)
        )
    for path in args.nifti:
        vol = load_volume(path)
        rows.append(measure(path.name, vol.hu, repeats=args.repeats, level=level, link_gbps=args.link_gbps))
    heads = ("ratio", "enc MB/s", "dec MB/s", "raw wire s", "frame s")
    print(f"{'scan':34} {'shape':>16} " + " ".join(f"{h:>10}" for h in heads))
    for r in rows:
        shape = "x".join(str(n) for n in r["shape"])
        print(
            f"{r['scan']:34} {shape:>16} {r['ratio']:10.2f} {r['encode_mb_s']:10.0f} "
            f"{r['decode_mb_s']:10.0f} {r['wire_raw_s']:10.3f} {r['frame_total_s']:10.3f}"
        )
    if args.json is not None:
        report = {
            "command": "python benchmarks/codec_bench.py " + " ".join(sys.argv[1:] if argv is None else argv),
            "machine": {"cpus": os.cpu_count(), "platform": platform.platform()},
            "zstd_level": level,
            "zstandard": zstandard.__version__,
            "link_gbps": args.link_gbps,
            "results": rows,
        }
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
