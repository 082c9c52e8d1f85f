"""constraint_cost: values and gradients against the distance formula."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxbounds as jb
from constraints.oracles import pav_row, per_row, simplex_row

from helpers import numpy_cost

RNG = np.random.default_rng(0)
W = RNG.normal(size=(5, 4)) * 2
T = RNG.normal(size=(3, 6))
P = RNG.normal(size=(2, 5))
A, B = RNG.normal(size=4), RNG.normal(size=4)
PARAMS = {k: jnp.asarray(v) for k, v in dict(w=W, t=T, p=P, a=A, b=B).items()}
C = jb.Constraints(
    ("w", jb.MaxNorm(1.5, axis=0)),
    ("t", jb.Ordered()),
    ("p", jb.Simplex()),
    jb.LessEqual("a", "b", 0.2),
)


def _distances():
    n = np.linalg.norm(W, axis=0)
    dw = np.maximum(n - 1.5, 0)
    dt = np.linalg.norm(T - per_row(pav_row, T, 1), axis=1)
    dp = np.linalg.norm(P - per_row(simplex_row, P, 1), axis=1)
    dr = np.maximum(A - B + 0.2, 0) / np.sqrt(2)
    return np.concatenate([dw, dt, dp, dr])


@pytest.mark.parametrize(
    "penalty, f",
    [
        ("exp", np.exp),
        pytest.param("quadratic", np.square, marks=pytest.mark.slow),
        pytest.param("linear", lambda v: v, marks=pytest.mark.slow),
        (lambda v: v**3, lambda v: v**3),
    ],
)
def test_value_is_penalty_of_distances(penalty, f):
    d = _distances()
    ref = np.sum(np.where(d > 0, f(np.where(d > 0, d, 0)), 0))
    got = jb.constraint_cost(PARAMS, C, penalty=penalty)
    np.testing.assert_allclose(got, ref, rtol=1e-10)


def test_gradient_is_the_distance_gradient():
    g = jax.grad(lambda p: jb.constraint_cost(p, C, penalty="linear"))(PARAMS)
    n = np.linalg.norm(W, axis=0, keepdims=True)
    np.testing.assert_allclose(g["w"], np.where(n > 1.5, W / n, 0), rtol=1e-10)
    rt = T - per_row(pav_row, T, 1)
    np.testing.assert_allclose(
        g["t"], rt / np.linalg.norm(rt, axis=1, keepdims=True), rtol=1e-8
    )
    bad = A - B + 0.2 > 0
    np.testing.assert_allclose(g["a"], np.where(bad, 1 / np.sqrt(2), 0))
    np.testing.assert_allclose(g["b"], np.where(bad, -1 / np.sqrt(2), 0))


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.float64])
def test_interval_rules_and_bound_trees_cost_the_documented_penalty(dtype):
    """Hand-computed: ``x`` outside [0, 1] by 1 and 2, ``y`` above 1.5 by 0.5,
    each through the exp penalty (helpers.numpy_cost, float64)."""
    p = {"x": jnp.array([-1.0, 0.5, 3.0], dtype), "y": jnp.array([2.0], dtype)}
    c = jb.Constraints(
        ("x", jb.Interval(0.0, 1.0)),
        bounds=({"x": None, "y": None}, {"x": None, "y": 1.5}),
    )
    got = jb.constraint_cost(p, c)
    assert got.dtype == (jnp.float32 if dtype == jnp.float32 else jnp.float64)
    want = np.exp(1.0) + np.exp(2.0) + np.exp(0.5)
    assert want == pytest.approx(
        numpy_cost(p["x"], 0.0, 1.0) + numpy_cost(p["y"], None, 1.5), rel=1e-15
    )
    np.testing.assert_allclose(got, want, rtol=1e-6 if dtype == jnp.float32 else 1e-12)


def test_interval_rules_wiring_are_exactly_bounds_cost():
    """Checks wiring, not numbers (the test above pins those): as documented,
    Interval rules and bound trees cost exactly what `bounds_cost` does."""
    p = {"x": jnp.array([-1.0, 0.5, 3.0], jnp.float32), "y": jnp.array([2.0])}
    c = jb.Constraints(
        ("x", jb.Interval(0.0, 1.0)),
        bounds=({"x": None, "y": None}, {"x": None, "y": 1.5}),
    )
    ref = jb.bounds_cost(p, {"x": 0.0, "y": None}, {"x": 1.0, "y": 1.5})
    assert jb.constraint_cost(p, c) == ref


def test_projected_point_costs_nothing():
    out = jb.project(PARAMS, C)
    assert float(jb.constraint_cost(out, C)) == 0.0
    assert jb.violations(out, C).ok


def test_overflow_safe_and_float32_result():
    p = {"w": jnp.full((3,), 1e30, jnp.float32)}
    c = jb.Constraints(("w", jb.MaxNorm(1.0)))
    v, g = jax.value_and_grad(jb.constraint_cost)(p, c)
    assert v.dtype == jnp.float32 and np.isfinite(v) and np.isfinite(g["w"]).all()
    assert jb.constraint_cost({"w": jnp.zeros(3, jnp.float16)}, c).dtype == jnp.float32
