"""The pipe streams' import paths (issue 14.3): they live in fdloop.primitives, the old
``fdloop.streams`` path still works for users, and nothing inside fdloop uses it."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import fdloop
import fdloop.streams as old_path
from fdloop.primitives import streams

pytestmark = pytest.mark.single_backend

PACKAGE = Path(fdloop.__file__).resolve().parent


def test_every_public_path_gives_the_same_objects() -> None:
    for name in old_path.__all__:
        assert getattr(old_path, name) is getattr(streams, name), name
    for name in ("PipeReceiveStream", "PipeSendStream", "PIPE", "DEVNULL", "STDOUT"):
        assert getattr(fdloop, name) is getattr(streams, name), name


def _imports_of(path: Path) -> list[str]:
    """The absolute module names a file imports (relative imports resolved)."""
    package = ".".join(path.relative_to(PACKAGE.parent).with_suffix("").parts[:-1])
    if path.name == "__init__.py":
        package = ".".join(path.relative_to(PACKAGE.parent).parts[:-1])
    names = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.extend(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = package.split(".")
            if node.level:
                base = base[: len(base) - node.level + 1]
                module = ".".join([*base, *([node.module] if node.module else [])])
            else:
                module = node.module or ""
            names.append(module)
            names.extend(f"{module}.{alias.name}" for alias in node.names)
    return names


def test_nothing_inside_fdloop_imports_the_old_path() -> None:
    users = [
        str(path.relative_to(PACKAGE.parent))
        for path in PACKAGE.rglob("*.py")
        if path.name != "streams.py" or path.parent != PACKAGE
        if "fdloop.streams" in _imports_of(path)
    ]
    assert users == []
