"""projected(tx, c): adaptive optimizers reach the constrained optimum."""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import jaxbounds as jb
from constraints.oracles import weighted_radius_row, weighted_simplex_row

F32 = jnp.float32
RNG = np.random.default_rng(0)
A_S, T_S = np.exp(RNG.normal(size=(4, 6))), RNG.normal(size=(4, 6))
A_W, T_W = np.exp(RNG.normal(size=(6, 4))), RNG.normal(size=(6, 4))
C = jb.Constraints(
    jb.LessEqual("tau_syn", "tau_mem"),
    ("s", jb.Simplex(axis=1)),
    ("w", jb.MaxNorm(0.5, axis=0)),
)
# the constrained optima: the weighted projections of the targets
OPT_S = np.stack([weighted_simplex_row(T_S[i], A_S[i]) for i in range(4)])
OPT_W = np.stack([weighted_radius_row(T_W[:, k], A_W[:, k], 0.5) for k in range(4)]).T


def loss(p):
    rel = (p["tau_syn"] - 0.08) ** 2 + (p["tau_mem"] - 0.01) ** 2
    s = jnp.sum(jnp.asarray(A_S, F32) * (p["s"] - jnp.asarray(T_S, F32)) ** 2)
    w = jnp.sum(jnp.asarray(A_W, F32) * (p["w"] - jnp.asarray(T_W, F32)) ** 2)
    return rel + s + w


def start():
    return {
        "tau_syn": jnp.asarray(0.01, F32),
        "tau_mem": jnp.asarray(0.02, F32),
        "s": jnp.full((4, 6), 1 / 6, F32),
        "w": jnp.zeros((6, 4), F32),
    }


def worst(p):
    """The largest violation of the inequalities, as computed (0 inside)."""
    return jnp.max(
        jnp.stack(
            [
                jnp.maximum(p["tau_syn"] - p["tau_mem"], 0),
                jnp.maximum(-jnp.min(p["s"]), 0),
                jnp.maximum(jnp.max(jnp.linalg.norm(p["w"], axis=0)) - 0.5, 0),
            ]
        )
    )


def train(tx, steps):
    @jax.jit
    def run(p):
        def step(carry, _):
            p, s = carry
            u, s = tx.update(jax.grad(loss)(p), s, p)
            p = optax.apply_updates(p, u)
            return (p, s), worst(p)

        (p, _), bad = jax.lax.scan(step, (p, tx.init(p)), None, length=steps)
        return p, jnp.max(bad)

    return run(start())


@pytest.mark.parametrize(
    "tx",
    [optax.adam(1e-2), optax.rmsprop(1e-2), optax.adagrad(0.1)],
    ids=["adam", "rmsprop", "adagrad"],
)
def test_reaches_the_constrained_optimum(tx):
    p, bad = train(jb.projected(tx, C), 2500)
    assert float(bad) == 0.0  # every iterate feasible
    assert abs(float(p["tau_syn"]) - 0.045) < 2e-3
    assert abs(float(p["tau_mem"]) - 0.045) < 2e-3
    assert np.abs(np.asarray(p["s"]) - OPT_S).max() < 2e-3
    assert np.abs(np.asarray(p["w"]) - OPT_W).max() < 2e-3


def test_euclidean_adam_stalls():
    # the failure projected fixes: the Euclidean midpoint undoes Adam's step
    p, _ = train(optax.chain(optax.adam(1e-2), jb.project_to_constraints(C)), 2500)
    assert abs(float(p["tau_syn"]) - 0.045) > 0.02
    assert np.abs(np.asarray(p["s"]) - OPT_S).max() > 0.1
    assert np.abs(np.asarray(p["w"]) - OPT_W).max() > 0.1


def test_sgd_is_exactly_the_chain():
    a, _ = train(jb.projected(optax.sgd(0.05), C), 20)
    b, _ = train(optax.chain(optax.sgd(0.05), jb.project_to_constraints(C)), 20)
    for k in a:
        np.testing.assert_array_equal(a[k], b[k])
    euclid = jb.projected(optax.adam(1e-2), C, metric="euclidean")
    c, _ = train(euclid, 20)
    d, _ = train(optax.chain(optax.adam(1e-2), jb.project_to_constraints(C)), 20)
    for k in c:
        np.testing.assert_array_equal(c[k], d[k])


def one_step(tx, p, g):
    u, _ = tx.update(g, tx.init(p), p)
    return optax.apply_updates(p, u)


def test_boxes_and_a_callable_metric():
    p = start()
    g = jax.tree.map(lambda x: jnp.full_like(x, -3.0), p)
    boxes = jb.Constraints(("*", jb.Interval(-0.1, 0.2)))
    a = one_step(jb.projected(optax.adam(0.5), boxes), p, g)
    b = one_step(optax.chain(optax.adam(0.5), jb.project_to_constraints(boxes)), p, g)
    for k in a:  # separable: every metric gives the box projection
        np.testing.assert_array_equal(a[k], b[k])
    d = jax.tree.map(lambda x: jnp.full(x.shape, 2.0, F32), p)
    d["tau_mem"] = jnp.asarray(6.0, F32)  # tau_mem heavy: tau_syn moves 3x more
    mine = jb.projected(optax.sgd(0.01), C, metric=lambda state, params: d)
    new = one_step(mine, p, jax.grad(loss)(p))
    stepped = optax.apply_updates(
        p, jax.tree.map(lambda x: -0.01 * x, jax.grad(loss)(p))
    )
    ref = jb.project(stepped, C, metric=d)
    for k in new:
        np.testing.assert_allclose(new[k], ref[k], rtol=1e-6, atol=1e-7)
    assert float(new["tau_syn"]) < 0.0115  # the pair met near tau_mem's side


