"""Rules resolved against params: each error names the rule and the path."""

import jax
import jax.numpy as jnp
import pytest

import jaxbounds as jb

PARAMS = {
    "dense": {"weight": jnp.ones((3, 2)), "bias": jnp.zeros(2), "scale": jnp.ones(3)},
    "lif": {"tau_syn": jnp.ones(2), "tau_mem": jnp.ones(2), "n": jnp.arange(2)},
}


def _resolve(*rules, **kw):
    from jaxbounds._constraints._resolve import resolve

    return resolve(PARAMS, jb.Constraints(*rules, **kw))


def test_selectors_glob_predicate_bool_tree():
    by_glob = _resolve(("*.weight", jb.MaxNorm(1.0, axis=0))).res
    by_pred = _resolve((lambda p, x: p.endswith("weight"), jb.MaxNorm(1.0, axis=0))).res
    tree = jax.tree.map(lambda _: False, PARAMS)
    tree["dense"]["weight"] = True
    by_tree = _resolve((tree, jb.MaxNorm(1.0, axis=0))).res
    assert by_glob.on_leaf == by_pred.on_leaf == by_tree.on_leaf
    assert [by_glob.paths[j] for j, _ in by_glob.on_leaf] == ["dense.weight"]


def test_mixed_match_skips_non_float_leaves():
    res = _resolve(("lif.*", jb.Interval(0.0, 1.0))).res
    assert sorted(res.paths[j] for j, _ in res.on_leaf) == [
        "lif.tau_mem",
        "lif.tau_syn",
    ]


def test_selector_matches_nothing():
    with pytest.raises(ValueError, match=r"rule 0 \('\*.wieght', MaxNorm\).*nearest"):
        _resolve(("*.wieght", jb.MaxNorm(1.0)))


def test_selector_matches_only_non_float():
    with pytest.raises(TypeError, match=r"rule 0 \('lif.n', Interval\).*'lif.n'"):
        _resolve(("lif.n", jb.Interval(0.0, 1.0)))


def test_relation_path_not_a_parameter():
    with pytest.raises(
        ValueError, match=r"rule 1 LessEqual.*'lif.tau_x' is not a param"
    ):
        _resolve(
            ("*.weight", jb.MaxNorm(1.0)), jb.LessEqual("lif.tau_syn", "lif.tau_x")
        )
    with pytest.raises(ValueError, match="'lif.n' is not a parameter"):
        _resolve(jb.LessEqual("lif.n", "lif.tau_mem"))


def test_relation_cycle_names_every_rule():
    with pytest.raises(ValueError, match=r"cycle.*rule 0.*rule 1.*rule 2"):
        _resolve(
            jb.LessEqual("lif.tau_syn", "lif.tau_mem"),
            jb.LessEqual("lif.tau_mem", "dense.bias"),
            jb.LessEqual("dense.bias", "lif.tau_syn"),
        )


def test_relation_shapes_must_broadcast():
    _resolve(jb.LessEqual("lif.tau_syn", "dense.weight"))  # (2,) and (3, 2): fine
    with pytest.raises(
        ValueError, match=r"rule 0 LessEqual.*\(3,\).*\(2,\).*broadcast"
    ):
        _resolve(jb.LessEqual("dense.scale", "dense.bias"))


def test_axis_out_of_range_names_path():
    with pytest.raises(
        ValueError, match=r"rule 0 .* at path 'dense.bias': axis 1 is out"
    ):
        _resolve(("dense.*", jb.MaxNorm(1.0, axis=1)))


def test_non_positive_concrete_numbers():
    for make in (
        lambda: jb.MaxNorm(0.0),
        lambda: jb.Simplex(-1.0),
        lambda: jb.MinMaxNorm(0.0, -1.0),
    ):
        with pytest.raises(ValueError, match="> 0"):
            make()
