"""The public names: the types the functions return are importable by name."""

import copy
import inspect
import pickle
import pydoc

import jax.numpy as jnp
import optax

import jaxbounds as jb

#: DESIGN.md "Public types are exported by name".
PUBLIC_TYPES = (
    "MinimizeResult",
    "LbfgsbState",
    "BoundsPenaltyState",
    "ViolationReport",
    "PathViolations",
    "ConstraintReport",
    "RuleViolations",
    "Box",
)


def test_public_types_are_exported_and_listed():
    for name in PUBLIC_TYPES:
        assert isinstance(getattr(jb, name), type), name
        assert name in jb.__all__, name


def test_exported_types_are_what_the_functions_return():
    params = {"x": jnp.array([2.0, -1.0])}
    lower, upper = {"x": 0.0}, {"x": 1.0}
    result = jb.minimize(
        lambda p: jnp.sum((p["x"] - 3.0) ** 2), params, lower, upper, max_steps=3
    )
    assert isinstance(result, jb.MinimizeResult)
    assert result.params["x"].tolist() == [1.0, 1.0]  # the upper corner
    assert isinstance(jb.lbfgsb(lower, upper).init(params), jb.LbfgsbState)
    schedule = optax.constant_schedule(1.0)
    state = jb.add_bounds_penalty(lower, upper, scale=schedule).init(params)
    assert isinstance(state, jb.BoundsPenaltyState)
    box_report = jb.violations(params, lower, upper)
    assert isinstance(box_report, jb.ViolationReport)
    assert isinstance(box_report["x"], jb.PathViolations)
    set_report = jb.violations(params, jb.Constraints(("x", jb.Interval(0.0, 1.0))))
    assert isinstance(set_report, jb.ConstraintReport)
    assert all(isinstance(r, jb.RuleViolations) for r in set_report.rows)


def test_no_upper_reads_as_its_name_and_stays_one_object():
    sig = inspect.signature(jb.minimize)
    no_upper = sig.parameters["upper"].default
    assert repr(no_upper) == "NO_UPPER"
    assert "= NO_UPPER" in str(sig)
    assert "object at 0x" not in pydoc.render_doc(
        jb.violations, renderer=pydoc.plaintext
    )
    assert copy.deepcopy(no_upper) is no_upper
    assert pickle.loads(pickle.dumps(no_upper)) is no_upper
    # the sentinel still means "left out": a Constraints alone is accepted
    c = jb.Constraints(("x", jb.Interval(0.0, 1.0)))
    assert jb.violations({"x": jnp.array([0.5])}, c).ok
