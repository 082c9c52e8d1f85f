"""constrain(raw, c) / unconstrain(params, c): round trips, the sets, errors."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxbounds as jb

RNG = np.random.default_rng(0)


def test_round_trip_and_sets():
    c = jb.Constraints(
        ("w", jb.MaxNorm(2.0, axis=0)),
        ("p", jb.Simplex(3.0)),
        ("t", jb.Ordered()),
        ("x", jb.Interval(0.0, 1.0)),
        jb.LessEqual("a", "b", 0.1),
        bounds=(
            {"w": None, "p": None, "t": None, "x": -1.0, "a": None, "b": None},
            {"w": None, "p": None, "t": None, "x": 0.5, "a": None, "b": None},
        ),
    )
    raw = {
        k: jnp.asarray(RNG.normal(size=s))
        for k, s in dict(w=(3, 2), p=(2, 4), t=(5,), x=(3,), a=(2,), b=(2,)).items()
    }
    params = jb.constrain(raw, c)
    assert jb.violations(params, c).ok
    np.testing.assert_allclose(params["p"].sum(axis=1), 3.0)
    assert (params["x"] >= 0).all() and (params["x"] <= 0.5).all()  # boxes merged
    back = jb.unconstrain(params, c)
    again = jb.constrain(back, c)
    for k in raw:
        np.testing.assert_allclose(again[k], params[k], rtol=1e-7, atol=1e-9)
    for k in ("w", "t", "x", "a", "b"):
        np.testing.assert_allclose(back[k], raw[k], rtol=1e-6, atol=1e-8)


def test_gradient_flows_and_jit():
    c = jb.Constraints(("w", jb.MaxNorm(1.0)), jb.LessEqual("a", "b"))
    raw = {"w": jnp.array([3.0, 4.0]), "a": jnp.array([0.0]), "b": jnp.array([0.0])}
    g = jax.grad(lambda r: sum(jnp.sum(v) for v in jb.constrain(r, c).values()))(raw)
    assert all(np.isfinite(v).all() and np.abs(v).sum() > 0 for v in g.values())
    out = jax.jit(jb.constrain)(raw, c)
    assert float(out["a"][0]) <= float(out["b"][0])


@pytest.mark.parametrize("dtype", [jnp.float16, jnp.bfloat16, jnp.float32])
def test_relation_map_exact_in_dtype(dtype):
    c = jb.Constraints(jb.LessEqual("a", "b", 0.1))
    raw = {
        "a": jnp.asarray(RNG.normal(size=50) * 3, dtype),
        "b": jnp.asarray(RNG.normal(size=50) * 10 - 20, dtype),
    }
    out = jb.constrain(raw, c)
    cd = jnp.float32
    assert bool(
        (out["a"].astype(cd) <= out["b"].astype(cd) - jnp.asarray(0.1, cd)).all()
    )


def test_combinations_without_a_map_raise():
    p = {"w": jnp.ones((2, 2)), "a": jnp.ones(2), "b": jnp.ones(2), "c": jnp.ones(2)}
    with pytest.raises(ValueError, match=r"path 'w'.*no map.*use project"):
        jb.constrain(p, jb.Constraints(("w", jb.MaxNorm(1.0)), ("w", jb.Ordered())))
    with pytest.raises(ValueError, match=r"'b' has other rules.*use project"):
        jb.constrain(p, jb.Constraints(jb.LessEqual("a", "b"), jb.LessEqual("c", "b")))
    with pytest.raises(ValueError, match="no map"):
        jb.constrain(p, jb.Constraints(("w", jb.MaxNorm(1.0)), ("w", jb.Interval(0.0))))
