"""The kinds' projections in a diagonal metric against NumPy references."""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxbounds as jb
from constraints.oracles import (
    box_halfplane_pair,
    pav_row,
    variational_gap,
    weighted_l1_row,
    weighted_midpoint,
    weighted_pav_row,
    weighted_radius_row,
    weighted_shared_upper,
    weighted_simplex_row,
)
from jaxbounds import (
    Constraint,
    Interval,
    LessEqual,
    MaxNorm,
    MinMaxNorm,
    Ordered,
    Simplex,
    UnitNorm,
)

from helpers import count_compilations

in_metric = jax.jit(lambda kind, x, d: kind.project_in_metric(x, d))
euclid = jax.jit(lambda kind, x: kind.project(x))
pair = jax.jit(lambda rel, a, b, da, db: rel.project_pair_in_metric(a, b, da, db))
euclid_pair = jax.jit(lambda rel, a, b: rel.project_pair(a, b))
LOW = [jnp.float16, jnp.bfloat16, jnp.float32]


def data(shape, seed=0, spread=2.0):
    """Points and a metric spread over ``exp(spread)`` either way."""
    rng = np.random.default_rng(seed)
    return rng.normal(size=shape) * 2, np.exp(rng.normal(size=shape) * spread)


def rows_of(fn, x, d, axis, *args):
    """``fn(row, d_row, *args)`` on every 1-D slice along ``axis``."""
    xm, dm = np.moveaxis(x, axis, -1), np.moveaxis(d, axis, -1)
    out = np.stack(
        [
            fn(r, w, *args)
            for r, w in zip(xm.reshape(-1, xm.shape[-1]), dm.reshape(-1, dm.shape[-1]))
        ]
    )
    return np.moveaxis(out.reshape(xm.shape), -1, axis)


@pytest.mark.parametrize("axis", [0, -1])
@pytest.mark.parametrize("dtype", [jnp.float64, jnp.float32])
def test_simplex_is_weighted_threshold(axis, dtype):
    x, d = data((5, 6), 1)
    got = in_metric(
        Simplex(1.5, axis=axis), jnp.asarray(x, dtype), jnp.asarray(d, dtype)
    )
    ref = rows_of(
        weighted_simplex_row,
        np.asarray(jnp.asarray(x, dtype), np.float64),
        d,
        axis,
        1.5,
    )
    tol = 1e-12 if dtype == jnp.float64 else 2e-6
    np.testing.assert_allclose(got, ref, atol=tol)
    assert bool((got >= 0).all())
    # the Euclidean projection is not the answer: the metric matters
    assert (
        np.abs(np.asarray(euclid(Simplex(1.5, axis=axis), jnp.asarray(x))) - ref).max()
        > 0.05
    )


@pytest.mark.parametrize("dtype", [jnp.float64, jnp.float32])
def test_l1_ball_is_weighted_threshold(dtype):
    x, d = data((4, 7), 2)
    k = MaxNorm(1.0, axis=1, ord=1)
    got = in_metric(k, jnp.asarray(x, dtype), jnp.asarray(d, dtype))
    ref = rows_of(
        weighted_l1_row, np.asarray(jnp.asarray(x, dtype), np.float64), d, 1, 1.0
    )
    tol = 1e-12 if dtype == jnp.float64 else 2e-6
    np.testing.assert_allclose(got, ref, atol=tol)
    assert float(jnp.max(jnp.sum(jnp.abs(got.astype(jnp.float32)), axis=1))) <= 1.0


@pytest.mark.parametrize("axis", [0, 1])
@pytest.mark.parametrize("dtype", [jnp.float64, jnp.float32])
def test_ball_is_d_x_over_d_plus_lam(axis, dtype):
    x, d = data((6, 5), 3, spread=3.0)
    x[:, 0] *= 0.05  # some units inside
    k = MaxNorm(1.0, axis=axis)
    got = in_metric(k, jnp.asarray(x, dtype), jnp.asarray(d, dtype))
    ref = rows_of(
        weighted_radius_row, np.asarray(jnp.asarray(x, dtype), np.float64), d, axis, 1.0
    )
    tol = 1e-12 if dtype == jnp.float64 else 4e-6
    np.testing.assert_allclose(got, ref, atol=tol)


