"""bench's report: the JSON document (machine, server, workload, levels, baselines, FLOPs), its
tables on the console, and the --json/--csv/--png files."""

from __future__ import annotations

import csv
import json
import os
import platform
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from rich.console import Console

    from covidet.bench._plan import Plan

__all__ = ["add_flops", "new_report", "publish"]


def _cpu_info() -> dict[str, Any]:
    """CPU model and the vector extensions that decide float and int8 kernel speed."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return {"cpu_model": platform.processor()}
    fields = {k.strip(): v.strip() for k, _, v in (ln.partition(":") for ln in text.splitlines()) if v}
    flags = set(fields.get("flags", "").split())
    wanted = ("avx2", "avx512f", "avx512_vnni", "avx_vnni", "avx512_bf16", "amx_int8")
    return {"cpu_model": fields.get("model name", ""), "cpu_vector": [f for f in wanted if f in flags]}


def new_report(plan: Plan) -> dict[str, Any]:
    """The report before anything ran: machine, server, workload and command; no levels yet."""
    from covidet.export._render import checkpoint_metadata

    args, scans = plan.args, plan.scans
    return {
        "machine": {
            "platform": platform.platform(),
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            **_cpu_info(),
        },
        "server": {
            "profile": None if args.url else args.profile,
            "url_given": args.url is not None,
            "checkpoints": {n: m.get("variant") for n, m in checkpoint_metadata(plan.checkpoints).items()},
            "torch_baseline_device": plan.device,
        },
        "workload": {
            "scans": [s.name for s in scans],
            "slices": scans[0].hu.shape[0],
            "shape": list(scans[0].hu.shape),
            "masks": args.masks,
            "explain": args.explain,
            **(_e2e_workload(plan) if args.end_to_end else {}),
        },
        "command": plan.command,
        "levels": [],
        "baselines": [],
    }


def _e2e_workload(plan: Plan) -> dict[str, Any]:
    """--end-to-end: where the scans are read from, and each one's first read (the page cache as
    the run found it)."""
    args = plan.args
    return {
        "end_to_end": True,
        "source": args.folder or "phantom DICOM series written by bench to a temporary folder",
        "source_paths": [str(p) for p in plan.sources],
        "evict_cache": args.evict_cache,
        "compression": args.compression,
        "first_read_s": dict(zip([p.name for p in plan.sources], plan.first_reads_s, strict=True)),
    }


def add_flops(report: dict[str, Any], plan: Plan) -> None:
    """--flops: FLOPs per scan, the machine's measured peak and what the server and each baseline
    achieved."""
    from covidet.bench import _baselines as B

    device = plan.device
    f = B.flops_per_scan(plan.checkpoints, plan.scans[0])
    peak = B.measure_peak_flops(device=device)
    best = max((r["summary"]["scans_per_s"] for r in report["levels"]), default=0.0)
    report["flops"] = {
        **f,
        "machine_peak_flops": peak,
        "peak_measured_on": f"{device} ({'fp32' if device == 'cpu' else 'fp16'} matmul)",
        "achieved_flops_server": f["per_scan"] * best,
        "fraction_of_peak": f["per_scan"] * best / peak,
        "achieved_flops_baselines": {
            r["summary"]["mode"]: f["per_scan"] * float(r["summary"].get("scans_per_s") or 0.0)
            for r in report["baselines"]
        },
    }


def publish(report: dict[str, Any], plan: Plan, console: Console) -> int:
    """Print the tables, write --json/--csv/--png; 1 if any scan failed, else 0."""
    args = plan.args
    summaries = [r["summary"] for r in report["levels"] + report["baselines"]]
    _print(summaries, f"covidet bench: {report['workload']['shape']} scans, {args.protocol}")
    if args.end_to_end:
        _print_e2e(report, console)
    for row in summaries:  # where an in-process scan's time goes, stage by stage
        if row.get("stages_mean_s"):
            parts = ", ".join(f"{k} {v:.3f}" for k, v in row["stages_mean_s"].items())
            console.print(f"{row['mode']}: mean s a scan by stage: {parts}")
    if "flops" in report and report["levels"]:
        f = report["flops"]
        console.print(
            f"FLOPs per scan {f['per_scan'] / 1e9:.1f} G; machine peak {f['machine_peak_flops'] / 1e9:.0f}"
            f" GFLOP/s; server achieved {f['achieved_flops_server'] / 1e9:.1f} GFLOP/s "
            f"({100 * f['fraction_of_peak']:.1f}% of peak)"
        )
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=1, default=float))
    if args.csv:
        with args.csv.open("w", newline="") as fh:
            nested = (
                "server",
                "error_kinds",
                "stages_mean_s",
                "server_cpu_s_per_scan_by_process",
                "end_to_end",
            )
            keys = [k for k in summaries[0] if k not in nested]
            w = csv.DictWriter(fh, fieldnames=keys, extrasaction="ignore")
            w.writeheader()
            w.writerows(summaries)
    if args.png:
        _plot(summaries, args.png)
    return 1 if any(s["errors"] for s in summaries) else 0


def _print(results: list[dict[str, Any]], title: str) -> None:
    from rich.console import Console
    from rich.table import Table

    t = Table(title=title)
    for col in (
        "mode",
        "level",
        "ok",
        "errors",
        "p50 s",
        "p90 s",
        "p99 s",
        "scans/s",
        "slices/s",
        "peak RSS MiB",
        "peak PSS MiB",
        "own PSS MiB",
        "server CPU s/scan",
    ):
        t.add_column(col, justify="right")
    for r in results:
        rss, pss = r.get("peak_server_rss_mib"), r.get("peak_server_pss_mib")
        own, cpu = r.get("peak_server_own_pss_mib"), r.get("server_cpu_s_per_scan")
        t.add_row(
            r["mode"],
            f"{r['level']:g}",
            "-" if r["ok"] is None else str(r["ok"]),
            str(r["errors"]),
            f"{r['latency_p50_s']:.3f}",
            f"{r['latency_p90_s']:.3f}",
            f"{r['latency_p99_s']:.3f}",
            f"{r['scans_per_s']:.3f}",
            f"{r['slices_per_s']:.1f}",
            f"{rss:.0f}" if rss else "-",
            f"{pss:.0f}" if pss else "-",
            f"{own:.0f}" if own else "-",
            f"{cpu:.2f}" if cpu is not None else "-",
        )
    Console().print(t)
    for r in results:
        if r.get("server"):
            s = Table(title=f"Triton per-model breakdown, {r['mode']} {r['level']:g}")
            cpu_by = r.get("server_cpu_s_per_scan_by_process") or {}
            cols = ("model", "requests", "executions", "avg batch", "queue ms/req", "compute ms/req")
            for col in (*cols, "CPU s/scan"):
                s.add_column(col, justify="right")
            for name, m in r["server"].items():
                s.add_row(
                    name,
                    str(m["requests"]),
                    str(m["executions"]),
                    f"{m['avg_batch']:.1f}",
                    f"{m['queue_ms_per_request']:.1f}",
                    f"{m['compute_ms_per_request']:.1f}",
                    f"{cpu_by[name]:.3f}" if name in cpu_by else "-",
                )
            for name in ("tritonserver", "other"):
                if name in cpu_by:
                    s.add_row(f"({name})", "", "", "", "", "", f"{cpu_by[name]:.3f}")
            Console().print(s)


def _print_e2e(report: dict[str, Any], console: Console) -> None:
    """--end-to-end: each level's parts of a scan, p50 / p95 seconds (mean only where Triton's
    statistics split the level, not each request), and the bytes a scan costs on the wire."""
    from rich.table import Table

    from covidet.bench._e2e import PARTS

    t = Table(title="end to end, s a scan, p50 / p95 (m: level mean); request = served + transfer")
    names = {"read_s": "read", "request_s": "request", "served_s": "served", "transfer_s": "transfer"}
    for col in ("level", "scans", *(names.get(p, "total") for p in PARTS), "MB sent", "kB back"):
        t.add_column(col, justify="right")
    for row in report["levels"]:
        s = row["summary"]
        e = s.get("end_to_end")
        if not e:
            continue

        def cell(part: str, e: dict[str, Any] = e) -> str:
            v = e.get(part)
            if not v:
                return "-"
            return f"{v['p50']:.3f} / {v['p95']:.3f}" if "p50" in v else f"m {v['mean']:.3f}"

        sent, got = e.get("request_bytes_per_scan"), e.get("response_bytes_per_scan")
        t.add_row(
            f"c={s['level']:g}",
            str(e["scans"]),
            *(cell(p) for p in PARTS),
            f"{sent / 1e6:.3g}" if sent is not None else "-",
            f"{got / 1e3:.1f}" if got is not None else "-",
        )
    console.print(t)
    w = report["workload"]
    first = ", ".join(f"{k} {v:.3f}" for k, v in w["first_read_s"].items())
    console.print(f"first read of each scan, s (before the levels): {first}")
    console.print(
        f"read from: {w['source']}; split: "
        + "; ".join(
            sorted(
                {
                    str(r["summary"]["end_to_end"]["split"])
                    for r in report["levels"]
                    if r["summary"].get("end_to_end")
                }
            )
        )
    )


def _plot(results: list[dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for mode in sorted({r["mode"] for r in results}):
        rs = [r for r in results if r["mode"] == mode]
        ax.plot([r["scans_per_s"] for r in rs], [r["latency_p50_s"] for r in rs], "o-", label=f"{mode} p50")
        ax.plot([r["scans_per_s"] for r in rs], [r["latency_p99_s"] for r in rs], "x--", label=f"{mode} p99")
    ax.set_xlabel("throughput (scans/s)")
    ax.set_ylabel("latency per scan (s)")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
