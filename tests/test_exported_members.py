"""Every public package says what it exports with ``__all__``, and says it completely (after httpx's
tests/test_exported_members.py)."""

from __future__ import annotations

import ast
import importlib
import types
from pathlib import Path

import pytest

PACKAGES = [
    "covidet",
    "covidet.client",
    "covidet.clinical",
    "covidet.ensemble",
    "covidet.errors",
    "covidet.export",
    "covidet.metrics",
    "covidet.models",
    "covidet.phantom",
    "covidet.progression",
    "covidet.server",
]

#: Package metadata that is public although it starts with an underscore.
PUBLIC_DUNDERS = {"__version__"}


def _bound_names(tree: ast.Module) -> set[str]:
    """Names the module binds at top level itself: definitions, assignments, and imports from
    covidet (its re-exports). Imports from elsewhere (``Path``, ``Sequence``) are not its names."""
    names: set[str] = set()
    stack: list[ast.stmt] = list(tree.body)
    while stack:
        node = stack.pop()
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, ast.Assign):
            names.update(t.id for t in node.targets if isinstance(t, ast.Name))
        elif isinstance(node, (ast.AnnAssign, ast.AugAssign)) and isinstance(node.target, ast.Name):
            names.add(node.target.id)
        elif isinstance(node, ast.ImportFrom):
            if node.level or (node.module or "").split(".")[0] == "covidet":
                names.update(a.asname or a.name for a in node.names)
        elif isinstance(node, (ast.If, ast.Try)):  # conditional definitions still define
            stack.extend(node.body + node.orelse)
            if isinstance(node, ast.Try):
                stack.extend(node.finalbody)
                for handler in node.handlers:
                    stack.extend(handler.body)
    return names


@pytest.mark.parametrize("name", PACKAGES)
def test_all_names_exist_and_are_public(name: str) -> None:
    module = importlib.import_module(name)
    exported = getattr(module, "__all__", None)
    assert exported is not None, f"{name} has no __all__"
    assert len(exported) == len(set(exported)), f"{name}.__all__ has duplicates"
    missing = [n for n in exported if not hasattr(module, n)]
    assert not missing, f"{name}.__all__ names what it does not define: {missing}"
    private = [n for n in exported if n.startswith("_") and n not in PUBLIC_DUNDERS]
    assert not private, f"{name}.__all__ exports private names: {private}"


@pytest.mark.parametrize("name", PACKAGES)
def test_every_public_name_is_exported(name: str) -> None:
    module = importlib.import_module(name)
    assert module.__file__ is not None
    tree = ast.parse(Path(module.__file__).read_text(encoding="utf-8"))
    public = {
        n
        for n in _bound_names(tree)
        if not n.startswith("_") and not isinstance(getattr(module, n, None), types.ModuleType)
    }
    unexported = sorted(public - set(module.__all__))
    assert not unexported, f"{name} defines public names missing from its __all__: {unexported}"


def test_the_name_walk() -> None:
    """The AST walk finds definitions, re-exports and conditional names, and skips foreign imports."""
    source = (
        "from __future__ import annotations\n"
        "from pathlib import Path\n"
        "from covidet.errors import CovidetError as Error\n"
        "from ._x import helper\n"
        "X: int = 1\n"
        "def f(): pass\n"
        "class C: pass\n"
        "try:\n    from covidet._contract import TOP_K\nexcept ImportError:\n    TOP_K = 3\n"
    )
    names = _bound_names(ast.parse(source))
    assert names == {"Error", "helper", "X", "f", "C", "TOP_K"}