@pytest.mark.parametrize("dtype", [jnp.float64, jnp.float32])
def test_spheres_from_inside_and_outside(dtype):
    x, d = data((6, 4), 4, spread=1.5)
    x[:3] *= 0.1  # inside the inner sphere
    got = in_metric(
        MinMaxNorm(1.0, 2.0, axis=1), jnp.asarray(x, dtype), jnp.asarray(d, dtype)
    )
    n = np.linalg.norm(x, axis=1)
    xs = np.asarray(jnp.asarray(x, dtype), np.float64)
    ref = np.stack(
        [
            weighted_radius_row(r, w, 1.0 if m < 1 else 2.0, ball=False)
            if (m < 1 or m > 2)
            else r
            for r, w, m in zip(xs, d, n)
        ]
    )
    tol = 1e-10 if dtype == jnp.float64 else 4e-6
    np.testing.assert_allclose(got, ref, atol=tol)
    got = in_metric(UnitNorm(axis=1), jnp.asarray(x, dtype), jnp.asarray(d, dtype))
    ref = np.stack([weighted_radius_row(r, w, 1.0, ball=False) for r, w in zip(xs, d)])
    np.testing.assert_allclose(got, ref, atol=tol)


@pytest.mark.parametrize("dtype", [jnp.float64, jnp.float32])
def test_ordered_is_weighted_pav(dtype):
    x, d = data((4, 9), 5)
    got = in_metric(Ordered(axis=1), jnp.asarray(x, dtype), jnp.asarray(d, dtype))
    ref = rows_of(weighted_pav_row, np.asarray(jnp.asarray(x, dtype), np.float64), d, 1)
    tol = 1e-12 if dtype == jnp.float64 else 2e-6
    np.testing.assert_allclose(got, ref, atol=tol)
    assert bool((jnp.diff(got, axis=1) >= 0).all())
    assert np.abs(ref - np.apply_along_axis(pav_row, 1, x)).max() > 0.05


@pytest.mark.parametrize("dtype", [jnp.float64, jnp.float32])
def test_less_equal_weighted_midpoint(dtype):
    rng = np.random.default_rng(6)
    a, b = rng.normal(size=8), rng.normal(size=8)
    da, db = np.exp(rng.normal(size=8) * 2), np.exp(rng.normal(size=8) * 2)
    rel = LessEqual("a", "b", margin=0.25)
    cast = [jnp.asarray(v, dtype) for v in (a, b, da, db)]
    na, nb = pair(rel, *cast)
    ra, rb = weighted_midpoint(*(np.asarray(v, np.float64) for v in cast), 0.25)
    tol = 1e-12 if dtype == jnp.float64 else 4e-7
    np.testing.assert_allclose(na, ra, atol=tol)
    np.testing.assert_allclose(nb, rb, atol=tol)
    assert bool(rel.holds(na, nb).all())
    # a heavy side stays: d_a >> d_b moves b, not a
    ha, hb = pair(
        rel,
        jnp.asarray([1.0]),
        jnp.asarray([0.0]),
        jnp.asarray([1e6]),
        jnp.asarray([1.0]),
    )
    assert abs(float(ha[0]) - 1.0) < 1e-5 and abs(float(hb[0]) - 1.25) < 1e-5


@pytest.mark.parametrize("shared", ["b", "a"])
def test_less_equal_shared_element_weighted(shared):
    rng = np.random.default_rng(7)
    many, one = rng.normal(size=(3, 5)), rng.normal(size=(3, 1)) * 0.1
    wm, wo = np.exp(rng.normal(size=(3, 5))), np.exp(rng.normal(size=(3, 1)))
    rel = LessEqual("a", "b", margin=0.1)
    if shared == "b":
        na, nb = pair(rel, *(jnp.asarray(v) for v in (many, one, wm, wo)))
        for i in range(3):
            ra, rb = weighted_shared_upper(many[i], one[i, 0], wm[i], wo[i, 0], 0.1)
            np.testing.assert_allclose(na[i], ra, atol=1e-12)
            np.testing.assert_allclose(nb[i, 0], rb, atol=1e-12)
    else:  # a shared: mirror (a -> -b, b -> -a)
        na, nb = pair(rel, *(jnp.asarray(v) for v in (one, many, wo, wm)))
        for i in range(3):
            rb, ra = weighted_shared_upper(-many[i], -one[i, 0], wm[i], wo[i, 0], 0.1)
            np.testing.assert_allclose(nb[i], -rb, atol=1e-12)
            np.testing.assert_allclose(na[i, 0], -ra, atol=1e-12)
    assert bool(rel.holds(na, nb).all())


