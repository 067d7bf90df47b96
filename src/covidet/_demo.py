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
    from covidet.phantom import make_phantom, write_dicom_series
    from covidet.serve import TritonServer, free_ports
    from covidet.serve._render import render_repository

    parser = argparse.ArgumentParser(prog="covidet demo", description=__doc__)
    parser.add_argument("--out", type=Path, default=Path("demo_out"), help="work folder")
    parser.add_argument("--profile", default="cpu", choices=["cpu", "gpu", "gpu-torch"])
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
    table = Table(title=f"covidet demo: {args.slices}-slice {args.size}x{args.size} phantoms")
    for col in (
        "series (truth)",
        "protocol",
        "predicted",
        *C.CLASS_NAMES,
        "P(viral)",
        "P(COVID|viral)",
        "P(COVID) stepwise",
        "lung mL",
        "lesion mL",
        "ratio",
        "true ratio",
        "top-K",
        "latency s",
    ):
        table.add_column(col, justify="right" if col not in ("series (truth)",) else "left")
    with TritonServer(repo, http_port=http, grpc_port=grpc, metrics_port=metrics) as server:
        server.wait_ready(timeout=300)
        for j, (kind, (folder, ph)) in enumerate(series.items()):
            protocol = "http" if j == len(series) - 1 else "grpc"
            url = f"127.0.0.1:{http if protocol == 'http' else grpc}"
            with Client(url, protocol=protocol) as client:
                client.diagnose(folder)  # warm-up of this protocol's path
                t0 = time.perf_counter()
                d = client.diagnose(folder)
                latency = time.perf_counter() - t0
            table.add_row(
                kind,
                protocol,
                d.predicted_class,
                *(f"{d.class_probs[c]:.2f}" for c in C.CLASS_NAMES),
                f"{d.p_viral:.2f}",
                f"{d.p_covid_given_viral:.2f}",
                f"{d.p_covid_stepwise:.2f}",
                f"{d.lung_volume_ml:.0f}",
                f"{d.lesion_volume_ml:.0f}",
                f"{d.lesion_ratio:.3f}",
                f"{ph.lesion_mask.sum() / max(ph.lung_mask.sum(), 1):.3f}",
                ",".join(str(i) for i in d.topk_slices),
                f"{latency:.2f}",
            )
    console.print(table)
    console.print(
        "latency = wall time of one diagnose() call: DICOM read + transfer + the whole served "
        "pipeline. Models are demo checkpoints trained on synthetic phantoms, not diagnostic."
    )
    return 0
