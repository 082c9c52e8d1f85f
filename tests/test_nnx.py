"""flax nnx as a first-class client: paths, one bound tree for every view, training.

The numbers are checked against the same model written as a plain dict of
arrays (its "twin": the same initial values, the same loss written with
dict indexing) and against NumPy.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import textwrap
import warnings

import numpy as np
import pytest

nnx = pytest.importorskip("flax.nnx")

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import optax  # noqa: E402

import jaxbounds as jb  # noqa: E402

from helpers import gradient_steps, numpy_exp_grad, numpy_tree_cost  # noqa: E402

DT = 1e-3
TAU0 = [np.array([0.01, 0.05]), np.array([0.02, 0.03, 0.04])]
W0 = [np.array([0.5, -0.25]), np.array([1.0, 0.5, -0.5])]
TH0 = [np.ones(2), np.full(3, 1.25)]
PATHS = [
    "cells.0.tau",
    "cells.0.threshold",
    "cells.0.w",
    "cells.1.tau",
    "cells.1.threshold",
    "cells.1.w",
]


class Cell(nnx.Module):
    def __init__(self, i: int, declare: bool = True):
        kw = dict(lower=DT, upper=0.2, family="taus") if declare else {}
        self.tau = nnx.Param(jnp.asarray(TAU0[i], jnp.float32), **kw)
        self.threshold = nnx.Param(
            jnp.asarray(TH0[i], jnp.float32), family="thresholds"
        )
        self.w = nnx.Param(jnp.asarray(W0[i], jnp.float32))
        self.spikes = nnx.BatchStat(jnp.zeros(len(TAU0[i]), jnp.float32))
        self.n = len(TAU0[i])  # a static Python int


class Net(nnx.Module):
    def __init__(self, declare: bool = True):
        self.cells = nnx.List([Cell(0, declare), Cell(1, declare)])

    def loss(self) -> jax.Array:
        total = 0.0
        for c in self.cells:
            decay = jnp.exp(-DT / c.tau[...])
            total += jnp.sum((c.w[...] * decay - 0.3) ** 2)
            total += 100.0 * jnp.sum((c.tau[...] - 0.0005) ** 2)
            total += jnp.sum((c.threshold[...] - 1.5) ** 2)
        return total


def twin() -> dict:
    """The model's parameters as a plain dict, built independently of nnx."""
    return {
        "cells": {
            i: {
                "tau": jnp.asarray(TAU0[i], jnp.float32),
                "threshold": jnp.asarray(TH0[i], jnp.float32),
                "w": jnp.asarray(W0[i], jnp.float32),
            }
            for i in range(2)
        }
    }


def twin_loss(p: dict) -> jax.Array:
    total = 0.0
    for i in range(2):
        c = p["cells"][i]
        decay = jnp.exp(-DT / c["tau"])
        total += jnp.sum((c["w"] * decay - 0.3) ** 2)
        total += 100.0 * jnp.sum((c["tau"] - 0.0005) ** 2)
        total += jnp.sum((c["threshold"] - 1.5) ** 2)
    return total


def twin_bounds() -> tuple[dict, dict]:
    """The declared bounds, written out by hand for the twin."""
    lo = {
        "cells": {
            i: {"tau": DT, "threshold": -math.inf, "w": -math.inf} for i in (0, 1)
        }
    }
    up = {
        "cells": {i: {"tau": 0.2, "threshold": math.inf, "w": math.inf} for i in (0, 1)}
    }
    return lo, up


def pure(x) -> dict:
    """Params of a Module or State as nested dicts (nnx's own conversion)."""
    if isinstance(x, nnx.Module):
        x = nnx.state(x, nnx.Param)
    return nnx.to_pure_dict(x)


def views(model) -> dict:
    """Every way an nnx user holds the model's parameters."""
    state = nnx.state(model, nnx.Param)
    _, split_params, _ = nnx.split(model, nnx.Param, ...)
    return {
        "module": model,
        "state": state,
        "split": split_params,
        "as_pure": nnx.as_pure(state),
        "pure_dict": nnx.to_pure_dict(state),
    }


