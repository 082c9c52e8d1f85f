"""Simplex against the sort-based projection in NumPy, every axis and dtype."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from constraints.oracles import jitted, per_row, simplex_row
from jaxbounds import Simplex

project, distance = jitted("project"), jitted("distance")
DTYPES = [jnp.float16, jnp.bfloat16, jnp.float32, jnp.float64]


@pytest.mark.parametrize("axis", [0, 1, -1])
def test_simplex_is_sort_projection(axis):
    x = np.random.default_rng(0).normal(size=(6, 5, 4))
    got = project(Simplex(2.5, axis=axis), jnp.asarray(x))
    np.testing.assert_allclose(got, per_row(simplex_row, x, axis, 2.5), atol=1e-12)


def test_simplex_axes_tuple_is_one_unit():
    x = np.random.default_rng(1).normal(size=(3, 4))
    got = project(Simplex(axis=(0, 1)), jnp.asarray(x))
    np.testing.assert_allclose(
        got, simplex_row(x.reshape(-1)).reshape(3, 4), atol=1e-12
    )


@pytest.mark.parametrize("dtype", DTYPES)
def test_simplex_exact_nonnegative_and_sum(dtype):
    x = jnp.asarray(np.random.default_rng(2).normal(size=(32, 16)) * 3, dtype)
    y = project(Simplex(1.0, axis=1), x)
    assert y.dtype == dtype
    assert bool((y >= 0).all())
    s = np.asarray(y.astype(jnp.float64)).sum(axis=1)
    np.testing.assert_allclose(s, 1.0, atol=16 * float(jnp.finfo(dtype).eps))
    # on the set as the distance sees it
    assert float(jnp.max(distance(Simplex(1.0, axis=1), y))) == 0.0
    ref = per_row(simplex_row, np.asarray(x.astype(jnp.float64)), 1)
    np.testing.assert_allclose(
        np.asarray(y.astype(jnp.float64)), ref, atol=4 * float(jnp.finfo(dtype).eps)
    )


def test_simplex_distance_and_gradient():
    x = np.random.default_rng(3).normal(size=(4, 5))
    ref = per_row(simplex_row, x, 1)
    d = distance(Simplex(axis=1), jnp.asarray(x))
    np.testing.assert_allclose(d[:, 0], np.linalg.norm(x - ref, axis=1))
    g = jax.grad(lambda x: distance(Simplex(axis=1), x).sum())(jnp.asarray(x))
    np.testing.assert_allclose(
        g, (x - ref) / np.linalg.norm(x - ref, axis=1, keepdims=True)
    )


def test_simplex_map_round_trip():
    c = Simplex(3.0, axis=0)
    u = jnp.asarray(np.random.default_rng(4).normal(size=(5, 2)))
    x = c.constrain(u)
    assert (x > 0).all()
    np.testing.assert_allclose(x.sum(axis=0), 3.0)
    back = c.unconstrain(x)
    np.testing.assert_allclose(back, u - u.mean(axis=0), rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(c.constrain(back), x)


def test_simplex_errors():
    with pytest.raises(ValueError, match="total must be a finite number > 0"):
        Simplex(0.0)
    with pytest.raises(ValueError, match="out of range"):
        project(Simplex(axis=1), jnp.ones(3))
