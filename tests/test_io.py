"""save_bounds / load_bounds: portable JSON keyed by path, checked on load."""

import json
import math

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxbounds as jb
from jaxbounds._declare import LOWER_KEY, UPPER_KEY


def strict_json(text):
    """Parse as strict JSON: no NaN / Infinity extensions."""

    def refuse(name):
        raise ValueError(f"non-standard JSON constant {name}")

    return json.loads(text, parse_constant=refuse)


def assert_same_bounds(a, b):
    la, ta = jax.tree_util.tree_flatten(a, is_leaf=lambda x: x is None)
    lb, tb = jax.tree_util.tree_flatten(b, is_leaf=lambda x: x is None)
    assert ta == tb
    for x, y in zip(la, lb):
        assert type(x) is type(y) or (hasattr(x, "dtype") and hasattr(y, "dtype"))
        if hasattr(x, "dtype"):
            assert x.dtype == y.dtype and x.shape == y.shape
            np.testing.assert_array_equal(np.asarray(x), np.asarray(y))
        else:
            assert x == y or (x is None and y is None)


def test_round_trip_floats_infinities_none_and_arrays_of_every_dtype(tmp_path):
    params = {
        "f16": jnp.ones(3, jnp.float16),
        "bf16": jnp.ones((2, 2), jnp.bfloat16),
        "f32": jnp.ones((2, 3), jnp.float32),
        "f64": jnp.ones(2, jnp.float64),
        "scalar": jnp.array(1.0),
        "plain": jnp.ones(4),
        "open": jnp.ones(1),
        "ints": jnp.ones(2),
    }
    lower, upper = jb.make_bounds(params)
    lower["f16"] = jnp.array([0.1, -jnp.inf, 0.3], jnp.float16)
    upper["bf16"] = jnp.array([[0.7, jnp.inf], [1.1, 1e30]], jnp.bfloat16)
    lower["f32"] = jnp.array([0.1, 0.2, -1e-30], jnp.float32)  # broadcasts
    upper["f64"] = jnp.array([math.pi, 1e300], jnp.float64)
    lower["scalar"] = jnp.array(0.5, jnp.float32)  # a 0-d array stays an array
    lower["plain"], upper["plain"] = -0.1, 0.1
    lower["open"] = None  # no bound on that side
    lower["ints"], upper["ints"] = jnp.array([0, 1], jnp.int32), 3  # an int: a float
    path = tmp_path / "bounds.json"
    jb.save_bounds(path, lower, upper)
    lo, up = jb.load_bounds(path, like=params)
    assert up["ints"] == 3.0 and isinstance(up["ints"], float)
    upper["ints"] = 3.0
    assert_same_bounds(lo, lower)
    assert_same_bounds(up, upper)


def test_file_is_portable_json_keyed_by_dotted_path(tmp_path):
    params = {"layers": [{"tau": jnp.ones((2, 2))}, {"w": jnp.ones(3)}]}
    lower, upper = jb.make_bounds(params)
    lower["layers"][0]["tau"] = jnp.array([[0.0, 1.0], [-jnp.inf, 2.0]])
    upper["layers"][0]["tau"] = 10.0
    path = tmp_path / "b.json"
    jb.save_bounds(str(path), lower, upper)
    doc = strict_json(path.read_text())
    assert doc["format"] == "jaxbounds.bounds" and doc["version"] == 1
    assert list(doc["bounds"]) == ["layers.0.tau", "layers.1.w"]
    assert doc["bounds"]["layers.1.w"] == {"lower": "-inf", "upper": "inf"}
    tau = doc["bounds"]["layers.0.tau"]
    assert tau["upper"] == 10.0
    assert tau["lower"] == {
        "dtype": "float64",
        "shape": [2, 2],
        "data": [[0.0, 1.0], ["-inf", 2.0]],
    }
    # one path per line, and no temporary file left behind
    lines = path.read_text().splitlines()
    assert sum('"layers.' in line for line in lines) == 2
    assert [p.name for p in tmp_path.iterdir()] == ["b.json"]


def test_float32_values_load_back_bit_for_bit(tmp_path):
    rng = np.random.default_rng(1)
    values = rng.normal(size=50).astype(np.float32) * np.float32(1e-3)
    params = {"x": jnp.ones(50, jnp.float32)}
    path = tmp_path / "b.json"
    jb.save_bounds(path, {"x": jnp.asarray(values)}, {"x": math.inf})
    lo, _ = jb.load_bounds(path, like=params)
    assert np.asarray(lo["x"]).tobytes() == values.tobytes()


