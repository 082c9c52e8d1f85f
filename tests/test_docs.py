"""The documentation site: every Python block runs and prints what the page shows.

Each page in ``docs/`` runs in a fresh Python process (no x64, as a reader
would have it), in a temporary working directory, its ```python blocks in
order in one namespace, like a notebook. A ```text block right after a
```python block is that block's printed output, and must match it: its text
exactly (runs of spaces aside, which move with the width of the numbers), and
its numbers within a tolerance, so the numbers on the site are the numbers the
code produces, on any processor. The tolerance is `RTOL` / `ATOL` below (the
last digit of a float32 printed in full), or the one the page states on the
line right above the ```text fence, ``<!-- output: rtol=0.05 atol=1e-8 -->``,
for figures that depend on the machine (XLA's CPU kernels round differently
between processors and thread counts); the page then says so in its prose.

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
_TOLERANCE = re.compile(
    r"^[ \t]*<!--\s*output:((?:\s*[ra]tol=[0-9.eE+-]+)+)\s*-->[ \t]*$", re.MULTILINE
)
#: A number standing alone (not part of a name such as ``layers.0.weight``, or
#: of a version such as ``0.10.2``).
_NUMBER = re.compile(
    r"(?<![\w.])([-+]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?)(?![\w.])"
)

#: Printed numbers agree to this relative / absolute tolerance by default:
#: float32 printed to 8 digits varies in its last one between processors.
RTOL, ATOL = 1e-6, 0.0

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


def tolerance_of(stated: str) -> dict[str, float]:
    """``rtol=0.05 atol=1e-8`` as a dict (the sides not stated: the defaults)."""
    given = dict(item.split("=") for item in stated.split())
    return {
        "rtol": float(given.get("rtol", RTOL)),
        "atol": float(given.get("atol", ATOL)),
    }


def output_mismatch(
    printed: str, expected: str, rtol: float = RTOL, atol: float = ATOL
) -> str | None:
    """Where ``printed`` differs from ``expected``, or `None` where it matches.

    Text between numbers must be equal (runs of spaces count as one space);
    numbers must agree to ``|a - e| <= max(rtol * |e|, atol)``.
    """
    got, want = _NUMBER.split(normalise(printed)), _NUMBER.split(normalise(expected))
    if len(got) != len(want):
        return f"{len(got) // 2} numbers printed, {len(want) // 2} shown"
    for k, (g, w) in enumerate(zip(got, want)):
        if k % 2 == 0:
            if re.sub(r"[ \t]+", " ", g) != re.sub(r"[ \t]+", " ", w):
                return f"text {g!r} printed where the page shows {w!r}"
        elif not abs(float(g) - float(w)) <= max(rtol * abs(float(w)), atol):
            return f"{g} printed where the page shows {w} (rtol={rtol}, atol={atol})"
    return None


def blocks_of(page: Path) -> list[dict]:
    """The page's fenced blocks: language, dedented code, line, required module."""
    text = page.read_text(encoding="utf-8")
    found = []
    for m in _FENCE.finditer(text):
        line = text.count("\n", 0, m.start()) + 1
        before = text[: m.start()].rstrip("\n").rsplit("\n", 1)[-1]
        requires = _REQUIRES.search(before)
        tolerance = _TOLERANCE.match(before)
        gap = text[found[-1]["end"] : m.start()] if found else None
        found.append(
            {
                "lang": m.group("lang"),
                "code": unindent(m.group("body"), m.group("indent")),
                "where": f"{page.name}:{line}",
                "requires": requires.group(1) if requires else None,
                "tolerance": tolerance_of(tolerance.group(1)) if tolerance else None,
                "end": m.end(),
                "follows_directly": gap is not None
                and not _TOLERANCE.sub("", gap).strip(),
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
        shown = nxt and nxt["lang"] == "text" and nxt["follows_directly"]
        out.append(
            {
                **b,
                "expected": nxt["code"] if shown else None,
                "tolerance": (nxt["tolerance"] if shown else None)
                or {"rtol": RTOL, "atol": ATOL},
            }
        )
    return out


def normalise(text: str) -> str:
    return "\n".join(line.rstrip() for line in text.strip("\n").splitlines())


def installed(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


def run_blocks(blocks: list[dict], tmp_path: Path, **env_extra: str) -> list[dict]:
    """Run ``blocks`` in order in one fresh interpreter; one result each."""
    (tmp_path / "blocks.json").write_text(json.dumps(blocks))
    env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
    env.update(JAX_PLATFORMS="cpu", **env_extra)
    run = subprocess.run(
        [sys.executable, "-c", _RUNNER, "blocks.json", "results.json"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 0, run.stderr
    return json.loads((tmp_path / "results.json").read_text())


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
    results = run_blocks(runnable, tmp_path, MPLBACKEND="Agg")
    for block, result in zip(runnable, results):
        assert result["error"] is None, (
            f"block at {block['where']} failed:\n{result['error']}"
        )
        if block["expected"] is not None:
            wrong = output_mismatch(
                result["stdout"], block["expected"], **block["tolerance"]
            )
            assert wrong is None, (
                f"block at {block['where']} printed something else than the page "
                f"shows: {wrong}\n{result['stdout']}"
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


def test_printed_numbers_compare_within_the_tolerance_and_text_exactly():
    shown = "step     40  value  4.235649e-04  pg 2.453e-06\n[0.59999967 0.1       ]"
    moved = "step     40  value  4.235649e-04  pg 2.452e-06\n[0.5999997 0.1      ]"
    assert output_mismatch(moved, shown) is not None  # 4e-4 apart: not by default
    assert output_mismatch(moved, shown, rtol=1e-3) is None
    assert output_mismatch("pg 1.384e-10", "pg 1.450e-10", atol=1e-9) is None
    assert output_mismatch("pg 1.384e-10", "pg 1.450e-10", rtol=1e-3) is not None
    assert output_mismatch("[0.59999967 0.1]", "[0.5999997 0.1]") is None  # 5e-8
    assert output_mismatch("step 45", "step 46", rtol=1e-3) is not None
    assert output_mismatch("evals 53", "evals: 53", rtol=1) is not None  # text exact
    assert output_mismatch("a 1 b", "a 1") is not None
    # digits inside names and versions are text, compared exactly
    assert output_mismatch("layers.1.weight", "layers.0.weight", rtol=1) is not None
    assert output_mismatch("jax 0.10.2", "jax 0.10.3", rtol=1) is not None


def test_a_page_states_the_tolerance_of_an_output_block(tmp_path: Path):
    page = tmp_path / "page.md"
    page.write_text(
        "```python\nprint(1.0)\n```\n\n<!-- output: rtol=0.05 atol=1e-9 -->\n"
        "```text\n1.01\n```\n\n```python\nprint(2)\n```\n\n```text\n2\n```\n",
        encoding="utf-8",
    )
    first, second = python_blocks_with_output(page)
    assert first["expected"] == "1.01\n"
    assert first["tolerance"] == {"rtol": 0.05, "atol": 1e-9}
    assert second["tolerance"] == {"rtol": RTOL, "atol": ATOL}
    assert all(b["follows_directly"] for b in blocks_of(page)[1::2])


def test_equinox_maxnorm_advice_is_a_checked_block():
    """MaxNorm per output unit: axis=0 on (in, out) kernels, axis=1 on equinox."""
    blocks = python_blocks_with_output(DOCS / "beyond_boxes.md")
    eqx_blocks = [b for b in blocks if "eqx.nn.MLP" in b["code"]]
    assert eqx_blocks, "beyond_boxes.md shows no equinox MLP block"
    (block,) = eqx_blocks
    assert "MaxNorm(1.0, axis=1)" in block["code"] and block["expected"]
    for text in (DOCS / "beyond_boxes.md", ROOT / "README.md"):
        prose = " ".join(text.read_text(encoding="utf-8").split())
        assert "eqx.nn.Linear.weight" in prose and "(out, in)" in prose, text
        assert "one norm per output unit of a Dense kernel)" not in prose, text
    readme = [b["code"] for b in blocks_of(ROOT / "README.md") if b["lang"] == "python"]
    assert any("eqx.nn.MLP" in c and "axis=1" in c for c in readme)


@pytest.mark.slow
def test_readme_code_runs_and_prints_what_its_comments_say(tmp_path: Path):
    """The README's ```python blocks run in order; ``print(...)  # X`` prints X."""
    blocks = [b for b in blocks_of(ROOT / "README.md") if b["lang"] == "python"]
    results = run_blocks(blocks, tmp_path)
    assert len(results) == len(blocks)
    for block, result in zip(blocks, results):
        assert result["error"] is None, f"{block['where']}:\n{result['error']}"
        said = re.findall(r"^print\(.*\)\s+# (.*)$", block["code"], re.MULTILINE)
        assert output_mismatch(result["stdout"], "\n".join(said)) is None, (
            block["where"],
            result["stdout"],
        )


_TIME = r"(\d+(?:\.\d+)?) (ms|s)\b"
_VS = re.compile(
    _TIME + r"(?: \([^)]*\))? vs (?:[a-z]+ )?" + _TIME + r"(?: \([^)]*\))?: "
    r"(\d+(?:\.\d+)?)x"
)


def _seconds(value: str, unit: str) -> float:
    return float(value) * (1e-3 if unit == "ms" else 1.0)


def _agrees(ratio: str, a: float, b: float) -> bool:
    """``ratio`` (as printed) is ``a / b`` rounded to the digits it shows."""
    digits = len(ratio.split(".")[1]) if "." in ratio else 0
    return round(a / b, digits) == float(ratio)


def ratio_disagreements(text: str) -> list[str]:
    """Ratios that differ from the ratio of the figures printed beside them.

    Two forms: ``A ms (min-max) vs [name] B ms (min-max): Rx`` anywhere (``A /
    B`` or, for a speed-up, ``B / A``), and
    table rows with ``jaxbounds``, ``reference``, ``floor`` and ``ratio``
    columns (``Rx faster``: reference / jaxbounds; ``Rx floor``: jaxbounds /
    floor; else jaxbounds / reference, one reference figure per ``/``-part).
    Rows of ranges and parenthesised figures (other runs) are left out.
    """
    wrong = []
    for m in _VS.finditer(text):
        a, b = _seconds(*m.group(1, 2)), _seconds(*m.group(3, 4))
        # a time ratio (ours / theirs) or a speed-up (theirs / ours)
        if not (_agrees(m.group(5), a, b) or _agrees(m.group(5), b, a)):
            wrong.append(m.group(0))
    header: list[str] = []
    for line in text.splitlines():
        if not line.startswith("|"):
            header = []
            continue
        cells = [c.strip() for c in line.strip("|").split("|")]
        if not header:
            header = cells
            continue
        if "ratio" not in header or set(cells) <= {"---", ""}:
            continue
        row = dict(zip(header, cells))
        ours = re.findall(_TIME, row.get("jaxbounds", ""))
        refs = re.findall(_TIME, re.sub(r"\([^)]*\)", "", row.get("reference", "")))
        floor = re.findall(_TIME, row.get("floor", ""))
        if not ours or re.search(r"\d-\d", row["jaxbounds"]):
            continue
        a = _seconds(*ours[0])
        plain = 0
        for part in re.split(r"[;/]", re.sub(r"\([^)]*\)", "", row["ratio"])):
            m = re.search(r"(\d+(?:\.\d+)?)x(?: (faster|floor|\w+))?", part)
            if not m:
                continue
            ratio, kind = m.groups()
            if kind == "faster":
                ok = _agrees(ratio, _seconds(*refs[0]), a)
            elif kind == "floor":
                ok = _agrees(ratio, a, _seconds(*floor[0]))
            else:
                ok = _agrees(ratio, a, _seconds(*refs[plain]))
                plain += 1
            if not ok:
                wrong.append(f"{row['ratio']!r} in {line[:60]!r}")
    return wrong


def test_ratios_agree_with_the_figures_beside_them():
    assert ratio_disagreements("0.35 s (0.31–0.44) vs 3.45 s (3.26–3.62): 9.8x")
    assert not ratio_disagreements("0.35 s (0.31–0.44) vs 3.45 s (3.26–3.62): 9.9x")
    table = "| case | jaxbounds | reference | floor | ratio |\n|---|---|---|---|---|\n"
    assert ratio_disagreements(table + "| 5 | 48.3 ms | adam 46.3 ms | | 1.05x adam |")
    assert not ratio_disagreements(table + "| 1 | 0.81 ms | 45.9 ms | | 57x faster |")
    for doc in (ROOT / "README.md", ROOT / "benchmarks" / "README.md", *PAGES):
        assert ratio_disagreements(doc.read_text(encoding="utf-8")) == [], doc.name


def test_the_index_leads_to_every_page():
    index = (DOCS / "index.md").read_text(encoding="utf-8")
    where_next = index.split("## Where next", 1)[1]
    linked = set(re.findall(r"\]\(([\w-]+\.md)\)", where_next))
    assert linked == {p.name for p in PAGES} - {"index.md"}


def test_the_descriptions_name_constraints_the_solver_and_nnx():
    """Not bound boxes only: the constraint sets, the solver and flax nnx too."""
    mkdocs = (ROOT / "mkdocs.yml").read_text(encoding="utf-8")
    site = re.search(r"^site_description: (.*)$", mkdocs, re.MULTILINE)
    index = (DOCS / "index.md").read_text(encoding="utf-8").split("## Install")[0]
    described = {
        "site_description": (site.group(1) if site else "", ("norms", "L-BFGS-B")),
        "package docstring": (jaxbounds.__doc__, ("Constraints", "minimize")),
        "index.md": (index, ("Constraints", "minimize")),
    }
    for where, (text, words) in described.items():
        for word in (*words, "nnx"):
            assert word in text, (where, word)