KINDS = [
    Simplex(1.0, axis=1),
    MaxNorm(0.7, axis=1),
    MaxNorm(0.7, axis=0, ord=1),
    MaxNorm(0.7, axis=1, ord="inf"),
    MinMaxNorm(1.0, 2.0, axis=1),
    UnitNorm(axis=0),
    Ordered(axis=1),
    Interval(-0.5, 0.5),
]


@pytest.mark.parametrize("kind", KINDS, ids=lambda k: type(k).__name__)
def test_uniform_metric_is_euclidean_and_scale_free(kind):
    x, d = data((5, 6), 8)
    xs = jnp.asarray(x, jnp.float32)
    base = euclid(kind, xs)
    for c in (1.0, 3.0, 1e-6):  # a uniform metric: the Euclidean values, bit for bit
        np.testing.assert_array_equal(
            in_metric(kind, xs, jnp.full((5, 6), c, jnp.float32)), base
        )
    ds = jnp.asarray(d, jnp.float32)
    ref = in_metric(kind, xs, ds)
    np.testing.assert_array_equal(in_metric(kind, xs, ds * 1024), ref)  # a power of 2
    np.testing.assert_allclose(in_metric(kind, xs, ds * 3.7), ref, atol=2e-6)


def test_uniform_relation_is_euclidean():
    rng = np.random.default_rng(9)
    a, b = (jnp.asarray(rng.normal(size=(4, 3)), jnp.float32) for _ in range(2))
    rel = LessEqual("a", "b", margin=0.1)
    w = jnp.full((4, 3), 0.3, jnp.float32)
    for x, y in zip(pair(rel, a, b, w, w), euclid_pair(rel, a, b)):
        np.testing.assert_array_equal(x, y)
    col = jnp.asarray(rng.normal(size=(4, 1)), jnp.float32)
    # shared element: to an ulp of t, two of t - margin (XLA divides by the
    # Euclidean form's constant counts 1 + j as a reciprocal product)
    for x, y in zip(pair(rel, a, col, w, w[:, :1]), euclid_pair(rel, a, col)):
        np.testing.assert_array_max_ulp(x, y, maxulp=2)


@pytest.mark.parametrize("dtype", LOW)
@pytest.mark.parametrize("kind", KINDS[:7], ids=lambda k: type(k).__name__)
def test_inequalities_exact_in_every_dtype(kind, dtype):
    x, d = data((8, 6), 10, spread=3.0)
    y = in_metric(kind, jnp.asarray(x * 3, dtype), jnp.asarray(d, dtype))
    assert y.dtype == dtype
    yc = y.astype(jnp.float32)
    if isinstance(kind, MaxNorm):
        assert float(jnp.max(kind.measure(y))) <= 0.7
    if isinstance(kind, MinMaxNorm):
        n = jnp.linalg.norm(yc, axis=1)
        assert float(n.max()) <= 2.0 and float(n.min()) >= 1.0
    if isinstance(kind, Simplex):
        assert bool((y >= 0).all())
        np.testing.assert_allclose(
            jnp.sum(yc, axis=1), 1.0, atol=64 * float(jnp.finfo(dtype).eps)
        )
    if isinstance(kind, Ordered):
        assert bool((jnp.diff(yc, axis=1) >= 0).all())


@pytest.mark.parametrize("dtype", LOW)
def test_relation_exact_in_every_dtype(dtype):
    rng = np.random.default_rng(11)
    a, b = (jnp.asarray(rng.normal(size=32), dtype) for _ in range(2))
    da, db = (jnp.asarray(np.exp(rng.normal(size=32) * 3), dtype) for _ in range(2))
    rel = LessEqual("a", "b", margin=0.1)
    na, nb = pair(rel, a, b, da, db)
    assert na.dtype == dtype and bool(rel.holds(na, nb).all())


def test_metric_is_data_vmapped_no_recompile():
    k = MaxNorm(1.0, axis=1)
    x, d = data((3, 4), 12)
    f = jax.jit(lambda x, d: k.project_in_metric(x, d))
    f(jnp.asarray(x), jnp.asarray(d))
    # (counted as compilations: `_cache_size` counts the C++ fast path's
    # entries, which once read 0 here in a full CI run)
    x2, d2 = jnp.asarray(x), jnp.asarray(d) * 2 + 1
    with count_compilations() as compiled:
        f(x2, d2)
    assert compiled == []
    ds = jnp.stack([jnp.asarray(d), jnp.ones((3, 4))])
    out = jax.vmap(lambda d: k.project_in_metric(jnp.asarray(x), d))(ds)
    np.testing.assert_allclose(
        out[0], in_metric(k, jnp.asarray(x), jnp.asarray(d)), atol=1e-12
    )
    np.testing.assert_array_equal(out[1], euclid(k, jnp.asarray(x)))


