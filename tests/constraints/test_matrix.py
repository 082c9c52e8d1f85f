"""Orthogonal, SpectralNorm, PSD against NumPy / SciPy: every enforcement and error."""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import jaxbounds as jb
from constraints.oracles import (
    cayley_np,
    expm_orthogonal_np,
    jitted,
    lower_cholesky_np,
    matrices,
    polar_np,
    psd_np,
    skew_np,
    spectral_clip_np,
)

from helpers import count_compilations

project, distance = jitted("project"), jitted("distance")
constrain, unconstrain = jitted("constrain"), jitted("unconstrain")
summary = jitted("summary")

RNG = np.random.default_rng(0)
#: a batch of squares, a tall and a wide matrix, and units over axes (0, 2)
SHAPES = [((3, 4, 4), (-2, -1)), ((5, 3), (-2, -1)), ((3, 5), (-2, -1))]
AXES_CASE = ((4, 2, 3), (0, 2))  # a (4, 3) matrix per index of axis 1


def _x(shape, scale=2.0, seed=0):
    return np.random.default_rng(seed).normal(size=shape) * scale


def _kinds(axes):
    return {
        "orthogonal": (jb.Orthogonal(axes=axes), polar_np),
        "spectral": (
            jb.SpectralNorm(1.5, axes=axes),
            lambda w: spectral_clip_np(w, 1.5),
        ),
        "psd": (jb.PSD(0.2, axes=axes), lambda w: psd_np(w, 0.2)),
    }


def _square(shape, axes):
    a, b = (ax % len(shape) for ax in axes)
    return shape[a] == shape[b]


def _feasible(name, y, axes, tol):
    """Whether every matrix of ``y`` (float64) is in the set, within ``tol``."""
    m = np.moveaxis(np.asarray(y, np.float64), axes, (-2, -1))
    if name == "orthogonal":
        tall = m.shape[-2] >= m.shape[-1]
        g = np.swapaxes(m, -1, -2) @ m if tall else m @ np.swapaxes(m, -1, -2)
        return np.abs(g - np.eye(g.shape[-1])).max() <= tol
    if name == "spectral":
        return np.linalg.svd(m, compute_uv=False).max() <= 1.5 * (1 + tol)
    sym = np.abs(m - np.swapaxes(m, -1, -2)).max() <= tol
    return sym and np.linalg.eigvalsh(m).min() >= 0.2 - tol


def _cases():
    for shape, axes in [*SHAPES, AXES_CASE]:
        for name in ("orthogonal", "spectral", "psd"):
            if name == "psd" and not _square(shape, axes):
                continue
            yield pytest.param(name, shape, axes, id=f"{name}-{shape}-{axes}")


@pytest.mark.parametrize("name, shape, axes", list(_cases()))
def test_projection_is_the_oracle_and_the_nearest_point(name, shape, axes):
    kind, oracle = _kinds(axes)[name]
    x = _x(shape)
    got = np.asarray(project(kind, jnp.asarray(x)))
    np.testing.assert_allclose(got, matrices(oracle, x, axes), atol=1e-9)
    assert _feasible(name, got, axes, 1e-9)
    np.testing.assert_array_equal(distance(kind, jnp.asarray(got)), 0)
    # sampled feasible matrices, near and far, are no nearer (per unit)
    mine = np.sqrt(np.sum((x - got) ** 2, axis=axes))
    for k in range(8):
        scale = 0.05 if k < 4 else 3.0
        z = np.asarray(project(kind, jnp.asarray(got + _x(shape, scale, seed=k + 1))))
        assert _feasible(name, z, axes, 1e-9)
        assert np.all(np.sqrt(np.sum((x - z) ** 2, axis=axes)) >= mine - 1e-9)
    # distance: the Frobenius distance to the oracle's projection, per unit
    d = np.asarray(distance(kind, jnp.asarray(x)))
    np.testing.assert_allclose(np.squeeze(d, axis=axes), mine, rtol=1e-9)


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.bfloat16])
@pytest.mark.parametrize("name", ["orthogonal", "spectral", "psd"])
def test_low_precision_results_are_seen_inside(name, dtype):
    """float32 and bfloat16 (projected in float32, rounded back, then checked)."""
    shape, axes = (16, 6, 6), (-2, -1)
    kind, oracle = _kinds(axes)[name]
    x = jnp.asarray(_x(shape), dtype)
    y = project(kind, x)
    assert y.dtype == dtype
    np.testing.assert_array_equal(distance(kind, y), 0)  # the penalty sees it inside
    s = {k: float(v) for k, v in summary(kind, y).items()}
    if name == "spectral":
        assert s["sigma_max"] <= 1.5
    elif name == "psd":
        assert s["eig_min"] >= 0.2 and s["asymmetry"] == 0
    else:
        assert s["max|W^T W - I|"] <= kind.tolerance(y)
    want = matrices(oracle, np.asarray(x, np.float64), axes)
    atol = 0.15 if dtype == jnp.bfloat16 else 1e-4  # the margin: (16 + 2k) eps
    np.testing.assert_allclose(np.asarray(y, np.float64), want, atol=atol)
    # constrain(random) is inside too
    raw = jnp.asarray(_x(shape, 1.0, seed=3), dtype)
    np.testing.assert_array_equal(distance(kind, constrain(kind, raw)), 0)


