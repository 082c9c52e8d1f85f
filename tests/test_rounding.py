"""jaxbounds._rounding: compute dtype, the violation formula, inward bounds, landing."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import ml_dtypes
import numpy as np
import pytest

from jaxbounds._constraints._kind import norm2
from jaxbounds._rounding import (
    compute_dtype,
    directed,
    fit,
    inward,
    inward_edges,
    land,
    next_float,
    stored_sum,
    toward_zero,
    violation,
)

from helpers import FLOATS

NP = {
    jnp.float16: np.float16,
    jnp.bfloat16: ml_dtypes.bfloat16,
    jnp.float32: np.float32,
}


def test_compute_dtype_is_at_least_float32():
    assert compute_dtype(jnp.float16) == jnp.float32
    assert compute_dtype(jnp.bfloat16) == jnp.float32
    assert compute_dtype(jnp.float32) == jnp.float32
    assert compute_dtype(np.float64) == jnp.float64


@pytest.mark.parametrize(
    "lo, up, expected",
    [
        (0.0, 1.0, [1.0, -0.5, 2.0]),  # the larger of the two sides
        (0.0, None, [1.0, -0.5, -3.0]),  # lower only: lo - x
        (None, 1.0, [-2.0, -0.5, 2.0]),  # upper only: x - up
        (None, None, [-np.inf] * 3),  # no side: never outside
    ],
)
def test_violation_is_the_distance_outside_and_negative_inside(lo, up, expected):
    x = jnp.array([-1.0, 0.5, 3.0])
    np.testing.assert_array_equal(violation(x, lo, up), expected)


def test_violation_compares_in_the_value_dtype():
    # float32(0.1) is 0.1 + 1.5e-9: cast to float32, the bound is met exactly
    x = jnp.asarray(np.float32(0.1))
    assert float(violation(x, 0.1, None)) == 0.0
    assert float(violation(x, None, 0.1)) == 0.0


def _inward_numpy(bound: float, np_dtype, side: str) -> float:
    """The float of ``np_dtype`` nearest ``bound`` that satisfies it in float32."""
    wide = np.float32(bound)
    near = wide.astype(np_dtype)
    towards = np.asarray(np.inf if side == "lower" else -np.inf, np_dtype)
    outside = near.astype(np.float32) < wide if side == "lower" else near > wide
    return float(np.nextafter(near, towards) if outside else near)


@pytest.mark.parametrize("dtype", [jnp.float16, jnp.bfloat16])
@pytest.mark.parametrize("side", ["lower", "upper"])
@pytest.mark.parametrize("bound", [0.1, -0.1, 1 / 3, 1e-5, 7.3, 1000.7])
def test_inward_rounds_towards_the_inside_on_host_and_traced(dtype, side, bound):
    host = float(inward(bound, dtype, side))
    traced = float(jax.jit(lambda b: inward(b, dtype, side))(jnp.float32(bound)))
    wide = float(np.float32(bound))
    assert (host >= wide) if side == "lower" else (host <= wide)
    assert host == traced == _inward_numpy(bound, NP[dtype], side)


def test_inward_keeps_infinities_and_representable_values():
    assert float(inward(-np.inf, jnp.float16, "lower")) == -np.inf
    assert float(inward(np.inf, jnp.bfloat16, "upper")) == np.inf
    assert float(inward(0.5, jnp.float16, "lower")) == 0.5
    assert float(inward(0.5, jnp.float16, "upper")) == 0.5


@pytest.mark.parametrize(
    "pdtype, udtype",
    [
        (jnp.float16, jnp.float32),
        (jnp.bfloat16, jnp.float32),
        (jnp.bfloat16, jnp.bfloat16),
        (jnp.float16, jnp.float16),
    ],
)
def test_stored_sum_is_what_optax_apply_updates_stores(pdtype, udtype):
    rng = np.random.default_rng(0)
    p = jnp.asarray(rng.normal(size=2000), pdtype)
    u = jnp.asarray(rng.normal(size=2000) * 1e-2, udtype)
    # NumPy: the sum in the promoted dtype (float32 here), rounded into p's
    wide = np.asarray(p, np.float32) + np.asarray(u, np.float32)
    if pdtype == udtype:  # same narrow dtype: numpy rounds the sum itself
        wide = (np.asarray(p, NP[pdtype]) + np.asarray(u, NP[pdtype])).astype(
            np.float32
        )
    expected = wide.astype(NP[pdtype])
    got = jax.jit(stored_sum)(p, u)
    np.testing.assert_array_equal(np.asarray(got), expected)
    assert got.dtype == pdtype


def _landing_exists(p, target, np_u, window: int = 4) -> bool:
    """Brute force: does some float of ``np_u`` near ``target - p`` land on target?"""
    np_p = type(p)
    d = np.asarray(np.float32(target) - np.float32(p)).astype(np_u)
    cands = [d]
    lo_c, hi_c = d, d
    for _ in range(window):
        lo_c = np.nextafter(lo_c.astype(np.float32), np.float32(-np.inf)).astype(np_u)
        hi_c = np.nextafter(hi_c.astype(np.float32), np.float32(np.inf)).astype(np_u)
        cands += [lo_c, hi_c]
    return any((np.float32(p) + np.float32(c)).astype(np_p) == target for c in cands)


@pytest.mark.parametrize(
    "pdtype, udtype", [(jnp.float16, jnp.float32), (jnp.bfloat16, jnp.bfloat16)]
)
def test_land_hits_the_target_whenever_some_update_does(pdtype, udtype):
    rng = np.random.default_rng(1)
    np_p, np_u = NP[pdtype], NP[udtype]
    p = rng.uniform(-2, 2, 3000).astype(np_p)
    target = (p.astype(np.float32) + rng.normal(size=3000) * 0.3).astype(np_p)
    low, high = jnp.asarray(-np.inf, pdtype), jnp.asarray(np.inf, pdtype)
    u = jax.jit(lambda p, t: land(p, t, low, high, udtype))(
        jnp.asarray(p), jnp.asarray(target)
    )
    landed = np.asarray(stored_sum(jnp.asarray(p), u))
    exists = np.array([_landing_exists(a, b, np_u) for a, b in zip(p, target)])
    hit = landed == target
    assert exists.mean() > 0.9  # the test covers mostly reachable targets
    np.testing.assert_array_equal(hit[exists], True)


def test_land_lands_as_close_to_the_box_as_the_bracketing_updates_can():
    # bfloat16 updates are too coarse to hit most float16 targets; where none
    # of the floats bracketing target - p hits, the one landing nearer the
    # box [0.1, 0.2] must be chosen.
    rng = np.random.default_rng(2)
    p = rng.uniform(-40, 40, 2000).astype(np.float16)
    low, high = inward(0.1, jnp.float16, "lower"), inward(0.2, jnp.float16, "upper")
    target = rng.uniform(0.1, 0.2, 2000).astype(np.float16)
    target = np.clip(target, np.float16(low), np.float16(high))
    u = land(jnp.asarray(p), jnp.asarray(target), low, high, jnp.bfloat16)
    got = np.asarray(stored_sum(jnp.asarray(p), u), np.float32)

    def off(x):
        return np.maximum(np.maximum(float(low) - x, x - float(high)), 0)

    bf = ml_dtypes.bfloat16
    d = (target.astype(np.float32) - p.astype(np.float32)).astype(bf)
    best = np.full(p.shape, np.inf, np.float32)
    for c in (d, np.nextafter(d, bf(np.inf)), np.nextafter(d, bf(-np.inf))):
        landed = (p.astype(np.float32) + c.astype(np.float32)).astype(np.float16)
        best = np.minimum(best, off(landed.astype(np.float32)))
    missed = got != target.astype(np.float32)
    assert 0.2 < missed.mean() < 1.0  # both kinds of case occur
    np.testing.assert_array_equal(off(got), best)


def test_land_takes_the_difference_in_the_wider_dtype():
    """bfloat16 updates of float16 params: ``target - p`` is taken in float16.

    Hand-computed: ``40 - 39.96875 = 0.03125`` is a bfloat16, so the update
    lands exactly; in bfloat16 both 39.96875 and 40 round to 40 (spacing
    0.25 there), the difference is 0 and no neighbour of 0 reaches 40.
    """
    p = jnp.array([39.96875, -39.96875, 0.5], jnp.float16)
    target = jnp.array([40.0, -40.0, 0.75], jnp.float16)
    low, high = jnp.float16(-40.0), jnp.float16(40.0)
    u = jax.jit(land, static_argnums=4)(p, target, low, high, jnp.bfloat16)
    assert u.dtype == jnp.bfloat16
    np.testing.assert_array_equal(np.asarray(u, np.float32), [0.03125, -0.03125, 0.25])
    np.testing.assert_array_equal(stored_sum(p, u), target)


@pytest.mark.slow
@pytest.mark.parametrize("dtype", FLOATS)
def test_next_float_is_nextafter(dtype):

    info = jnp.finfo(dtype)
    x = jnp.array(
        [1.0, -1.0, 3e-3, -7.5, 0.0, -0.0, info.max, -info.max, info.tiny, jnp.nan],
        dtype,
    )
    for up in (True, False):
        with jax.debug_nans(True):  # NaN in, NaN out; no other NaN on the way
            got = np.asarray(next_float(x[:-1], up).astype(jnp.float64))
        got = np.append(got, np.asarray(next_float(x[-1:], up).astype(jnp.float64)))
        towards = jnp.full(x.shape, jnp.inf if up else -jnp.inf, dtype)
        want = np.asarray(jnp.nextafter(x, towards).astype(jnp.float64))
        np.testing.assert_array_equal(got, want)
    # Infinities step to the largest float towards zero, stay put outwards.
    inf = jnp.array([jnp.inf, -jnp.inf, jnp.inf, -jnp.inf], dtype)
    with jax.debug_nans(True):
        got = next_float(inf, jnp.array([False, True, True, False]))
    np.testing.assert_array_equal(
        np.asarray(got, np.float64),
        [float(info.max), -float(info.max), np.inf, -np.inf],
    )


# -- directed rounding and fit (inequalities beyond boxes) ---------------------


@pytest.mark.parametrize("dtype", [jnp.float16, jnp.bfloat16])
def test_toward_zero_and_away(dtype):
    v = jnp.asarray(np.random.default_rng(0).normal(size=1000), jnp.float32)
    down, up = toward_zero(v, dtype), directed(v, dtype, "away_from_zero")
    assert bool((jnp.abs(down.astype(jnp.float32)) <= jnp.abs(v)).all())
    assert bool((jnp.abs(up.astype(jnp.float32)) >= jnp.abs(v)).all())
    nearest = v.astype(dtype).astype(jnp.float32)
    ulp = float(jnp.finfo(dtype).eps) * jnp.abs(v)
    assert bool((jnp.abs(down.astype(jnp.float32) - nearest) <= ulp).all())


@pytest.mark.parametrize("dtype", [jnp.float16, jnp.float32])
def test_fit_brings_units_inside_by_a_few_ulps(dtype):
    rng = np.random.default_rng(1)
    x = rng.normal(size=(6, 40))
    x = x / np.linalg.norm(x, axis=0) * (1 + 3 * float(jnp.finfo(dtype).eps))
    y = jnp.asarray(x, dtype)
    measure = norm2(y.astype(jnp.float32), (0,))
    assert bool((measure > 1.0).any())  # some units start outside
    out = fit(y, lambda z: norm2(z, (0,)), jnp.float32(1.0))
    assert bool((norm2(out.astype(jnp.float32), (0,)) <= 1.0).all())
    eps = float(jnp.finfo(dtype).eps)
    np.testing.assert_allclose(
        np.asarray(out, np.float64), x, rtol=16 * eps, atol=16 * eps
    )
    low = jnp.float32(1 + 6 * float(jnp.finfo(dtype).eps))
    up = fit(-y, lambda z: norm2(z, (0,)), low, above=True)
    assert bool((norm2(up.astype(jnp.float32), (0,)) >= low).all())


@pytest.mark.parametrize("dtype", [jnp.float16, jnp.bfloat16])
def test_inward_edges_round_each_side_inwards_and_open_sides_are_infinite(dtype):
    low, high = inward_edges(0.1, 0.7, dtype)
    assert float(low) >= 0.1 and float(high) <= 0.7
    assert float(next_float(low, False)) < 0.1 and float(next_float(high, True)) > 0.7
    low, high = inward_edges(None, None, dtype)
    assert float(low) == -np.inf and float(high) == np.inf and low.dtype == dtype


@pytest.mark.parametrize("direction", ["up", "down", "toward_zero", "away_from_zero"])
def test_directed_rounds_every_value_the_named_way_by_at_most_one_float(direction):
    v = jnp.asarray(np.random.default_rng(3).normal(size=2000), jnp.float32)
    got = directed(v, jnp.float16, direction).astype(jnp.float32)
    want = {
        "up": got >= v,
        "down": got <= v,
        "toward_zero": jnp.abs(got) <= jnp.abs(v),
        "away_from_zero": jnp.abs(got) >= jnp.abs(v),
    }[direction]
    assert bool(want.all())
    nearest = v.astype(jnp.float16).astype(jnp.float32)
    spacing = jnp.abs(
        next_float(v.astype(jnp.float16), True).astype(jnp.float32)
        - v.astype(jnp.float16).astype(jnp.float32)
    )
    assert bool((jnp.abs(got - nearest) <= 2 * spacing).all())
