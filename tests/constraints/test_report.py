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
    assert report["a <= b"].worst == pytest.approx(0.5)  # 1.0 - 0.5: the gap
    text = str(report)
    assert "2 of 3 rule/path pairs violated" in text and "LessEqual('a', 'b')" in text
    fixed = jb.project(params, c)
    assert jb.violations(fixed, c).ok
    assert str(jb.violations(fixed, c)) == "all 3 rule/path pairs satisfied"


def test_rows_in_rule_order_and_a_relation_worst_in_its_own_units():
    # tree order (lif, threshold, w_in) differs from the rules' order
    params = {
        "lif": {"tau_syn": jnp.array([0.03, 0.02]), "tau_mem": jnp.array([0.02, 0.05])},
        "w_in": jnp.array([[3.0, 0.2], [4.0, 0.1]]),
        "threshold": jnp.array([1.0, 0.8, 1.2]),
    }
    lower, upper = jb.make_bounds(params)
    lower["threshold"] = 0.0
    c = jb.Constraints(
        ("*.tau_*", jb.Interval(1e-3, 0.1)),
        ("w_in", jb.MaxNorm(1.0, axis=0)),
        ("threshold", jb.Ordered()),
        jb.LessEqual("lif.tau_syn", "lif.tau_mem", margin=0.005),
        bounds=(lower, upper),
    )
    report = jb.violations(params, c)
    assert [(r.rule[:6], r.path) for r in report.rows] == [
        ("bounds", "threshold"),
        ("rule 0", "lif.tau_mem"),
        ("rule 0", "lif.tau_syn"),
        ("rule 1", "w_in"),
        ("rule 2", "threshold"),
        ("rule 3", "lif.tau_syn <= lif.tau_mem"),
    ]
    relation = report["lif.tau_syn <= lif.tau_mem"]
    # the gap a - (b - margin): 0.03 - (0.02 - 0.005), not its / sqrt(2)
    assert relation.outside == 1
    assert relation.worst == pytest.approx(0.015, rel=1e-6)
    assert report["w_in"].worst == pytest.approx(4.0)  # ||(3, 4)|| - 1
    table = str(report).splitlines()
    assert [line.split()[1] for line in table[2:]] == ["1", "2", "3"]
    assert table[-1].split()[-1] == "0.015"


def test_nan_is_a_violation_and_not_under_jit():
    c = jb.Constraints(("w", jb.MaxNorm(1.0)))
    assert not jb.violations({"w": jnp.array([jnp.nan])}, c).ok
    with pytest.raises(TypeError, match="cannot run under a JAX transformation"):
        jax.jit(lambda p: jb.violations(p, c).ok)({"w": jnp.ones(2)})