def test_orthogonal_constrain_is_cayley_or_expm_and_round_trips():
    cases = [((2, 4, 4), "cayley"), ((2, 4, 4), "expm"), ((5, 3), "cayley")]
    cases += [((5, 3), "expm"), ((3, 5), "cayley")]
    oracles = {"cayley": cayley_np, "expm": expm_orthogonal_np}
    for shape, mp in cases:
        raw = _x(shape, 0.7)
        kind, oracle = jb.Orthogonal(map=mp), oracles[mp]
        q = np.asarray(constrain(kind, jnp.asarray(raw)))
        np.testing.assert_allclose(q, matrices(oracle, raw), atol=1e-12)
        if mp == "expm" and shape[-2] != shape[-1]:
            with pytest.raises(ValueError, match="square units"):
                unconstrain(kind, jnp.asarray(q))
            continue
        back = constrain(kind, unconstrain(kind, jnp.asarray(q)))
        np.testing.assert_allclose(back, q, atol=1e-12)
        if len(shape) == 3:
            assert np.all(np.linalg.det(q) > 0)  # the identity's component


def test_orthogonal_unconstrain_of_a_reflection_negates_its_last_column():
    q = polar_np(_x((4, 4), seed=5))
    if np.linalg.det(q) > 0:
        q = q * np.array([1, 1, 1, -1.0])
    assert np.linalg.det(q) < 0
    back = np.asarray(constrain(jb.Orthogonal(), unconstrain(jb.Orthogonal(), q)))
    np.testing.assert_allclose(back, q * np.array([1, 1, 1, -1.0]), atol=1e-12)


def test_spectral_norm_constrain_rescales_and_power_iteration_estimates():
    x = _x((4, 5, 3))
    kind = jb.SpectralNorm(1.5)
    got = np.asarray(constrain(kind, jnp.asarray(x)))
    s = np.linalg.svd(x, compute_uv=False)[:, :1, None]
    aim = 1.5 * (1 - (16 + 2 * 5) * np.finfo(np.float64).eps)
    np.testing.assert_allclose(got, x * np.minimum(1, aim / s), rtol=1e-12)
    inside = x / s  # sigma_max 1: constrain keeps it, unconstrain is the identity
    np.testing.assert_array_equal(constrain(kind, unconstrain(kind, inside)), inside)
    # the power method: never above sigma_max, exact after enough steps
    few = np.asarray(constrain(jb.SpectralNorm(1.5, power_iterations=1), x))
    many = np.asarray(constrain(jb.SpectralNorm(1.5, power_iterations=100), x))
    sig_few = np.linalg.svd(few, compute_uv=False)[:, 0]
    assert np.all(sig_few >= 1.5 * (1 - 1e-12))
    np.testing.assert_allclose(many, got, rtol=1e-6)


def test_psd_constrain_is_lower_cholesky_and_round_trips():
    raw = _x((3, 4, 4), 0.8)
    kind = jb.PSD(0.2)
    got = np.asarray(constrain(kind, jnp.asarray(raw)))
    np.testing.assert_allclose(got, matrices(lambda r: lower_cholesky_np(r, 0.2), raw))
    back = np.asarray(unconstrain(kind, jnp.asarray(got)))
    np.testing.assert_allclose(back, np.tril(raw), atol=1e-10)  # upper part unused
    np.testing.assert_allclose(constrain(kind, back), got, atol=1e-12)


