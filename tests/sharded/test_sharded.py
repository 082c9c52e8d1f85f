"""jaxbounds on parameters sharded over a 2-D mesh of 8 host devices.

Run in a pytest process of its own (XLA fixes the number of host devices when
its backend starts; the main run does not collect this directory)::

    XLA_FLAGS=--xla_force_host_platform_device_count=8 python -m pytest -q tests/sharded

Every public function must, inside `jax.jit` and on sharded inputs, give the
numbers it gives on one device, return leaves sharded like its inputs, and
compile to a program whose only communication is the scalar all-reduce that
sums the cost. Both kinds of mesh axes are covered: ``Explicit`` (the default
of `jax.make_mesh`, shardings are part of the types) and ``Auto`` (GSPMD /
Shardy propagation).
"""

from __future__ import annotations

import json
import re
import socket
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from common import (
    HERE,
    ROOT,
    collectives,
    compiled_hlo,
    on_one_device,
    place,
    python_env,
    replicate,
    result_dims,
    run_python,
)
from jax.sharding import AxisType, NamedSharding
from jax.sharding import PartitionSpec as P

import jaxbounds as jb

AXES = ("data", "model")

# ---------------------------------------------------------------------------
# The problem: every kind of bound leaf, each sharded like its parameter
# ---------------------------------------------------------------------------

#: Parameter shapes and shardings. ``w`` has per-element lower and upper
#: arrays, ``b`` a per-element lower array and a float upper bound, ``v`` a
#: lower bound broadcast along its columns (shape ``(16, 1)``), ``tau`` two
#: scalar bounds, ``free`` none at all.
PARAM_SPECS = {
    "w": ((16, 32), P("data", "model")),
    "tau": ((8, 16), P("data", "model")),
    "b": ((32,), P("model")),
    "v": ((16, 8), P("data", None)),
    "free": ((8, 32), P(None, "model")),
}
#: Shardings of the array bounds: like their parameters (``v``'s broadcast
#: bound along the parameter's row axis only).
BOUND_SPECS = {
    "lower": {"w": P("data", "model"), "b": P("model"), "v": P("data", None)},
    "upper": {"w": P("data", "model")},
}


def host_problem(dtype: str) -> tuple[dict, dict, dict]:
    """Params and bounds as NumPy arrays / floats; about a third of it outside."""
    rng = np.random.default_rng(7)
    params = {
        k: (1.5 * rng.normal(size=shape)).astype(dtype)
        for k, (shape, _) in PARAM_SPECS.items()
    }
    params["tau"] = rng.uniform(-0.1, 0.3, size=(8, 16)).astype(dtype)
    lower = {
        "w": rng.uniform(-1.0, -0.2, size=(16, 32)).astype(dtype),
        "tau": 0.0,
        "b": rng.uniform(-0.5, 0.0, size=(32,)).astype(dtype),
        "v": rng.uniform(-1.0, 0.0, size=(16, 1)).astype(dtype),
        "free": -np.inf,
    }
    upper = {
        "w": rng.uniform(0.2, 1.0, size=(16, 32)).astype(dtype),
        "tau": 0.2,
        "b": 0.5,
        "v": 1.0,
        "free": np.inf,
    }
    return params, lower, upper


def on_mesh(mesh, params: dict, lower: dict, upper: dict) -> tuple[dict, dict, dict]:
    """The host problem placed on ``mesh``: floats stay floats (replicated)."""
    param_specs = {k: spec for k, (_, spec) in PARAM_SPECS.items()}
    (params,) = place(mesh, param_specs, params)
    (lower,) = place(mesh, BOUND_SPECS["lower"], lower)
    (upper,) = place(mesh, BOUND_SPECS["upper"], upper)
    return params, lower, upper


def numpy_cost(params: dict, lower: dict, upper: dict) -> float:
    """Rockpool's exp penalty, summed, in float64 (all violations are < 15)."""
    total = 0.0
    for k in params:
        p = np.asarray(params[k], np.float64)
        lo = np.asarray(lower[k], np.float64)
        up = np.asarray(upper[k], np.float64)
        for v in (lo - p, p - up):
            total += np.sum(np.where(v > 0, np.exp(np.minimum(v, 15.0)), 0.0))
    return total


