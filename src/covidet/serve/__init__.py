"""Serving: render the model repository for a profile and run Triton (`covidet serve`)."""

from __future__ import annotations

import argparse
import signal
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from types import FrameType

from covidet.serve._binary import ServerBinary, find_tritonserver
from covidet.serve._security import (
    admin_headers,
    generate_self_signed,
    load_or_create_admin_secret,
    restricted_api_args,
    tls_args,
)
from covidet.serve._server import TritonServer, free_port, free_ports

__all__ = [
    "ServerBinary",
    "TritonServer",
    "admin_headers",
    "find_tritonserver",
    "free_port",
    "free_ports",
    "generate_self_signed",
    "load_or_create_admin_secret",
    "restricted_api_args",
    "serve_main",
    "tls_args",
]


def serve_main(argv: Sequence[str] | None = None) -> int:
    """`covidet serve`: render (unless given) the repository, start Triton, wait, forward signals."""
    from covidet.serve._render import PROFILES, render_repository

    parser = argparse.ArgumentParser(prog="covidet serve", description=serve_main.__doc__)
    parser.add_argument("--profile", default="cpu", choices=PROFILES)
    parser.add_argument("--http-port", type=int, default=8000)
    parser.add_argument("--grpc-port", type=int, default=8001)
    parser.add_argument("--metrics-port", type=int, default=8002)
    parser.add_argument("--host", default="127.0.0.1", help="bind address (0.0.0.0 in containers)")
    parser.add_argument(
        "--model-repository",
        type=Path,
        default=None,
        help="serve this repository as is (default: render one for --profile)",
    )
    parser.add_argument("--checkpoints", type=Path, default=None, help="checkpoint folder")
    parser.add_argument("--build-dir", type=Path, default=Path("build"))
    parser.add_argument("--ready-timeout", type=float, default=600.0)
    parser.add_argument(
        "--replicas",
        type=int,
        default=1,
        help="run N local servers (ports +3 each) for the client's fail-over; on Kubernetes, "
        "scale the Deployment instead",
    )
    args = parser.parse_args(argv)

    repo = args.model_repository
    if repo is None:
        print(f"rendering the {args.profile} model repository...", flush=True)
        repo = render_repository(
            args.profile, args.build_dir / f"model_repository-{args.profile}", args.checkpoints
        )
    servers = [
        TritonServer(
            repo,
            http_port=args.http_port + 3 * i,
            grpc_port=args.grpc_port + 3 * i,
            metrics_port=args.metrics_port + 3 * i,
            host=args.host,
        )
        for i in range(max(1, args.replicas))
    ]
    stopping = False

    def on_signal(signum: int, frame: FrameType | None) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    for server in servers:
        server.start()
        print(f"starting Triton (log: {server.log_file})...", flush=True)
    codes: list[int | None] = []
    try:
        for server in servers:
            server.wait_ready(timeout=args.ready_timeout)
            print(
                f"covidet ready: gRPC {server.grpc_url}  HTTP {server.http_url}  "
                f"metrics {server.metrics_url}",
                flush=True,
            )
        if len(servers) > 1:
            urls = ",".join(s.grpc_url for s in servers)
            print(f"{len(servers)} replicas; clients fail over with --url for each of: {urls}", flush=True)
        print("(Ctrl-C stops)", flush=True)
        while not stopping and all(s.process is not None and s.process.poll() is None for s in servers):
            time.sleep(0.5)
    finally:
        codes = [s.stop() for s in servers]
    if not stopping:
        dead = [s for s in servers if s.process is not None and s.process.returncode not in (0, None)]
        tail = dead[0].log_tail() if dead else ""
        print(f"a Triton replica exited unexpectedly (codes {codes}):\n{tail}", file=sys.stderr)
        return 1
    print("Triton stopped cleanly.", flush=True)
    return 0