def assert_trees_close(a, b, **kw):
    la, ta = jax.tree.flatten(a)
    lb, tb = jax.tree.flatten(b)
    assert ta == tb, (ta, tb)
    for x, y in zip(la, lb):
        np.testing.assert_allclose(np.asarray(x), np.asarray(y), **kw)


# -- paths -------------------------------------------------------------------------


@pytest.mark.parametrize("view", ["module", "state", "split", "as_pure", "pure_dict"])
def test_paths_name_the_attributes_in_every_view(view):
    tree = views(Net())[view]
    assert jb.paths(tree) == PATHS  # no ".value", no BatchStat, no static int
    assert jb.mask(tree, "*tau") == {
        "cells": {i: {"tau": True, "threshold": False, "w": False} for i in (0, 1)}
    }
    lower, _ = jb.make_bounds(tree)
    lower = jb.set_where(lower, "*threshold", 0.5)
    assert [p for p in jb.paths(lower) if p.endswith("threshold")] == [
        "cells.0.threshold",
        "cells.1.threshold",
    ]


def test_a_glob_that_matches_nothing_names_the_attribute_paths():
    with pytest.raises(ValueError, match="cells.0.tau"):
        jb.mask(nnx.state(Net(), nnx.Param), "*tua")


# -- one bound tree, every view -------------------------------------------------------


def test_bounds_from_any_view_are_the_same_plain_dicts():
    model = Net(declare=False)
    made = {name: jb.make_bounds(v) for name, v in views(model).items()}
    first = made["pure_dict"]
    for name, (lo, up) in made.items():
        assert type(lo) is dict and type(up) is dict, name
        assert lo == first[0] and up == first[1], name
        assert jax.tree.structure(lo) == jax.tree.structure(pure(model)), name


@pytest.mark.parametrize(
    "made_from", ["module", "state", "split", "as_pure", "pure_dict"]
)
def test_one_bound_tree_serves_every_view(made_from):
    model = Net(declare=False)
    every = views(model)
    lower, upper = jb.make_bounds(every[made_from])
    lower = jb.set_where(lower, "*tau", 0.015)
    upper = jb.set_where(upper, "*w", 0.75)
    expected = numpy_tree_cost(pure(model), lower, upper)
    # tau 0.01 < 0.015 (once), w 1.0 > 0.75 (once)
    assert expected == pytest.approx(
        math.exp(np.float32(0.015) - np.float32(0.01)) + math.exp(1.0 - 0.75), rel=1e-12
    )
    for name, tree in every.items():
        cost = jb.bounds_cost(tree, lower, upper)
        assert float(cost) == pytest.approx(expected, rel=1e-6), name
        assert float(jax.jit(jb.bounds_cost)(tree, lower, upper)) == pytest.approx(
            expected, rel=1e-6
        ), name


def test_a_full_split_state_has_more_than_the_params_and_the_error_says_so():
    model = Net()
    lower, upper = jb.make_bounds(model)  # the nnx.Param variables only
    _, full = nnx.split(model)  # also holds the BatchStat `spikes`
    with pytest.raises(ValueError, match=r"no entry for 'cells\.0\.spikes'"):
        jb.bounds_cost(full, lower, upper)
    _, params, _ = nnx.split(model, nnx.Param, ...)
    assert float(jb.bounds_cost(params, lower, upper)) == 0.0


def test_bounds_for_another_model_name_the_missing_attribute():
    lower, upper = jb.make_bounds(Net())
    del lower["cells"][1]["w"]
    with pytest.raises(ValueError, match=r"cells\.1\.w"):
        jb.bounds_cost(nnx.state(Net(), nnx.Param), lower, upper)


# -- declared bounds and families ---------------------------------------------------


