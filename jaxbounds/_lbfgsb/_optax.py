"""`lbfgsb`: L-BFGS-B as an optax transformation (`optax.lbfgs`'s convention).

Each update is one `step` of the solver (`jaxbounds._lbfgsb._iteration`),
its line search calling ``value_fn``; the updates land the params exactly on
the accepted point.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any, NamedTuple

import chex  # type: ignore[import-untyped]
import equinox as eqx
import jax.numpy as jnp
import optax  # type: ignore[import-untyped]

from .._constraints._rules import NO_UPPER
from .._transform import needs_params
from ._iteration import init, problem_of, start, step
from ._kept import new_kept
from ._memory import new_memory
from ._params import Split, as_data, grads_like, param_part, split, updates_like
from ._tree import tmap


class LbfgsbState(NamedTuple):
    """State of `lbfgsb`.

    ``value`` and ``grad`` are the objective and its gradient at the params
    after the last update (read by `optax.value_and_grad_from_state`; ``inf``
    before the first update). ``memory`` holds the stored pairs and ``kept``
    the subspace step's products kept from one update to the next.
    """

    count: chex.Array
    memory: Any
    kept: Any  # the subspace step's free-set products, kept between updates
    value: chex.Array
    grad: chex.ArrayTree


def lbfgsb(
    lower: Any, upper: chex.ArrayTree = NO_UPPER, *, memory_size: int = 10
) -> optax.GradientTransformationExtraArgs:
    """L-BFGS-B as an optax transformation, in `optax.lbfgs`'s calling convention.

    Each ``update(grad, state, params, value=..., grad=..., value_fn=...)``
    is one full L-BFGS-B iteration (Cauchy point, subspace step, and a line
    search that calls ``value_fn``, see `minimize`), and the returned updates
    move the params to the accepted point:
    ``optax.apply_updates(params, updates)`` is inside the box, exactly
    (each update is chosen so that the rounded sum lands where the line
    search evaluated). The state caches the value and gradient at that
    point, so `optax.value_and_grad_from_state` reuses them. Extra keyword
    arguments of ``update`` are passed to ``value_fn``. Params that start
    outside the box are projected in first (then ``value_fn`` is evaluated
    once more, at the projected point). If the line search fails, the
    update is zero (or the projection) and the memory is emptied.

    Called eagerly, ``update`` is one compiled program per ``value_fn`` (the
    same object), params structure and pattern of infinite / `None` bound
    sides: finite bounds and params are its data, Python floats included,
    so a new solver with other float bounds compiles nothing. Under the
    caller's `jax.jit` it is traced into the caller's program.

    The parameters are optimised (real floating arrays, and Python floats in
    plain containers, as for `minimize`); other array leaves get zero
    updates, other leaves `None`. Use it alone, not chained after other
    transformations (it computes its own step).

    Args:
        lower: lower bound tree, shaped like the params (see `make_bounds`),
            or a `Constraints` of `Interval` rules with ``upper`` left out
            (as in `minimize`).
        upper: upper bound tree.
        memory_size: the number ``m`` of stored correction pairs.

    Returns:
        An `optax.GradientTransformationExtraArgs`.

    Raises:
        ValueError: (on ``init`` / ``update``) if the bound trees do not match
            the params, a bound is NaN or lower > upper, naming the path.
        TypeError: likewise for malformed bounds.

    Examples:
        >>> import jax.numpy as jnp, optax
        >>> import jaxbounds as jb
        >>> def f(x):
        ...     return jnp.sum((x - 2.0) ** 2)
        >>> params = jnp.array([0.0, 1.0, 3.0])
        >>> solver = jb.lbfgsb(0.0, 1.5)
        >>> state = solver.init(params)
        >>> value_and_grad = optax.value_and_grad_from_state(f)
        >>> for _ in range(3):
        ...     value, grad = value_and_grad(params, state=state)
        ...     updates, state = solver.update(
        ...         grad, state, params, value=value, grad=grad, value_fn=f
        ...     )
        ...     params = optax.apply_updates(params, updates)
        >>> print(params)
        [1.5 1.5 1.5]
    """
    if memory_size < 1:
        raise ValueError(f"memory_size must be at least 1, got {memory_size}")

    def init_fn(params: chex.ArrayTree) -> LbfgsbState:
        sp = split(params, lower, upper, "lbfgsb")
        zeros = tmap(jnp.zeros_like, sp.x)
        return LbfgsbState(
            count=jnp.zeros((), jnp.int32),
            memory=new_memory(sp.x, memory_size, sp.dtype),
            kept=new_kept(sp.x, memory_size, sp.dtype),
            value=jnp.asarray(jnp.inf, sp.dtype),
            grad=grads_like(sp, zeros),
        )

    def update_fn(
        updates: chex.ArrayTree,
        state: LbfgsbState,
        params: chex.ArrayTree | None = None,
        *,
        value: chex.Array | None = None,
        grad: chex.ArrayTree | None = None,
        value_fn: Callable[..., chex.Array] | None = None,
        **extra_args: Any,
    ) -> tuple[chex.ArrayTree, LbfgsbState]:
        needs_params(params, "lbfgsb")
        if value_fn is None:
            raise ValueError(
                "lbfgsb needs value_fn: call update(updates, state, params, "
                "value=..., grad=..., value_fn=fun), as for optax.lbfgs"
            )
        sp = split(params, lower, upper, "lbfgsb")
        fn_kwargs = kwargs_for(value_fn, extra_args)
        grad = updates if grad is None else grad
        if value is not None:  # (a Python float would be static: data instead)
            value = jnp.asarray(value)
        u, new_state = _update(value_fn, as_data(sp), state, grad, value, fn_kwargs)
        return updates_like(sp, u), new_state

    return optax.GradientTransformationExtraArgs(init_fn, update_fn)


@eqx.filter_jit
def _update(
    value_fn: Callable[..., Any],
    sp: Split,
    state: LbfgsbState,
    grad: Any,
    value: Any,
    fn_kwargs: dict[str, Any],
) -> tuple[Any, LbfgsbState]:
    """One update, one `step`, compiled once per ``value_fn`` and structure.

    The start is the solver's (`start`: the params projected in the way the
    update lands them); the memory and the kept products come from the state.
    """
    problem = problem_of(value_fn, sp, relative=True, **fn_kwargs)
    here = start(problem, sp.x, value, param_part(sp, grad))
    solver = init(problem, here, state.memory.age.shape[0])
    solver = solver._replace(memory=state.memory, kept=state.kept, steps=state.count)
    new = step(problem, solver)
    return new.update, LbfgsbState(
        count=optax.safe_increment(state.count),
        memory=new.memory,
        kept=new.kept,
        value=jnp.asarray(new.here.f, state.value.dtype),
        grad=grads_like(sp, new.here.g),
    )


def kwargs_for(fn: Callable[..., Any], kwargs: dict[str, Any]) -> dict[str, Any]:
    """The keyword arguments ``fn`` accepts (as optax's line searches pick them)."""
    if not kwargs:
        return {}
    sig = inspect.signature(fn)
    if any(p.kind is p.VAR_KEYWORD for p in sig.parameters.values()):
        return dict(kwargs)
    unknown = sorted(set(kwargs) - set(sig.parameters))
    if unknown:
        raise TypeError(
            "lbfgsb.update got keyword arguments that value_fn does not take: "
            f"{unknown}"
        )
    return dict(kwargs)
