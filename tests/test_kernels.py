"""The fast paths of `_kernels` against the NumPy references in `helpers`.

Each test builds the tree that sends the computation down one fast path:
leaves above the chunk size, many small leaves of several dtypes in one
tree, float and array bounds mixed, one-sided bounds.
"""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxbounds as jb
from jaxbounds import _kernels

from helpers import (
    FLOATS,
    PENALTIES,
    TOL,
    numpy_cost,
    numpy_exp_cost,
    numpy_exp_grad,
    numpy_grad,
    numpy_tree_cost,
    penalty_id,
)


def test_a_leaf_above_the_chunk_size_is_summed_whole():
    n = _kernels.CHUNK * 2 + 1000  # two chunks and a remainder
    x = np.full(n, 0.5, np.float32)
    x[0], x[_kernels.CHUNK - 1] = -1.0, -2.0  # the first chunk
    x[_kernels.CHUNK + 5] = 3.0  # the second
    x[-1] = -0.25  # the remainder
    p = jnp.asarray(x)
    cost, grad = jax.value_and_grad(jb.bounds_cost)({"p": p}, {"p": 0.0}, {"p": 1.0})
    np.testing.assert_allclose(float(cost), numpy_exp_cost(p, 0.0, 1.0), rtol=1e-6)
    g = np.asarray(grad["p"], np.float64)
    nonzero = np.flatnonzero(g)
    np.testing.assert_array_equal(
        nonzero, [0, _kernels.CHUNK - 1, _kernels.CHUNK + 5, n - 1]
    )
    np.testing.assert_allclose(
        g[nonzero], numpy_exp_grad(p, 0.0, 1.0)[nonzero], rtol=1e-6
    )