def test_declared_bounds_are_honoured_by_make_bounds():
    model = Net()
    expected = twin_bounds()
    for name in ("module", "state", "split"):
        assert jb.make_bounds(views(model)[name]) == expected, name
    # a pure State has lost the metadata: unbounded templates
    lo, up = jb.make_bounds(nnx.as_pure(nnx.state(model, nnx.Param)))
    assert set(jax.tree.leaves(lo)) == {-math.inf}
    assert set(jax.tree.leaves(up)) == {math.inf}


def test_declared_bounds_cost_as_the_twin_with_the_bounds_written_out():
    model = Net()
    model.cells[1].tau[...] = jnp.array([0.0005, 0.3, 0.1], jnp.float32)
    lower, upper = jb.make_bounds(model)
    p = pure(model)
    expected = numpy_tree_cost(p, *twin_bounds())
    assert expected == pytest.approx(
        math.exp(np.float32(DT) - np.float32(0.0005))
        + math.exp(np.float32(0.3) - np.float32(0.2)),
        rel=1e-6,
    )
    assert float(jb.bounds_cost(model, lower, upper)) == pytest.approx(
        expected, rel=1e-6
    )
    assert float(jb.bounds_cost(p, *twin_bounds())) == pytest.approx(expected, rel=1e-6)


@pytest.mark.parametrize(
    "kw, err, match",
    [
        (dict(lower="0"), TypeError, r"lower=.*'tau'.*real number"),
        (dict(upper=jnp.ones(2)), TypeError, r"upper=.*'tau'"),
        (dict(lower=0.5, upper=0.1), ValueError, r"'tau'.*lower > upper"),
        (dict(lower=float("nan")), ValueError, r"'tau'.*NaN"),
        (dict(lower=True), TypeError, r"'tau'.*bool"),
        (dict(family=3), TypeError, r"family=.*'tau'.*str"),
    ],
)
def test_bad_declarations_name_the_path(kw, err, match):
    class M(nnx.Module):
        def __init__(self):
            self.tau = nnx.Param(jnp.ones(2), **kw)

    with pytest.raises(err, match=match):
        jb.make_bounds(M())


def test_zero_width_declaration_is_accepted():
    class M(nnx.Module):
        def __init__(self):
            self.tau = nnx.Param(jnp.ones(2), lower=0.5, upper=0.5)

    assert jb.make_bounds(M()) == ({"tau": 0.5}, {"tau": 0.5})


def test_family_mask_on_models_and_states():
    model = Net()
    expected = {
        "cells": {i: {"tau": True, "threshold": False, "w": False} for i in (0, 1)}
    }
    assert jb.family_mask(model, "taus") == expected
    assert jb.family_mask(nnx.state(model, nnx.Param), "taus") == expected
    thresholds = jb.family_mask(model, "thresholds")
    assert jb.paths(thresholds) == PATHS
    lower, _ = jb.make_bounds(model)
    lower = jb.set_where(lower, thresholds, 0.5)
    assert lower["cells"][1]["threshold"] == 0.5
    assert lower["cells"][1]["tau"] == DT and lower["cells"][1]["w"] == -math.inf
    with pytest.raises(ValueError, match="'taus'"):
        jb.family_mask(model, "tau")


# -- outputs come back as the kind that went in ---------------------------------------


