"""Baseline (c): Triton's own load generator, `perf_analyzer`, on the `covidet` ensemble.

No current wheel ships `perf_analyzer` for this platform; the ``tritonclient==2.41.0`` manylinux
wheel carries the binary (``tritonclient-2.41.0.data/data/bin/perf_analyzer``). `find_perf_analyzer`
downloads that wheel once from the package index (``pip download --no-deps``), extracts only the
binary into covidet's cache, and makes its two missing libraries (``libb64.so.0d``,
``libcudart.so.12``) findable from the copies inside the nvidia-pytriton wheel. The old
tritonclient is never installed.

It sends the same scan as bench.py's clients (raw tensors from an input-data folder) at the same
concurrency levels, so its numbers cross-check bench.py's.
"""

from __future__ import annotations

import base64
import csv
import importlib.util
import json
import os
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from covidet import _contract as C
from covidet.bench._load import Scan
from covidet.clinical import generate_clinical
from covidet.errors import DeploymentError
from covidet.server._binary import _cache_dir

__all__ = ["PA_VERSION", "PerfAnalyzer", "find_perf_analyzer", "run_perf_analyzer", "write_input_data"]

#: The tritonclient wheel that carries a perf_analyzer binary running here (see NOTES).
PA_VERSION = "2.41.0"
_MEMBER = f"tritonclient-{PA_VERSION}.data/data/bin/perf_analyzer"
_LIBS = {"libb64.so.0d": "libb64-*.so.0d", "libcudart.so.12": "libcudart-*.so.12*"}


class PerfAnalyzerError(DeploymentError):
    """perf_analyzer could not be fetched or run (the message says why and how to fix it)."""


@dataclass(frozen=True)
class PerfAnalyzer:
    executable: Path
    env: dict[str, str] = field(default_factory=dict)


def _pytriton_libs() -> Path:
    spec = importlib.util.find_spec("pytriton")  # installed --no-deps: locate, never import
    if spec is None or not spec.submodule_search_locations:
        raise PerfAnalyzerError("perf_analyzer needs the nvidia-pytriton wheel's libraries: `make install`")
    return Path(next(iter(spec.submodule_search_locations))).resolve().parent / "nvidia_pytriton.libs"


def find_perf_analyzer(cache: Path | None = None) -> PerfAnalyzer:
    """The perf_analyzer binary, fetched and unpacked into ``cache`` on first use."""
    root = (cache or _cache_dir()) / f"perf_analyzer-{PA_VERSION}"
    exe, libdir = root / "perf_analyzer", root / "lib"
    if not exe.is_file():
        root.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory() as tmp:
            cmd = [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "-d", tmp]
            done = subprocess.run([*cmd, f"tritonclient=={PA_VERSION}"], capture_output=True, text=True)
            wheels = list(Path(tmp).glob("tritonclient-*.whl"))
            if done.returncode != 0 or not wheels:
                raise PerfAnalyzerError(
                    f"could not download tritonclient=={PA_VERSION} (it carries perf_analyzer): "
                    f"{done.stderr.strip()[-400:]}; check access to the package index"
                )
            with zipfile.ZipFile(wheels[0]) as wheel:
                part = exe.with_suffix(".part")
                part.write_bytes(wheel.read(_MEMBER))
        part.chmod(0o755)
        os.replace(part, exe)
    libdir.mkdir(exist_ok=True)
    libs = _pytriton_libs()
    for name, pattern in _LIBS.items():
        found = sorted(libs.glob(pattern))
        if not found:
            raise PerfAnalyzerError(f"{libs} has no {pattern}: perf_analyzer needs {name}")
        link = libdir / name
        if not link.exists():
            link.unlink(missing_ok=True)  # a dangling link from an older wheel
            link.symlink_to(found[0])
    path = os.pathsep.join(p for p in (str(libdir), os.environ.get("LD_LIBRARY_PATH", "")) if p)
    return PerfAnalyzer(exe, {"LD_LIBRARY_PATH": path})


def write_input_data(scan: Scan, path: Path) -> Path:
    """perf_analyzer's JSON input data for one scan (``path``): the inputs a plain request sends,
    base64 with their shapes. JSON rather than a file per input: the folder format makes
    perf_analyzer send every input the model declares, optional ones too, and a covidet request
    carries exactly one of CT and CT_COMPRESSED."""
    arrays = {
        "CT": np.ascontiguousarray(scan.hu, dtype=np.int16),
        "SPACING": np.asarray(scan.spacing, np.float32),
        "RETURN_MASKS": np.zeros(1, np.bool_),
        # one synthetic patient's record: the SVM step is a tiny part of a scan
        "CLINICAL": generate_clinical(1, seed=0, missing_rate=0.0)[0][0].astype(np.float32),
    }
    data = {
        name: {"b64": base64.b64encode(arr.tobytes()).decode(), "shape": list(arr.shape)}
        for name, arr in arrays.items()
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"data": [data]}))
    return path


def run_perf_analyzer(
    url: str,
    scan: Scan,
    concurrency: list[int],
    *,
    protocol: str = "grpc",
    window_s: float = 30.0,
    pa: PerfAnalyzer | None = None,
) -> list[dict[str, Any]]:
    """perf_analyzer at each closed-loop concurrency; rows shaped like bench.py's summaries.

    Each level measures windows of ``window_s`` (make them hold several scans) until three
    consecutive ones agree, at most 6.
    """
    pa = pa or find_perf_analyzer()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        inputs = write_input_data(scan, Path(tmp) / "inputs.json")
        for level in concurrency:
            report = Path(tmp) / f"c{level}.csv"
            cmd = [
                str(pa.executable),
                "-m",
                C.ENSEMBLE.name,
                "-u",
                url,
                "-i",
                protocol,
                "--input-data",
                str(inputs),
                f"--concurrency-range={level}:{level}",
                # scans take seconds: long windows, judged stable when 3 agree within 50%
                "--measurement-mode=time_windows",
                f"--measurement-interval={int(window_s * 1000)}",
                "--stability-percentage=50",
                "--max-trials=6",
                "-f",
                str(report),
            ]
            done = subprocess.run(
                cmd, capture_output=True, text=True, env={**os.environ, **pa.env}, timeout=window_s * 8 + 120
            )
            if done.returncode != 0 or not report.is_file():
                raise PerfAnalyzerError(
                    f"perf_analyzer failed (exit {done.returncode}): {(done.stdout + done.stderr)[-3000:]}"
                )
            with report.open() as fh:
                row = next(csv.DictReader(fh))
            rate = float(row["Inferences/Second"])
            rows.append(
                {
                    "mode": "perf_analyzer",
                    "level": level,
                    "requests": None,
                    "ok": None,
                    "errors": 0,
                    "latency_p50_s": float(row["p50 latency"]) / 1e6,
                    "latency_p90_s": float(row["p90 latency"]) / 1e6,
                    "latency_p99_s": float(row["p99 latency"]) / 1e6,
                    "latency_mean_s": float(row["Avg latency"]) / 1e6 if row.get("Avg latency") else None,
                    "scans_per_s": rate,
                    "slices_per_s": rate * scan.hu.shape[0],
                    "server_queue_s": float(row["Server Queue"]) / 1e6,
                    "peak_server_rss_mib": None,
                    "peak_server_pss_mib": None,
                    "peak_server_own_pss_mib": None,
                }
            )
    return rows
