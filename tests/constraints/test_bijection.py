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
    with pytest.raises(ValueError, match=r"'b' has other relations.*use project"):
        jb.constrain(p, jb.Constraints(jb.LessEqual("a", "b"), jb.LessEqual("c", "b")))
    with pytest.raises(ValueError, match=r"'b' has other relations or rules than"):
        jb.constrain(p, jb.Constraints(jb.LessEqual("a", "b"), ("b", jb.MaxNorm(1.0))))
    with pytest.raises(ValueError, match=r"'a' must stay below the bounds of 'b'"):
        jb.constrain(
            p,
            jb.Constraints(
                jb.LessEqual("a", "b"), ("a", jb.Ordered()), ("b", jb.Interval(0, 1))
            ),
        )
    with pytest.raises(ValueError, match="no map"):
        jb.constrain(p, jb.Constraints(("w", jb.MaxNorm(1.0)), ("w", jb.Interval(0.0))))


@pytest.mark.parametrize("dtype", [jnp.float16, jnp.bfloat16, jnp.float32])
def test_a_relation_with_intervals_maps_into_the_narrowed_boxes(dtype):
    # tau_syn <= tau_mem - 0.005, both in [0.001, 0.1]: tau_mem lives in
    # [max(0.001, tau_syn + 0.005), 0.1] and tau_syn's top is 0.1 - 0.005
    c = jb.Constraints(
        ("*", jb.Interval(0.001, 0.1)), jb.LessEqual("tau_syn", "tau_mem", 0.005)
    )
    raw = {
        "tau_syn": jnp.asarray(RNG.normal(size=200) * 8, dtype),
        "tau_mem": jnp.asarray(RNG.normal(size=200) * 8, dtype),
    }
    out = jax.jit(jb.constrain)(raw, c)
    syn = np.asarray(out["tau_syn"], np.float32)
    mem = np.asarray(out["tau_mem"], np.float32)
    lo, hi = np.float32(0.001), np.float32(0.1)
    assert (syn >= lo).all() and (mem <= hi).all()
    assert (syn <= np.float32(0.1) - np.float32(0.005)).all()
    assert (syn <= mem - np.float32(0.005)).all()  # as the relation sees it
    assert jb.violations(out, c).ok
    # the maps are the box maps: the midpoint raw 0 lands mid-box
    zero = jax.tree.map(jnp.zeros_like, raw)
    mid = jb.constrain(zero, c)
    np.testing.assert_allclose(float(mid["tau_syn"][0]), (0.001 + 0.095) / 2, rtol=1e-2)
    floor = float(mid["tau_syn"][0]) + 0.005
    np.testing.assert_allclose(float(mid["tau_mem"][0]), (floor + 0.1) / 2, rtol=1e-2)


def test_a_relation_with_intervals_round_trips():
    c = jb.Constraints(
        ("tau_mem", jb.Interval(0.01, 0.1)), jb.LessEqual("tau_syn", "tau_mem")
    )
    params = {"tau_syn": jnp.array([0.005, 0.03]), "tau_mem": jnp.array([0.02, 0.09])}
    back = jb.constrain(jb.unconstrain(params, c), c)
    np.testing.assert_allclose(back["tau_syn"], params["tau_syn"], rtol=1e-5)
    np.testing.assert_allclose(back["tau_mem"], params["tau_mem"], rtol=1e-5)
