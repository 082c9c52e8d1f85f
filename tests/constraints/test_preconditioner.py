"""The metric read from an optax state is the one its step divided by."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from constraints.oracles import adam_metric
from jaxbounds._constraints._preconditioner import hints, preconditioner

LR = 0.1
PARAMS = {"w": jnp.zeros((2, 3)), "b": jnp.zeros(3)}


def grads(k):
    rng = np.random.default_rng(k)
    return {
        "w": jnp.asarray(rng.normal(size=(2, 3)) * [[1.0, 10.0, 0.01]], jnp.float32),
        "b": jnp.asarray(rng.normal(size=3), jnp.float32),
    }


def run(tx, steps=3):
    state = tx.init(PARAMS)
    step = jax.jit(tx.update)
    for k in range(steps):
        g = grads(k)
        u, state = step(g, state, PARAMS)
    return g, u, state


# No momentum (b1=0 or none): the update is -LR * g / d, so d = -LR * g / u
# is the preconditioner the step used, whatever the optimizer's formula.
DIVIDING = {
    "adam": optax.adam(LR, b1=0.0, b2=0.9, eps=1e-3),
    "adamw": optax.adamw(LR, b1=0.0, weight_decay=0.0),
    "nadam": optax.nadam(LR, b1=0.0, eps_root=1e-4),
    "amsgrad": optax.amsgrad(LR, b1=0.0, b2=0.5),
    "adabelief": optax.adabelief(LR, b1=0.0, eps=1e-2),
    "yogi": optax.yogi(LR, b1=0.0, eps=1e-2),
    "rmsprop": optax.rmsprop(LR, eps=1e-2),
    "rmsprop_centered": optax.rmsprop(LR, centered=True, decay=0.5),
    "rmsprop_corrected": optax.rmsprop(
        LR, bias_correction=True, eps_in_sqrt=False, eps=1e-2, decay=0.7
    ),
    "adagrad": optax.adagrad(LR, eps=1e-3),
    "chain": optax.chain(optax.clip(1e3), optax.adam(LR, b1=0.0, eps=1e-3)),
    "inject": optax.inject_hyperparams(optax.adam)(
        learning_rate=LR, b1=0.0, b2=0.8, eps=1e-2
    ),
    "multisteps": optax.MultiSteps(optax.rmsprop(LR, eps=1e-2), 1),
}


@pytest.mark.parametrize("name", list(DIVIDING))
def test_metric_is_what_the_step_divided_by(name):
    tx = DIVIDING[name]
    g, u, state = run(tx)
    d = preconditioner(state, hints(tx))
    for k in PARAMS:
        np.testing.assert_allclose(d[k], -LR * g[k] / u[k], rtol=2e-5)


def test_adam_metric_against_numpy():
    tx = optax.adam(LR)  # b1 = 0.9: the update is not -LR g / d, nu still is
    _, _, state = run(tx, 4)
    d = preconditioner(state, hints(tx))
    ref = adam_metric([grads(k)["w"] for k in range(4)])
    np.testing.assert_allclose(d["w"], ref, rtol=1e-5)


@pytest.mark.parametrize(
    "tx",
    [optax.sgd(LR), optax.sgd(LR, momentum=0.9), optax.lion(LR)],
    ids=["sgd", "momentum", "lion"],
)
def test_no_preconditioner_is_identity(tx):
    assert preconditioner(run(tx, 1)[2], hints(tx)) is None


def test_masked_leaves_have_no_metric():
    tx = optax.masked(optax.adam(LR), {"w": True, "b": False})
    d = preconditioner(run(tx, 2)[2], hints(tx))
    assert d["b"] is None and d["w"].shape == (2, 3)


def test_partitions_each_read_their_own():
    tx = optax.multi_transform(
        {"a": optax.adam(LR, b1=0.0, eps=1e-3), "r": optax.rmsprop(LR, eps=1e-2)},
        {"w": "a", "b": "r"},
    )
    g, u, state = run(tx)
    d = preconditioner(state, hints(tx))
    for k in PARAMS:
        np.testing.assert_allclose(d[k], -LR * g[k] / u[k], rtol=2e-5)


def test_unread_preconditioner_raises_naming_it():
    tx = optax.adafactor(LR)
    with pytest.raises(ValueError, match=r"adafactor.*metric="):
        preconditioner(tx.init({"w": jnp.ones((4, 5))}), hints(tx))


def test_reads_under_jit():
    tx = optax.adam(LR, b1=0.0, eps=1e-3)
    found = hints(tx)
    g, u, state = run(tx)
    d = jax.jit(lambda s: preconditioner(s, found))(state)
    np.testing.assert_allclose(d["b"], -LR * g["b"] / u["b"], rtol=2e-5)
