"""Every script in examples/ runs, quickly, and prints what it claims.

Each script runs once, in its own process and a fresh temporary working
directory, and one test per script checks that it ran and, where `CLAIMS`
lists it, what it claims. In one pytest process all scripts start at once (a
session fixture) and each test waits for its own; under pytest-xdist each
worker starts a script only when its test comes (a session fixture there is
one per worker, and starting all of them in each would run every script once
per worker). A script runs with its defaults unless `QUICK_ARGS` gives it a
smaller configuration, so a new example is picked up by the glob and tested
as is.

A script that needs an optional dependency of the ``examples`` extra
(matplotlib, flax) is skipped where it is not installed (``pip install -e
".[examples]"``); any other failure fails.
"""

from __future__ import annotations

import ast
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import NamedTuple

import pytest

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = sorted((ROOT / "examples").glob("*.py"))

#: Per-script arguments for a quick run; ``{out}`` is a fresh directory.
QUICK_ARGS = {
    # - Every method, 20 steps at a learning rate high enough that the run
    #   without bounds leaves the valid range within them
    "lif_constraints.py": [
        "--steps=20",
        "--lr=0.05",
        "--log-every=10",
        "--runs=none,penalty,loss-penalty,project,reparam",
        "--out={out}",
    ],
    "nnx_lif.py": ["--steps=20", "--log-every=10"],
    "snn_relations.py": ["--out={out}"],
    "orthogonal_rnn.py": ["--steps=40", "--log-every=20", "--out={out}"],
}

#: Modules of the ``examples`` extra: missing ones skip a script, not fail it.
OPTIONAL = ("matplotlib", "flax")

#: Extra runs: name -> command line after the interpreter (``{examples}`` is
#: the examples directory, ``{out}`` a fresh directory).
VARIANTS = {
    "rockpool_migration.py[no rockpool]": [
        "-c",
        "import runpy, sys\n"
        "sys.modules['rockpool'] = None  # as if Rockpool were not installed\n"
        "runpy.run_path('{examples}/rockpool_migration.py', run_name='__main__')\n",
    ],
}
NAMES = [p.name for p in EXAMPLES] + list(VARIANTS)


class Finished(NamedTuple):
    returncode: int
    stdout: str
    stderr: str
    out: Path


def _command(name: str, out: Path) -> list[str]:
    fill = {"examples": ROOT / "examples", "out": out}
    if name in VARIANTS:
        return [sys.executable, *(a.format(**fill) for a in VARIANTS[name])]
    args = [a.format(**fill) for a in QUICK_ARGS.get(name, [])]
    return [sys.executable, str(ROOT / "examples" / name), *args]