def test_clip_returns_the_kind_that_went_in_and_mutates_nothing():
    model = Net()
    model.cells[0].tau[...] = jnp.array([-1.0, 0.5], jnp.float32)
    lower, upper = jb.make_bounds(model)
    before = pure(model)
    expected = jax.tree.map(
        lambda p, lo, up: np.clip(np.asarray(p), np.float32(lo), np.float32(up)),
        before,
        lower,
        upper,
    )

    clipped = jb.clip_to_bounds(model, lower, upper)
    assert isinstance(clipped, Net) and clipped is not model
    assert_trees_close(pure(clipped), expected, rtol=0, atol=0)
    assert_trees_close(pure(model), before, rtol=0, atol=0)  # input untouched
    clipped.cells[0].spikes[...] = jnp.ones(
        2, jnp.float32
    )  # the copy shares no Variable
    assert float(model.cells[0].spikes[...].sum()) == 0.0

    state = nnx.state(model, nnx.Param)
    cstate = jb.clip_to_bounds(state, lower, upper)
    assert isinstance(cstate, nnx.State)
    assert isinstance(cstate["cells"][0]["tau"], nnx.Param)
    assert cstate["cells"][0]["tau"].get_metadata()["lower"] == DT  # metadata kept
    assert_trees_close(nnx.to_pure_dict(cstate), expected, rtol=0, atol=0)

    pure_state = nnx.as_pure(state)
    cpure = jb.clip_to_bounds(pure_state, lower, upper)
    assert jax.tree.structure(cpure) == jax.tree.structure(pure_state)

    nnx.update(model, cstate)
    assert float(jb.bounds_cost(model, lower, upper)) == 0.0


def test_a_single_variable():
    v = nnx.Param(jnp.array([-1.0, 0.5, 2.0], jnp.float32))
    assert jb.paths(v) == [""]
    assert float(jb.bounds_cost(v, 0.0, 1.0)) == pytest.approx(2 * math.e, rel=1e-6)
    c = jb.clip_to_bounds(v, 0.0, 1.0)
    assert isinstance(c, nnx.Param)
    np.testing.assert_array_equal(c[...], [0.0, 0.5, 1.0])


# -- training ----------------------------------------------------------------------


def train_nnx(tx, steps: int) -> Net:
    model = Net()
    opt = nnx.Optimizer(model, tx, wrt=nnx.Param)

    @nnx.jit
    def step(model, opt):
        grads = nnx.grad(lambda m: m.loss())(model)
        opt.update(model, grads)

    for _ in range(steps):
        step(model, opt)
    return model


def train_twin(tx, steps: int) -> dict:
    return gradient_steps(tx, twin_loss, twin(), steps)[0]


def test_nnx_optimizer_with_project_to_bounds_matches_the_twin():
    lower, upper = jb.make_bounds(Net())
    tx = optax.chain(optax.adam(5e-3), jb.project_to_bounds(lower, upper))
    model = train_nnx(tx, 40)
    got = pure(model)
    want = train_twin(
        optax.chain(optax.adam(5e-3), jb.project_to_bounds(*twin_bounds())), 40
    )
    assert_trees_close(got, want, rtol=1e-6, atol=1e-9)
    # the loss pulls tau towards 0.0005, below the declared lower bound:
    # projected exactly onto it (DT in float32 is just above DT), never below
    lo32 = np.float32(DT)
    taus = np.concatenate([np.asarray(got["cells"][i]["tau"]) for i in (0, 1)])
    assert np.all(taus >= lo32) and np.all(taus <= np.float32(0.2))
    assert np.sum(taus == lo32) == 3, taus  # the other two settle inside
    # and without the projection it does leave the box
    free = pure(train_nnx(optax.adam(5e-3), 40))
    assert np.any(np.asarray(free["cells"][0]["tau"]) < lo32)
    assert float(jb.bounds_cost(model, lower, upper)) == 0.0


def test_nnx_optimizer_with_add_bounds_penalty_matches_numpy_and_the_twin():
    lower, upper = jb.make_bounds(Net())
    lr, scale = 1e-3, 0.5
    tx = optax.chain(jb.add_bounds_penalty(lower, upper, scale), optax.sgd(lr))
    start = Net()
    start.cells[0].tau[...] = jnp.array([-0.5, 0.5], jnp.float32)  # both outside
    model = nnx.clone(start)
    opt = nnx.Optimizer(model, tx, wrt=nnx.Param)
    grads = nnx.grad(lambda m: m.loss())(model)
    opt.update(model, grads)
    # one SGD step on loss + scale * penalty, in NumPy
    g = nnx.to_pure_dict(grads)
    p0 = pure(start)
    tau0 = np.asarray(p0["cells"][0]["tau"], np.float64)
    want_tau = tau0 - lr * (
        np.asarray(g["cells"][0]["tau"], np.float64)
        + scale * numpy_exp_grad(tau0, DT, 0.2)
    )
    np.testing.assert_allclose(pure(model)["cells"][0]["tau"], want_tau, rtol=1e-6)
    want_w = np.asarray(p0["cells"][1]["w"]) - lr * np.asarray(g["cells"][1]["w"])
    np.testing.assert_allclose(pure(model)["cells"][1]["w"], want_w, rtol=1e-6)
    # many steps: the same as the twin trained with the bounds written out
    got = pure(train_nnx(tx, 30))
    want = train_twin(
        optax.chain(jb.add_bounds_penalty(*twin_bounds(), scale), optax.sgd(lr)), 30
    )
    assert_trees_close(got, want, rtol=1e-6, atol=1e-9)


