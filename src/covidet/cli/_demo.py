"""`covidet demo`: the whole system once, end to end, on phantom DICOM series.

Renders the model repository, writes a phantom DICOM series of each class, starts Triton, sends
each series over gRPC (and one over HTTP), prints the results with per-scan latency, stops Triton.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Sequence
from pathlib import Path

from covidet import _contract as C

__all__ = ["main_demo"]


def main_demo(argv: Sequence[str] | None = None) -> int:
    from rich.console import Console
    from rich.table import Table

    from covidet.client import Client
    from covidet.export._render import PROFILES, render_repository
    from covidet.phantom import make_phantom, write_dicom_series
    from covidet.server import TritonServer, free_ports

    parser = argparse.ArgumentParser(prog="covidet demo", description=__doc__)
    parser.add_argument("--out", type=Path, default=Path("demo_out"), help="work folder")
    parser.add_argument("--profile", default="cpu", choices=PROFILES)
    parser.add_argument("--slices", type=int, default=160, help="slices per phantom")
    parser.add_argument("--size", type=int, default=512, help="in-plane size")
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args(argv)
    console = Console()
    out: Path = args.out.resolve()

    with console.status("rendering the model repository (ONNX export, verified)..."):
        repo = render_repository(args.profile, out / f"model_repository-{args.profile}")
    series = {}
    with console.status("writing phantom DICOM series..."):
        for i, kind in enumerate(C.CLASS_NAMES):
            ph = make_phantom(kind, n_slices=args.slices, size=args.size, seed=args.seed + i)
            folder = out / "dicom" / kind
            write_dicom_series(ph, folder, shuffle_filenames=True)
            series[kind] = (folder, ph)
    http, grpc, metrics = free_ports(3)
    console.print(f"starting Triton: gRPC 127.0.0.1:{grpc}, HTTP 127.0.0.1:{http}")
    rows: dict[str, list[str]] = {}

    def put(key: str, value: str) -> None:
        rows.setdefault(key, []).append(value)

    with TritonServer(repo, http_port=http, grpc_port=grpc, metrics_port=metrics) as server:
        server.wait_ready(timeout=600)
        for j, (folder, ph) in enumerate(series.values()):
            protocol = "http" if j == len(series) - 1 else "grpc"
            url = f"127.0.0.1:{http if protocol == 'http' else grpc}"
            with Client(url, protocol=protocol, timeout_s=600) as client:
                client.diagnose(folder)  # warm-up of this protocol's path
                t0 = time.perf_counter()
                d = client.diagnose(folder)
                latency = time.perf_counter() - t0
            put("protocol", protocol)
            put("predicted (4-class)", d.predicted_class)
            for c in C.CLASS_NAMES:
                put(f"  P({c})", f"{d.class_probs[c]:.3f}")
            put("DL#1 P(viral)", f"{d.p_viral:.3f}")
            put("DL#2 P(COVID | viral)", f"{d.p_covid_given_viral:.3f}")
            put("stepwise P(COVID-19)", f"{d.p_covid_stepwise:.3f}")
            put("lung volume (mL)", f"{d.lung_volume_ml:.0f}")
            put("lesion volume (mL)", f"{d.lesion_volume_ml:.1f}")
            put("lesion / lung", f"{d.lesion_ratio:.4f}")
            put("  true lesion / lung", f"{ph.lesion_ratio:.4f}")
            put("top-K slices", ",".join(str(i) for i in d.topk_slices))
            put("quality flags", ", ".join(f"{f.code} ({f.severity})" for f in d.quality) or "none")
            put("latency per scan (s)", f"{latency:.2f}")
    table = Table(title=f"covidet demo: {args.slices}-slice {args.size}x{args.size} phantom DICOM series")
    table.add_column("")
    for kind in series:
        table.add_column(f"truth: {kind}", justify="right")
    for key, values in rows.items():
        table.add_row(key, *values)
    console.print(table)
    console.print(
        "latency = wall time of one diagnose() call: DICOM read + transfer + the whole served "
        "pipeline. Models are demo checkpoints trained on synthetic phantoms, not diagnostic."
    )
    return 0
