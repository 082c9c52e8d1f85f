"""Ordered (isotonic regression in JAX) against a NumPy PAV loop, axes and dtypes."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from constraints.oracles import jitted, pav_row, per_row
from jaxbounds import Ordered

project, distance = jitted("project"), jitted("distance")
DTYPES = [jnp.float16, jnp.bfloat16, jnp.float32, jnp.float64]


@pytest.mark.parametrize("axis", [0, -1])
def test_ordered_is_pav(axis):
    x = np.random.default_rng(0).normal(size=(5, 6, 7))
    got = project(Ordered(axis=axis), jnp.asarray(x))
    np.testing.assert_allclose(got, per_row(pav_row, x, axis), rtol=1e-12, atol=1e-12)


def test_ordered_sorted_and_reversed_rows():
    x = np.array([[1.0, 2.0, 3.0], [3.0, 2.0, 1.0], [1.0, 1.0, 0.0]])
    np.testing.assert_allclose(
        project(Ordered(), jnp.asarray(x)), [[1, 2, 3], [2, 2, 2], [2 / 3] * 3]
    )


@pytest.mark.parametrize("dtype", DTYPES)
def test_ordered_exact_in_every_dtype(dtype):
    x = np.random.default_rng(1).normal(size=(64, 32)) * 0.01 + np.linspace(0, 1e-3, 32)
    y = project(Ordered(axis=1), jnp.asarray(x, dtype))
    assert y.dtype == dtype
    assert bool((jnp.diff(y, axis=1) >= 0).all())
    ref = per_row(pav_row, np.asarray(jnp.asarray(x, dtype).astype(jnp.float64)), 1)
    np.testing.assert_allclose(
        np.asarray(y.astype(jnp.float64)),
        ref,
        atol=4 * float(jnp.finfo(dtype).eps) * 0.05,
    )


def test_ordered_distance_and_gradient():
    x = np.random.default_rng(2).normal(size=(3, 8))
    ref = per_row(pav_row, x, 1)
    d = distance(Ordered(), jnp.asarray(x))
    np.testing.assert_allclose(d[:, 0], np.linalg.norm(x - ref, axis=1))
    g = jax.grad(lambda x: distance(Ordered(), x).sum())(jnp.asarray(x))
    np.testing.assert_allclose(
        g, (x - ref) / np.linalg.norm(x - ref, axis=1, keepdims=True)
    )


def test_ordered_map_round_trip():
    c = Ordered(axis=0)
    u = jnp.asarray(np.random.default_rng(3).normal(size=(6, 2)))
    x = c.constrain(u)
    assert (jnp.diff(x, axis=0) > 0).all()
    np.testing.assert_allclose(c.unconstrain(x), u, rtol=1e-9, atol=1e-12)


def test_ordered_errors():
    with pytest.raises(TypeError, match="one axis"):
        Ordered(axis=(0, 1))
    with pytest.raises(ValueError, match="out of range"):
        project(Ordered(axis=2), jnp.ones((2, 2)))
