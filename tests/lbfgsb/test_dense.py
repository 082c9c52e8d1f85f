"""The dense path for small problems against the NumPy references.

The same references as the tree path's: the breakpoint walk with a dense
BFGS matrix for the Cauchy point, a dense reduced solve for the subspace
step. The dense path must find the *first* minimiser on every problem,
seed 1's interior one included.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxbounds._lbfgsb._dense import dense_matrix, dense_step, solve_spd, use_dense
from jaxbounds._lbfgsb._memory import b_times, compact, reset

from .problems import (
    dense_bfgs,
    first_minimiser,
    memory_of,
    model_on_path,
    problem,
    random_pairs,
    reference,
)

#: Compiled once for every seed (the solver calls these under its jit as well).
jit_dense_matrix = jax.jit(dense_matrix, static_argnums=1)
jit_dense_step = jax.jit(dense_step, static_argnums=5)


@pytest.mark.parametrize("seed", range(8))
@pytest.mark.parametrize("ties", [False, True])
def test_exact_cauchy_point_and_subspace_step(seed, ties):
    x, g, lo, up, pairs, m = problem(seed, ties=ties)
    b = dense_bfgs(pairs, m)
    mem = memory_of(pairs, x.size, m)
    np.testing.assert_allclose(
        jit_dense_matrix(mem, jnp.float64), b, rtol=1e-10, atol=1e-10
    )
    args = [jnp.asarray(v) for v in (x, g, lo, up)]
    xc, xbar = jit_dense_step(*args, mem, jnp.float64)
    t_ref = first_minimiser(x, g, lo, up, b)
    np.testing.assert_allclose(xc, np.clip(x - t_ref * g, lo, up), atol=1e-9)
    q = lambda t: model_on_path(t, x, g, lo, up, b)  # noqa: E731
    assert q(t_ref) <= min(q(t) for t in np.linspace(0, t_ref, 501)) + 1e-9
    _, xbar_ref, _ = reference(x, g, np.asarray(xc), lo, up, b)
    np.testing.assert_allclose(xbar, xbar_ref, rtol=1e-8, atol=1e-10)
    assert np.all(np.asarray(xbar) >= lo) and np.all(np.asarray(xbar) <= up)


def test_a_tree_is_flattened_and_cut_back():
    x, g, lo, up, pairs, m = problem(3)
    mem = memory_of(pairs, x.size, m)
    flat_c, flat_b = dense_step(
        *[jnp.asarray(v) for v in (x, g, lo, up)], mem, jnp.float64
    )

    def tree(v):
        return {"a": jnp.asarray(v[:4]).reshape(2, 2), "b": jnp.asarray(v[4:])}

    mem_t = mem._replace(
        s={"a": mem.s[:, :4].reshape(m, 2, 2), "b": mem.s[:, 4:]},
        y={"a": mem.y[:, :4].reshape(m, 2, 2), "b": mem.y[:, 4:]},
    )
    xc, xbar = dense_step(tree(x), tree(g), tree(lo), tree(up), mem_t, jnp.float64)
    np.testing.assert_array_equal(xbar["a"].reshape(-1), flat_b[:4])
    np.testing.assert_array_equal(xbar["b"], flat_b[4:])
    np.testing.assert_array_equal(xc["b"], flat_c[4:])


@pytest.mark.parametrize("count", [0, 2, 5, 9])
def test_matrix_is_the_compact_form_with_slots_wrapped(count):
    # the updates run oldest first whatever slot a pair sits in: after 9
    # pushes into 4 slots the oldest pair is in slot 1; empty slots add nothing
    rng = np.random.default_rng(count)
    n, m = 6, 4
    pairs = random_pairs(n, count, rng)
    mem = memory_of(pairs, n, m)
    eye = jnp.eye(n, dtype=jnp.float64)
    compact_b = jax.vmap(lambda v: b_times(mem, compact(mem), v, jnp.float64))(eye)
    got = jit_dense_matrix(mem, jnp.float64)
    np.testing.assert_allclose(got, compact_b.T, rtol=1e-10, atol=1e-12)
    if count:
        np.testing.assert_allclose(got, dense_bfgs(pairs, m), rtol=1e-10, atol=1e-12)
    else:
        np.testing.assert_array_equal(got, np.eye(n))


def test_an_emptied_memory_is_the_identity():
    # after a failed line search the slots keep their rows, marked empty
    mem = reset(memory_of(random_pairs(6, 5, np.random.default_rng(0)), 6, 4))
    np.testing.assert_array_equal(jit_dense_matrix(mem, jnp.float64), np.eye(6))


def test_which_problems_are_small():
    # at most 4 per pair, and 16 in all (measured: the dense path's n^3 loses
    # to the walk beyond)
    assert use_dense(jnp.zeros(16), 10) and not use_dense(jnp.zeros(17), 10)
    assert use_dense(jnp.zeros(12), 3) and not use_dense(jnp.zeros(13), 3)
    assert use_dense({"a": jnp.zeros(3), "b": jnp.zeros((2, 2))}, 2)


@pytest.mark.parametrize("n", [1, 2, 6, 16])
def test_solve_spd_is_numpys_solve(n):
    # ill-conditioned too: eigenvalues from 1e-6 to 1e2
    rng = np.random.default_rng(n)
    q, _ = np.linalg.qr(rng.normal(size=(n, n)))
    spd = (q * np.logspace(-6, 2, n)) @ q.T
    v = rng.normal(size=n)
    got = jax.jit(solve_spd)(jnp.asarray(spd), jnp.asarray(v))
    want = np.linalg.solve(spd, v)
    np.testing.assert_allclose(got, want, rtol=1e-7, atol=1e-7 * np.abs(want).max())
    assert got.dtype == jnp.float64