def many_leaves_of_all_dtypes():
    """Small leaves of four dtypes, float / array / one-sided bounds, in one tree."""
    rng = np.random.default_rng(0)
    params, lower, upper = {}, {}, {}
    for i in range(40):
        dtype = FLOATS[i % 4]
        shape = [(3,), (2, 2), (5,), ()][i // 4 % 4]
        # Violations up to 14: past float16's switch (10), short of the others' (15).
        x = rng.uniform(-14.0, 15.0, shape)
        params[f"l{i:02d}"] = jnp.asarray(x, dtype)
        kind = i % 5
        lo, up = 0.0, 1.0
        if kind == 1:
            lo = jnp.asarray(rng.uniform(-1, 0, shape), dtype)
        elif kind == 2:
            up = None
        elif kind == 3:
            lo = -math.inf
        elif kind == 4:
            up = jnp.asarray(rng.uniform(1, 2, shape or ()), jnp.float32)
        lower[f"l{i:02d}"], upper[f"l{i:02d}"] = lo, up
    return params, lower, upper


@pytest.mark.slow
def test_many_small_leaves_of_several_dtypes_match_numpy_leaf_by_leaf():
    params, lower, upper = many_leaves_of_all_dtypes()
    cost, grads = jax.value_and_grad(jb.bounds_cost)(params, lower, upper)
    np.testing.assert_allclose(
        float(cost), numpy_tree_cost(params, lower, upper), rtol=1e-3
    )
    for k, p in params.items():
        want = numpy_exp_grad(p, lower[k], upper[k])
        tol = TOL[p.dtype.type]
        scale = max(1.0, float(np.max(np.abs(want))))
        np.testing.assert_allclose(
            np.asarray(grads[k], np.float64),
            want,
            rtol=tol,
            atol=tol * scale,
            err_msg=k,
        )


def test_each_dtype_keeps_its_own_switch_inside_a_group():
    # Same violation 12 in float16 and float32 leaves: float16 has turned
    # linear (switch 10), float32 has not (switch 15).
    params = {
        "a": jnp.full(3, -12.0, jnp.float16),
        "b": jnp.full(3, -12.0, jnp.float32),
        "c": jnp.full(2, -12.0, jnp.float16),
        "d": jnp.full(2, -12.0, jnp.float32),
    }
    lower = dict.fromkeys(params, 0.0)
    upper = dict.fromkeys(params, math.inf)
    want = 5 * math.exp(10.0) * (1 + 2.0) + 5 * math.exp(12.0)
    np.testing.assert_allclose(
        float(jb.bounds_cost(params, lower, upper)), want, rtol=1e-6
    )


def test_float64_and_float32_leaves_are_not_summed_in_one_precision():
    params = {"a": jnp.array([-1e-9], jnp.float64), "b": jnp.array([0.5], jnp.float32)}
    lower, upper = {"a": 0.0, "b": 0.0}, {"a": 1.0, "b": 1.0}
    cost = jb.bounds_cost(params, lower, upper)
    assert cost.dtype == jnp.float64
    # 1 + 1e-9 survives only if the float64 leaf is computed in float64.
    np.testing.assert_allclose(float(cost), math.exp(1e-9), rtol=1e-15)


@pytest.mark.slow
@pytest.mark.parametrize("penalty", PENALTIES, ids=penalty_id)
def test_grouped_cost_and_gradient_match_numpy_for_every_penalty_kind(penalty):
    params, lower, upper = many_leaves_of_all_dtypes()
    keys = [k for k in params if params[k].dtype != jnp.float16]  # one switch
    leaves = [params[k].astype(jnp.float64) for k in keys]
    open_low = [lower[k] is None or (lower[k] == -math.inf) is True for k in keys]
    lows = [None if o else lower[k] for k, o in zip(keys, open_low)]
    ups = [None if upper[k] is None else upper[k] for k in keys]
    want = sum(numpy_cost(*leaf, penalty) for leaf in zip(leaves, lows, ups))
    want_grads = [numpy_grad(*leaf, penalty) for leaf in zip(leaves, lows, ups)]
    cost, grads = jax.value_and_grad(
        lambda ls: _kernels.penalty_sum(ls, lows, ups, penalty)
    )(leaves)
    np.testing.assert_allclose(float(cost), float(want), rtol=1e-12)
    for g, w in zip(grads, want_grads):
        np.testing.assert_allclose(g, w, rtol=1e-12, atol=1e-300)


def test_a_leaf_at_and_above_the_group_size_limit():
    rng = np.random.default_rng(2)
    sizes = [_kernels.GROUP_MAX_SIZE, _kernels.GROUP_MAX_SIZE + 1, 7, 9]
    params = {f"l{i}": jnp.asarray(rng.normal(size=n)) for i, n in enumerate(sizes)}
    lower = dict.fromkeys(params, -0.5)
    upper = {
        k: jnp.full(params[k].shape, 0.5) if i % 2 else 0.5
        for i, k in enumerate(params)
    }
    cost, grads = jax.value_and_grad(jb.bounds_cost)(params, lower, upper)
    np.testing.assert_allclose(
        float(cost), numpy_tree_cost(params, lower, upper), rtol=1e-12
    )
    for k in params:
        np.testing.assert_allclose(
            grads[k], numpy_exp_grad(params[k], lower[k], upper[k]), rtol=1e-12
        )


def test_the_gradient_with_respect_to_the_bounds():
    p = jnp.array([-1.0, 0.5, 2.5])

    def cost(lo, up):
        return jb.bounds_cost({"p": p}, {"p": lo}, {"p": up})

    dlo, dup = jax.grad(cost, argnums=(0, 1))(0.0, 2.0)
    np.testing.assert_allclose(
        float(dlo), math.exp(1.0), rtol=1e-12
    )  # d/dlo exp(lo - p)
    np.testing.assert_allclose(float(dup), -math.exp(0.5), rtol=1e-12)
    # through a group of small leaves too
    q = {"a": jnp.array([-1.0]), "b": jnp.array([3.0])}
    g = jax.grad(
        lambda lo: jb.bounds_cost(q, {"a": lo, "b": lo}, {"a": 2.0, "b": 2.0})
    )(0.0)
    np.testing.assert_allclose(float(g), math.exp(1.0), rtol=1e-12)


@pytest.mark.parametrize("dtype", [jnp.float64, jnp.float32, jnp.float16, jnp.bfloat16])
@pytest.mark.parametrize("k", [1, 7, 1152, 36864, 1 << 16])
def test_argsort_times_is_the_stable_argsort(dtype, k):
    # times >= 0 with ties (a tenth repeat one value), zeros of both signs and
    # inf pads, as the Cauchy walk's chunks hold them; 2^16 takes jnp.argsort
    rng = np.random.default_rng(k)
    t = rng.exponential(size=k)
    t[rng.random(k) < 0.1] = t[0]
    t[rng.random(k) < 0.2] = np.inf
    t[rng.random(k) < 0.05] = 0.0
    t[rng.random(k) < 0.05] = -0.0
    t = jnp.asarray(t, dtype)
    expected = np.argsort(np.abs(np.asarray(t, np.float64)), kind="stable")
    np.testing.assert_array_equal(jax.jit(_kernels.argsort_times)(t), expected)


def test_argsort_times_under_vmap():
    t = jnp.asarray(np.random.default_rng(0).exponential(size=(3, 100)))
    order = jax.vmap(_kernels.argsort_times)(t)
    np.testing.assert_array_equal(order, np.argsort(np.asarray(t), axis=1))


@pytest.mark.parametrize("k", [1, 2, 5, 10, 33])
def test_argsort_short_is_the_stable_argsort(k):
    # the memory's ages: empty slots tie at -1, the others distinct; and
    # random ties, since the order of equal entries is by index
    rng = np.random.default_rng(k)
    ages = rng.permutation(3 * k)[:k] - 1
    ages[rng.random(k) < 0.3] = -1
    many_ties = rng.integers(0, 3, size=k)
    for a in (ages, many_ties, -many_ties.astype(np.float32)):
        expected = np.argsort(a, kind="stable")
        got = jax.jit(_kernels.argsort_short)(jnp.asarray(a))
        np.testing.assert_array_equal(got, expected)


def test_argsort_short_under_vmap():
    a = jnp.asarray(np.random.default_rng(1).integers(-1, 4, size=(4, 10)))
    order = jax.vmap(_kernels.argsort_short)(a)
    expected = np.argsort(np.asarray(a), axis=1, kind="stable")
    np.testing.assert_array_equal(order, expected)
