"""Architecture rules (DESIGN.md, "Layout"): the client never imports torch, onnxruntime,
covidet.ensemble or covidet.export, directly or through other covidet modules; covidet.ensemble and
covidet.export never import the client; the ensemble never imports the export; the wire contract and
the errors stay dependency-free.

The rules are import-linter contracts in pyproject.toml ([tool.importlinter]): they follow imports
transitively and see imports inside functions. A runtime check backs them up.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _lint_imports(*args: str) -> subprocess.CompletedProcess[str]:
    pytest.importorskip("importlinter", reason="import-linter is in the dev extra")
    exe = Path(sys.executable).parent / "lint-imports"
    command = [str(exe)] if exe.exists() else [shutil.which("lint-imports") or "lint-imports"]
    return subprocess.run(
        [*command, "--no-cache", *args], cwd=ROOT, capture_output=True, text=True, timeout=120
    )


def test_import_contracts_are_kept() -> None:
    run = _lint_imports()
    stale = "No such file or directory" in run.stdout + run.stderr
    hint = "\n(a module was added or removed: run `make install` to refresh the link tree)" if stale else ""
    assert run.returncode == 0, run.stdout + run.stderr + hint
    assert "0 broken" in run.stdout, run.stdout


def test_the_contracts_see_the_subpackages_and_imports_inside_functions(tmp_path: Path) -> None:
    """Contracts that must break do: the analysis reaches client/ and ensemble/ (the top-level
    folders), follows imports through other covidet modules, and reads imports inside functions
    (the client imports tritonclient only there). Without this, an analysis that found no files
    would keep every contract."""
    config = tmp_path / "probe.toml"
    config.write_text(
        """
[tool.importlinter]
root_package = "covidet"
include_external_packages = true

[[tool.importlinter.contracts]]
name = "probe: function-level import"
type = "forbidden"
source_modules = ["covidet.client._core"]
forbidden_modules = ["tritonclient"]

[[tool.importlinter.contracts]]
name = "probe: transitive import"
type = "forbidden"
source_modules = ["covidet.ensemble"]
forbidden_modules = ["torch"]
""",
        encoding="utf-8",
    )
    run = _lint_imports("--config", str(config))
    assert run.returncode != 0, run.stdout
    assert "2 broken" in run.stdout, run.stdout


_PROBE = """
import importlib, json, pkgutil, sys
import covidet.client
for info in pkgutil.walk_packages(covidet.client.__path__, "covidet.client."):
    importlib.import_module(info.name)
heavy = ("torch", "onnxruntime", "covidet.ensemble", "covidet.export")
print(json.dumps(sorted(m for m in sys.modules for h in heavy if m == h or m.startswith(h + "."))))
"""


def test_importing_the_client_loads_no_heavy_module() -> None:
    """Every covidet.client module imported in a fresh interpreter: no torch, no onnxruntime, no
    covidet.ensemble, no covidet.export in sys.modules."""
    run = subprocess.run(
        [sys.executable, "-c", _PROBE], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert run.returncode == 0, run.stderr
    loaded = json.loads(run.stdout.strip().splitlines()[-1])
    assert loaded == [], f"importing covidet.client loaded {loaded}"
