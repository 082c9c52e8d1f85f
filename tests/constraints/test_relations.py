"""LessEqual: the midpoint of a violating pair, shared elements, exact rounding."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from constraints.oracles import midpoint_pair, shared_upper
from jaxbounds import LessEqual

pair = jax.jit(lambda rel, a, b: rel.project_pair(a, b))
DTYPES = [jnp.float16, jnp.bfloat16, jnp.float32, jnp.float64]


def test_midpoint_of_violating_pairs():
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=20), rng.normal(size=20)
    got = pair(LessEqual("a", "b", 0.1), jnp.asarray(a), jnp.asarray(b))
    ref = midpoint_pair(a, b, 0.1)
    np.testing.assert_allclose(got[0], ref[0], atol=1e-12)
    np.testing.assert_allclose(got[1], ref[1], atol=1e-12)


@pytest.mark.parametrize("dtype", DTYPES)
def test_exact_in_every_dtype(dtype):
    rng = np.random.default_rng(1)
    a = jnp.asarray(rng.normal(size=200), dtype)
    b = jnp.asarray(rng.normal(size=200), dtype)
    m = 0.1  # not representable: rounded to nearest in the compute dtype
    na, nb = pair(LessEqual("a", "b", m), a, b)
    assert na.dtype == dtype and nb.dtype == dtype
    cd = jnp.promote_types(dtype, jnp.float32)
    assert bool((na.astype(cd) <= nb.astype(cd) - jnp.asarray(m, cd)).all())
    ref = midpoint_pair(
        np.asarray(a.astype(jnp.float64)), np.asarray(b.astype(jnp.float64)), m
    )
    eps = float(jnp.finfo(dtype).eps)
    np.testing.assert_allclose(np.asarray(na.astype(jnp.float64)), ref[0], atol=8 * eps)


def test_shared_element_averages_with_violating_partners():
    rng = np.random.default_rng(2)
    a = rng.normal(size=(3, 7))
    b = rng.normal(size=(3, 1)) - 0.5
    na, nb = pair(LessEqual("a", "b", 0.05), jnp.asarray(a), jnp.asarray(b))
    for i in range(3):
        ra, rb = shared_upper(a[i], b[i, 0], 0.05)
        np.testing.assert_allclose(na[i], ra, atol=1e-12)
        np.testing.assert_allclose(nb[i, 0], rb, atol=1e-12)
    # the other way round: one smaller side shared by a row of larger ones
    na, nb = pair(LessEqual("a", "b"), jnp.asarray(b), jnp.asarray(a))
    for i in range(3):
        rb_neg, ra_neg = shared_upper(-a[i], -b[i, 0])
        np.testing.assert_allclose(nb[i], -rb_neg, atol=1e-12)
        np.testing.assert_allclose(na[i, 0], -ra_neg, atol=1e-12)


def test_scalar_shared():
    a = jnp.array([0.5, 0.1, 0.9])
    na, nb = pair(LessEqual("a", "b"), a, jnp.array(0.3))
    np.testing.assert_allclose(na, [0.5, 0.1, 0.6], rtol=1e-6)
    np.testing.assert_allclose(nb, 0.6, rtol=1e-6)


def test_distance_and_errors():
    rel = LessEqual("a", "b", 0.5)
    d = rel.distance(jnp.array([1.0, 0.0]), jnp.array([1.0, 1.0]))
    np.testing.assert_allclose(d, [0.5 / np.sqrt(2), 0.0])
    with pytest.raises(ValueError, match="itself"):
        LessEqual("a", "a")
    with pytest.raises(ValueError, match="margin must be >= 0"):
        LessEqual("a", "b", -1.0)
    with pytest.raises(ValueError, match="broadcast both ways"):
        rel.project_pair(jnp.ones((2, 1)), jnp.ones((1, 3)))
