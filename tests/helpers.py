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
#: Relative tolerance against a float64 NumPy reference, by parameter dtype.
TOL = {jnp.float16: 2e-3, jnp.bfloat16: 1e-2, jnp.float32: 2e-6, jnp.float64: 1e-12}

#: The "exp" penalty's switch to linear, by parameter dtype (independent of
#: jaxbounds' constants: the documented values).
SWITCH = {jnp.float16: 10.0}


def cubic(v):
    """A callable penalty as a user writes one: ``v**3`` (JAX or NumPy arrays)."""
    return v**3


#: Every kind of penalty: the three names and a callable.
PENALTIES = ["exp", "quadratic", "linear", cubic]


def penalty_id(penalty) -> str:
    """A test id for a penalty: its name, or the callable's name."""
    return penalty if isinstance(penalty, str) else penalty.__name__


def numpy_penalty(penalty, dtype=jnp.float64):
    """``(value, slope)`` of a penalty for ``dtype`` parameters, as NumPy functions.

    Written from the documentation, not from jaxbounds: "exp" is ``exp(v)`` up
    to the switch (10 for float16, else 15), then its tangent line there.
    """
    if penalty == "exp":
        s = SWITCH.get(jnp.dtype(dtype).type, 15.0)
        return (
            lambda v: np.exp(np.minimum(v, s)) * (1 + np.maximum(v - s, 0)),
            lambda v: np.exp(np.minimum(v, s)),
        )
    if penalty == "quadratic":
        return (lambda v: v**2, lambda v: 2 * v)
    if penalty == "linear":
        return (lambda v: v, np.ones_like)
    if penalty is cubic:
        return (lambda v: v**3, lambda v: 3 * v**2)
    raise ValueError(f"no NumPy reference for penalty {penalty!r}")


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


def numpy_cost(p, lower=None, upper=None, penalty="exp") -> float:
    """The penalty of one leaf summed, in float64 NumPy (`None`: open side)."""
    value, _ = numpy_penalty(penalty, jnp.asarray(p).dtype)
    total = 0.0
    for v in numpy_violations(p, lower, upper):
        with np.errstate(over="ignore", invalid="ignore"):
            total += float(np.sum(np.where(v > 0, value(np.maximum(v, 0)), 0.0)))
    return total


def numpy_grad(p, lower=None, upper=None, penalty="exp") -> np.ndarray:
    """d/dp of `numpy_cost`, per element, in float64."""
    _, slope = numpy_penalty(penalty, jnp.asarray(p).dtype)
    below, above = numpy_violations(p, lower, upper)
    with np.errstate(over="ignore", invalid="ignore"):
        up = np.where(above > 0, slope(np.maximum(above, 0)), 0.0)
        return up - np.where(below > 0, slope(np.maximum(below, 0)), 0.0)


def numpy_exp_cost(p, lower=None, upper=None) -> float:
    """The documented "exp" penalty summed, in float64 NumPy, with the switch."""
    return numpy_cost(p, lower, upper, "exp")


def numpy_exp_grad(p, lower=None, upper=None) -> np.ndarray:
    """d/dp of `numpy_exp_cost`, per element, in float64."""
    return numpy_grad(p, lower, upper, "exp")


def numpy_tree_cost(params, lower, upper, penalty="exp") -> float:
    """`numpy_cost` summed over the float leaves of a tree (`None`: no bound)."""
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
        total += numpy_cost(p, lo, up, penalty)
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
