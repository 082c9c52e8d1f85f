"""benchmarks/lbfgsb.py at tiny sizes, so the script cannot rot.

It runs in its own process, as a user runs it (the script turns on x64
itself, on this checkout's jaxbounds). The JSON it writes is checked for every
problem and solver, finite timings with their min-max range, the problems at
scale, and targets that carry a verdict. Whether targets are met
is not asserted: timings at these sizes say nothing.
"""

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "benchmarks" / "lbfgsb.py"


@pytest.mark.slow
def test_lbfgsb_benchmark_quick_run(tmp_path: Path):
    out = tmp_path / "results.json"
    # the checkout's jaxbounds, not whichever one is installed
    path = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), "--quick", "--json", str(out)],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": path},
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = json.loads(out.read_text())
    assert results["quick"] is True
    assert set(results["problems"]) == {
        "bounded Rosenbrock",
        "5-parameter pytree fit",
        "fixed parameters",
    }
    assert results["reps"] == 2
    ((n, times),) = results["dense_threshold"].items()
    assert n == "4" and set(times) == {"dense", "walk"}
    assert all(math.isfinite(t) and t > 0 for t in times.values())
    for name, row in results["problems"].items():
        for solver in ("scipy", "jaxbounds"):
            r = row[solver]
            assert math.isfinite(r["value"]), (name, solver)
            assert r["evals"] > 0 and r["reps"] == 2, (name, solver)
            assert 0 < r["seconds_min"] <= r["seconds"] <= r["seconds_max"]
        assert row["jaxbounds"]["converged"], name
        assert row["evals_ratio"] == row["jaxbounds"]["evals"] / row["scipy"]["evals"]
    qps = results["box_qps"]
    assert len(qps) == 1
    for name, row in qps.items():
        ours, ref = row["jaxbounds"], row["scipy"]
        assert ours["evals"] > 0 and ref["evals"] > 0, name
        assert ours["inside"] and ours["converged"], name
        assert row["evals_ratio"] == ours["evals"] / ref["evals"]
        assert name in proc.stdout
    batch = results["batch"]
    assert batch["jaxbounds"]["seconds"] > 0 and batch["scipy"]["seconds"] > 0
    assert batch["speedup_vs_scipy"] == (
        batch["scipy"]["seconds"] / batch["jaxbounds"]["seconds"]
    )
    assert batch["jaxbounds"]["outer_trips"] >= batch["jaxbounds"]["mean_steps"]
    scale = results["scale"]
    assert set(scale) == {"least squares n=1e+03", "obstacle 16x16"}
    for name, row in scale.items():
        ours, ref = row["jaxbounds"], row["scipy"]
        assert ours["converged"], name
        assert ours["value"] <= ref["value"] + 1e-6 * abs(ref["value"]), name
        assert row["iteration_ratio"] == (
            ours["per_iteration_s"] / ref["per_iteration_s"]
        )
        assert ours["per_iteration_s"] == ours["seconds"] / ours["steps"]
    phases = results["phases"]
    assert set(phases) == {"obstacle 32x32"}
    for name, row in phases.items():
        # no early stop: both solvers take the same iterations
        assert row["iterations"]["scipy"] == row["iterations"]["jaxbounds"] == 6
        # (one evaluation apart at most: XLA's CPU rounding may differ by machine)
        assert abs(row["evals"]["scipy"] - row["evals"]["jaxbounds"]) <= 1, name
        assert [row[ph]["iterations"] for ph in ("first", "early", "late")] == [
            [1, 1],
            [2, 3],
            [4, 6],
        ]
        for ph in ("first", "early", "late"):
            cell = row[ph]
            for who in ("scipy", "jaxbounds"):
                # (each step ends after the one before: its stamps were found)
                assert 0 < cell[who]["seconds_min"] <= cell[who]["seconds"]
                assert cell[who]["seconds"] <= cell[who]["seconds_max"]
            ratio = cell["jaxbounds"]["seconds"] / cell["scipy"]["seconds"]
            assert cell["ratio"] == ratio
        assert name in proc.stdout
    assert len(results["targets"]) == 6
    assert all(isinstance(t["met"], bool) for t in results["targets"].values())
    for name in [*results["problems"], *scale]:
        assert name in proc.stdout
    assert results["jaxbounds_path"].startswith(str(ROOT))