def test_masked_optimizer_with_a_state_mask():
    model = Net()
    lower, upper = jb.make_bounds(model)
    frozen = nnx.State(jb.mask(model, "*w"))  # optax.masked needs a State
    tx = optax.chain(
        optax.sgd(1.0),
        optax.masked(optax.set_to_zero(), frozen),
        jb.project_to_bounds(lower, upper),
    )
    opt = nnx.Optimizer(model, tx, wrt=nnx.Param)
    before = pure(model)
    opt.update(model, nnx.grad(lambda m: m.loss())(model))
    after = pure(model)
    for i in (0, 1):
        np.testing.assert_array_equal(after["cells"][i]["w"], before["cells"][i]["w"])
        assert np.all(np.asarray(after["cells"][i]["tau"]) >= np.float32(DT))
        assert not np.array_equal(after["cells"][i]["tau"], before["cells"][i]["tau"])


def test_bounds_cost_inside_nnx_jit_and_value_and_grad():
    model = Net()
    model.cells[0].tau[...] = jnp.array([-0.5, 0.5], jnp.float32)
    lower, upper = jb.make_bounds(model)

    @nnx.jit
    def f(model):
        return nnx.value_and_grad(lambda m: m.loss() + jb.bounds_cost(m, lower, upper))(
            model
        )

    value, grads = f(model)
    tau = np.asarray(pure(model)["cells"][0]["tau"], np.float64)
    want_value = float(twin_loss(pure(model))) + numpy_tree_cost(
        pure(model), lower, upper
    )
    assert float(value) == pytest.approx(want_value, rel=1e-6)
    assert isinstance(grads, nnx.State)
    g_twin = jax.grad(twin_loss)(pure(model))["cells"][0]["tau"]
    np.testing.assert_allclose(
        nnx.to_pure_dict(grads)["cells"][0]["tau"],
        np.asarray(g_twin, np.float64) + numpy_exp_grad(tau, DT, 0.2),
        rtol=1e-6,
    )
    # on the State inside jax.jit, bounds as arguments
    state = nnx.state(model, nnx.Param)
    jitted = jax.jit(jb.bounds_cost)(state, lower, upper)
    assert float(jitted) == pytest.approx(
        numpy_tree_cost(pure(model), lower, upper), rel=1e-6
    )


# -- constrain, violations, save / load -----------------------------------------------


def test_constrain_unconstrain_on_states_as_on_the_twin():
    model = Net()
    lower, upper = jb.make_bounds(model)
    upper = jb.set_where(upper, "*threshold", 2.0)  # a one-sided box too
    state = nnx.state(model, nnx.Param)
    raw = jb.unconstrain(state, lower, upper)
    assert isinstance(raw, nnx.State)
    raw_twin = jb.unconstrain(
        twin(), *twin_bounds()[:1], jb.set_where(twin_bounds()[1], "*threshold", 2.0)
    )
    assert_trees_close(nnx.to_pure_dict(raw), raw_twin, rtol=1e-6)
    # tau = lo + (up - lo) * sigmoid(raw), in NumPy
    r = np.asarray(nnx.to_pure_dict(raw)["cells"][1]["tau"], np.float64)
    np.testing.assert_allclose(DT + (0.2 - DT) / (1 + np.exp(-r)), TAU0[1], rtol=1e-5)
    back = jb.constrain(raw, lower, upper)
    assert isinstance(back, nnx.State)
    assert_trees_close(nnx.to_pure_dict(back), pure(model), rtol=1e-5)
    pure_back = jb.constrain(nnx.as_pure(raw), lower, upper)
    assert jax.tree.structure(pure_back) == jax.tree.structure(nnx.as_pure(state))
    # any raw value maps inside
    wild = jax.tree.map(lambda x: x * 0 + 50.0, nnx.as_pure(raw))
    assert float(jb.bounds_cost(jb.constrain(wild, lower, upper), lower, upper)) == 0.0


