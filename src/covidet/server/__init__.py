"""Serving: render the model repository for a profile and run Triton (`covidet serve`)."""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from types import FrameType

from covidet.server._binary import ServerBinary, find_tritonserver
from covidet.server._heal import StubWatchdog
from covidet.server._security import (
    admin_headers,
    generate_self_signed,
    load_or_create_admin_secret,
    restricted_api_args,
    tls_args,
)
from covidet.server._server import TritonServer, free_port, free_ports

__all__ = [
    "ServerBinary",
    "StubWatchdog",
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


_RESTRICT_FLAGS = ("--grpc-restricted-protocol", "--http-restricted-api")


def _default_token_file() -> Path:
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "covidet" / "admin-token"


def _split_passthrough(argv: Sequence[str]) -> tuple[list[str], list[str]]:
    """``[own args] -- [tritonserver args]``: everything after the first ``--`` goes to Triton."""
    argv = list(argv)
    if "--" in argv:
        k = argv.index("--")
        return argv[:k], argv[k + 1 :]
    return argv, []


def serve_main(argv: Sequence[str] | None = None) -> int:
    """`covidet serve`: render (unless given) the repository, start Triton, wait, forward signals.

    Arguments after ``--`` are passed to tritonserver unchanged (they come after covidet's own
    flags, so they win). Admin APIs are locked behind a secret header unless ``--unlocked``; a
    watchdog reloads any model whose Python-backend stub process dies (``--no-heal`` turns it off).
    """
    from covidet.export._admission import add_admission_options
    from covidet.export._render import PROFILES, render_repository
    from covidet.server._security import ADMIN_APIS

    own, passthrough = _split_passthrough(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(
        prog="covidet serve",
        usage="covidet serve [options] [-- tritonserver options]",
        description=serve_main.__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
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
        "--exit-timeout", type=int, default=30, help="seconds Triton drains in-flight requests on stop"
    )
    parser.add_argument(
        "--replicas",
        type=int,
        default=1,
        help="run N local servers (ports +3 each) for the client's fail-over; on Kubernetes, "
        "scale the Deployment instead",
    )
    parser.add_argument(
        "--admin-header",
        default=os.environ.get("COVIDET_ADMIN_HEADER", "covidet-admin-key"),
        help="header that unlocks the admin APIs (%(default)s)",
    )
    parser.add_argument(
        "--admin-token-file",
        type=Path,
        default=None,
        help="file holding the admin token, created (mode 0600) if missing; default: "
        "$COVIDET_ADMIN_TOKEN if set, else ~/.config/covidet/admin-token",
    )
    parser.add_argument(
        "--unlocked",
        action="store_true",
        help="leave the admin APIs (" + ", ".join(ADMIN_APIS) + ") open: local experiments only",
    )
    add_admission_options(parser)
    parser.add_argument("--no-heal", action="store_true", help="do not reload models whose stub died")
    parser.add_argument(
        "--dry-run", action="store_true", help="print the tritonserver command as JSON and exit"
    )
    args = parser.parse_args(own)

    repo = args.model_repository
    if repo is None:
        print(f"rendering the {args.profile} model repository...", flush=True)
        repo = render_repository(
            args.profile,
            args.build_dir / f"model_repository-{args.profile}",
            args.checkpoints,
            max_inflight_bytes=args.max_inflight_bytes,
            max_scan_bytes=args.max_scan_bytes,
        )
    extra = list(passthrough)
    headers: dict[str, str] = {}
    if not args.unlocked:
        if args.admin_token_file is None and os.environ.get("COVIDET_ADMIN_TOKEN"):
            token = os.environ["COVIDET_ADMIN_TOKEN"]
            where = "$COVIDET_ADMIN_TOKEN"
        else:
            token_file = args.admin_token_file or _default_token_file()
            token, where = load_or_create_admin_secret(token_file), str(token_file)
        if not any(a.startswith(_RESTRICT_FLAGS) for a in passthrough):  # the caller's lock wins
            extra = restricted_api_args(args.admin_header, token) + extra
        headers = admin_headers(args.admin_header, token, "http")
    servers = [
        TritonServer(
            repo,
            http_port=args.http_port + 3 * i,
            grpc_port=args.grpc_port + 3 * i,
            metrics_port=args.metrics_port + 3 * i,
            host=args.host,
            extra_args=extra,
            model_control_mode="explicit",
            exit_timeout_s=args.exit_timeout,
        )
        for i in range(max(1, args.replicas))
    ]
    if args.dry_run:
        print(json.dumps(servers[0].command()))
        return 0
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
    watchdogs: list[StubWatchdog] = []
    try:
        for server in servers:
            server.wait_ready(timeout=args.ready_timeout)
            print(
                f"covidet ready: gRPC {server.grpc_url}  HTTP {server.http_url}  "
                f"metrics {server.metrics_url}",
                flush=True,
            )
            if not args.no_heal:
                watchdogs.append(StubWatchdog(server, headers=headers).start())
        if headers:
            print(f"admin APIs locked: send header {args.admin_header!r} with the token in {where}")
        if len(servers) > 1:
            urls = ",".join(s.grpc_url for s in servers)
            print(f"{len(servers)} replicas; clients fail over with --url for each of: {urls}", flush=True)
        print("(Ctrl-C stops)", flush=True)
        while not stopping and all(s.process is not None and s.process.poll() is None for s in servers):
            time.sleep(0.5)
    finally:
        for dog in watchdogs:
            dog.stop()
        codes = [s.stop(grace_s=args.exit_timeout + 15) for s in servers]
    if not stopping:
        dead = [s for s in servers if s.process is not None and s.process.returncode not in (0, None)]
        tail = dead[0].log_tail() if dead else ""
        print(f"a Triton replica exited unexpectedly (codes {codes}):\n{tail}", file=sys.stderr)
        return 1
    print("Triton stopped cleanly.", flush=True)
    return 0