@pytest.mark.parametrize("name", ["orthogonal", "spectral", "psd"])
def test_penalty_values_and_gradients(name):
    kind, oracle = _kinds((-2, -1))[name]
    x = _x((3, 4, 4))
    target = matrices(oracle, x)
    d = np.sqrt(np.sum((x - target) ** 2, axis=(-2, -1)))
    c = jb.Constraints(("w", kind))
    for penalty, value, slope in (
        ("linear", d.sum(), 1 / d),
        ("quadratic", (d**2).sum(), 2 * np.ones_like(d)),
    ):
        cost = jb.constraint_cost({"w": jnp.asarray(x)}, c, penalty=penalty)
        np.testing.assert_allclose(cost, value, rtol=1e-9)
        g = jax.grad(jb.constraint_cost)({"w": jnp.asarray(x)}, c, penalty=penalty)
        np.testing.assert_allclose(
            g["w"], (x - target) * slope[:, None, None], rtol=1e-7, atol=1e-9
        )
    inside = jb.project({"w": jnp.asarray(x)}, c)  # aimed inside: costs nothing
    assert float(jb.constraint_cost(inside, c)) == 0


def test_violations_report_the_kinds_quantities():
    x = {"o": _x((2, 4, 3)), "s": _x((5, 3)), "p": _x((4, 4))}
    c = jb.Constraints(
        ("o", jb.Orthogonal()), ("s", jb.SpectralNorm(1.5)), ("p", jb.PSD(0.2))
    )
    report = jb.violations(x, c)
    g = np.swapaxes(x["o"], -1, -2) @ x["o"] - np.eye(3)
    assert dict(report["o"].summary)["max|W^T W - I|"] == pytest.approx(
        np.abs(g).max(), rel=1e-12
    )
    assert dict(report["s"].summary)["sigma_max"] == pytest.approx(
        np.linalg.svd(x["s"], compute_uv=False)[0], rel=1e-12
    )
    p = dict(report["p"].summary)
    assert p["eig_min"] == pytest.approx(
        np.linalg.eigvalsh((x["p"] + x["p"].T) / 2)[0], rel=1e-12
    )
    assert p["asymmetry"] == pytest.approx(np.abs(x["p"] - x["p"].T).max())
    assert "sigma_max" in str(report) and not report.ok
    assert jb.violations(jb.project(x, c), c).ok


def test_vmap_over_max_value_and_no_recompiles():
    x = {"w": jnp.asarray(_x((2, 4, 3)))}
    radii = np.linspace(0.5, 3.0, 20)

    def one(r):
        return jb.project(x, jb.Constraints(("w", jb.SpectralNorm(r))))["w"]

    batched = jax.vmap(one)(jnp.asarray(radii[:4]))
    for r, b in zip(radii[:4], batched):
        np.testing.assert_allclose(
            b, matrices(lambda w, r=r: spectral_clip_np(w, r), x["w"])
        )
    one(0.1)
    with count_compilations() as compiled:
        outs = [one(float(r)) for r in radii]
    assert compiled == []
    for r, out in zip(radii, outs):
        np.testing.assert_allclose(
            out, matrices(lambda w, r=r: spectral_clip_np(w, r), x["w"])
        )
    eigs = jax.vmap(lambda lo: jb.PSD(lo).project(jnp.asarray(_x((4, 4)))))(
        jnp.asarray([0.0, 0.5])
    )
    np.testing.assert_allclose(eigs[1], psd_np(_x((4, 4)), 0.5), atol=1e-9)


