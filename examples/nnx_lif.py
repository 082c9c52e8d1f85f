"""A small flax nnx LIF network trained with bounds declared on its parameters.

The time constants are declared with their valid range where they are made,
``nnx.Param(tau, lower=DT, upper=0.1)``; `jaxbounds.make_bounds` reads the
declarations, and `jaxbounds.project_to_bounds`, last in the chain of an
``nnx.Optimizer``, keeps them there. The lower bound is one time step, not 0:
the decay ``exp(-dt / tau)`` has a non-finite gradient at ``tau = 0``.

The task: tell two kinds of Poisson spike trains apart (channel 0 or channel
1 fires faster) from the spike counts of 8 LIF neurons. The learning rate is
high for time constants of tens of milliseconds, so the same run without the
projection drives some of them below one time step (a decay outside (0, 1)).

Run: python examples/nnx_lif.py   (prints as it goes; no files; ~20 s on 2 CPU cores)
"""

from __future__ import annotations

import argparse
import time

import jax
import jax.numpy as jnp
import optax
from flax import nnx

import jaxbounds as jb

DT = 1e-3  # one time step, seconds
STEPS_IN_TRIAL = 100


class LIF(nnx.Module):
    """Input weights, then leaky integrate-and-fire neurons, then a readout."""

    def __init__(self, n_in: int, n: int, n_out: int, rngs: nnx.Rngs):
        self.w_in = nnx.Param(jax.random.normal(rngs.params(), (n_in, n)) * 2.0)
        self.tau_syn = nnx.Param(jnp.full(n, 0.02), lower=DT, upper=0.1, family="taus")
        self.tau_mem = nnx.Param(jnp.full(n, 0.02), lower=DT, upper=0.1, family="taus")
        self.threshold = nnx.Param(jnp.ones(n), lower=0.1)
        self.w_out = nnx.Param(jax.random.normal(rngs.params(), (n, n_out)) * 0.5)

    def __call__(self, spikes_in: jax.Array) -> jax.Array:
        """Spike trains ``(batch, time, n_in)`` -> class scores ``(batch, n_out)``."""
        alpha = jnp.exp(-DT / self.tau_mem[...])
        beta = jnp.exp(-DT / self.tau_syn[...])
        current_in = spikes_in @ self.w_in[...]
        threshold = self.threshold[...]

        def step(carry, x):
            i_syn, v = carry
            i_syn = beta * i_syn + x
            v = alpha * v + (1 - alpha) * i_syn * 10.0
            s = spike(v - threshold)
            return (i_syn, v - s * threshold), s

        zeros = jnp.zeros(current_in.shape[:1] + alpha.shape)
        _, spikes = jax.lax.scan(step, (zeros, zeros), jnp.swapaxes(current_in, 0, 1))
        return spikes.mean(axis=0) @ self.w_out[...]


@jax.custom_jvp
def spike(x: jax.Array) -> jax.Array:
    return (x > 0).astype(x.dtype)


@spike.defjvp
def _spike_jvp(primals, tangents):  # a fast-sigmoid surrogate gradient
    (x,), (dx,) = primals, tangents
    return spike(x), dx / (1 + 10 * jnp.abs(x)) ** 2


def trials(key: jax.Array, n: int) -> tuple[jax.Array, jax.Array]:
    """``n`` trials of two Poisson channels; label 1 when channel 1 is faster."""
    k_label, k_spikes = jax.random.split(key)
    labels = jax.random.bernoulli(k_label, 0.5, (n,)).astype(jnp.int32)
    fast, slow = 60.0, 20.0  # Hz
    rates = jnp.where(
        labels[:, None] == 1, jnp.array([slow, fast]), jnp.array([fast, slow])
    )
    p = rates[:, None, :] * DT
    spikes = jax.random.bernoulli(k_spikes, p, (n, STEPS_IN_TRIAL, 2))
    return spikes.astype(jnp.float32), labels


def loss_fn(model: LIF, x: jax.Array, y: jax.Array) -> jax.Array:
    logits = model(x)
    return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()


def train(project: bool, steps: int, lr: float, log_every: int) -> tuple[LIF, float]:
    model = LIF(2, 8, 2, nnx.Rngs(0))
    lower, upper = jb.make_bounds(model)  # the declared bounds, as plain dicts
    chain = [optax.adam(lr)] + ([jb.project_to_bounds(lower, upper)] if project else [])
    optimizer = nnx.Optimizer(model, optax.chain(*chain), wrt=nnx.Param)
    lowest = float(jnp.min(model.tau_mem[...]))

    @nnx.jit
    def step(model: LIF, optimizer: nnx.Optimizer, x: jax.Array, y: jax.Array):
        loss, grads = nnx.value_and_grad(loss_fn)(model, x, y)
        optimizer.update(model, grads)
        return loss, jnp.min(jnp.minimum(model.tau_mem[...], model.tau_syn[...]))

    key = jax.random.key(1)
    for i in range(1, steps + 1):
        key, sub = jax.random.split(key)
        loss, smallest = step(model, optimizer, *trials(sub, 32))
        lowest = min(lowest, float(smallest))
        if i % log_every == 0 or i == steps:
            name = "project" if project else "none"
            print(f"  [{name}] step {i:3d}/{steps} loss {float(loss):.3f}")
    return model, lowest


def accuracy(model: LIF) -> float:
    x, y = trials(jax.random.key(123), 256)
    return float(jnp.mean(jnp.argmax(model(x), axis=-1) == y))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--lr", type=float, default=5e-2)
    parser.add_argument("--log-every", type=int, default=25)
    args = parser.parse_args()

    start = time.perf_counter()
    lower, upper = jb.make_bounds(LIF(2, 8, 2, nnx.Rngs(0)))
    print("Declared bounds, read by jb.make_bounds:")
    for path in jb.paths(lower):
        lo = jax.tree.leaves(lower)[jb.paths(lower).index(path)]
        up = jax.tree.leaves(upper)[jb.paths(upper).index(path)]
        print(f"  {path:10s} [{lo}, {up}]")
    print(f"Training for {args.steps} steps at lr {args.lr}:")
    runs = {
        name: train(name == "project", args.steps, args.lr, args.log_every)
        for name in ("none", "project")
    }

    print(f"\nOutcome after {args.steps} steps:")
    for name, (model, lowest) in runs.items():
        decays = jnp.exp(
            -DT / jnp.concatenate([model.tau_mem[...], model.tau_syn[...]])
        )
        invalid = int(jnp.sum(~((decays > 0) & (decays < 1))))
        print(
            f"  {name}: smallest tau during training {lowest:.4f} s "
            f"(one time step is {DT}), {invalid} of {decays.size} decays outside "
            "(0, 1), "
            f"held-out accuracy {accuracy(model):.2f}"
        )
    print("\njb.violations after training with 'project':")
    print(jb.violations(runs["project"][0], lower, upper))
    print(f"\n(finished in {time.perf_counter() - start:.1f} s)")


if __name__ == "__main__":
    main()
