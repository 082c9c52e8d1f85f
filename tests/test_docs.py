"""The documentation site: every Python block runs and prints what the page shows.

Each page in ``docs/`` runs in a fresh Python process (no x64, as a reader
would have it), in a temporary working directory, its ```python blocks in
order in one namespace, like a notebook. A ```text block right after a
```python block is that block's printed output, and must match it exactly, so
the numbers on the site are the numbers the code produces.

A block preceded by ``<!-- requires: MODULE -->`` is skipped (and reported)
where MODULE is not installed: Rockpool for the migration page, matplotlib
(the ``examples`` extra) for plots. Everything else must run.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

import jaxbounds

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
PAGES = sorted(DOCS.glob("*.md"))

#: Pages whose code is run by a dedicated test instead (it needs a device mesh
#: set up before JAX starts, and one block needs a multi-host cluster).
TESTED_ELSEWHERE = {
    "multi_device.md": ROOT / "tests" / "sharded" / "test_sharded.py",
}

_FENCE = re.compile(
    r"^(?P<indent>[ \t]*)```(?P<lang>[\w-]*)[^\n]*\n"
    r"(?P<body>.*?)^(?P=indent)```[ \t]*$",
    re.MULTILINE | re.DOTALL,
)
_REQUIRES = re.compile(r"<!--\s*requires:\s*([\w.]+)\s*-->\s*$")

_RUNNER = r"""
import contextlib, io, json, sys, traceback
blocks = json.load(open(sys.argv[1]))
namespace = {"__name__": "__main__"}
results = []
for block in blocks:
    out = io.StringIO()
    try:
        with contextlib.redirect_stdout(out):
            exec(compile(block["code"], f"<{block['where']}>", "exec"), namespace)
    except BaseException:
        results.append({"stdout": out.getvalue(), "error": traceback.format_exc()})
        break
    results.append({"stdout": out.getvalue(), "error": None})
json.dump(results, open(sys.argv[2], "w"))
"""


def unindent(body: str, indent: str) -> str:
    """A fenced block's text without the fence's own indentation (in a tab)."""
    return "".join(
        line[len(indent) :] if line.startswith(indent) else line
        for line in body.splitlines(keepends=True)
    )


def blocks_of(page: Path) -> list[dict]:
    """The page's fenced blocks: language, dedented code, line, required module."""
    text = page.read_text(encoding="utf-8")
    found = []
    for m in _FENCE.finditer(text):
        line = text.count("\n", 0, m.start()) + 1
        before = text[: m.start()].rstrip("\n").rsplit("\n", 1)[-1]
        requires = _REQUIRES.search(before)
        gap = text[found[-1]["end"] : m.start()] if found else None
        found.append(
            {
                "lang": m.group("lang"),
                "code": unindent(m.group("body"), m.group("indent")),
                "where": f"{page.name}:{line}",
                "requires": requires.group(1) if requires else None,
                "end": m.end(),
                "follows_directly": gap is not None and not gap.strip(),
            }
        )
    return found


def python_blocks_with_output(page: Path) -> list[dict]:
    """Python blocks, each with the ```text block that directly follows it, if any."""
    blocks = blocks_of(page)
    out = []
    for i, b in enumerate(blocks):
        if b["lang"] != "python":
            continue
        nxt = blocks[i + 1] if i + 1 < len(blocks) else None
        expected = (
            nxt["code"]
            if nxt and nxt["lang"] == "text" and nxt["follows_directly"]
            else None
        )
        out.append({**b, "expected": expected})
    return out


def normalise(text: str) -> str:
    return "\n".join(line.rstrip() for line in text.strip("\n").splitlines())


def installed(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


@pytest.mark.slow
@pytest.mark.parametrize(
    "page", [p for p in PAGES if p.name not in TESTED_ELSEWHERE], ids=lambda p: p.name
)
def test_page_code_runs_and_prints_what_the_page_shows(page: Path, tmp_path: Path):
    blocks = python_blocks_with_output(page)
    if not blocks:
        pytest.skip(f"{page.name} has no Python blocks")
    runnable = [b for b in blocks if b["requires"] is None or installed(b["requires"])]
    skipped = [b for b in blocks if b not in runnable]
    (tmp_path / "blocks.json").write_text(json.dumps(runnable))
    env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
    env.update(MPLBACKEND="Agg", JAX_PLATFORMS="cpu")
    run = subprocess.run(
        [sys.executable, "-c", _RUNNER, "blocks.json", "results.json"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 0, run.stderr
    results = json.loads((tmp_path / "results.json").read_text())
    for block, result in zip(runnable, results):
        assert result["error"] is None, (
            f"block at {block['where']} failed:\n{result['error']}"
        )
        if block["expected"] is not None:
            assert normalise(result["stdout"]) == normalise(block["expected"]), (
                f"block at {block['where']} printed something else than the page "
                f"shows:\n{result['stdout']}"
            )
    assert len(results) == len(runnable)
    if skipped:
        missing = sorted({b["requires"] for b in skipped})
        pytest.skip(
            f"{len(runnable)} blocks ran; {len(skipped)} skipped: not installed: "
            + ", ".join(missing)
        )


def test_every_page_is_in_the_navigation():
    nav = (ROOT / "mkdocs.yml").read_text(encoding="utf-8")
    listed = set(re.findall(r":\s*([\w./-]+\.md)\s*$", nav, flags=re.MULTILINE))
    assert {p.name for p in PAGES} == listed


def test_pages_tested_elsewhere_are_tested_there():
    for page, test in TESTED_ELSEWHERE.items():
        if (DOCS / page).exists():
            assert f'"docs" / "{page}"' in test.read_text(encoding="utf-8"), test


def test_api_reference_documents_every_public_name():
    api = (DOCS / "api.md").read_text(encoding="utf-8")
    documented = re.findall(r"^::: jaxbounds\.(\w+)\s*$", api, flags=re.MULTILINE)
    assert sorted(documented) == sorted(jaxbounds.__all__)


def test_output_blocks_follow_python_blocks():
    """A ```text block is only ever a block's output, so none can go unchecked."""
    for page in PAGES:
        blocks = blocks_of(page)
        for prev, b in zip([None, *blocks], blocks):
            if b["lang"] == "text":
                assert prev is not None and prev["lang"] in ("python", "bash"), b[
                    "where"
                ]
                assert b["follows_directly"], b["where"]


@pytest.mark.slow
@pytest.mark.skipif(not installed("mkdocs"), reason='needs pip install -e ".[docs]"')
def test_site_builds_strictly(tmp_path: Path):
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "mkdocs",
            "build",
            "--strict",
            "--site-dir",
            str(tmp_path),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 0, run.stderr
    assert (tmp_path / "api" / "index.html").exists()
