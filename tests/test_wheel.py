"""The built wheel is complete and works on its own: every module of every subpackage (the top-level
client/, ensemble/, export/ folders included), the demo checkpoints and the model repository's
sources; installed outside the source tree it imports from its own files and runs the CLI.

Built once per module from a copy of the working tree (the repository's own build/ holds the
editable install's link tree and is left alone). About 20-40 s.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import tomllib

ROOT = Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
SETUPTOOLS = PYPROJECT["tool"]["setuptools"]

pytestmark = pytest.mark.timeout(300)


def _env(**extra: str) -> dict[str, str]:
    """The environment without anything that would find the source tree or the user's site."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP")}
    env["PYTHONNOUSERSITE"] = "1"
    env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    return env | extra


def _run(args: list[str | Path], cwd: Path, env: dict[str, str] | None = None) -> str:
    run = subprocess.run(
        [str(a) for a in args], cwd=cwd, env=env or _env(), capture_output=True, text=True, timeout=240
    )
    assert run.returncode == 0, f"{args}\n{run.stdout}\n{run.stderr}"
    return run.stdout


@pytest.fixture(scope="module")
def work(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("wheel")


@pytest.fixture(scope="module")
def wheel(work: Path) -> Path:
    """``pip wheel`` of a copy of the distribution's sources (what an sdist would hold)."""
    src = work / "src"
    src.mkdir()
    skip = shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info")
    shutil.copy2(ROOT / "pyproject.toml", src)
    shutil.copy2(ROOT / PYPROJECT["project"]["readme"], src)
    for top in sorted({Path(d).parts[0] for d in SETUPTOOLS["package-dir"].values()}):
        shutil.copytree(ROOT / top, src / top, ignore=skip)
    dist = work / "dist"
    _run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-cache-dir",
         "-q", "-w", dist, src],
        cwd=work,
    )  # fmt: skip
    wheels = list(dist.glob("covidet-*.whl"))
    assert len(wheels) == 1, wheels
    return wheels[0]


def _package_dir(package: str) -> Path:
    """The source folder of ``package`` by pyproject's package-dir mapping."""
    mapping: dict[str, str] = SETUPTOOLS["package-dir"]
    parts = package.split(".")
    for n in range(len(parts), 0, -1):
        prefix = ".".join(parts[:n])
        if prefix in mapping:
            return ROOT / mapping[prefix] / Path(*parts[n:])
    return ROOT / mapping[""] / Path(*parts)


def test_wheel_holds_every_module_and_the_data(wheel: Path) -> None:
    names = set(zipfile.ZipFile(wheel).namelist())
    # every module of every listed package, wherever its folder lives
    expected = set()
    for package in SETUPTOOLS["packages"]:
        folder = _package_dir(package)
        assert folder.is_dir(), f"pyproject lists {package} but {folder} is missing"
        prefix = package.replace(".", "/")
        expected |= {f"{prefix}/{f.name}" for f in folder.glob("*.py")}
    # ... and no package the source has is left out of pyproject's list
    for top in ("client", "ensemble", "export"):
        for init in (ROOT / top).rglob("__init__.py"):
            sub = ".".join(("covidet", top, *init.parent.relative_to(ROOT / top).parts))
            assert sub in SETUPTOOLS["packages"], f"{sub} is not in pyproject's packages"
    for init in (ROOT / "src/covidet").rglob("__init__.py"):
        sub = ".".join(init.parent.relative_to(ROOT / "src").parts)
        assert sub in SETUPTOOLS["packages"], f"{sub} is not in pyproject's packages"
    # the subpackages from the top-level folders, the CLI, the demo checkpoints
    expected |= {
        "covidet/client/__init__.py",
        "covidet/ensemble/__init__.py",
        "covidet/export/__init__.py",
        "covidet/cli/__init__.py",
        "covidet/py.typed",
    }
    demo = sorted((ROOT / "src/covidet/checkpoints/demo").glob("*.pt"))
    assert demo, "no demo checkpoints in the source tree"
    for pt in demo:
        expected |= {f"covidet/checkpoints/demo/{pt.name}", f"covidet/checkpoints/demo/{pt.stem}.json"}
    # the model repository's sources: each config.pbtxt and 1/model.py
    repo = ROOT / "model_repository"
    sources = [*repo.glob("*/config.pbtxt"), *repo.glob("*/1/*.py")]
    assert any(p.name == "model.py" for p in sources) and any(p.suffix == ".pbtxt" for p in sources)
    expected |= {f"covidet/_model_repository/{p.relative_to(repo).as_posix()}" for p in sources}

    missing = sorted(expected - names)
    assert not missing, f"the wheel lacks {missing}"
    junk = sorted(n for n in names if "__pycache__" in n or n.endswith(".pyc") or n.startswith("tests/"))
    assert not junk, f"the wheel carries {junk}"


_IMPORTS = """
import json, covidet, covidet.client, covidet.ensemble, covidet.export, covidet.cli, covidet.server
from covidet.errors import CovidetError
mods = [covidet, covidet.client, covidet.ensemble, covidet.export, covidet.cli, covidet.server]
print(json.dumps({m.__name__: m.__file__ for m in mods}))
"""


def test_installed_wheel_imports_from_its_own_files(wheel: Path, work: Path) -> None:
    """Installed into a plain folder (its dependencies from this environment), outside the
    source tree: the subpackages import from the installed files and the CLI runs."""
    site = work / "site"
    _run([sys.executable, "-m", "pip", "install", "--no-deps", "--no-index", "-q", "--target", site, wheel],
         cwd=work)  # fmt: skip
    env = _env(PYTHONPATH=str(site))
    files = json.loads(_run([sys.executable, "-c", _IMPORTS], cwd=site, env=env).strip().splitlines()[-1])
    outside = {name: f for name, f in files.items() if not Path(f).resolve().is_relative_to(site.resolve())}
    assert not outside, f"imported from outside the installed wheel: {outside}"
    assert sorted(p.name for p in (site / "covidet/checkpoints/demo").glob("*.pt"))
    out = _run([sys.executable, "-m", "covidet.cli", "--help"], cwd=site, env=env)
    assert "serve" in out and "diagnose" in out


def test_the_contract_and_errors_need_no_dependency(wheel: Path, work: Path) -> None:
    """In a bare virtual environment (no numpy, no torch), the wire contract and the error tree
    import: the light client's foundation carries no dependency."""
    venv = work / "bare"
    _run([sys.executable, "-m", "venv", "--without-pip", venv], cwd=work)
    python = venv / "bin" / "python"
    _run([sys.executable, "-m", "pip", "--python", python, "install", "--no-deps", "--no-index", "-q", wheel],
         cwd=work)  # fmt: skip
    probe = (
        "import importlib.util, covidet, covidet._contract as C, covidet.errors as E\n"
        "assert importlib.util.find_spec('numpy') is None, 'numpy is visible: not a bare venv'\n"
        "assert issubclass(E.NoLungFoundError, E.CovidetError) and C.ENSEMBLE.name == 'covidet'\n"
        "print(covidet.__file__)"
    )
    where = Path(_run([python, "-c", probe], cwd=work).strip())
    assert where.resolve().is_relative_to(venv.resolve()), where
