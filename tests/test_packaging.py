"""Package metadata: extras that cover the examples, the version, the changelog."""

from __future__ import annotations

import ast
import re
import sys
from pathlib import Path

import pytest

import jaxbounds

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    tomllib = pytest.importorskip("tomli")

ROOT = Path(__file__).resolve().parent.parent
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
PROJECT = PYPROJECT["project"]

#: What every install has: the runtime dependencies and what they bring.
INSTALLED_WITH_JAX = {"numpy"}


def names(requirements: list[str]) -> dict[str, str]:
    """``{"flax": ">=0.12"}`` from ``["flax>=0.12"]``."""
    found = {}
    for req in requirements:
        m = re.match(r"^([A-Za-z0-9_.-]+)\s*(.*)$", req)
        assert m, req
        found[m.group(1).lower()] = m.group(2).strip()
    return found


def top_level_imports(script: Path) -> set[str]:
    """Modules a script imports unconditionally (module level, not in a try)."""
    tree = ast.parse(script.read_text(encoding="utf-8"))
    found = set()
    for node in tree.body:
        if isinstance(node, ast.Import):
            found |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add(node.module.split(".")[0])
    return found - set(sys.stdlib_module_names) - {"__future__", "jaxbounds"}


def test_the_examples_extra_installs_what_the_examples_import():
    runtime = names(PROJECT["dependencies"])
    examples = names(PROJECT["optional-dependencies"]["examples"])
    for script in sorted((ROOT / "examples").glob("*.py")):
        missing = top_level_imports(script) - set(runtime) - set(examples)
        assert not missing - INSTALLED_WITH_JAX, (script.name, missing)
    assert "flax" in examples  # examples/nnx_lif.py


def test_flax_extra_and_its_minimum_version_are_named_in_the_docs():
    extras = PROJECT["optional-dependencies"]
    flax = names(extras["flax"])["flax"]
    assert flax.startswith(">=")
    assert names(extras["examples"])["flax"] == flax
    assert names(extras["test"])["flax"] == flax
    for doc in (ROOT / "README.md", ROOT / "docs" / "nnx.md"):
        text = doc.read_text(encoding="utf-8")
        assert f"flax{flax}" in text and ".[flax]" in text, doc.name


def test_version_is_the_changelog_s_next_or_last():
    changelog = (ROOT / "CHANGELOG.md").read_text(encoding="utf-8")
    assert "## [Unreleased]" in changelog
    released = re.findall(
        r"^## \[(\d+\.\d+\.\d+)\] - \d{4}-\d{2}-\d{2}$", changelog, re.M
    )
    assert released, "no released version in CHANGELOG.md"
    version = jaxbounds.__version__
    m = re.fullmatch(r"(\d+)\.(\d+)\.(\d+)(\.dev\d+)?", version)
    assert m, version
    latest = tuple(int(x) for x in released[0].split("."))
    ours = tuple(int(x) for x in m.groups()[:3])
    if m.group(4):  # in development: after the latest release
        assert ours > latest, (version, released[0])
    else:
        assert version == released[0]


def test_readme_before_columns_name_a_released_version():
    changelog = (ROOT / "CHANGELOG.md").read_text(encoding="utf-8")
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert "previous release" not in readme
    named = set(re.findall(r"\bbefore \((\d+\.\d+\.\d+)\)", readme))
    assert named, "the README's tables name no version in their 'before' columns"
    for version in named:
        assert f"## [{version}]" in changelog, version