class Cell(eqx.Module):
    tau: jax.Array = eqx.field(metadata={LOWER_KEY: 1e-3, UPPER_KEY: 1.0})
    w: jax.Array
    act: object = eqx.field(static=True, default=jnp.tanh)
    n: int = 3


def test_equinox_model_paths_missing_from_the_file_get_declared_defaults(tmp_path):
    cell = Cell(tau=jnp.full(2, 0.02), w=jnp.ones(3))
    path = tmp_path / "b.json"
    path.write_text(
        json.dumps(
            {
                "format": "jaxbounds.bounds",
                "version": 1,
                "bounds": {"w": {"upper": 2.0}},
            }
        )
    )
    lo, up = jb.load_bounds(path, like=cell)
    assert (lo.tau, up.tau) == (1e-3, 1.0)  # from the field declaration
    assert (lo.w, up.w) == (-math.inf, 2.0)
    assert float(jb.bounds_cost(cell, lo, up)) == 0.0
    # a saved tree keeps a loosened declared bound loosened
    loose = eqx.tree_at(lambda c: c.tau, lo, -math.inf)
    jb.save_bounds(path, loose, up)
    lo2, _ = jb.load_bounds(path, like=cell)
    assert lo2.tau == -math.inf


def test_like_with_partition_holes(tmp_path):
    model = eqx.nn.Linear(2, 2, key=jax.random.PRNGKey(0))
    params, static = eqx.partition(model, eqx.is_inexact_array)
    lower, upper = jb.make_bounds(params)
    lower = eqx.tree_at(lambda m: m.weight, lower, -0.1)
    path = tmp_path / "b.json"
    jb.save_bounds(path, lower, upper)
    lo, up = jb.load_bounds(path, like=params)
    assert lo.weight == -0.1
    report = jb.violations(params, lo, up)
    w = np.asarray(model.weight)
    assert report["weight"].below == int(np.sum(w < -0.1))


def test_hand_written_file_with_bare_lists_and_infinity_spellings(tmp_path):
    path = tmp_path / "b.json"
    path.write_text(
        '{"format": "jaxbounds.bounds", "version": 1, "bounds": {'
        '"a": {"lower": [0, "-inf", 1.5], "upper": "+inf"},'
        '"b": {"lower": "-Inf", "upper": 3}}}'
    )
    params = {"a": jnp.ones(3), "b": jnp.ones(())}
    lo, up = jb.load_bounds(path, like=params)
    np.testing.assert_array_equal(lo["a"], [0.0, -np.inf, 1.5])
    assert up["a"] == math.inf and lo["b"] == -math.inf and up["b"] == 3.0


@pytest.mark.parametrize(
    ("bounds", "match"),
    [
        ({"nope": {"lower": 0.0}}, r"path 'nope' is not in `like`"),
        (
            {"w": {"lower": [0.0, 1.0]}},
            r"lower bound at 'w' has shape \(2,\), which does not",
        ),
        ({"w": {"lower": 2.0, "upper": 1.0}}, r"lower > upper at 'w'"),
        ({"w": {"lower": "nan"}}, r"lower bound at 'w'.*'nan'"),
        ({"w": {"lower": True}}, r"lower bound at 'w'.*True"),
        ({"w": {"middle": 1.0}}, r"at 'w', expected an object with 'lower'"),
        ({"w": {"lower": {"dtype": "float32", "data": [1.0]}}}, r"'w'.*dtype.*shape"),
        (
            {"w": {"lower": {"dtype": "float32", "shape": [3], "data": [1.0]}}},
            r"'w': data has shape \[1\], but shape says \[3\]",
        ),
        (
            {"w": {"lower": {"dtype": "floaty", "shape": [1], "data": [1.0]}}},
            r"'w': unknown dtype 'floaty'",
        ),
    ],
)
def test_load_errors_name_the_file_and_path(tmp_path, bounds, match):
    path = tmp_path / "bad.json"
    path.write_text(
        json.dumps({"format": "jaxbounds.bounds", "version": 1, "bounds": bounds})
    )
    with pytest.raises(ValueError, match=match) as info:
        jb.load_bounds(path, like={"w": jnp.ones(3), "n": 1})
    assert "bad.json" in str(info.value)


