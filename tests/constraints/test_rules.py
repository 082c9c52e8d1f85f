"""`Constraints` (jaxbounds/_constraints/_rules.py): rules, selectors, bounds, pytree.

References are hand-written: the rules given, the numbers given, the
messages' wording.
"""

import copy
import pickle

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxbounds as jb
from jaxbounds._constraints._declared import ExactPath
from jaxbounds._constraints._rules import (
    DYKSTRA_MAX_ITER,
    DYKSTRA_TOL,
    NO_UPPER,
    BoolTree,
    given_constraints,
)

# -- rules -----------------------------------------------------------------------


def test_bad_rule_and_bounds():
    with pytest.raises(TypeError, match="rule 0 must be"):
        jb.Constraints(("w", 1.0))
    with pytest.raises(TypeError, match="bounds must be"):
        jb.Constraints(bounds=1.0)


@pytest.mark.parametrize(
    "bad",
    [
        "w",  # no kind
        ("w",),  # a 1-tuple
        ("w", jb.MaxNorm(1.0), 0),  # a 3-tuple
        ["w", jb.MaxNorm(1.0)],  # a list is not a rule
        ("w", jb.MaxNorm),  # the class, not a kind
        (jb.MaxNorm(1.0), "w"),  # swapped
    ],
)
def test_every_malformed_rule_is_a_type_error_naming_its_index(bad):
    with pytest.raises(TypeError, match=r"rule 1 must be \(where, kind\).*got "):
        jb.Constraints(("v", jb.Interval(0.0, 1.0)), bad)


def test_rules_keep_their_order_and_relations_have_no_where():
    pred = lambda path, leaf: path.endswith("w")  # noqa: E731
    rel = jb.LessEqual("a", "b", 0.1)
    k0, k2 = jb.MaxNorm(2.0, axis=0), jb.Simplex()
    c = jb.Constraints(("*.w", k0), rel, (pred, k2))
    assert c.rules == (("*.w", k0), (None, rel), (pred, k2))
    assert c.kinds == (k0, rel, k2)
    assert c.wheres == ("*.w", None, pred)
    assert c.box is None
    assert (c.tol, c.max_iter) == (DYKSTRA_TOL, DYKSTRA_MAX_ITER) == (1e-6, 1000)
    assert jb.Constraints(tol=1e-3, max_iter=7).tol == 1e-3
    assert jb.Constraints().rules == ()


def test_name_reads_as_the_messages_do():
    def wanted(path, leaf):
        return True

    tree = {"w": True, "b": False}
    c = jb.Constraints(
        ("*.w", jb.MaxNorm(1.0)),
        jb.LessEqual("lif.tau_syn", "lif.tau_mem"),
        (wanted, jb.Simplex()),
        (lambda p, x: True, jb.Ordered()),
        (tree, jb.Interval(0.0, 1.0)),
        (ExactPath("dense.w"), jb.UnitNorm()),
    )
    assert [c.name(i) for i in range(6)] == [
        "rule 0 ('*.w', MaxNorm)",
        "rule 1 LessEqual('lif.tau_syn', 'lif.tau_mem')",
        "rule 2 (wanted, Simplex)",
        "rule 3 (<lambda>, Ordered)",
        "rule 4 (<bool tree>, Interval)",
        "rule 5 ('dense.w', UnitNorm)",
    ]


# -- selectors: static and hashable ----------------------------------------------


def test_bool_tree_selector_is_stored_hashable_and_round_trips():
    tree = {"a": 1, "b": [0, None, True], "c": np.bool_(False)}
    c = jb.Constraints((tree, jb.Interval(0.0, 1.0)))
    (where,) = c.wheres
    assert isinstance(where, BoolTree)
    assert where.leaves == (True, False, None, True, False)  # truthiness, holes kept
    assert where.tree() == {"a": True, "b": [False, None, True], "c": False}
    assert tree == {"a": 1, "b": [0, None, True], "c": np.bool_(False)}  # not mutated
    assert repr(where) == "<bool tree>"


def test_bool_trees_are_equal_and_hash_equal_by_structure_and_values():
    a = BoolTree({"w": True, "b": False})
    same = BoolTree({"w": 1, "b": 0})
    other_values = BoolTree({"w": False, "b": True})
    other_structure = BoolTree([True, False])
    assert a == same and hash(a) == hash(same)
    assert a != other_values and a != other_structure
    assert a != {"w": True, "b": False}  # only a BoolTree equals a BoolTree
    assert len({a, same, other_values, other_structure}) == 3


def test_exact_path_is_equal_and_hash_equal_by_its_path():
    a, b = ExactPath("dense.w"), ExactPath("dense.w")
    assert a == b and hash(a) == hash(b) and a != ExactPath("dense.b")
    assert a != "dense.w"
    assert a("dense.w", None) and not a("dense.weight", None)
    assert repr(a) == "'dense.w'"


def test_equal_selectors_give_equal_treedefs_so_jit_reuses_its_compilation():
    traces = []

    @jax.jit
    def f(params, c):
        traces.append(1)
        return jb.project(params, c)

    params = {"w": jnp.array([2.0, -1.0]), "b": jnp.array([3.0])}
    c1 = jb.Constraints(({"w": True, "b": False}, jb.Interval(0.0, 1.0)))
    c2 = jb.Constraints(({"w": True, "b": False}, jb.Interval(0.0, 0.5)))
    c3 = jb.Constraints(({"w": False, "b": True}, jb.Interval(0.0, 1.0)))
    assert jax.tree.structure(c1) == jax.tree.structure(c2)
    assert jax.tree.structure(c1) != jax.tree.structure(c3)
    np.testing.assert_array_equal(f(params, c1)["w"], [1.0, 0.0])
    np.testing.assert_array_equal(f(params, c2)["w"], [0.5, 0.0])  # no new trace
    assert len(traces) == 1
    out = f(params, c3)
    np.testing.assert_array_equal(out["w"], [2.0, -1.0])
    np.testing.assert_array_equal(out["b"], [1.0])
    assert len(traces) == 2


