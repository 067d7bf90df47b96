"""Command-line options shared by the commands that talk to a running server."""

from __future__ import annotations

import argparse

__all__ = ["DEFAULT_URL", "add_server_options"]

DEFAULT_URL = "127.0.0.1:8001"


def add_server_options(p: argparse.ArgumentParser) -> None:
    """``--url`` (repeatable: fail-over) and ``--protocol``."""
    p.add_argument(
        "--url",
        action="append",
        default=None,
        help=f"server URL (repeat for fail-over; default {DEFAULT_URL})",
    )
    p.add_argument("--protocol", choices=["grpc", "http"], default=None)