# ---------------------------------------------------------------------------
# Checks on compiled programs and shardings
# ---------------------------------------------------------------------------


def _is_scalar(shape: str) -> bool:
    dims = result_dims(shape)
    return bool(dims) and all(d == "" for d in dims)


def assert_only_scalar_reductions(hlo: str) -> None:
    """Fail on any communication but an all-reduce of scalars (the cost's sum)."""
    bad = [
        (op, shape)
        for op, shape in collectives(hlo)
        if op != "all-reduce" or not _is_scalar(shape)
    ]
    assert not bad, f"compiled program communicates more than a scalar: {bad}"


def assert_sharded_like(out: dict, like: dict) -> None:
    for k, x in like.items():
        assert out[k].sharding.is_equivalent_to(x.sharding, x.ndim), (
            f"{k}: {out[k].sharding} is not {x.sharding}"
        )


def assert_matches_one_device(out: dict, reference: dict, dtype, like: dict) -> None:
    """Same dtypes and numbers (to the dtype's tolerance) as on one device, and
    every leaf of ``out`` sharded like ``like``."""
    for k in reference:
        assert out[k].dtype == reference[k].dtype, k
        np.testing.assert_allclose(
            np.asarray(out[k], np.float64),
            np.asarray(reference[k], np.float64),
            rtol=TOLERANCE[dtype],
            err_msg=k,
        )
    assert_sharded_like(out, like)


# ---------------------------------------------------------------------------
# Fixtures
# ---------------------------------------------------------------------------


DTYPES = ["float32", "bfloat16", "float64"]
TOLERANCE = {"float32": 1e-6, "bfloat16": 1e-6, "float64": 1e-12}


@pytest.fixture(params=DTYPES)
def problem(request, mesh):
    """``(dtype, host, sharded, single)``: the problem three ways."""
    host = host_problem(jnp.dtype(request.param).name)
    return request.param, host, on_mesh(mesh, *host), on_one_device(*host)


# ---------------------------------------------------------------------------
# bounds_cost, its gradient, clip_to_bounds
# ---------------------------------------------------------------------------


def test_problem_has_elements_outside_and_inside(problem):
    _, (params, lower, upper), _, _ = problem
    for k in ("w", "tau", "b", "v"):
        p = np.asarray(params[k], np.float64)
        outside = (p < np.asarray(lower[k], np.float64)) | (
            p > np.asarray(upper[k], np.float64)
        )
        assert 0 < outside.mean() < 1, k


def test_cost_under_jit_matches_one_device_and_numpy(problem):
    dtype, host, sharded, single = problem
    cost = jax.jit(jb.bounds_cost)(*sharded)
    reference = jax.jit(jb.bounds_cost)(*single)
    assert cost.dtype == reference.dtype
    np.testing.assert_allclose(cost, reference, rtol=TOLERANCE[dtype])
    np.testing.assert_allclose(cost, numpy_cost(*host), rtol=1e-5)


def test_cost_gradient_under_jit_matches_one_device_and_keeps_sharding(problem):
    dtype, _, sharded, single = problem
    grads = jax.jit(jax.grad(jb.bounds_cost))(*sharded)
    reference = jax.jit(jax.grad(jb.bounds_cost))(*single)
    assert_matches_one_device(grads, reference, dtype, sharded[0])


def test_clip_under_jit_matches_one_device_exactly_and_keeps_sharding(problem):
    _, _, sharded, single = problem
    clipped = jax.jit(jb.clip_to_bounds)(*sharded)
    reference = jax.jit(jb.clip_to_bounds)(*single)
    for k in reference:
        assert clipped[k].dtype == reference[k].dtype, k
        np.testing.assert_array_equal(clipped[k], reference[k], err_msg=k)
    assert_sharded_like(clipped, sharded[0])
    assert float(jax.jit(jb.bounds_cost)(clipped, *sharded[1:])) == 0.0


def test_eager_calls_match_jit_and_keep_sharding(problem):
    _, _, sharded, _ = problem
    np.testing.assert_array_equal(
        jb.bounds_cost(*sharded), jax.jit(jb.bounds_cost)(*sharded)
    )
    clipped = jb.clip_to_bounds(*sharded)
    assert_sharded_like(clipped, sharded[0])
    assert clipped["free"] is sharded[0]["free"]  # unbounded: passed through


