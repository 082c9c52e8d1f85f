"""jaxbounds._declare: the declaration registry and the one declaration check."""

from __future__ import annotations

import math

import pytest

from jaxbounds._declare import (
    FAMILY_KEY,
    LOWER_KEY,
    UPPER_KEY,
    checked,
    declarations,
    register_declarations,
)


def test_checked_keeps_given_entries_as_floats():
    got = checked(0, 2.5, "taus", call="field")
    assert got == {LOWER_KEY: 0.0, UPPER_KEY: 2.5, FAMILY_KEY: "taus"}
    assert type(got[LOWER_KEY]) is float
    assert checked(call="field") == {}
    assert checked(upper=math.inf, call="field") == {UPPER_KEY: math.inf}


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        (dict(lower=[0.0]), TypeError, r"field\(lower=\.\.\.\) must be a real number"),
        (dict(upper=True), TypeError, r"field\(upper=\.\.\.\) is a bool"),
        (dict(lower=1.0, upper=0.0), ValueError, r"field\(lower=1.0, upper=0.0\)"),
        (dict(lower=math.nan), ValueError, "is NaN"),
        (dict(family=3), TypeError, r"field\(family=\.\.\.\) must be a str"),
    ],
)
def test_checked_rejects_malformed_declarations(kwargs, error, match):
    with pytest.raises(error, match=match):
        checked(**kwargs, call="field")


def test_checked_names_where_the_declaration_is():
    with pytest.raises(ValueError, match=r"nnx.Param\(lower=1.0, upper=0.0\) on 'a.b'"):
        checked(1.0, 0.0, call="nnx.Param", on="on 'a.b'")


def test_the_first_declarer_that_knows_a_tree_answers():
    class Marked(dict):
        pass

    def declarer(tree):
        return {"x": {LOWER_KEY: 1.0}} if isinstance(tree, Marked) else None

    register_declarations(declarer)
    register_declarations(declarer)  # registering twice is harmless
    assert declarations(Marked(x=1.0)) == {"x": {LOWER_KEY: 1.0}}
    assert declarations({"x": 1.0}) == {}
