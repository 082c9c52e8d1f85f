"""`_penalty`: the per-element penalties against their documented NumPy formulas.

Every kind ("exp", "quadratic", "linear" and a callable), every float dtype,
values and gradients; the references are `helpers.numpy_penalty`,
`helpers.numpy_cost` and `helpers.numpy_grad`, written from the docs.
"""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxbounds import _penalty

from helpers import (
    FLOATS,
    PENALTIES,
    TOL,
    numpy_grad,
    numpy_penalty,
    numpy_violations,
    penalty_id,
)

#: Violations from tiny to far past both switches (10 for float16, 15 else).
VIOLATIONS = [1e-3, 0.25, 1.0, 2.5, 9.5, 10.5, 14.5, 15.5, 40.0]


def wide(dtype):
    """The dtype penalties are computed in for ``dtype`` params (at least float32)."""
    return jnp.float64 if jnp.dtype(dtype) == jnp.float64 else jnp.float32


def outside_both_sides(dtype):
    """Elements below 0, inside [0, 1] and above 1, by `VIOLATIONS`."""
    v = np.asarray(VIOLATIONS)
    x = np.concatenate([-v, [0.0, 0.5, 1.0], 1.0 + v])
    return jnp.asarray(x, dtype)


# --- exp_switch, exp_penalty ------------------------------------------------


@pytest.mark.parametrize("dtype", FLOATS)
def test_the_exp_switch_is_ten_for_float16_and_fifteen_otherwise(dtype):
    want = 10.0 if jnp.dtype(dtype) == jnp.float16 else 15.0
    assert _penalty.exp_switch(dtype) == want


@pytest.mark.parametrize("switch", [2.0, 10.0, 15.0])
def test_exp_penalty_is_exp_then_its_tangent_at_the_switch(switch):
    v = np.array([0.0, 0.5, switch - 1e-3, switch, switch + 1e-3, switch + 7.0])
    got = _penalty.exp_penalty(jnp.asarray(v, jnp.float64), switch)
    want = [
        math.exp(x) if x <= switch else math.exp(switch) * (1 + x - switch) for x in v
    ]
    np.testing.assert_allclose(np.asarray(got), want, rtol=1e-12)
    slopes = jax.vmap(jax.grad(lambda x: _penalty.exp_penalty(x, switch)))(
        jnp.asarray(v, jnp.float64)
    )
    want_slopes = [math.exp(min(x, switch)) for x in v]
    np.testing.assert_allclose(np.asarray(slopes), want_slopes, rtol=1e-12)


def test_exp_penalty_stays_finite_where_exp_overflows():
    v = jnp.array([100.0, 1e30], jnp.float32)
    with jax.debug_nans(True):
        value = _penalty.exp_penalty(v)
        slope = jax.vmap(jax.grad(_penalty.exp_penalty))(v)
    assert np.all(np.isfinite(np.asarray(value)))
    np.testing.assert_allclose(
        np.asarray(slope, np.float64), [math.exp(15.0)] * 2, rtol=1e-6
    )


# --- resolve -----------------------------------------------------------------


@pytest.mark.parametrize("dtype", FLOATS)
@pytest.mark.parametrize("penalty", PENALTIES, ids=penalty_id)
def test_resolve_names_the_documented_function_and_its_slope(penalty, dtype):
    fn = _penalty.penalty_function(penalty, dtype)
    v = jnp.asarray(VIOLATIONS, wide(dtype))  # penalties see the compute dtype
    value, slope = numpy_penalty(penalty, dtype)
    x = np.asarray(v, np.float64)
    rtol = TOL[wide(dtype)]
    got, grads = jax.jit(lambda v: (fn(v), jax.vmap(jax.grad(fn))(v)))(v)
    np.testing.assert_allclose(np.asarray(got, np.float64), value(x), rtol=rtol)
    np.testing.assert_allclose(np.asarray(grads, np.float64), slope(x), rtol=rtol)


def test_resolve_returns_a_callable_as_it_is_and_refuses_unknown_names():
    def mine(v):
        return v

    assert _penalty.penalty_function(mine, jnp.float32) is mine
    with pytest.raises(ValueError, match=r"unknown penalty 'cubic'.*'exp'"):
        _penalty.penalty_function("cubic", jnp.float32)


