"""jaxbounds._validate: the one scalar-bound validator, order and shape checks."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxbounds._validate import bound_side, check_order, scalar_bound


def where() -> str:
    return "'p'"


@pytest.mark.parametrize(
    "value, side, expected",
    [
        (0.5, "lower", 0.5),
        (1, "upper", 1.0),  # ints are numbers
        (np.float32(0.25), "lower", 0.25),
        (-math.inf, "lower", -math.inf),  # the open side
        (math.inf, "upper", math.inf),
        (jnp.ones(2), "lower", None),  # an array: not a scalar bound
    ],
)
def test_scalar_bound_returns_a_float_or_none_for_arrays(value, side, expected):
    got = scalar_bound(value, "x", side)
    assert got == expected and (got is None or type(got) is float)


@pytest.mark.parametrize(
    "value, side, error, match",
    [
        (True, "lower", TypeError, "x is a bool"),
        (np.bool_(False), "upper", TypeError, "x is a bool"),
        (math.nan, "lower", ValueError, "x is NaN"),
        (math.inf, "lower", ValueError, "x is inf: no value satisfies it"),
        (-math.inf, "upper", ValueError, "x is -inf: no value satisfies it"),
    ],
)
def test_scalar_bound_rejects_bools_nan_and_impossible_infinities(
    value, side, error, match
):
    with pytest.raises(error, match=match):
        scalar_bound(value, lambda: "x", side)


def test_check_order_names_the_first_crossing_element_and_nan():
    check_order(0.0, 1.0, where)
    check_order(None, -5.0, where)  # a missing side is its infinity
    check_order(jnp.zeros(3), jnp.ones(3), where)
    with pytest.raises(ValueError, match=r"lower > upper at 'p': 2.0 > 1.0"):
        check_order(2.0, 1.0, where)
    lo = np.array([[0.0, 3.0], [4.0, 0.0]])
    with pytest.raises(ValueError, match=r"at 'p', element \(0, 1\): 3.0 > 1.0"):
        check_order(lo, 1.0, where)
    with pytest.raises(ValueError, match=r"bound at 'p' contains NaN"):
        check_order(np.array([0.0, np.nan]), None, where)


def test_check_order_skips_traced_bounds():
    jax.jit(lambda lo: check_order(lo, 0.0, where) or lo)(jnp.ones(2))


def test_bound_side_opens_infinities_and_keeps_values():
    leaf = jnp.ones(3)
    assert bound_side(None, "lower", leaf, True, where) is None
    assert bound_side(-math.inf, "lower", leaf, True, where) is None
    assert bound_side(math.inf, "upper", leaf, True, where) is None
    assert bound_side(0.5, "upper", leaf, True, where) == 0.5
    arr = jnp.zeros(3)
    assert bound_side(arr, "lower", leaf, True, where) is arr


def test_bound_side_on_a_non_parameter_ignores_open_and_rejects_finite():
    assert bound_side(-math.inf, "lower", 3, False, where) is None
    assert bound_side(np.full(2, np.inf), "upper", 3, False, where) is None
    with pytest.raises(TypeError, match=r"finite bound on 'p' \(lower\), which"):
        bound_side(0.0, "lower", 3, False, where)


@pytest.mark.parametrize(
    "bound, error, match",
    [
        ("0", TypeError, "must be a float, an array or None, got str"),
        (jnp.zeros(3, jnp.complex64), TypeError, "dtype complex64"),
        (jnp.zeros((2, 3)), ValueError, r"shape \(2, 3\).*shape \(3,\)"),
    ],
)
def test_bound_side_rejects_other_types_and_shapes(bound, error, match):
    with pytest.raises(error, match=match):
        bound_side(bound, "lower", jnp.ones(3), True, where)
