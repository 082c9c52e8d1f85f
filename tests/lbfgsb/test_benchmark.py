"""benchmarks/lbfgsb.py at tiny sizes, so the script cannot rot.

It runs in its own process, as a user runs it (the script turns on x64
itself). The JSON it writes is checked for every problem and solver, finite
positive timings, and targets that carry a verdict. Whether targets are met
is not asserted: timings at these sizes say nothing.
"""

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "benchmarks" / "lbfgsb.py"


@pytest.mark.slow
def test_lbfgsb_benchmark_quick_run(tmp_path: Path):
    out = tmp_path / "results.json"
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), "--quick", "--json", str(out)],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = json.loads(out.read_text())
    assert results["quick"] is True
    assert set(results["problems"]) == {
        "bounded Rosenbrock",
        "box QP",
        "unbounded",
        "time-constant fit",
        "5-parameter pytree fit",
        "fixed parameters",
    }
    for name, row in results["problems"].items():
        for solver in ("scipy", "jaxbounds"):
            r = row[solver]
            assert math.isfinite(r["value"]), (name, solver)
            assert r["evals"] > 0 and r["seconds"] > 0, (name, solver)
        assert row["jaxbounds"]["converged"], name
        assert row["evals_ratio"] == row["jaxbounds"]["evals"] / row["scipy"]["evals"]
    batch = results["batch"]
    assert batch["jaxbounds"]["seconds"] > 0 and batch["scipy"]["seconds"] > 0
    assert batch["speedup_vs_scipy"] == (
        batch["scipy"]["seconds"] / batch["jaxbounds"]["seconds"]
    )
    large = results["large"]
    assert large["ratio"] == large["iteration_s"] / large["value_and_grad_s"]
    assert len(results["targets"]) == 5
    assert all(isinstance(t["met"], bool) for t in results["targets"].values())
    for name in results["problems"]:
        assert name in proc.stdout