# ---------------------------------------------------------------------------
# The compiled programs: no gathers
# ---------------------------------------------------------------------------


@pytest.fixture
def float32_problem(mesh):
    return on_mesh(mesh, *host_problem("float32"))


def test_cost_communicates_only_its_scalar_sum(float32_problem):
    hlo = compiled_hlo(jb.bounds_cost, *float32_problem)
    found = collectives(hlo)
    assert found, "the sharded sum must all-reduce (is the HLO parser blind?)"
    assert {op for op, _ in found} == {"all-reduce"}
    assert_only_scalar_reductions(hlo)


@pytest.mark.parametrize(
    "fn",
    [
        jax.grad(jb.bounds_cost),
        jax.value_and_grad(jb.bounds_cost),
        jb.clip_to_bounds,
        lambda p, lo, up: jb.bounds_cost(jb.clip_to_bounds(p, lo, up), lo, up),
    ],
    ids=["grad", "value_and_grad", "clip", "cost_of_clip"],
)
def test_compiled_program_has_no_gather(fn, float32_problem):
    assert_only_scalar_reductions(compiled_hlo(fn, *float32_problem))


def test_gradient_and_clip_do_not_communicate_at_all(float32_problem):
    for fn in (jax.grad(jb.bounds_cost), jb.clip_to_bounds):
        assert collectives(compiled_hlo(fn, *float32_problem)) == []


@pytest.mark.parametrize("fn", [jb.clip_to_bounds, jb.bounds_cost])
def test_hlo_check_fails_on_a_deliberate_gather(fn, mesh, float32_problem):
    """The check is not vacuous: a variant that gathers its input is caught."""

    def gathering(params, lower, upper):
        return fn(replicate(params, mesh), lower, upper)

    hlo = compiled_hlo(gathering, *float32_problem)
    with pytest.raises(AssertionError, match="all-gather"):
        assert_only_scalar_reductions(hlo)


def test_bounds_sharded_unlike_their_params_communicate(mesh, float32_problem):
    """Why the docs say: shard an array bound like its parameter.

    With ``Auto`` axes XLA moves the bound's shards around (all-to-all /
    collective-permute), which the check catches; with ``Explicit`` axes JAX
    refuses the mismatch when tracing.
    """
    params, lower, upper = float32_problem
    transposed = NamedSharding(mesh, P("model", "data"))
    lower = dict(lower, w=jax.device_put(lower["w"], transposed))
    if mesh.axis_types[0] == AxisType.Explicit:
        with pytest.raises(Exception, match="incompatible shardings"):
            compiled_hlo(jb.bounds_cost, params, lower, upper)
        return
    hlo = compiled_hlo(jb.clip_to_bounds, params, lower, upper)
    with pytest.raises(AssertionError, match="all-to-all|collective-permute"):
        assert_only_scalar_reductions(hlo)


def test_replicated_array_bounds_need_no_communication(mesh, float32_problem):
    """A bound held whole on every device works too (each device slices it)."""
    params, lower, upper = float32_problem
    whole = NamedSharding(mesh, P())
    lower = dict(lower, w=jax.device_put(lower["w"], whole))
    hlo = compiled_hlo(jax.value_and_grad(jb.bounds_cost), params, lower, upper)
    assert_only_scalar_reductions(hlo)
    np.testing.assert_array_equal(
        jax.jit(jb.clip_to_bounds)(params, lower, upper)["w"],
        jax.jit(jb.clip_to_bounds)(*float32_problem)["w"],
    )


# ---------------------------------------------------------------------------
# Multi-host: two processes joined by jax.distributed
# ---------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


