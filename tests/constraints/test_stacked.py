"""Same-kind small leaves projected together give what one by one gives."""

import jax.numpy as jnp
import numpy as np
import optax

import jaxbounds as jb
from constraints.oracles import keras_max_norm
from jaxbounds._constraints import _stacked

RNG = np.random.default_rng(0)
PARAMS = {
    f"l{i}": {"kernel": jnp.asarray(RNG.normal(size=(6, 4)) * 3)} for i in range(5)
}
RULES = [(f"l{i}.kernel", jb.MaxNorm(0.5 + i, axis=0)) for i in range(5)]
C = jb.Constraints(*RULES)


def _both(fn, monkeypatch):
    batched = fn()
    monkeypatch.setattr(_stacked, "BATCH_MAX_SIZE", 0)
    return batched, fn()


def test_project_batched_equals_per_leaf(monkeypatch):
    batched, single = _both(lambda: jb.project(PARAMS, C), monkeypatch)
    for i in range(5):
        k = f"l{i}"
        np.testing.assert_array_equal(batched[k]["kernel"], single[k]["kernel"])
        ref = keras_max_norm(PARAMS[k]["kernel"], 0.5 + i, 0)
        np.testing.assert_allclose(batched[k]["kernel"], ref, rtol=1e-6)


def test_projection_step_batched_equals_per_leaf(monkeypatch):
    tx = optax.chain(optax.sgd(0.1), jb.project_to_constraints(C))
    grads = {k: {"kernel": jnp.ones((6, 4))} for k in PARAMS}

    def step():
        u, _ = tx.update(grads, tx.init(PARAMS), PARAMS)
        return optax.apply_updates(PARAMS, u)

    batched, single = _both(step, monkeypatch)
    for k in PARAMS:
        np.testing.assert_array_equal(batched[k]["kernel"], single[k]["kernel"])
    assert jb.violations(batched, C).ok