def test_optax_projection_penalty_and_interval_intersection():
    params = {"w": jnp.asarray(_x((4, 4)), jnp.float32)}
    c = jb.Constraints(("w", jb.Orthogonal()))
    opt = optax.chain(optax.adam(0.1), jb.project_to_constraints(c))
    state = opt.init(params)
    for _ in range(2):
        updates, state = opt.update(params, state, params)
        params = optax.apply_updates(params, updates)
        assert jb.violations(params, c).ok
    both = jb.Constraints(("w", jb.SpectralNorm(1.0)), ("w", jb.Interval(-0.3, 0.3)))
    x = {"w": jnp.asarray(_x((4, 3)))}
    y = np.asarray(jb.project(x, both)["w"])
    assert np.abs(y).max() <= 0.3 and np.linalg.svd(y, compute_uv=False)[0] <= 1 + 1e-6
    opt = optax.chain(jb.add_constraint_penalty(c, 1.0), optax.sgd(0.1))
    updates, _ = opt.update({"w": jnp.zeros((4, 4))}, opt.init(params), params)
    assert np.all(np.isfinite(updates["w"]))


def test_declarations_on_equinox_and_nnx():
    from flax import nnx

    class Cell(eqx.Module):
        w: jax.Array = jb.field(constraint=jb.Orthogonal())
        cov: jax.Array = jb.field(constraint=jb.PSD(0.1))

    cell = Cell(jnp.asarray(_x((3, 3))), jnp.asarray(_x((3, 3))))
    c = jb.Constraints.declared(cell)
    out = eqx.filter_jit(jb.project)(cell, c)
    np.testing.assert_allclose(out.w, polar_np(_x((3, 3))), atol=1e-12)
    np.testing.assert_allclose(out.cov, psd_np(_x((3, 3)), 0.1), atol=1e-12)

    class Net(nnx.Module):
        def __init__(self):
            self.w = nnx.Param(jnp.asarray(_x((5, 3))), constraint=jb.SpectralNorm(1.0))

    net = Net()
    got = jb.project(nnx.state(net, nnx.Param), jb.Constraints.declared(net))
    np.testing.assert_allclose(
        got["w"].get_value(), spectral_clip_np(_x((5, 3)), 1.0), atol=1e-12
    )


def test_errors_name_the_rule_and_path():
    p = {"v": jnp.ones(3), "r": jnp.ones((2, 3))}
    with pytest.raises(ValueError, match=r"rule 0 .* at path 'v': .*2 dimensions"):
        jb.project(p, jb.Constraints(("v", jb.Orthogonal())))
    with pytest.raises(ValueError, match=r"at path 'r': axes .* out of range"):
        jb.project(p, jb.Constraints(("r", jb.SpectralNorm(1.0, axes=(0, 2)))))
    with pytest.raises(ValueError, match=r"at path 'r': PSD needs square units"):
        jb.project(p, jb.Constraints(("r", jb.PSD())))
    with pytest.raises(ValueError, match="max_value must be a finite number > 0"):
        jb.SpectralNorm(0.0)
    with pytest.raises(ValueError, match="min_eig must be a finite number"):
        jb.PSD(float("nan"))
    with pytest.raises(TypeError, match="axes must be two ints"):
        jb.Orthogonal(axes=(0,))
    with pytest.raises(ValueError, match="map must be"):
        jb.Orthogonal(map="householder")
    with pytest.raises(ValueError, match="unitary"):
        jb.Orthogonal().check(jnp.ones((2, 2), jnp.complex64))
    with pytest.raises(TypeError, match="not float arrays"):  # complex: no parameter
        jb.project(
            {"z": jnp.ones((2, 2), jnp.complex64)}, jb.Constraints(("z", jb.PSD()))
        )


def test_orthogonal_constrain_repairs_a_map_that_drifted_off_the_set():
    """Large raw values: float32 expm is off by more than the tolerance, then fixed."""
    raw = _x((4, 6, 6), 30.0).astype(np.float32)
    kind = jb.Orthogonal(map="expm")
    skews = np.stack([skew_np(r) for r in raw]).astype(np.float32)
    drifted = np.asarray(jax.scipy.linalg.expm(jnp.asarray(skews)), np.float64)
    gram = np.abs(np.swapaxes(drifted, -1, -2) @ drifted - np.eye(6)).max(axis=(1, 2))
    assert gram.max() > kind.tolerance(jnp.asarray(raw))  # the fix-up is needed
    got = constrain(kind, jnp.asarray(raw))
    np.testing.assert_array_equal(distance(kind, got), 0)
    np.testing.assert_allclose(got, matrices(expm_orthogonal_np, raw), atol=1e-3)