def test_broadcast_metric_and_gradient():
    x, d = data((4, 5), 13)
    row = jnp.asarray(d[:1])  # one weight per column, shared by the rows
    k = Simplex(1.0, axis=1)
    np.testing.assert_array_equal(
        in_metric(k, jnp.asarray(x), row),
        in_metric(k, jnp.asarray(x), jnp.broadcast_to(row, (4, 5))),
    )
    g = jax.grad(
        lambda x: jnp.sum(
            MaxNorm(0.5, axis=1).project_in_metric(x, jnp.asarray(d)) ** 2
        )
    )(jnp.asarray(x))
    assert bool(jnp.isfinite(g).all())


def test_a_kind_without_a_metric_form_raises():
    class Mine(Constraint):
        def project(self, x):
            return jnp.maximum(x, 0)

    with pytest.raises(
        NotImplementedError, match="Mine has no projection in a diagonal metric"
    ):
        Mine().project_in_metric(jnp.ones(2), jnp.ones(2))
    assert isinstance(Mine(), eqx.Module)


# -- project(params, c, metric=d): plans, intersections, errors ----------------

project_in = jax.jit(lambda p, d, c: jb.project(p, c, metric=d), static_argnums=2)


def d_gap(x, px, zs, d):
    """The variational inequality in the d inner product: <= 0 at the projection."""
    root = {k: np.sqrt(np.asarray(d[k], np.float64)) for k in x}
    scaled = {k: root[k] * np.asarray(x[k], np.float64) for k in x}
    spx = {k: root[k] * np.asarray(px[k], np.float64) for k in x}
    szs = [{k: root[k] * np.asarray(z[k], np.float64) for k in x} for z in zs]
    return variational_gap(scaled, spx, szs)


def test_box_cut_by_half_plane_in_a_metric():
    rng = np.random.default_rng(20)
    a, b = rng.uniform(-1, 1, 12), rng.uniform(-1, 1, 12)
    da, db = np.exp(rng.normal(size=12) * 1.5), np.exp(rng.normal(size=12) * 1.5)
    c = jb.Constraints(
        ("a", jb.Interval(-0.5, 0.4)),
        ("b", jb.Interval(-0.3, 0.6)),
        jb.LessEqual("a", "b", 0.2),
    )
    out = project_in(
        {"a": jnp.asarray(a), "b": jnp.asarray(b)},
        {"a": jnp.asarray(da), "b": jnp.asarray(db)},
        c,
    )
    ra, rb = box_halfplane_pair(a, b, -0.5, 0.4, -0.3, 0.6, 0.2, da, db)
    np.testing.assert_allclose(out["a"], ra, atol=1e-6)
    np.testing.assert_allclose(out["b"], rb, atol=1e-6)


def test_intersections_by_dykstra_in_a_metric():
    rng = np.random.default_rng(21)
    c = jb.Constraints(
        ("w", jb.MaxNorm(1.0, axis=0)),
        ("w", jb.Interval(-0.3, 0.6)),
        ("a", jb.Interval(0.0, 1.0)),
        jb.LessEqual("a", "b"),  # b (3,) shared by the rows of a (2, 3)
    )
    x = {
        "w": rng.normal(size=(4, 3)),
        "a": rng.normal(size=(2, 3)) + 0.5,
        "b": rng.normal(size=3),
    }
    d = {k: np.exp(rng.normal(size=np.shape(v)) * 1.5) for k, v in x.items()}
    px = project_in(jax.tree.map(jnp.asarray, x), jax.tree.map(jnp.asarray, d), c)
    px = {k: np.asarray(v) for k, v in px.items()}
    zs = [
        {
            k: np.asarray(v)
            for k, v in jb.project(
                jax.tree.map(lambda v, s=s: jnp.asarray(v * s), x), c
            ).items()
        }
        for s in (0.0, 0.3, 1.0, 3.0)
    ]
    assert d_gap(x, px, zs, d) <= 1e-6
    # not the Euclidean projection: that one fails the inequality in d
    assert (
        d_gap(
            x,
            {
                k: np.asarray(v)
                for k, v in jb.project(jax.tree.map(jnp.asarray, x), c).items()
            },
            [px],
            d,
        )
        > 1e-4
    )
    assert jb.violations(px, c).ok


