"""The `covidet` command line: one dispatch table (`covidet --help` lists the commands)."""

from __future__ import annotations

from covidet.cli._main import main

__all__ = ["main"]
