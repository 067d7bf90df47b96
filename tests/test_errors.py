"""One exception hierarchy: every exception class covidet defines derives from
`covidet.errors.CovidetError` through one of the decisions `covidet.errors` names."""

from __future__ import annotations

import importlib
import inspect
import pkgutil

import covidet
from covidet import errors
from covidet.errors import CovidetError

#: The decisions a caller makes (``covidet.errors``' classes, the root excepted).
DECISIONS = tuple(
    cls for cls in vars(errors).values() if isinstance(cls, type) and issubclass(cls, CovidetError)
)


def _covidet_exceptions() -> list[type[BaseException]]:
    """Exception classes defined in any covidet module (model.py files run inside Triton: skipped)."""
    found: dict[str, type[BaseException]] = {}
    for info in pkgutil.walk_packages(covidet.__path__, "covidet."):
        if info.name.startswith("covidet._model_repository") or info.name.endswith(".__main__"):
            continue
        module = importlib.import_module(info.name)
        for _, obj in inspect.getmembers(module, inspect.isclass):
            if issubclass(obj, BaseException) and obj.__module__.startswith("covidet."):
                found[f"{obj.__module__}.{obj.__qualname__}"] = obj
    return list(found.values())


def test_the_errors_module_is_one_tree() -> None:
    assert set(errors.__all__) == {cls.__name__ for cls in DECISIONS}
    for cls in DECISIONS:
        assert issubclass(cls, CovidetError), cls


def test_every_exception_covidet_defines_is_a_covidet_error() -> None:
    classes = _covidet_exceptions()
    names = {cls.__name__ for cls in classes}
    # the walk reaches the subpackages from the top-level folders too
    assert {"ScanValidationError", "ExportError", "RenderError", "VolumeError", "CheckpointError"} <= names
    outside = [c for c in classes if not issubclass(c, CovidetError)]
    assert not outside, f"not under covidet.errors.CovidetError: {outside}"
    # a module's error says what to do by sitting under a decision, not under the bare root
    bare = [c for c in classes if c.__module__ != errors.__name__ and CovidetError in c.__bases__]
    assert not bare, f"derive these from a covidet.errors class that says what to do: {bare}"


def test_mixins_callers_rely_on() -> None:
    from covidet.clinical import ClinicalDataError, ModelFileError
    from covidet.ensemble import NoLungError, ScanValidationError, StepUnavailableError
    from covidet.export import ExportError
    from covidet.export._render import RenderError
    from covidet.progression import ProgressionError

    for cls in (NoLungError, ScanValidationError, ClinicalDataError, ProgressionError, ModelFileError):
        assert issubclass(cls, ValueError), cls
    for cls in (StepUnavailableError, ExportError, RenderError):
        assert issubclass(cls, RuntimeError), cls
    assert issubclass(NoLungError, errors.NoLungFoundError)
    assert issubclass(ScanValidationError, errors.VolumeError)
    assert StepUnavailableError.retryable
