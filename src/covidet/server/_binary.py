"""Find the Triton server: the `nvidia-pytriton` wheel's binary, or `tritonserver` on PATH."""

from __future__ import annotations

import hashlib
import importlib.util
import os
import shutil
import sys
from dataclasses import dataclass, field
from pathlib import Path

from covidet.errors import ServerStartError

__all__ = ["ServerBinary", "find_tritonserver"]


@dataclass(frozen=True)
class ServerBinary:
    executable: Path
    backend_dir: Path | None
    env: dict[str, str] = field(default_factory=dict)


def _cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "covidet"


def _from_pytriton() -> ServerBinary | None:
    # Locate the package without importing it: it is installed --no-deps (only its server files
    # are needed), so importing it would fail on its own Python dependencies.
    spec = importlib.util.find_spec("pytriton")
    if spec is None or not spec.submodule_search_locations:
        return None
    root = Path(next(iter(spec.submodule_search_locations))).resolve() / "tritonserver"
    exe = root / "bin" / "tritonserver"
    if not exe.is_file():
        return None
    site = root.parent.parent
    libs = site / "nvidia_pytriton.libs"
    pyver = f"{sys.version_info.major}.{sys.version_info.minor}"
    stub = root / "python_backend_stubs" / pyver / "triton_python_backend_stub"
    if not stub.is_file():
        raise ServerStartError(
            f"the nvidia-pytriton wheel has no Python backend stub for Python {pyver} "
            f"({stub}); use Python 3.8-3.12 or NVIDIA's Triton container"
        )
    src = root / "backends" / "python"
    key = hashlib.sha256(f"{src}:{stub}:{stub.stat().st_mtime}".encode()).hexdigest()[:16]
    backends = _cache_dir() / "backends" / key
    target = backends / "python"
    if not (target / "triton_python_backend_stub").is_file():
        tmp = backends.with_name(key + f".tmp{os.getpid()}")
        shutil.rmtree(tmp, ignore_errors=True)
        shutil.copytree(src, tmp / "python")
        shutil.copy2(stub, tmp / "python" / "triton_python_backend_stub")
        tmp.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.replace(tmp, backends)
        except OSError:  # another process won the race
            shutil.rmtree(tmp, ignore_errors=True)
    venv_bin = str(Path(sys.executable).parent)
    env = {
        "LD_LIBRARY_PATH": os.pathsep.join(
            p for p in (str(libs), os.environ.get("LD_LIBRARY_PATH", "")) if p
        ),
        # the stub imports this environment's packages (numpy, onnxruntime, covidet)
        "PATH": os.pathsep.join((venv_bin, os.environ.get("PATH", ""))),
    }
    return ServerBinary(exe, backends, env)


def find_tritonserver() -> ServerBinary:
    """The server binary with its backend directory and environment."""
    found = _from_pytriton()
    if found:
        return found
    on_path = shutil.which("tritonserver")
    if on_path:
        default = Path("/opt/tritonserver/backends")
        return ServerBinary(Path(on_path), default if default.is_dir() else None, {})
    raise ServerStartError(
        "no Triton server found: install the server extra (pip install 'covidet[server]' and "
        "pip install --no-deps nvidia-pytriton==0.7.0), or run inside NVIDIA's tritonserver "
        "container where `tritonserver` is on PATH"
    )
