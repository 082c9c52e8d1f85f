"""The package's layout rules: no import of a package module inside a function.

`lint-imports` (run by CI, contracts in pyproject.toml) checks the layers of
DESIGN.md, lazy imports included; this test checks the rule a layers
contract cannot: a function body imports no module of the package at all
(optional frameworks such as flax are imported lazily, and may be).
"""

from __future__ import annotations

import ast
import pathlib

import pytest

PACKAGE = pathlib.Path(__file__).resolve().parents[1] / "jaxbounds"


def _lazy_package_imports(source: str) -> list[tuple[int, str]]:
    found = []
    for node in ast.walk(ast.parse(source)):
        if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            continue
        for inner in ast.walk(node):
            if isinstance(inner, ast.ImportFrom) and (
                inner.level > 0 or (inner.module or "").startswith("jaxbounds")
            ):
                found.append((inner.lineno, ast.unparse(inner)))
            elif isinstance(inner, ast.Import) and any(
                a.name.startswith("jaxbounds") for a in inner.names
            ):
                found.append((inner.lineno, ast.unparse(inner)))
    return found


@pytest.mark.parametrize(
    "path", sorted(PACKAGE.rglob("*.py")), ids=lambda p: str(p.relative_to(PACKAGE))
)
def test_no_function_body_imports_a_package_module(path):
    assert _lazy_package_imports(path.read_text()) == []


def test_the_check_sees_a_lazy_relative_import():
    source = "def f():\n    from ._reparam import constrain\n    return constrain\n"
    assert _lazy_package_imports(source) == [(2, "from ._reparam import constrain")]