# --- one_sided ---------------------------------------------------------------


def test_one_sided_is_fn_outside_zero_inside_and_fn_never_sees_a_negative():
    v = jnp.array([-2.0, -0.0, 0.0, 0.25, 4.0], jnp.float64)
    seen = []

    def log1p(u):  # NaN below -1: a negative violation fed to it would show
        seen.append(u)
        return jnp.log1p(u)

    with jax.debug_nans(True):
        got = _penalty.one_sided(v, log1p)
        grads = jax.vmap(jax.grad(lambda u: _penalty.one_sided(u, jnp.log1p)))(v)
    want = [0.0, 0.0, 0.0, math.log1p(0.25), math.log1p(4.0)]
    np.testing.assert_allclose(np.asarray(got), want, rtol=1e-15)
    np.testing.assert_allclose(np.asarray(grads), [0, 0, 0, 1 / 1.25, 1 / 5], 1e-15)
    assert np.all(np.asarray(seen[0]) >= 0)


# --- elementwise -------------------------------------------------------------


@pytest.mark.parametrize("dtype", FLOATS)
@pytest.mark.parametrize("penalty", PENALTIES, ids=penalty_id)
def test_elementwise_values_and_gradients_match_numpy(penalty, dtype):
    p = outside_both_sides(dtype)

    @jax.jit  # one compilation, not one per operation
    def value_and_grads(p):
        def total(p):
            return jnp.sum(_penalty.elementwise(p, 0.0, 1.0, penalty))

        return _penalty.elementwise(p, 0.0, 1.0, penalty), jax.grad(total)(p)

    got, grads = value_and_grads(p)
    assert got.dtype == wide(dtype) and got.shape == p.shape
    value, _ = numpy_penalty(penalty, dtype)
    below, above = numpy_violations(p, 0.0, 1.0)
    v = np.maximum(below, above)
    want = np.where(v > 0, value(np.maximum(v, 0)), 0.0)
    np.testing.assert_allclose(np.asarray(got, np.float64), want, rtol=TOL[dtype])
    assert np.all(np.asarray(got)[v <= 0] == 0)  # inside and on the bounds: 0

    assert grads.dtype == p.dtype
    want_grads = numpy_grad(p, 0.0, 1.0, penalty)
    tiny = float(jnp.finfo(dtype).tiny)  # below it, dtype keeps fewer digits
    np.testing.assert_allclose(
        np.asarray(grads, np.float64), want_grads, rtol=TOL[dtype], atol=tiny
    )


@pytest.mark.parametrize("penalty", PENALTIES, ids=penalty_id)
def test_elementwise_with_one_open_side_and_array_bounds(penalty):
    p = jnp.array([[-3.0, 0.5, 2.0], [-0.5, 4.0, 1.5]], jnp.float64)
    lower = jnp.array([0.0, 1.0, -1.0])  # broadcast over rows
    value, _ = numpy_penalty(penalty)
    x = np.asarray(p)
    below = np.broadcast_to(np.asarray(lower) - x, x.shape)
    only_lower = _penalty.elementwise(p, lower, None, penalty)
    want = np.where(below > 0, value(np.maximum(below, 0)), 0.0)
    np.testing.assert_allclose(np.asarray(only_lower), want, rtol=1e-12)
    only_upper = _penalty.elementwise(p, None, 1.0, penalty)
    want = np.where(x > 1.0, value(np.maximum(x - 1.0, 0)), 0.0)
    np.testing.assert_allclose(np.asarray(only_upper), want, rtol=1e-12)
    assert not np.any(np.asarray(_penalty.elementwise(p, None, None, penalty)))


def test_elementwise_compares_in_float32_for_narrow_dtypes():
    # float16(0.1) = 0.0999755..., below a lower bound of 0.1 as float32 sees it.
    p = jnp.array([0.1], jnp.float16)
    got = _penalty.elementwise(p, 0.1, None, "linear")
    want = float(np.float32(0.1)) - float(np.float16(0.1))
    np.testing.assert_allclose(float(got[0]), want, rtol=1e-6)
