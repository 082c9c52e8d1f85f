"""Inward rounding: toward_zero casts and the fit loop."""

import jax.numpy as jnp
import numpy as np
import pytest

from jaxbounds._constraints._exact import fit, narrowed, toward_zero
from jaxbounds._constraints._kind import norm2


@pytest.mark.parametrize("dtype", [jnp.float16, jnp.bfloat16])
def test_toward_zero_and_away(dtype):
    v = jnp.asarray(np.random.default_rng(0).normal(size=1000), jnp.float32)
    down, up = toward_zero(v, dtype), narrowed(v, dtype, away=True)
    assert bool((jnp.abs(down.astype(jnp.float32)) <= jnp.abs(v)).all())
    assert bool((jnp.abs(up.astype(jnp.float32)) >= jnp.abs(v)).all())
    nearest = v.astype(dtype).astype(jnp.float32)
    ulp = float(jnp.finfo(dtype).eps) * jnp.abs(v)
    assert bool((jnp.abs(down.astype(jnp.float32) - nearest) <= ulp).all())


@pytest.mark.parametrize("dtype", [jnp.float16, jnp.float32])
def test_fit_brings_units_inside_by_a_few_ulps(dtype):
    rng = np.random.default_rng(1)
    x = rng.normal(size=(6, 40))
    x = x / np.linalg.norm(x, axis=0) * (1 + 3 * float(jnp.finfo(dtype).eps))
    y = jnp.asarray(x, dtype)
    measure = norm2(y.astype(jnp.float32), (0,))
    assert bool((measure > 1.0).any())  # some units start outside
    out = fit(y, lambda z: norm2(z, (0,)), jnp.float32(1.0))
    assert bool((norm2(out.astype(jnp.float32), (0,)) <= 1.0).all())
    eps = float(jnp.finfo(dtype).eps)
    np.testing.assert_allclose(
        np.asarray(out, np.float64), x, rtol=16 * eps, atol=16 * eps
    )
    low = jnp.float32(1 + 6 * float(jnp.finfo(dtype).eps))
    up = fit(-y, lambda z: norm2(z, (0,)), low, above=True)
    assert bool((norm2(up.astype(jnp.float32), (0,)) >= low).all())