@pytest.fixture(scope="session")
def launched(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """Started scripts: name -> (process, output directory), and their results.

    All at once in one pytest process; under pytest-xdist (one session per
    worker) `finished` starts each when it is needed.
    """
    env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
    env.update(MPLBACKEND="Agg", JAX_PLATFORMS="cpu", PYTHONUNBUFFERED="1")
    state: dict = {"procs": {}, "done": {}, "env": env, "tmp": tmp_path_factory}
    if "PYTEST_XDIST_WORKER" not in os.environ:
        for name in NAMES:
            _launch(state, name)
    yield state
    for proc, _ in state["procs"].values():
        if proc.poll() is None:
            proc.kill()
            proc.communicate()


def _launch(state: dict, name: str) -> None:
    cwd = state["tmp"].mktemp(re.sub(r"\W", "_", name))
    out = cwd / "out"
    state["procs"][name] = (
        subprocess.Popen(
            _command(name, out),
            cwd=cwd,
            env=state["env"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        ),
        out,
    )


def finished(launched: dict, name: str) -> Finished:
    """The script's result, once it has finished (skipped or failed as needed)."""
    if name not in launched["done"]:
        if name not in launched["procs"]:
            _launch(launched, name)
        proc, out = launched["procs"][name]
        stdout, stderr = proc.communicate(timeout=300)
        launched["done"][name] = Finished(proc.returncode, stdout, stderr, out)
    result = launched["done"][name]
    missing = re.search(r"No module named '(\w+)'", result.stderr)
    if result.returncode != 0 and missing and missing.group(1) in OPTIONAL:
        pytest.skip(f"{name} needs {missing.group(1)}: pip install -e '.[examples]'")
    assert result.returncode == 0, (
        f"{name} failed:\n{result.stdout[-3000:]}\n{result.stderr[-5000:]}"
    )
    return result


@pytest.mark.slow
@pytest.mark.parametrize("name", NAMES)
def test_example_runs_and_prints_what_it_claims(launched: dict, name: str):
    result = finished(launched, name)
    assert result.stdout.strip(), f"{name} printed nothing"
    if name in CLAIMS:
        CLAIMS[name](result)


def test_every_example_documents_how_to_run_it():
    for script in EXAMPLES:
        text = script.read_text(encoding="utf-8")
        assert f"python examples/{script.name}" in text, script.name


def test_examples_write_their_files_next_to_themselves():
    """An ``--out`` directory defaults to ``examples/out``, from any working dir."""
    defaults = {}
    for script in EXAMPLES:
        for node in ast.walk(ast.parse(script.read_text(encoding="utf-8"))):
            if (
                isinstance(node, ast.Call)
                and getattr(node.func, "attr", None) == "add_argument"
                and node.args
                and getattr(node.args[0], "value", None) == "--out"
            ):
                default = next(k.value for k in node.keywords if k.arg == "default")
                defaults[script.name] = ast.unparse(default)
    assert {"lif_constraints.py", "snn_relations.py"} <= set(defaults)
    for name, default in defaults.items():
        assert default == "Path(__file__).resolve().parent / 'out'", name


# -- what the scripts claim ------------------------------------------------------

OUTCOME = re.compile(
    r"^\s+(?P<name>[\w-]+): (?P<outside>\d+) of (?P<size>\d+) parameters outside "
    r"their bounds, (?P<invalid>\d+) of (?P<decays>\d+) decays outside \(0, 1\); "
    r"largest decay during training (?P<largest>[\d.]+) .*worst excursion past a "
    r"bound (?P<worst>[\d.]+); held-out loss (?P<loss>[\d.]+), accuracy "
    r"(?P<acc>[\d.]+)$",
    re.MULTILINE,
)


def lif_demo_reports_progress_plots_and_outcome(result: Finished):
    runs = ["none", "penalty", "loss-penalty", "project", "reparam"]
    for run in runs:
        steps = re.findall(rf"^\s+\[{run}\] step\s+(\d+)/20 ", result.stdout, re.M)
        assert steps == ["10", "20"], (run, result.stdout)
    for png in ("penalty_curve.png", "trajectories.png", "training.png"):
        data = (result.out / png).read_bytes()
        assert data.startswith(b"\x89PNG") and len(data) > 10_000, png
    tail = result.stdout[result.stdout.index("Outcome after 20 steps") :]
    outcomes = {m["name"]: m for m in OUTCOME.finditer(tail)}
    assert list(outcomes) == runs, tail
    none = outcomes["none"]
    # - without bounds the decays leave (0, 1); projected or reparameterised,
    #   nothing ever leaves its bounds
    assert int(none["invalid"]) > 0 and float(none["largest"]) > 1.0
    for exact in (outcomes["project"], outcomes["reparam"]):
        assert int(exact["outside"]) == 0 and int(exact["invalid"]) == 0
        assert float(exact["worst"]) == 0.0 and float(exact["largest"]) <= 0.99
    assert int(none["decays"]) == 67 and int(none["size"]) == 995
    # - the report table and the outcome agree
    assert "jb.violations after training with 'project':\nall 995 parameters" in (
        result.stdout
    )


@pytest.mark.slow
def test_lif_demo_rejects_unknown_runs(tmp_path: Path):
    run = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "lif_constraints.py"), "--runs=nope"],
        capture_output=True,
        text=True,
        env={**os.environ, "MPLBACKEND": "Agg", "JAX_PLATFORMS": "cpu"},
        timeout=120,
    )
    if "No module named 'matplotlib'" in run.stderr:
        pytest.skip("needs matplotlib: pip install -e '.[examples]'")
    assert run.returncode == 2 and "--runs takes a subset" in run.stderr


