"""Hard bounds by reparameterisation: train raw values, constrain them in the loss.

A synaptic filter (an equinox module) turns an input spike train into a
current, ``gain * (spikes * exp(-t / tau)) + bias``. Its time constant must
stay in [5 ms, 40 ms] and its gain must be non-negative. We fit it to a
recording made with tau = 80 ms, so the best admissible tau sits on the upper
bound.

Instead of penalising the bounds, the optimiser works on *raw* values, and
``jaxbounds.constrain`` maps them into the box at the top of the loss
(scaled sigmoid for tau, shifted softplus for the gain, identity for the
bias). Every model the loss sees is admissible, at every step; and because
jaxbounds computes the sigmoid from the nearer bound with an analytic
gradient, tau keeps creeping towards the wall instead of stalling where a
naive ``lo + w * sigmoid(raw)`` rounds onto it (raw > 17 in float32).

Then ``violations`` checks the fitted model, and ``save_bounds`` /
``load_bounds`` keep the bounds beside a checkpoint.

Run:  python examples/reparam.py     (a few seconds on a CPU; writes only to a
temporary directory)
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import equinox as eqx
import jax
import jax.numpy as jnp
import optax

import jaxbounds as jb

DT = 1e-3  # s per time step


class SynapticFilter(eqx.Module):
    tau: jax.Array  # s, in [5 ms, 40 ms]
    gain: jax.Array  # >= 0
    bias: jax.Array  # unbounded

    def __call__(self, spikes: jax.Array) -> jax.Array:
        t = DT * jnp.arange(spikes.shape[-1])
        kernel = jnp.exp(-t / self.tau)
        current = jnp.convolve(spikes, kernel)[: spikes.shape[-1]]
        return self.gain * current + self.bias


def main() -> None:
    key_spikes, key_noise = jax.random.split(jax.random.PRNGKey(0))
    spikes = jax.random.bernoulli(key_spikes, 0.05, (400,)).astype(jnp.float32)
    truth = SynapticFilter(
        tau=jnp.array(0.08), gain=jnp.array(0.7), bias=jnp.array(0.1)
    )
    recording = truth(spikes) + 0.01 * jax.random.normal(key_noise, spikes.shape)

    model = SynapticFilter(
        tau=jnp.array(0.01), gain=jnp.array(1.0), bias=jnp.array(0.0)
    )
    lower, upper = jb.make_bounds(model)
    lower = eqx.tree_at(lambda m: (m.tau, m.gain), lower, (5e-3, 0.0))
    upper = eqx.tree_at(lambda m: m.tau, upper, 40e-3)

    # - Optimise raw values; start from the raw image of the initial model
    raw = jb.unconstrain(model, lower, upper)
    print(f"initial tau {float(model.tau) * 1e3:.1f} ms -> raw {float(raw.tau):+.3f}")

    def loss(raw: SynapticFilter) -> jax.Array:
        m = jb.constrain(raw, lower, upper)  # every m is inside the box
        return jnp.mean((m(spikes) - recording) ** 2)

    optimizer = optax.adam(0.05)

    @jax.jit
    def step(raw: SynapticFilter, state: optax.OptState) -> tuple:
        value, grads = jax.value_and_grad(loss)(raw)
        updates, state = optimizer.update(grads, state)
        return value, optax.apply_updates(raw, updates), state

    @jax.jit
    def slope(raw: SynapticFilter) -> jax.Array:
        return jax.grad(lambda r: jb.constrain(r, lower, upper).tau)(raw).tau

    state = optimizer.init(raw)
    print("\nstep     loss   tau (ms)   gain    bias   raw tau  d tau/d raw")
    for i in range(801):
        value, raw, state = step(raw, state)
        if i % 200 == 0:
            m = jb.constrain(raw, lower, upper)
            print(
                f"{i:4d}  {float(value):.5f}  {float(m.tau) * 1e3:9.4f}  "
                f"{float(m.gain):.3f}  {float(m.bias):+.3f}  {float(raw.tau):+7.2f}"
                f"  {float(slope(raw)):.2e}"
            )

    fitted = jb.constrain(raw, lower, upper)
    print(f"\nfitted tau = {float(fitted.tau) * 1e3:.4f} ms (upper bound 40 ms)")
    print("violations:", jb.violations(fitted, lower, upper))

    # - The naive map would have stalled: its gradient is exactly 0 past raw 17
    naive = jax.grad(lambda r: 5e-3 + 35e-3 * jax.nn.sigmoid(r))(jnp.float32(20.0))
    ours = jax.grad(lambda r: jb.constrain(r, 5e-3, 40e-3))(jnp.float32(20.0))
    print(f"d tau/d raw at raw 20: naive {float(naive):.1e}, ours {float(ours):.1e}")

    # - A model from elsewhere that violates the bounds is reported, by path
    bad = eqx.tree_at(
        lambda m: (m.tau, m.gain), fitted, (jnp.array(0.08), jnp.array(-0.2))
    )
    print("\na model trained without bounds:")
    print(jb.violations(bad, lower, upper))

    # - Keep the bounds with the checkpoint, and load them back for the model
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "bounds.json"
        jb.save_bounds(path, lower, upper)
        print(f"\n{path.name}:\n{path.read_text()}")
        lo, up = jb.load_bounds(path, like=fitted)
        assert jb.violations(fitted, lo, up).ok


if __name__ == "__main__":
    main()
