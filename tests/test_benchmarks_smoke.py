"""benchmarks/run.py at tiny sizes, so the script cannot rot.

It runs in its own process (as a user runs it: no x64 from conftest). The
script itself checks, before timing anything, that each case's variants
compute the same numbers (a wrong answer makes it exit with an error); here
the JSON it writes is checked for every case, finite positive timings and
ratios that are the ratios of the medians. Whether targets are met is not
asserted: timings at these sizes say nothing.
"""

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "benchmarks" / "run.py"

pytestmark = pytest.mark.slow  # a subprocess per test


def run_script(tmp_path: Path, *args: str) -> tuple[dict, str]:
    out = tmp_path / "results.json"
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), "--quick", "--out", str(out), *args],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(out.read_text()), proc.stdout


def test_quick_run(tmp_path):
    # one run, every check on it (a module fixture shared by four tests runs
    # the script again in each pytest-xdist worker that draws one of them)
    quick = run_script(tmp_path)
    every_case_runs_and_reports_positive_timings(quick)
    ratios_are_the_ratios_of_the_medians(quick)
    case_6_compares_each_chain_with_adam_at_the_same_leaf_count(quick)
    targets_carry_a_verdict_and_the_table_names_every_case(quick)


def every_case_runs_and_reports_positive_timings(quick):
    results, _ = quick
    assert set(results["cases"]) == {"1", "2", "3", "4", "5", "6"}
    for key, case in results["cases"].items():
        assert case["median_s"], key
        for name, seconds in case["median_s"].items():
            assert math.isfinite(seconds) and seconds > 0, (key, name)


def ratios_are_the_ratios_of_the_medians(quick):
    results, _ = quick
    case = results["cases"]["2"]
    med = case["median_s"]
    ratio = case["targets"]["jaxbounds / floor"]["ratio"]
    assert ratio == pytest.approx(med["jaxbounds"] / med["floor"])
    assert case["targets"]["jaxbounds / floor"]["target"] == "<= 1.2"
    case = results["cases"]["1"]
    ratio = case["targets"]["reference / jaxbounds"]["ratio"]
    assert ratio == pytest.approx(
        case["median_s"]["reference"] / case["median_s"]["jaxbounds"]
    )


def case_6_compares_each_chain_with_adam_at_the_same_leaf_count(quick):
    results, _ = quick
    case = results["cases"]["6"]
    med = case["median_s"]
    for chain in ("adam + projection", "penalty + adam"):
        ratio = case["targets"][f"{chain} / adam, 30 leaves"]["ratio"]
        assert ratio == pytest.approx(
            med[f"{chain}, 30 leaves"] / med["adam, 30 leaves"]
        )


def targets_carry_a_verdict_and_the_table_names_every_case(quick):
    results, table = quick
    targets = [
        t for c in results["cases"].values() for t in c.get("targets", {}).values()
    ]
    assert len(targets) == 10  # issue 6's eight, and case 6's two at --quick size
    assert all(isinstance(t["met"], bool) for t in targets)
    assert results["all_targets_met"] == all(t["met"] for t in targets)
    for key in results["cases"]:
        assert f"case {key}:" in table
    assert "targets met" in table


def test_cases_flag_selects_and_rejects(tmp_path):
    results, _ = run_script(tmp_path, "--cases", "2", "--no-rockpool")
    assert set(results["cases"]) == {"2"}
    assert "rockpool" not in results["cases"]["2"]["median_s"]
    bad = subprocess.run(
        [sys.executable, str(SCRIPT), "--cases", "9"], capture_output=True, text=True
    )
    assert bad.returncode != 0 and "unknown case" in bad.stderr
