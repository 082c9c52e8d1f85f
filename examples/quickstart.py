"""Quickstart: Rockpool's "constrained optimisation" how-to, in jaxbounds.

Run: python examples/quickstart.py   (prints as it goes; writes no files)
"""

import jax
import jax.numpy as jnp
import numpy as np
import optax

import jaxbounds as jb


def main() -> None:
    # - A single LIF neuron's parameters, as Rockpool's LIFJax(1) holds them
    params = {
        "tau_mem": jnp.array([0.02]),
        "tau_syn": jnp.array([[0.02]]),
        "bias": jnp.array([0.0]),
        "threshold": jnp.array([1.0]),
    }
    print("Parameters:", params)

    # - How the cost behaves across a (0, 1) box
    print("\nCost of one element x against the box (0, 1):")
    for x in [-1.0, -0.5, -1e-6, 0.0, 0.5, 1.0, 1.5, 2.0]:
        cost = jb.bounds_cost({"x": jnp.array(x)}, {"x": 0.0}, {"x": 1.0})
        print(f"  x = {x:>6}: cost = {float(cost):.6f}")

    # - Bound templates mirror the parameters, unbounded by default
    lower, upper = jb.make_bounds(params)
    print("\nmake_bounds:", lower, upper)

    # - Time constants: tau_syn in (0 s, 200 ms)
    lower["tau_syn"] = 0.0
    upper["tau_syn"] = 200e-3
    print("bounds set:", lower, upper)
    print("bounds_cost inside the box:", float(jb.bounds_cost(params, lower, upper)))

    # - Just outside costs ~1, and the gradient points back inside
    outside = dict(params, tau_syn=jnp.array([[-1e-6]]))
    print(
        "bounds_cost at tau_syn = -1e-6:", float(jb.bounds_cost(outside, lower, upper))
    )
    grad = jax.grad(jb.bounds_cost)(outside, lower, upper)
    print("gradient wrt tau_syn:", grad["tau_syn"].ravel())

    # - A training loop with the penalty in the loss: the task pulls tau_syn
    #   towards -0.1 (invalid), the bound holds it at 0 to within a step.
    def loss(p: dict) -> jax.Array:
        task = jnp.sum((p["tau_syn"] + 0.1) ** 2)
        return task + jb.bounds_cost(p, lower, upper)

    optimizer = optax.adam(1e-3)

    @jax.jit
    def step(p: dict, state: optax.OptState) -> tuple:
        value, grads = jax.value_and_grad(loss)(p)
        updates, state = optimizer.update(grads, state, p)
        return value, optax.apply_updates(p, updates), state

    p, state = params, optimizer.init(params)
    print("\nTraining with the penalty in the loss:")
    for i in range(301):
        value, p, state = step(p, state)
        if i % 50 == 0:
            tau = float(np.asarray(p["tau_syn"]).ravel()[0])
            print(f"  step {i:3d}: loss {float(value):.5f}  tau_syn {tau:+.5f}")

    # - Projection makes it exact
    p = jb.clip_to_bounds(p, lower, upper)
    print("after clip_to_bounds: tau_syn =", float(p["tau_syn"].ravel()[0]))
    print("bounds_cost after clip:", float(jb.bounds_cost(p, lower, upper)))


if __name__ == "__main__":
    main()