def test_violations_report_attribute_paths():
    model = Net()
    model.cells[1].tau[...] = jnp.array([0.0005, 0.3, 0.1], jnp.float32)
    lower, upper = jb.make_bounds(model)
    text = str(jb.violations(nnx.state(model, nnx.Param), lower, upper))
    assert "cells.1.tau" in text and ".value" not in text
    assert "cells.0.tau" not in text
    assert str(jb.violations(model, lower, upper)) == text


def test_save_and_load_bounds_keyed_by_attribute_path(tmp_path):
    model = Net()
    lower, upper = jb.make_bounds(model)
    upper = jb.set_where(upper, "cells.1.w", jnp.array([1.0, 2.0, 3.0]))
    path = tmp_path / "bounds.json"
    jb.save_bounds(path, lower, upper)
    saved = json.loads(path.read_text())["bounds"]
    assert sorted(saved) == PATHS
    assert saved["cells.0.tau"] == {"lower": DT, "upper": 0.2}
    for like in views(model).values():
        lo, up = jb.load_bounds(path, like=like)
        assert lo == lower
        assert jax.tree.structure(up) == jax.tree.structure(upper)
        np.testing.assert_array_equal(up["cells"][1]["w"], [1.0, 2.0, 3.0])


# -- flax stays optional -------------------------------------------------------------


def run_python(code: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
    env["JAX_PLATFORMS"] = "cpu"
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )


@pytest.mark.slow
def test_import_jaxbounds_works_without_flax():
    run = run_python(
        """
        import sys
        sys.modules["flax"] = None  # as if flax were not installed
        import jax.numpy as jnp
        import jaxbounds as jb
        params = {"tau": jnp.array([-1.0, 0.5])}
        lower, upper = jb.make_bounds(params)
        lower = jb.set_where(lower, "tau", 0.0)
        print(jb.bounds_cost(params, lower, upper), jb.paths(params))
        try:
            import flax.nnx
        except ImportError:
            print("flax blocked")
        """
    )
    assert run.returncode == 0, run.stderr
    assert run.stdout.split() == ["2.7182817", "['tau']", "flax", "blocked"]


@pytest.mark.slow
def test_importing_and_using_jaxbounds_does_not_import_flax():
    run = run_python(
        """
        import sys
        import equinox as eqx, jax, jax.numpy as jnp, optax
        import jaxbounds as jb
        mlp = eqx.nn.MLP(2, 1, 3, 1, key=jax.random.key(0))
        lower, upper = jb.make_bounds(mlp)
        jb.bounds_cost(mlp, lower, upper)
        jb.family_mask
        jb.clip_to_bounds({"a": jnp.ones(2)}, {"a": 0.0}, {"a": 0.5})
        print(sorted(m for m in sys.modules if m == "flax" or m.startswith("flax.")))
        """
    )
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == "[]"


def test_deprecation_free():
    """The view uses no deprecated flax API (State.to_pure_dict warns)."""
    with warnings.catch_warnings():
        warnings.simplefilter("error", DeprecationWarning)
        model = Net()
        lower, upper = jb.make_bounds(model)
        jb.bounds_cost(nnx.state(model, nnx.Param), lower, upper)
        jb.clip_to_bounds(model, lower, upper)
