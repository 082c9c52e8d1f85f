"""What several test files share: dtype lists, NumPy references, a compile counter."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax._src import monitoring

#: Every float dtype a parameter may have.
FLOATS = [jnp.float16, jnp.bfloat16, jnp.float32, jnp.float64]
#: The narrow ones, computed in float32.
LOW = [jnp.float16, jnp.bfloat16]

#: The "exp" penalty's switch to linear, by parameter dtype (independent of
#: jaxbounds' constants: the documented values).
SWITCH = {jnp.float16: 10.0}


def bound_as_cost_sees_it(bound, dtype) -> np.ndarray:
    """A bound cast to the compute dtype (at least float32), back in float64."""
    cdt = np.float64 if jnp.dtype(dtype) == jnp.float64 else np.float32
    return np.asarray(np.asarray(bound, np.float64).astype(cdt), np.float64)


def numpy_violations(p, lower, upper) -> tuple[np.ndarray, np.ndarray]:
    """``(lower - p, p - upper)`` in float64, bounds as the cost sees them."""
    dtype = jnp.asarray(p).dtype
    x = np.asarray(jnp.asarray(p).astype(jnp.float64))
    lo = -np.inf if lower is None else bound_as_cost_sees_it(lower, dtype)
    up = np.inf if upper is None else bound_as_cost_sees_it(upper, dtype)
    with np.errstate(invalid="ignore"):
        return np.broadcast_to(lo - x, x.shape), np.broadcast_to(x - up, x.shape)


def numpy_exp_cost(p, lower, upper) -> float:
    """The documented "exp" penalty summed, in float64 NumPy, with the switch."""
    switch = SWITCH.get(jnp.asarray(p).dtype.type, 15.0)
    total = 0.0
    for v in numpy_violations(p, lower, upper):
        with np.errstate(over="ignore", invalid="ignore"):
            cont = np.exp(np.minimum(v, switch)) * (1 + np.maximum(v - switch, 0))
        total += float(np.sum(np.where(v > 0, cont, 0.0)))
    return total


def numpy_exp_grad(p, lower, upper) -> np.ndarray:
    """d/dp of `numpy_exp_cost`, per element, in float64."""
    switch = SWITCH.get(jnp.asarray(p).dtype.type, 15.0)
    below, above = numpy_violations(p, lower, upper)
    slope = lambda v: np.exp(np.minimum(v, switch))  # noqa: E731
    with np.errstate(over="ignore", invalid="ignore"):
        return np.where(above > 0, slope(above), 0.0) - np.where(
            below > 0, slope(below), 0.0
        )


def numpy_tree_cost(params, lower, upper) -> float:
    """`numpy_exp_cost` summed over the float leaves of a dict / list tree."""
    total = 0.0
    leaves = zip(
        *(
            jax.tree.leaves(t, is_leaf=lambda x: x is None)
            for t in (params, lower, upper)
        )
    )
    for p, lo, up in leaves:
        if p is None or not jnp.issubdtype(jnp.asarray(p).dtype, jnp.floating):
            continue
        total += numpy_exp_cost(p, lo, up)
    return total


@contextlib.contextmanager
def count_compilations() -> Iterator[list[str]]:
    """Count XLA compilations in the block (JAX's backend-compile events)."""
    seen: list[str] = []

    def listener(event: str, duration: float, **kwargs) -> None:
        if event == "/jax/core/compile/backend_compile_duration":
            seen.append(event)

    monitoring.register_event_duration_secs_listener(listener)
    try:
        yield seen
    finally:
        monitoring.unregister_event_duration_listener(listener)


def gradient_steps(tx, loss, params, steps: int):
    """``(params, state)`` after ``steps`` jitted steps of ``tx`` on ``grad(loss)``."""
    state = tx.init(params)

    @jax.jit
    def step(params, state):
        updates, state = tx.update(jax.grad(loss)(params), state, params)
        return optax.apply_updates(params, updates), state

    for _ in range(steps):
        params, state = step(params, state)
    return params, state


def linesearch_step(tx, fun):
    """A jitted step of an L-BFGS-style ``tx`` fed by `optax.value_and_grad_from_state`.

    The step returns ``(params, state, value)``, value being the one used.
    """
    value_and_grad = optax.value_and_grad_from_state(fun)

    @jax.jit
    def step(params, state):
        value, grad = value_and_grad(params, state=state)
        updates, state = tx.update(
            grad, state, params, value=value, grad=grad, value_fn=fun
        )
        return optax.apply_updates(params, updates), state, value

    return step