def test_uniform_metric_project_is_euclidean():
    rng = np.random.default_rng(22)
    c = jb.Constraints(
        ("w", jb.MaxNorm(1.0, axis=0)),
        ("w", jb.Interval(-0.3, 0.6)),
        ("p", jb.Simplex()),
        jb.LessEqual("a", "b", 0.1),
        ("a", jb.Interval(0.0, 1.0)),
    )
    x = {
        k: jnp.asarray(rng.normal(size=(4, 3)), jnp.float32)
        for k in ("w", "p", "a", "b")
    }
    one = jax.tree.map(lambda v: jnp.full(v.shape, 0.7, jnp.float32), x)
    ref = jax.jit(lambda p: jb.project(p, c))(x)
    got = project_in(x, one, c)
    for k in x:
        np.testing.assert_array_equal(got[k], ref[k])


def test_project_metric_is_data_and_checked():
    c = jb.Constraints(("w", jb.Simplex()))
    x = {"w": jnp.asarray([[0.9, 0.3, -0.2], [0.1, 0.2, 0.3]]), "free": jnp.ones(2)}
    f = jax.jit(lambda p, d: jb.project(p, c, metric=d))
    f(x, {"w": jnp.ones((2, 3)), "free": None})
    out = f(x, {"w": jnp.asarray([1.0, 4.0, 2.0]), "free": None})  # broadcast
    assert f._cache_size() <= 2  # a new shape, not new numbers
    ref = [
        weighted_simplex_row(np.asarray(x["w"][i]), [1.0, 4.0, 2.0]) for i in range(2)
    ]
    np.testing.assert_allclose(out["w"], ref, atol=1e-12)
    ds = jnp.stack([jnp.ones(3), jnp.asarray([1.0, 4.0, 2.0])])
    many = jax.vmap(lambda d: jb.project(x, c, metric={"w": d, "free": None})["w"])(ds)
    np.testing.assert_allclose(many[1], ref, atol=1e-12)
    for bad, msg in [
        (
            {"w": jnp.asarray([1.0, 0.0, 1.0]), "free": None},
            r"metric at 'w' must be finite and > 0",
        ),
        ({"w": jnp.asarray([1.0, jnp.nan, 1.0]), "free": None}, "got nan"),
        (
            {"w": jnp.ones(2), "free": None},
            r"metric at 'w': shape \(2,\) does not broadcast",
        ),
        ({"w": jnp.ones(3)}, "metric must be a tree of the params' structure"),
    ]:
        with pytest.raises(ValueError, match=msg):
            jb.project(x, c, metric=bad)


def test_project_metric_on_an_equinox_module():
    class Layer(eqx.Module):
        w: jax.Array
        b: jax.Array

    c = jb.Constraints(("w", jb.Ordered()))
    m = Layer(jnp.asarray([0.3, 0.1]), jnp.zeros(2))
    out = jb.project(m, c, metric=Layer(jnp.asarray([1.0, 3.0]), None))
    np.testing.assert_allclose(out.w, [0.15, 0.15], atol=1e-7)


def test_spheres_with_extreme_weights_converge():
    # weights over e**+-9: stale secant slopes, bisection steps; no early stop
    k = MinMaxNorm(1.0, 1.5, axis=1)
    worst = 0.0
    for seed in range(6):
        x, d = data((8, 12), 100 + seed, spread=3.0)
        x = x * np.where(np.arange(8) % 2, 0.05, 3.0)[:, None]  # inside / outside
        got = np.asarray(
            in_metric(k, jnp.asarray(x, jnp.float32), jnp.asarray(d, jnp.float32))
        )
        xs = np.asarray(jnp.asarray(x, jnp.float32), np.float64)
        for r, w, g in zip(xs, d, got):
            m = np.linalg.norm(r)
            ref = (
                r
                if 1 <= m <= 1.5
                else weighted_radius_row(r, w, 1.0 if m < 1 else 1.5, ball=False)
            )
            worst = max(worst, float(np.abs(g - ref).max()))
    assert worst < 2e-5