# -- bounds ----------------------------------------------------------------------


def test_bounds_as_a_pair_or_a_box():
    lower, upper = {"w": 0.0, "b": None}, {"w": None, "b": jnp.array([1.0])}
    for c in (
        jb.Constraints(bounds=(lower, upper)),
        jb.Constraints(bounds=[lower, upper]),
    ):
        assert isinstance(c.box, jb.Box)
        assert c.box.lower is lower and c.box.upper is upper
    box = jb.Box(lower, upper)
    assert jb.Constraints(bounds=box).box is box
    for bad in (1.0, (lower,), (lower, upper, upper)):
        with pytest.raises(
            TypeError, match=r"bounds must be \(lower, upper\) or a Box"
        ):
            jb.Constraints(bounds=bad)


def test_bounds_project_like_the_clip_they_describe():
    params = {"w": jnp.array([-1.0, 0.5, 2.0]), "b": jnp.array([3.0])}
    c = jb.Constraints(bounds=({"w": 0.0, "b": None}, {"w": 1.0, "b": 2.5}))
    out = jb.project(params, c)
    np.testing.assert_array_equal(out["w"], [0.0, 0.5, 1.0])
    np.testing.assert_array_equal(out["b"], [2.5])


# -- a pytree of numbers ---------------------------------------------------------


def test_constraints_is_a_pytree_of_numbers():
    c = jb.Constraints(
        ("w", jb.MaxNorm(2.0, axis=0)),
        jb.LessEqual("a", "b", 0.1),
        bounds=({"w": 0.0}, {"w": None}),
    )
    assert jax.tree.leaves(c) == [2.0, 0.1, 0.0]
    c2 = jax.tree.map(lambda x: x * 2, c)
    assert c2.kinds[0].max_value == 4.0 and c2.kinds[0].axis == 0
    assert eqx.tree_equal(jax.tree.structure(c), jax.tree.structure(c2))


def test_changing_a_number_keeps_the_treedef_and_the_compilation():
    def make(r, margin, lo):
        return jb.Constraints(
            ("w", jb.MaxNorm(r, axis=0)),
            ("t", jb.Interval(lo, 5.0)),
            jb.LessEqual("a", "b", margin),
            tol=1e-4,
        )

    c, d = make(1.0, 0.1, 0.0), make(3.0, 0.5, -1.0)
    assert jax.tree.leaves(c) == [1.0, 0.0, 5.0, 0.1]
    assert jax.tree.leaves(d) == [3.0, -1.0, 5.0, 0.5]
    assert jax.tree.structure(c) == jax.tree.structure(d)
    # statics are the selectors, axes and tolerances: a change is a new treedef
    assert jax.tree.structure(c) != jax.tree.structure(
        jb.Constraints(
            ("w", jb.MaxNorm(1.0, axis=1)),
            ("t", jb.Interval(0.0, 5.0)),
            jb.LessEqual("a", "b", 0.1),
            tol=1e-4,
        )
    )

    traces = []

    @jax.jit
    def cost(params, c):
        traces.append(1)
        return jb.constraint_cost(params, c, penalty="linear")

    params = {
        "w": jnp.array([[3.0], [4.0]]),
        "t": jnp.array([-2.0]),
        "a": jnp.array(1.0),
        "b": jnp.array(1.0),
    }
    # hand-computed: ||w|| = 5; t below lo; a - b + margin over sqrt(2)
    np.testing.assert_allclose(cost(params, c), 4.0 + 2.0 + 0.1 / np.sqrt(2))
    np.testing.assert_allclose(cost(params, d), 2.0 + 1.0 + 0.5 / np.sqrt(2))
    assert len(traces) == 1


def test_numbers_batch_under_vmap():
    params = {"w": jnp.array([3.0, 4.0])}
    radii = jnp.array([1.0, 2.5, 10.0])
    cs = jax.vmap(lambda r: jb.Constraints(("w", jb.MaxNorm(r))))(radii)
    norms = jax.vmap(lambda c: jnp.linalg.norm(jb.project(params, c)["w"]))(cs)
    np.testing.assert_allclose(norms, [1.0, 2.5, 5.0], rtol=1e-6)


# -- the two call forms ----------------------------------------------------------


def test_given_constraints_and_no_upper():
    c = jb.Constraints(("w", jb.Interval(0.0, 1.0)))
    assert given_constraints(c, NO_UPPER, "f") is c
    lower, upper = {"w": 0.0}, {"w": 1.0}
    assert given_constraints(lower, upper, "f") is None
    assert given_constraints(lower, None, "f") is None  # None: no upper bound
    with pytest.raises(TypeError, match=r"^minimize: pass a Constraints alone"):
        given_constraints(c, upper, "minimize")
    with pytest.raises(TypeError, match=r"^minimize: pass a Constraints alone"):
        given_constraints(c, None, "minimize")
    with pytest.raises(TypeError, match=r"^constrain: `upper` is missing"):
        given_constraints(lower, NO_UPPER, "constrain")


def test_no_upper_is_one_instance_through_copies_and_pickles():
    assert repr(NO_UPPER) == "NO_UPPER"
    assert copy.copy(NO_UPPER) is NO_UPPER and copy.deepcopy(NO_UPPER) is NO_UPPER
    assert pickle.loads(pickle.dumps(NO_UPPER)) is NO_UPPER
    assert NO_UPPER is not None and NO_UPPER != None  # noqa: E711
