"""``DIR/results.jsonl``: one JSON record per line, appended as results arrive.

A record is written whole with one ``write`` and flushed to disk before the next, so a run killed
at any moment leaves every finished scan on disk and at most one partial last line, which the
next run cuts off before appending. Later records of a scan replace earlier ones.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

__all__ = ["RESULTS_NAME", "ResultsLog", "read_results"]

RESULTS_NAME = "results.jsonl"


def _json_safe(obj: Any) -> Any:
    """NaN and infinities become null (JSON has neither)."""
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {str(k): _json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_json_safe(v) for v in obj]
    return obj


def read_results(path: str | Path) -> list[dict[str, Any]]:
    """The complete records of a results file (a partial last line is ignored); for each
    ``(kind, key)`` only the last record, in the order of first appearance."""
    path = Path(path)
    if not path.is_file():
        return []
    latest: dict[tuple[str, str], dict[str, Any]] = {}
    with open(path, encoding="utf-8") as f:
        for line in f:
            if not line.endswith("\n"):
                break  # the partial record of a killed run
            line = line.strip()
            if not line:
                continue
            try:
                rec = json.loads(line)
            except json.JSONDecodeError:
                continue
            latest[(rec.get("kind", "scan"), str(rec.get("key", rec.get("scan_id", ""))))] = rec
    return list(latest.values())


class ResultsLog:
    """Append-only results file; ``done`` holds the keys of the records already there."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._repair()
        self.records = read_results(self.path)
        self._f = open(self.path, "a", encoding="utf-8")  # closed by close()

    def _repair(self) -> None:
        """Cut a partial last line (a run killed mid-write) so appends start on a fresh line."""
        if not self.path.is_file():
            return
        with open(self.path, "rb+") as f:
            data = f.read()
            if data and not data.endswith(b"\n"):
                f.truncate(data.rfind(b"\n") + 1)

    def record(self, kind: str, key: str) -> dict[str, Any] | None:
        for rec in reversed(self.records):
            if rec.get("kind") == kind and rec.get("key") == key:
                return rec
        return None

    def append(self, rec: dict[str, Any]) -> None:
        line = json.dumps(_json_safe(rec), allow_nan=False) + "\n"
        self._f.write(line)
        self._f.flush()
        os.fsync(self._f.fileno())
        self.records.append(rec)

    def close(self) -> None:
        self._f.close()

    def __enter__(self) -> ResultsLog:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