def test_multi_process_run_matches_numpy_eager_and_jit():
    """Two processes of 4 devices each; no process can read a whole array.

    Inside `jax.jit` nothing differs from one process. Eager calls check
    concrete bounds (lower <= upper) first, which must not need to read a
    global array onto one host.
    """
    port = str(_free_port())
    env = python_env()
    procs = [
        subprocess.Popen(
            [sys.executable, str(HERE / "multihost_worker.py"), str(i), port],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env=env,
            cwd=ROOT,
        )
        for i in range(2)
    ]
    try:
        outputs = [p.communicate(timeout=180)[0] for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    results = []
    for p, out in zip(procs, outputs):
        assert p.returncode == 0, out
        results.append(json.loads(out.strip().splitlines()[-1]))
    assert [r["process"] for r in results] == [0, 1]
    for r in results:
        assert r["devices"] == [8, 4] and r["fully_addressable"] is False
        assert "eager_failure" not in r, r["eager_failure"]
        np.testing.assert_allclose(r["cost_jit"], r["cost_reference"], rtol=1e-6)
        assert r["cost_eager"] == r["cost_jit"]
        assert r["grad_error"] < 1e-6
        assert r["clip_error"] == r["clip_eager_error"] == 0.0
        assert r["shardings_kept"] == [True, True]
        assert r["crossed_bounds_error"] is not None
        assert "lower > upper at 'w', element (1, 5)" in r["crossed_bounds_error"]


# ---------------------------------------------------------------------------
# optax: add_bounds_penalty, project_to_bounds
# ---------------------------------------------------------------------------


def host_updates(params: dict) -> dict:
    """Updates shaped like ``params``, large enough to cross the bounds."""
    rng = np.random.default_rng(11)
    return {k: rng.normal(size=p.shape).astype(p.dtype) for k, p in params.items()}


def like(tree: dict, params: dict) -> dict:
    """``tree`` placed with the shardings (or the device) of ``params``."""
    return {k: jax.device_put(x, params[k].sharding) for k, x in tree.items()}


TRANSFORMS = {
    "add_bounds_penalty": lambda lo, up: jb.add_bounds_penalty(lo, up, scale=0.5),
    "project_to_bounds": jb.project_to_bounds,
}


@pytest.mark.parametrize("name", list(TRANSFORMS))
def test_optax_update_under_jit_matches_one_device_and_keeps_sharding(name, problem):
    dtype, (params, _, _), sharded, single = problem
    updates = host_updates(params)

    def run(p, lo, up, u):
        tx = TRANSFORMS[name](lo, up)
        new, _ = jax.jit(tx.update)(u, tx.init(p), p)
        return new

    out = run(*sharded, like(updates, sharded[0]))
    reference = run(*single, like(updates, single[0]))
    assert_matches_one_device(out, reference, dtype, sharded[0])


@pytest.mark.parametrize("name", list(TRANSFORMS))
def test_optax_update_compiles_without_communication(name, float32_problem):
    params, lower, upper = float32_problem
    tx = TRANSFORMS[name](lower, upper)
    updates = like(host_updates(params), params)
    hlo = jax.jit(tx.update).lower(updates, tx.init(params), params).compile()
    assert collectives(hlo.as_text()) == []


def test_projected_step_lands_inside_on_every_device(problem):
    _, (params, _, _), sharded, single = problem
    updates = host_updates(params)

    def step(p, lo, up, u):
        tx = jb.project_to_bounds(lo, up)
        projected, _ = tx.update(u, tx.init(p), p)
        return optax.apply_updates(p, projected), optax.apply_updates(p, u)

    new, free = jax.jit(step)(*sharded, like(updates, sharded[0]))
    reference, _ = jax.jit(step)(*single, like(updates, single[0]))
    assert_sharded_like(new, sharded[0])
    assert float(jax.jit(jb.bounds_cost)(new, *sharded[1:])) == 0.0
    inside = jax.jit(jb.clip_to_bounds)(free, *sharded[1:])
    for k in params:
        np.testing.assert_array_equal(new[k], reference[k], err_msg=k)
        # where the free step stays in the box it is taken unchanged
        kept = np.asarray(inside[k] == free[k])
        np.testing.assert_array_equal(
            np.asarray(new[k])[kept], np.asarray(free[k])[kept]
        )


def test_training_step_matches_one_device_and_has_no_gather(mesh):
    """adam between the penalty and the projection, on a loss with a sharded sum."""
    host = host_problem("float32")
    targets = host_updates(host[0])

    def train(params, lower, upper, targets, steps=3):
        tx = optax.chain(
            jb.add_bounds_penalty(lower, upper, scale=0.1),
            optax.adam(0.05),
            jb.project_to_bounds(lower, upper),
        )

        def loss(p):
            return sum(jnp.sum((p[k] - targets[k]) ** 2) for k in p)

        @jax.jit
        def step(p, state):
            value, grads = jax.value_and_grad(loss)(p)
            updates, state = tx.update(grads, state, p)
            return value, optax.apply_updates(p, updates), state

        state = tx.init(params)
        compiled = step.lower(params, state).compile()
        for _ in range(steps):
            _, params, state = compiled(params, state)
        return params, state, compiled.as_text()

    sharded = on_mesh(mesh, *host)
    params, state, hlo = train(*sharded, like(targets, sharded[0]))
    single = on_one_device(*host)
    reference, _, _ = train(*single, like(targets, single[0]))

    assert_only_scalar_reductions(hlo)
    assert collectives(hlo), "the loss sums sharded arrays: expected an all-reduce"
    assert_sharded_like(params, sharded[0])
    assert_sharded_like(state[1][0].mu, sharded[0])
    assert float(jax.jit(jb.bounds_cost)(params, *sharded[1:])) == 0.0
    for k in reference:
        np.testing.assert_allclose(params[k], reference[k], rtol=1e-5, err_msg=k)


# ---------------------------------------------------------------------------
# The example
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("devices", [None, 1], ids=["sets-8-itself", "one-device"])
def test_example_runs_and_checks_its_claims(devices):
    """examples/sharded.py asserts what it prints; it must pass on 8 and 1 devices."""
    run = run_python([str(ROOT / "examples" / "sharded.py")], devices)
    assert run.returncode == 0, run.stdout + run.stderr
    n = 8 if devices is None else devices
    assert run.stdout.startswith(f"{n} cpu devices"), run.stdout
    assert "every parameter kept its sharding: True" in run.stdout
    assert "cost after training (projected each step): 0.0" in run.stdout


def test_docs_page_code_blocks_run():
    """docs/multi_device.md: its Python blocks run in order, in a fresh process.

    The multi-host sketch (it calls `jax.distributed.initialize`) needs a
    cluster; `multihost_worker.py` runs the same steps in two processes.
    """
    page = (ROOT / "docs" / "multi_device.md").read_text()
    blocks = re.findall(r"^```python\n(.*?)^```", page, flags=re.S | re.M)
    local = [b for b in blocks if "jax.distributed.initialize" not in b]
    assert len(local) == 4 and len(blocks) == 5
    run = run_python(["-c", "\n".join(local)])
    assert run.returncode == 0, run.stdout + run.stderr
    lines = run.stdout.splitlines()
    assert lines[0] == "P('model',)"
    assert lines[1].endswith(" 0.0") and float(lines[1].split()[0]) > 0
    assert lines[2:] == ["[]", "['all-reduce']"]


# ---------------------------------------------------------------------------
# Validation of bounds no process can read whole (the multi-host eager path)
# ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "crossings",
    [[], [(0, 0)], [(3, 17), (9, 2)], [(15, 31)]],
    ids=["none", "first", "two", "last"],
)
def test_on_device_order_check_finds_numpys_first_crossing(mesh, crossings):
    """The device-side check used for multi-process arrays: same answer as NumPy.

    Runs on ordinary sharded arrays here (the two-process test covers arrays
    that really span processes), and compiles to scalar reductions only.
    """
    from jaxbounds._validate import first_crossing as _first_crossing

    rng = np.random.default_rng(5)
    lo = rng.uniform(-1.0, 0.0, size=(16, 32)).astype(np.float32)
    up = rng.uniform(0.5, 1.0, size=(16, 1)).astype(np.float32)
    for i, j in crossings:
        lo[i, j] = 2.0
    sharded = (
        jax.device_put(lo, NamedSharding(mesh, P("data", "model"))),
        jax.device_put(up, NamedSharding(mesh, P("data", None))),
    )
    nan, first, lo_at, up_at = jax.device_get(_first_crossing(*sharded))
    assert not nan
    bad = np.argwhere(lo > up)
    if not crossings:
        assert int(first) == lo.size
    else:
        assert np.unravel_index(int(first), lo.shape) == tuple(bad[0])
        assert (lo_at, up_at) == (lo[tuple(bad[0])], up[bad[0][0], 0])
    assert_only_scalar_reductions(compiled_hlo(_first_crossing, *sharded))
    lo[4, 4] = np.nan
    nan, *_ = jax.device_get(_first_crossing(jnp.asarray(lo), 1.0))
    assert nan