def test_load_rejects_finite_bound_on_a_non_float_leaf(tmp_path):
    path = tmp_path / "b.json"
    path.write_text(
        '{"format": "jaxbounds.bounds", "version": 1, "bounds": {"n": {"lower": 0.0}}}'
    )
    with pytest.raises(TypeError, match=r"b\.json: finite bound on 'n'"):
        jb.load_bounds(path, like={"w": jnp.ones(3), "n": 1})


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("{not json", "not valid JSON"),
        ('{"bounds": {}}', "not a jaxbounds bounds file"),
        ('{"format": "jaxbounds.bounds", "version": 2, "bounds": {}}', "version 2"),
        ('{"format": "jaxbounds.bounds", "version": 1, "bounds": [], "x": 1}', "keys"),
        (
            '{"format": "jaxbounds.bounds", "version": 1, "bounds": '
            '{"w": {"lower": 0.0}, "w": {"lower": 1.0}}}',
            "key 'w' appears twice",
        ),
    ],
)
def test_load_rejects_malformed_files(tmp_path, text, match):
    path = tmp_path / "b.json"
    path.write_text(text)
    with pytest.raises(ValueError, match=match):
        jb.load_bounds(path, like={"w": jnp.ones(3)})


def test_ambiguous_dotted_paths(tmp_path):
    params = {"a.b": jnp.ones(1), "a": {"b": jnp.ones(1)}}
    lower, upper = jb.make_bounds(params)
    with pytest.raises(ValueError, match=r"dotted path 'a\.b'"):
        jb.save_bounds(tmp_path / "b.json", lower, upper)
    path = tmp_path / "c.json"
    path.write_text(
        '{"format": "jaxbounds.bounds", "version": 1, "bounds": {"a.b": {"lower": 0}}}'
    )
    with pytest.raises(ValueError, match="names two leaves"):
        jb.load_bounds(path, like=params)


def test_save_errors_name_the_path(tmp_path):
    path = tmp_path / "b.json"
    with pytest.raises(ValueError, match=r"lower bound at 'x' is NaN"):
        jb.save_bounds(path, {"x": math.nan}, {"x": 1.0})
    with pytest.raises(ValueError, match=r"upper bound at 'x' is NaN"):
        jb.save_bounds(path, {"x": 0.0}, {"x": jnp.array([1.0, jnp.nan])})
    with pytest.raises(ValueError, match=r"lower > upper at 'y\.0'"):
        jb.save_bounds(path, {"y": [jnp.array([0.0, 2.0])]}, {"y": [1.0]})
    with pytest.raises(ValueError, match=r"'y\.0'.*do not broadcast"):
        jb.save_bounds(path, {"y": [jnp.zeros(2)]}, {"y": [jnp.ones(3)]})
    with pytest.raises(ValueError, match=r"same structure.*'y'"):
        jb.save_bounds(path, {"x": 0.0, "y": 0.0}, {"x": 1.0})
    with pytest.raises(TypeError, match=r"lower bound at 'x' is a bool"):
        jb.save_bounds(path, {"x": True}, {"x": 1.0})
    with pytest.raises(TypeError, match=r"upper bound at 'x'.*str"):
        jb.save_bounds(path, {"x": 0.0}, {"x": "1.0"})
    with pytest.raises(TypeError, match=r"lower bound at 'x'.*traced"):
        jax.jit(lambda b: jb.save_bounds(path, {"x": b}, {"x": 1.0}))(jnp.zeros(2))
    assert not path.exists()


def test_inputs_are_not_mutated(tmp_path):
    lower = {"x": np.array([0.0, -np.inf]), "y": 0.0}
    upper = {"x": 1.0, "y": np.inf}
    copy = jax.tree_util.tree_map(np.array, (lower, upper))
    like = {"x": jnp.ones(2), "y": jnp.ones(1)}
    jb.save_bounds(tmp_path / "b.json", lower, upper)
    jb.load_bounds(tmp_path / "b.json", like=like)
    jax.tree_util.tree_map(np.testing.assert_array_equal, (lower, upper), copy)


def test_load_keeps_nnx_declarations_for_paths_the_file_omits(tmp_path):
    from flax import nnx

    class Cell(nnx.Module):
        def __init__(self):
            self.tau = nnx.Param(jnp.array([0.02, 0.05]), lower=0.001, upper=0.2)
            self.w = nnx.Param(jnp.ones(2))

    cell = Cell()
    path = tmp_path / "bounds.json"
    jb.save_bounds(path, {"w": 0.0}, {"w": 1.0})  # a file that knows w only
    lower, upper = jb.load_bounds(path, like=cell)
    assert lower == {"tau": 0.001, "w": 0.0}
    assert upper == {"tau": 0.2, "w": 1.0}
    # the same as for equinox declarations
    state_lower, _ = jb.load_bounds(path, like=nnx.state(cell, nnx.Param))
    assert state_lower == lower
