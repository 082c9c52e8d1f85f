"""violations(params, c): a row per rule and path."""

import jax
import jax.numpy as jnp
import pytest

import jaxbounds as jb


def test_rows_per_rule_and_path():
    params = {
        "w": jnp.array([[3.0, 0.1], [4.0, 0.1]]),
        "a": jnp.array([1.0, 0.0]),
        "b": jnp.array([0.5, 1.0]),
    }
    c = jb.Constraints(
        ("w", jb.MaxNorm(1.0, axis=0)), ("w", jb.Interval(0.0)), jb.LessEqual("a", "b")
    )
    report = jb.violations(params, c)
    assert not report.ok
    assert [(r.path, r.units, r.outside) for r in report.rows] == [
        ("w", 2, 1),
        ("w", 4, 0),
        ("a <= b", 2, 1),
    ]
    assert report["a <= b"].worst == pytest.approx(0.5 / 2**0.5)
    text = str(report)
    assert "2 of 3 rule/path pairs violated" in text and "LessEqual('a', 'b')" in text
    fixed = jb.project(params, c)
    assert jb.violations(fixed, c).ok
    assert str(jb.violations(fixed, c)) == "all 3 rule/path pairs satisfied"


def test_nan_is_a_violation_and_not_under_jit():
    c = jb.Constraints(("w", jb.MaxNorm(1.0)))
    assert not jb.violations({"w": jnp.array([jnp.nan])}, c).ok
    with pytest.raises(TypeError, match="cannot run under a JAX transformation"):
        jax.jit(lambda p: jb.violations(p, c).ok)({"w": jnp.ones(2)})
