"""Intersections by Dykstra's algorithm: feasible to the tolerance, and the projection.

The projection P(x) onto a closed convex set C is characterised by the
variational inequality <x - P(x), z - P(x)> <= 0 for every z in C; it is
checked here for sampled feasible z.
"""

import jax.numpy as jnp
import numpy as np
import pytest

import jaxbounds as jb
from constraints.oracles import variational_gap

RNG = np.random.default_rng(0)
TOL = 1e-9


def _feasible(params_like, c, n=40, scale=2.0):
    zs = []
    for _ in range(n):
        z = {
            k: jnp.asarray(RNG.normal(size=np.shape(v)) * scale)
            for k, v in params_like.items()
        }
        zs.append(jb.project(z, c))
    return zs


CASES = {
    "norm ball and a box": (
        {"w": RNG.normal(size=(4, 3)) * 2},
        jb.Constraints(
            ("w", jb.MaxNorm(1.0, axis=0)),
            ("w", jb.Interval(-0.3, 0.9)),
            tol=1e-12,
            max_iter=5000,
        ),
    ),
    "capped simplex": (
        {"p": RNG.normal(size=(3, 5))},
        jb.Constraints(
            ("p", jb.Simplex()), ("p", jb.Interval(None, 0.3)), tol=1e-12, max_iter=5000
        ),
    ),
    "a chain of relations": (
        {"a": RNG.normal(size=4), "b": RNG.normal(size=4), "c": RNG.normal(size=4)},
        jb.Constraints(
            jb.LessEqual("a", "b", 0.1),
            jb.LessEqual("b", "c"),
            tol=1e-12,
            max_iter=5000,
        ),
    ),
    "a chain in reverse order": (
        {
            "a": np.array([3.0, 0.0]),
            "b": np.array([2.0, 0.5]),
            "c": np.array([1.0, 1.0]),
        },
        jb.Constraints(
            jb.LessEqual("a", "b"), jb.LessEqual("b", "c"), tol=1e-12, max_iter=5000
        ),
    ),
    "a shared bound with a box": (
        {"a": RNG.normal(size=(2, 5)), "b": RNG.normal(size=(2, 1))},
        jb.Constraints(
            jb.LessEqual("a", "b"),
            ("b", jb.Interval(-0.2, 0.2)),
            tol=1e-12,
            max_iter=5000,
        ),
    ),
}


@pytest.mark.parametrize("name", list(CASES))
def test_variational_inequality(name):
    x, c = CASES[name]
    x = {k: jnp.asarray(v) for k, v in x.items()}
    px = jb.project(x, c)
    assert float(jb.constraint_cost(px, c, penalty="linear")) < 1e-8
    gap = variational_gap(x, px, _feasible(x, c))
    assert gap <= TOL, gap


def test_tolerance_and_cap_are_honoured():
    x = {"a": jnp.array([3.0]), "b": jnp.array([2.0]), "c": jnp.array([1.0])}
    loose = jb.Constraints(jb.LessEqual("a", "b"), jb.LessEqual("b", "c"), max_iter=1)
    one = jb.project(x, loose)
    tight = jb.project(
        x, jb.Constraints(jb.LessEqual("a", "b"), jb.LessEqual("b", "c"), tol=1e-14)
    )
    np.testing.assert_allclose([tight[k][0] for k in "abc"], [2.0, 2.0, 2.0], atol=1e-9)
    assert abs(float(one["a"][0]) - 2.0) > 1e-3  # one sweep is not the answer


def test_corrections_matter():
    # Alternating projections without Dykstra's corrections stop at
    # (0.2, 0.707): feasible, but not the nearest point (0.2, sqrt(1 - 0.04)).
    c = jb.Constraints(
        ("x", jb.MaxNorm(1.0)),
        ("x", jb.Interval(None, np.array([0.2, 10.0]))),
        tol=1e-12,
        max_iter=5000,
    )
    got = jb.project({"x": jnp.array([2.0, 2.0])}, c)["x"]
    np.testing.assert_allclose(got, [0.2, np.sqrt(1 - 0.04)], atol=1e-6)
