"""jaxbounds._plan: one split of params into bounded leaves, one write-back."""

from __future__ import annotations

import math

import equinox as eqx
import jax
import jax.numpy as jnp
import pytest

from jaxbounds._plan import map_bounded, plan


def tree():
    return {
        "tau": jnp.array([0.5, 2.0]),
        "w": jnp.ones(3),
        "n": 3,
        "gain": 1.5,
        "hole": None,
    }


def test_plan_keeps_only_parameters_with_a_bounded_side():
    params = tree()
    lower = {"tau": 0.0, "w": -math.inf, "n": None, "gain": 1.0, "hole": None}
    upper = {"tau": 1.0, "w": None, "n": None, "gain": math.inf, "hole": None}
    pl = plan(params, lower, upper)
    # leaves in jax order: gain, hole, n, tau, w
    assert pl.names() == ["gain", "tau"]
    assert pl.lows == [1.0, 0.0] and pl.ups == [None, 1.0]
    assert pl.bounded()[0] == 1.5 and pl.bounded()[1] is params["tau"]


def test_every_param_plans_unbounded_parameters_too():
    params = tree()
    lower = {"tau": 0.0, "w": None, "n": None, "gain": None, "hole": None}
    upper = {"tau": None, "w": None, "n": None, "gain": None, "hole": None}
    pl = plan(params, lower, upper, every_param=True)
    assert pl.names() == ["gain", "tau", "w"]
    assert pl.lows == [None, 0.0, None] and pl.ups == [None, None, None]


def test_write_back_replaces_planned_leaves_and_keeps_the_rest_as_objects():
    params = tree()
    lower = {"tau": 0.0, "w": None, "n": None, "gain": 2.0, "hole": None}
    upper = {"tau": 1.0, "w": None, "n": None, "gain": None, "hole": None}
    pl = plan(params, lower, upper)
    out = pl.write_back(["G", "T"])
    assert out["gain"] == "G" and out["tau"] == "T"
    assert out["w"] is params["w"] and out["n"] == 3 and out["hole"] is None
    assert params["tau"] is not out["tau"]  # the input is untouched


def test_only_and_flat_like_write_into_another_tree():
    params = {"a": jnp.zeros(2), "b": jnp.zeros(2), "c": jnp.zeros(2)}
    bounds = ({"a": 0.0, "b": 0.0, "c": None}, {"a": 1.0, "b": 1.0, "c": None})
    pl = plan(params, *bounds)
    updates = {"a": jnp.ones(2), "b": None, "c": jnp.ones(2)}
    flat, restore = pl.flat_like(updates, "updates")
    sub = pl.only([u is not None for u in pl.pick(flat)])
    assert sub.names() == ["a"] and sub.lows == [0.0]
    out = sub.write_back(["A"], flat, restore)
    assert out == {"a": "A", "b": None, "c": updates["c"]}


def test_flat_like_names_what_is_missing():
    params = {"a": jnp.zeros(2), "b": jnp.zeros(1)}
    pl = plan(params, {"a": 0.0, "b": None}, {"a": None, "b": None})
    with pytest.raises(ValueError, match=r"`updates` has no entry for 'b'"):
        pl.flat_like({"a": jnp.zeros(2)}, "updates")


def test_map_bounded_without_bounds_returns_the_same_leaves():
    params = {"w": jnp.ones(2)}
    out = map_bounded(
        lambda *a: pytest.fail("called"), params, {"w": None}, {"w": None}
    )
    assert out["w"] is params["w"]


def test_python_float_fields_of_modules_are_not_planned():
    class Cell(eqx.Module):
        tau: jax.Array
        dt: float = 0.1

    cell = Cell(jnp.ones(2))
    pl = plan(cell, Cell(0.0, None), Cell(None, None))  # type: ignore[arg-type]
    assert pl.names() == ["tau"]
    with pytest.raises(TypeError, match=r"finite bound on 'dt'"):
        plan(cell, Cell(None, 0.0), Cell(None, None))  # type: ignore[arg-type]

    # a float inside a dict inside a module is the module's, too
    class Holder(eqx.Module):
        consts: dict

    with pytest.raises(TypeError, match=r"finite bound on 'consts.k'"):
        plan(Holder({"k": 0.5}), Holder({"k": 0.0}), Holder({"k": None}))