def quickstart_ends_inside_the_bounds(result: Finished):
    out = result.stdout
    assert "bounds_cost after clip: 0.0" in out


def rockpool_migration_agrees_with_rockpool(result: Finished):
    pytest.importorskip("rockpool")  # (after the run and its output are checked)
    out = result.stdout
    assert "DIFFERENT" not in out
    assert out.count(": same") == 7, out
    assert "Rockpool: cost inf, gradient -inf" in out
    assert "jaxbounds raises ValueError" in out


def rockpool_migration_runs_without_rockpool(result: Finished):
    out = result.stdout
    assert out.startswith("Rockpool is not installed")
    assert "jaxbounds: 14.514523" in out  # tau lower bound dt = 1e-3
    assert "Rockpool:" not in out


def nnx_lif_stays_inside_its_declared_bounds(result: Finished):
    out = result.stdout
    assert "  tau_mem    [0.001, 0.1]" in out
    projected = re.search(
        r"^  project: smallest tau during training ([\d.]+) s .* (\d+) of 16 decays",
        out,
        re.M,
    )
    assert projected and float(projected[1]) >= 0.001 and projected[2] == "0", out
    assert "'project':\nall 56 parameters within bounds" in out


SPECTRUM = re.compile(
    r"^  (?P<run>\w+): final loss (?P<loss>[\d.]+); singular values of w_rec: "
    r"max (?P<max>[\d.]+), min (?P<min>[\d.]+)$",
    re.MULTILINE,
)


def orthogonal_rnn_keeps_its_spectra(result: Finished):
    out = result.stdout
    for run in ("free", "orthogonal", "spectral"):
        steps = re.findall(rf"^\s+\[{run}\] step\s+(\d+)/40 ", out, re.M)
        assert steps == ["20", "40"], (run, out)
    found = {m["run"]: m for m in SPECTRUM.finditer(out)}
    assert list(found) == ["free", "orthogonal", "spectral"], out
    orth, spec = found["orthogonal"], found["spectral"]
    assert abs(float(orth["max"]) - 1) <= 1e-5 and abs(float(orth["min"]) - 1) <= 1e-5
    assert float(spec["max"]) <= 1.0
    assert all(float(m["loss"]) < 1.0 for m in found.values())
    data = (result.out / "orthogonal_rnn.png").read_bytes()
    assert data.startswith(b"\x89PNG") and len(data) > 10_000


#: What a script claims, checked on the output of its one run.
def reparam_trains_through_constrain(result: Finished):
    out = result.stdout
    fitted = float(out.split("fitted tau = ")[1].split(" ms")[0])
    assert 39.0 < fitted <= 40.0
    assert "violations: all 3 parameters within bounds" in out
    assert "naive 0.0e+00" in out


CLAIMS = {
    "reparam.py": reparam_trains_through_constrain,
    "lif_constraints.py": lif_demo_reports_progress_plots_and_outcome,
    "quickstart.py": quickstart_ends_inside_the_bounds,
    "rockpool_migration.py": rockpool_migration_agrees_with_rockpool,
    "rockpool_migration.py[no rockpool]": rockpool_migration_runs_without_rockpool,
    "nnx_lif.py": nnx_lif_stays_inside_its_declared_bounds,
    "orthogonal_rnn.py": orthogonal_rnn_keeps_its_spectra,
}


def test_every_claim_names_a_script():
    assert set(CLAIMS) <= set(NAMES)