def test_errors():
    with pytest.raises(ValueError, match="metric must be 'auto'"):
        jb.projected(optax.adam(1e-2), C, metric="adam")
    tx = jb.projected(optax.adafactor(1e-2), jb.Constraints(("w", jb.MaxNorm(1.0))))
    p = {"w": jnp.ones((3, 4))}
    with pytest.raises(ValueError, match="adafactor.*metric="):
        tx.update(p, tx.init(p), p)
    with pytest.raises(ValueError, match="needs the params"):
        tx.update(p, tx.init(p))


class Layer(eqx.Module):
    tau_syn: jax.Array
    tau_mem: jax.Array
    w: jax.Array


def test_equinox_filter_jit_and_masked():
    c = jb.Constraints(
        jb.LessEqual("tau_syn", "tau_mem"), ("w", jb.MaxNorm(0.5, axis=0))
    )
    p = start()
    g = jax.grad(loss)(p)
    ref = one_step(jb.projected(optax.adam(0.1), c), p, g)
    m = Layer(p["tau_syn"], p["tau_mem"], p["w"])
    gm = Layer(g["tau_syn"], g["tau_mem"], g["w"])
    tx = jb.projected(optax.adam(0.1), c)

    @eqx.filter_jit
    def step(m, gm):
        u, _ = tx.update(gm, tx.init(m), m)
        return eqx.apply_updates(m, u)

    new = step(m, gm)
    for k in ("tau_syn", "tau_mem", "w"):
        np.testing.assert_allclose(getattr(new, k), ref[k], rtol=1e-6)
    # inside optax.masked: "s" is left out, its update untouched (sgd alone)
    mask = {"tau_syn": True, "tau_mem": True, "s": False, "w": True}
    masked = optax.chain(
        optax.masked(jb.projected(optax.adam(0.1), c), mask),
        optax.masked(optax.sgd(0.1), {k: not v for k, v in mask.items()}),
    )
    out = jax.jit(lambda p, g: one_step(masked, p, g))(p, g)
    for k in ("tau_syn", "tau_mem", "w"):
        np.testing.assert_allclose(out[k], ref[k], rtol=1e-6)
    np.testing.assert_allclose(out["s"], p["s"] - 0.1 * g["s"], rtol=1e-6, atol=1e-7)


def test_nnx_optimizer():
    from flax import nnx

    class Net(nnx.Module):
        def __init__(self):
            self.lin = nnx.Linear(3, 2, rngs=nnx.Rngs(0))

    c = jb.Constraints(("lin.kernel", jb.MaxNorm(0.5, axis=0)))
    nets = [Net(), Net()]
    grads = nnx.grad(lambda m: jnp.sum(m.lin(jnp.ones((1, 3))) ** 2) * -10)(nets[0])
    opt = nnx.Optimizer(nets[0], jb.projected(optax.adam(0.3), c), wrt=nnx.Param)
    opt.update(nets[0], grads)
    kernel = np.asarray(nets[0].lin.kernel.get_value())
    assert (np.linalg.norm(kernel, axis=0) <= 0.5).all()
    # the same step on a dict of arrays
    p = {
        "lin": {
            "kernel": nets[1].lin.kernel.get_value(),
            "bias": nets[1].lin.bias.get_value(),
        }
    }
    g = {
        "lin": {
            "kernel": grads["lin"]["kernel"].get_value(),
            "bias": grads["lin"]["bias"].get_value(),
        }
    }
    ref = one_step(jb.projected(optax.adam(0.3), c), p, g)
    np.testing.assert_allclose(kernel, ref["lin"]["kernel"], rtol=1e-6)


def test_zero_second_moments_under_debug_nans():
    # adagrad with eps=0 and no gradient yet on most leaves: d = 0 there
    # (its update is 0, not NaN), and the projection makes no NaN either
    c = jb.Constraints(
        jb.LessEqual("tau_syn", "tau_mem"),
        ("tau_syn", jb.Interval(0.0, 1.0)),
        ("s", jb.Simplex(axis=1)),
        ("w", jb.MaxNorm(0.5, axis=0)),
    )
    p = start()
    p["w"] = jnp.ones((6, 4), F32)
    g = jax.tree.map(jnp.zeros_like, p)
    g["tau_syn"] = jnp.asarray(-1.0, F32)
    tx = jb.projected(optax.adagrad(0.1, initial_accumulator_value=0.0, eps=0.0), c)
    with jax.debug_nans(True):
        new = jax.jit(lambda p, g: one_step(tx, p, g))(p, g)
    assert all(bool(jnp.isfinite(x).all()) for x in jax.tree.leaves(new))
    assert jb.violations(new, c).ok


def test_matrix_kinds_take_their_euclidean_projection():
    c = jb.Constraints(("w", jb.SpectralNorm(0.5)), jb.LessEqual("tau_syn", "tau_mem"))
    p = start()
    g = jax.tree.map(lambda x: jnp.full_like(x, -1.0), p)
    new = one_step(jb.projected(optax.adam(0.3), c), p, g)
    chain = one_step(optax.chain(optax.adam(0.3), jb.project_to_constraints(c)), p, g)
    np.testing.assert_array_equal(new["w"], chain["w"])
    d = {k: jnp.full(np.shape(v), 3.0, F32) for k, v in p.items()}
    d["w"] = jnp.exp(jnp.asarray(RNG.normal(size=(6, 4)), F32))
    np.testing.assert_array_equal(
        jb.project(p, c, metric=d)["w"], jb.project(p, c)["w"]
    )
