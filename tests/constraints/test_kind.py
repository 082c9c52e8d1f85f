"""Interval and the Constraint base class."""

import jax.numpy as jnp
import numpy as np
import pytest

import jaxbounds as jb
from constraints.oracles import jitted

from helpers import cubic, numpy_cost, numpy_penalty

project, distance = jitted("project"), jitted("distance")


@pytest.mark.parametrize("dtype", [jnp.float16, jnp.bfloat16, jnp.float32, jnp.float64])
def test_interval_clips_inward(dtype):
    x = jnp.asarray([-1.0, 0.05, 0.3, 2.0], dtype)
    y = project(jb.Interval(0.1, 0.2), x)
    cd = jnp.promote_types(dtype, jnp.float32)
    assert bool((y.astype(cd) >= jnp.asarray(0.1, cd)).all())
    assert bool((y.astype(cd) <= jnp.asarray(0.2, cd)).all())


@pytest.mark.parametrize("penalty", ["exp", "quadratic", "linear", cubic])
def test_interval_cost_is_the_documented_penalty(penalty):
    """Hand-computed violations 1 (below 0) and 2 (above 1), penalised as
    the docs write each penalty (helpers.numpy_penalty)."""
    x = jnp.array([-1.0, 0.5, 3.0])
    value, _ = numpy_penalty(penalty)
    got = jb.Interval(0.0, 1.0).cost(x, penalty)
    np.testing.assert_allclose(got, value(1.0) + value(2.0), rtol=1e-12)
    np.testing.assert_allclose(got, numpy_cost(x, 0.0, 1.0, penalty), rtol=1e-12)
    np.testing.assert_allclose(distance(jb.Interval(0.0, 1.0), x), [1.0, 0.0, 2.0])


def test_interval_open_sides_and_errors():
    assert jb.Interval().sides() == (None, None)
    assert jb.Interval(-np.inf, np.inf).sides() == (None, None)
    with pytest.raises(ValueError, match="lower > upper"):
        jb.Interval(1.0, 0.0)
    with pytest.raises(ValueError, match="NaN"):
        jb.Interval(np.nan, 0.0)


def test_interval_map_is_the_sigmoid_box_map():
    """``lo + (up - lo) sigmoid(raw)`` for two finite sides, ``lo + softplus``
    and ``up - softplus(-raw)`` for one (NumPy, float64)."""
    raw = np.array([-3.0, 0.0, 2.0])
    sigmoid = 1 / (1 + np.exp(-raw))
    softplus = np.log1p(np.exp(raw))
    softplus_neg = np.log1p(np.exp(-raw))
    cases = [
        (jb.Interval(0.0, 2.0), 2 * sigmoid),
        (jb.Interval(-1.0, 3.0), -1 + 4 * sigmoid),
        (jb.Interval(lower=0.5), 0.5 + softplus),
        (jb.Interval(upper=-2.0), -2.0 - softplus_neg),
        (jb.Interval(), raw),
    ]
    for kind, want in cases:
        np.testing.assert_allclose(kind.constrain(jnp.asarray(raw)), want, rtol=1e-12)


def test_interval_wiring_cost_is_bounds_cost_and_map_is_the_box_map():
    """Checks wiring, not numbers (the tests above pin those): as documented,
    an Interval's cost is `bounds_cost` and its map is `constrain`'s box map,
    bit for bit."""
    x = jnp.array([-1.0, 0.5, 3.0])
    for penalty in ("exp", "quadratic", "linear"):
        got = jb.Interval(0.0, 1.0).cost(x, penalty)
        assert got == jb.bounds_cost({"x": x}, {"x": 0.0}, {"x": 1.0}, penalty=penalty)
    raw = jnp.array([-3.0, 0.0, 2.0])
    got = jb.Interval(0.0, 2.0).constrain(raw)
    np.testing.assert_array_equal(
        got, jb.constrain({"x": raw}, {"x": 0.0}, {"x": 2.0})["x"]
    )


def test_user_kind_gets_a_distance():
    class NonNegative(jb.Constraint):
        def project(self, x):
            return jnp.maximum(x, 0)

    c = NonNegative()
    x = jnp.array([-3.0, 4.0])
    assert float(distance(c, x)[0]) == 3.0
    assert not c.has_bijection()
    assert jb.MaxNorm(1.0).has_bijection()
    with pytest.raises(NotImplementedError):
        jb.Constraint().project(x)
