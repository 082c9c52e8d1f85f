"""`minimize` and `lbfgsb` on parameters sharded over a 2-D mesh of 8 host devices.

Run in a pytest process of its own (see ``conftest.py``)::

    XLA_FLAGS=--xla_force_host_platform_device_count=8 python -m pytest -q tests/sharded

The solver must give, inside `jax.jit` and on sharded inputs, the numbers it
gives on one device, return params sharded like its inputs, and compile to a
program that never gathers a parameter-sized array: the stored pairs stay
sharded like the parameters, and the only communication is all-reduces of
the small ``2m x k`` products of the compact form, of scalars, and of the
Cauchy point's chunk (its hash slots and gathered rows: sized by the chunk,
never by the parameters; small chunk settings here keep them under the
smallest leaf's memory, so any parameter-sized move is caught). Both kinds
of mesh axes are covered, ``Explicit`` and ``Auto``.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from common import collectives, largest_result, on_one_device, place, replicate
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

import jaxbounds as jb
from jaxbounds._lbfgsb import _breakpoints

jax.config.update("jax_enable_x64", True)

AXES = ("data", "model")
SPECS = {"w": P("data", "model"), "b": P("model"), "c": P(None, "model")}
SHAPES = {"w": (16, 32), "b": (32,), "c": (4, 8)}
M = 5  # memory size: small, and unlike every parameter dimension


def host_problem():
    rng = np.random.default_rng(3)
    target = {k: 0.6 * rng.normal(size=s) for k, s in SHAPES.items()}
    scale = {k: rng.uniform(0.5, 3.0, size=s) for k, s in SHAPES.items()}
    params = {k: np.zeros(s) for k, s in SHAPES.items()}
    lower = {"w": rng.uniform(-1.0, -0.2, size=(16, 32)), "b": -0.5, "c": -np.inf}
    upper = {"w": 1.0, "b": rng.uniform(0.0, 0.5, size=(32,)), "c": 1.5}
    return params, lower, upper, target, scale


def objective(target, scale):
    def fun(p):
        quad = sum(jnp.sum(scale[k] * (p[k] - target[k]) ** 2) for k in p)
        # a coupling of every leaf: not separable
        mix = jnp.sum(p["w"]) + jnp.sum(p["b"]) + jnp.sum(p["c"])
        return quad + 0.01 * mix**2 + 0.1 * jnp.sum(p["c"] ** 4)

    return fun


def assert_no_gather_of_the_memory(hlo: str) -> None:
    """Only all-reduces, each smaller than the smallest sharded leaf's memory."""
    found = [(op, largest_result(shape)) for op, shape in collectives(hlo)]
    bad = [(op, n) for op, n in found if op != "all-reduce" or n >= M * 32]
    assert not bad, f"the compiled solver moves parameter-sized data: {bad}"


def solve(fun):
    # (tol 1e-6: with values near 53, the projected gradient's rounding floor
    # is about 1e-7, where a path may stall at 1.3e-7 or pass it by luck)
    return jax.jit(
        lambda p, lo, up: jb.minimize(fun, p, lo, up, tol=1e-6, memory_size=M)
    )


@pytest.fixture(autouse=True)
def small_chunks(monkeypatch):
    """Chunks of 4 in 8 slots: the chunk's all-reduces (``(8 + 1) x 2`` slots,
    ``3 x 8`` rows of ``m``) stay below ``M * 32`` elements. (The problem is
    too small for wide rounds, see ``_breakpoints.WIDE_FROM``.)"""
    monkeypatch.setattr(_breakpoints, "CHUNK", 4)
    monkeypatch.setattr(_breakpoints, "BUCKETS", 8)


@pytest.mark.slow
def test_minimize_matches_one_device_keeps_shardings_and_gathers_nothing(mesh):
    host = host_problem()
    p, lo, up, target, scale = place(mesh, SPECS, *host)
    p1, lo1, up1, target1, scale1 = on_one_device(*host)
    # compiled once, ahead of time: the program that runs is the one read
    run = solve(objective(target, scale)).lower(p, lo, up).compile()
    r = run(p, lo, up)
    hlo = run.as_text()
    ref = solve(objective(target1, scale1))(p1, lo1, up1)
    assert bool(r.converged) and bool(ref.converged)
    assert int(r.num_steps) > 5
    for k in SHAPES:
        # (sums in another order: the paths part at rounding, the optimum not)
        np.testing.assert_allclose(r.params[k], ref.params[k], atol=1e-6)
        assert r.params[k].sharding.is_equivalent_to(p[k].sharding, p[k].ndim), k
    assert float(r.value) == pytest.approx(float(ref.value), rel=1e-12, abs=1e-12)
    assert_no_gather_of_the_memory(hlo)
    # (and the check does see a gather when there is one)
    with pytest.raises(AssertionError, match="all-gather"):
        gather = jax.jit(lambda x: replicate(x, mesh))
        assert_no_gather_of_the_memory(gather.lower(p["w"]).compile().as_text())


@pytest.mark.slow
def test_lbfgsb_updates_match_one_device_keep_shardings_and_gather_nothing(mesh):
    host = host_problem()
    p, lo, up, target, scale = place(mesh, SPECS, *host)
    p1, lo1, up1, target1, scale1 = on_one_device(*host)

    def run(params, lower, upper, fun, steps=4):
        tx = jb.lbfgsb(lower, upper, memory_size=M)
        vg = optax.value_and_grad_from_state(fun)

        def step(params, state):
            value, grad = vg(params, state=state)
            updates, state = tx.update(
                grad, state, params, value=value, grad=grad, value_fn=fun
            )
            return optax.apply_updates(params, updates), state

        state = tx.init(params)
        # compiled once, ahead of time: the program that runs is the one read
        compiled = jax.jit(step).lower(params, state).compile()
        for _ in range(steps):
            params, state = compiled(params, state)
        return params, state, compiled.as_text()

    params, state, hlo = run(p, lo, up, objective(target, scale))
    ref, ref_state, _ = run(p1, lo1, up1, objective(target1, scale1))
    for k in SHAPES:
        np.testing.assert_allclose(params[k], ref[k], rtol=1e-9, atol=1e-11)
        assert params[k].sharding.is_equivalent_to(p[k].sharding, p[k].ndim), k
        # the memory is stored sharded like its parameter, one slot per row
        s = state.memory.s[k]
        assert s.shape == (M, *SHAPES[k])
        assert s.sharding.is_equivalent_to(
            NamedSharding(mesh, P(None, *SPECS[k])), s.ndim
        ), (k, s.sharding)
    assert float(state.value) == pytest.approx(float(ref_state.value), rel=1e-12)
    assert_no_gather_of_the_memory(hlo)
