"""project_to_constraints and add_constraint_penalty in optax chains."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import jaxbounds as jb
from constraints.oracles import keras_max_norm, pav_row

RNG = np.random.default_rng(0)
W, G = RNG.normal(size=(4, 3)), RNG.normal(size=(4, 3)) * 5
C = jb.Constraints(
    ("w", jb.MaxNorm(1.0, axis=0)), ("t", jb.Ordered()), jb.LessEqual("a", "b", 0.1)
)


def _params(dtype=jnp.float64):
    return {
        "w": jnp.asarray(W, dtype),
        "t": jnp.asarray([0.1, 0.5, 0.9], dtype),
        "a": jnp.asarray([0.2, 0.3], dtype),
        "b": jnp.asarray([0.5, 0.5], dtype),
        "free": jnp.ones(2, dtype),
    }


def _grads(dtype=jnp.float64):
    return {
        "w": jnp.asarray(G, dtype),
        "t": jnp.asarray([-1.0, 2.0, 0.0], dtype),
        "a": jnp.asarray([-1.0, 0.0], dtype),
        "b": jnp.asarray([1.0, 0.0], dtype),
        "free": jnp.ones(2, dtype),
    }


def test_one_sgd_step_against_numpy():
    tx = optax.chain(optax.sgd(0.1), jb.project_to_constraints(C))
    p = _params()
    u, _ = tx.update(_grads(), tx.init(p), p)
    new = optax.apply_updates(p, u)
    np.testing.assert_allclose(new["w"], keras_max_norm(W - 0.1 * G, 1.0, 0), rtol=1e-6)
    np.testing.assert_allclose(new["t"], pav_row(np.array([0.2, 0.3, 0.9])), atol=1e-12)
    a, b = np.array([0.3, 0.3]), np.array([0.4, 0.5])  # after the step
    mid = (a[0] + b[0] - 0.1) / 2
    np.testing.assert_allclose(new["a"], [mid, 0.3], atol=1e-12)
    np.testing.assert_allclose(new["b"], [mid + 0.1, 0.5], atol=1e-12)
    assert u["free"] is not None
    np.testing.assert_allclose(new["free"], 0.9)


SLOW = pytest.mark.slow


@pytest.mark.parametrize(
    "dtype",
    [
        pytest.param(jnp.float16, marks=SLOW),
        pytest.param(jnp.bfloat16, marks=SLOW),
        jnp.float32,
    ],
)
def test_exact_landing_under_jit(dtype):
    tx = optax.chain(optax.adam(0.3), jb.project_to_constraints(C))
    p = _params(dtype)
    state = tx.init(p)

    @jax.jit
    def step(p, state, i):
        g = jax.tree.map(lambda x: jnp.sin(100 * x + i).astype(x.dtype) * 3, p)
        u, state = tx.update(g, state, p)
        return optax.apply_updates(p, u), state

    for i in range(8):
        p, state = step(p, state, i)
        cd = jnp.float32
        n = jnp.sqrt(jnp.sum(jnp.square(p["w"].astype(cd)), axis=0))
        assert bool((n <= 1.0).all()), (i, n)
        assert bool((jnp.diff(p["t"]) >= 0).all()), i
        assert bool(
            (p["a"].astype(cd) <= p["b"].astype(cd) - jnp.asarray(0.1, cd)).all()
        )


def test_masked_and_multisteps():
    tx = optax.chain(optax.sgd(0.1), jb.project_to_constraints(C))
    mask = {"w": True, "t": False, "a": True, "b": True, "free": False}
    masked = optax.masked(tx, mask)
    p = _params()
    u, _ = masked.update(_grads(), masked.init(p), p)
    new = optax.apply_updates(p, u)
    np.testing.assert_allclose(new["w"], keras_max_norm(W - 0.1 * G, 1.0, 0), rtol=1e-6)
    np.testing.assert_array_equal(u["t"], _grads()["t"])  # masked out: passed through
    multi = optax.MultiSteps(tx, every_k_schedule=2)
    state = multi.init(p)
    for _ in range(2):
        u, state = multi.update(_grads(), state, p)
        p = optax.apply_updates(p, u)
    assert jb.violations(p, C).ok


def test_nnx_optimizer_wrt_param():
    from flax import nnx

    class Net(nnx.Module):
        def __init__(self):
            self.lin = nnx.Linear(3, 2, rngs=nnx.Rngs(0))

    net = Net()
    c = jb.Constraints(("lin.kernel", jb.MaxNorm(0.5, axis=0)))
    opt = nnx.Optimizer(
        net, optax.chain(optax.sgd(1.0), jb.project_to_constraints(c)), wrt=nnx.Param
    )
    grads = nnx.grad(lambda m: jnp.sum(m.lin(jnp.ones((1, 3))) ** 2) * -10)(net)
    opt.update(net, grads)
    n = np.linalg.norm(np.asarray(net.lin.kernel.get_value()), axis=0)
    assert (n <= 0.5).all() and n.max() > 0.49


def test_add_constraint_penalty_adds_the_gradient():
    tx = jb.add_constraint_penalty(C, 0.5, penalty="quadratic")
    p = _params()
    p["w"] = p["w"] * 3
    zeros = jax.tree.map(jnp.zeros_like, p)
    u, _ = tx.update(zeros, tx.init(p), p)
    ref = jax.grad(lambda q: jb.constraint_cost(q, C, penalty="quadratic"))(p)
    for k in p:
        np.testing.assert_allclose(u[k], 0.5 * ref[k], rtol=1e-12)
    with pytest.raises(ValueError, match="scale"):
        jb.add_constraint_penalty(C, -1.0)
    with pytest.raises(ValueError, match="needs the params: call update"):
        tx.update(zeros, tx.init(p))


def test_add_constraint_penalty_takes_a_schedule_and_counts_its_steps():
    c = jb.Constraints(("w", jb.MaxNorm(1.0, axis=0)))
    p = {"w": jnp.asarray([[3.0, 0.1], [4.0, 0.1]])}
    zeros = {"w": jnp.zeros((2, 2))}
    # d/dw (||w_col|| - 1) = w_col / ||w_col|| for the column outside, 0 inside
    unit = np.array([[0.6, 0.0], [0.8, 0.0]])
    tx = jb.add_constraint_penalty(
        c, optax.linear_schedule(0.0, 1.0, 4), penalty="linear"
    )
    state = tx.init(p)
    assert isinstance(state, jb.BoundsPenaltyState) and int(state.count) == 0
    for k in range(2):
        u, state = tx.update(zeros, state, p)
        np.testing.assert_allclose(u["w"], k / 4 * unit, rtol=1e-6, atol=1e-12)
    u, state = jax.jit(tx.update)(zeros, state, p)
    np.testing.assert_allclose(u["w"], 2 / 4 * unit, rtol=1e-6, atol=1e-12)
    assert int(state.count) == 3


@pytest.mark.parametrize("dtype", [jnp.float16, jnp.float32])
def test_landing_keeps_relations_and_norms_exact(dtype):
    # many pairs and units moved far by one step: a nearest-rounded update
    # would land some of them an ulp outside
    rng = np.random.default_rng(5)
    c = jb.Constraints(jb.LessEqual("a", "b", 0.1), ("w", jb.MaxNorm(1.1, axis=0)))
    p = {
        "a": jnp.asarray(rng.uniform(0, 50, 2000), dtype),
        "b": jnp.asarray(rng.uniform(0, 50, 2000), dtype),
        "w": jnp.asarray(rng.normal(size=(7, 500)) * 30, dtype),
    }
    g = jax.tree.map(lambda x: jnp.asarray(rng.normal(size=x.shape) * 7, dtype), p)
    tx = optax.chain(optax.sgd(1.0), jb.project_to_constraints(c))
    u, _ = jax.jit(tx.update)(g, tx.init(p), p)
    new = optax.apply_updates(p, u)
    cd = jnp.float32
    assert bool(
        (new["a"].astype(cd) <= new["b"].astype(cd) - jnp.asarray(0.1, cd)).all()
    )
    n = jnp.sqrt(jnp.sum(jnp.square(new["w"].astype(cd)), axis=0))
    assert bool((n <= jnp.asarray(1.1, cd)).all())


def test_interval_bfloat16_updates_of_float16_params_land_on_the_bound():
    """The free step 39.96875 + 0.5 is clipped to 40 exactly (hand-computed):
    the update 0.03125 is a bfloat16 that only the float16 difference finds."""
    p = {"w": jnp.array([39.96875, -39.96875, 0.5], jnp.float16)}
    u = {"w": jnp.array([0.5, -0.5, 0.25], jnp.bfloat16)}
    tx = jb.project_to_constraints(jb.Constraints(("w", jb.Interval(-40.0, 40.0))))
    out, _ = jax.jit(tx.update)(u, tx.init(p), p)
    new = optax.apply_updates(p, out)["w"]
    assert new.dtype == jnp.float16
    np.testing.assert_array_equal(np.asarray(new, np.float32), [40.0, -40.0, 0.75])
