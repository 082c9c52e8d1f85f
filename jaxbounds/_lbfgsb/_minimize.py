"""`minimize`: L-BFGS-B to convergence in one `jax.lax.while_loop`.

One loop of `step` until `terminate` (the projected gradient is small, or
the value stops decreasing), so a solve compiles once, runs under
`jax.jit`, and a batch of problems is one `jax.vmap`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import chex  # type: ignore[import-untyped]
import equinox as eqx
import jax
import jax.numpy as jnp

from .._constraints._rules import NO_UPPER
from ._iteration import SolverState, init, problem_of, start, step, terminate
from ._params import Split, as_data, join, split
from ._progress import active_bounds, reporter
from ._tree import leaves


class MinimizeResult(NamedTuple):
    """What `minimize` returns.

    Attributes:
        params: the solution, a tree like the params given (non-parameter
            leaves as they were).
        value: ``fun(params)``.
        num_steps: iterations taken.
        num_fun_evals: evaluations of ``fun`` (each with its gradient), the
            line searches' included.
        converged: whether the projected-gradient infinity norm reached
            ``tol`` (or the relative decrease ``ftol``, if given); `False` after
            ``max_steps``, on a NaN value, or when the line search failed
            twice in a row.
        values: the value after each step, ``max_steps + 1`` of them:
            ``values[0]`` at the (projected) start, ``values[k]`` after step
            ``k``; NaN past ``num_steps``. A convergence curve is one plot.
        pg_norms: the projected-gradient infinity norm at the same points.
    """

    params: chex.ArrayTree
    value: chex.Array
    num_steps: chex.Array
    num_fun_evals: chex.Array
    converged: chex.Array
    values: chex.Array
    pg_norms: chex.Array


class _Loop(NamedTuple):
    state: SolverState
    values: jax.Array  # (max_steps + 1,)
    pg_norms: jax.Array


@eqx.filter_jit
def _solve(
    fun: Callable[[Any], Any],
    sp: Split,
    max_steps: int,
    tol: Any,
    ftol: Any,
    memory_size: int,
    verbose: int,
) -> tuple[Any, ...]:
    dtype = sp.dtype
    problem = problem_of(fun, sp, relative=False)
    state = init(problem, start(problem, sp.x), memory_size)
    history = jnp.full((max_steps + 1,), jnp.nan, dtype)
    report = reporter(verbose) if verbose else None
    first = _Loop(
        state=state,
        values=history.at[0].set(state.here.f.astype(dtype)),
        pg_norms=history.at[0].set(state.pg),
    )

    def cond(loop: _Loop) -> Any:
        done, _ = terminate(loop.state, tol, ftol)
        return ~done & (loop.state.steps < max_steps)

    def body(loop: _Loop) -> _Loop:
        # under vmap the body runs for every fit: a finished one (skip) takes
        # no inner trips, and the loop's select keeps its state
        skip = ~cond(loop)
        new = step(problem, loop.state, skip)
        f_new = new.here.f.astype(dtype)
        if report is not None:
            done, _ = terminate(new, tol, ftol)
            report(
                jnp.where(skip, loop.state.steps, new.steps),
                f_new,
                new.pg,
                new.evals,
                active_bounds(new.here.x, sp.lo, sp.up),
                ~skip & ~done & (new.steps < max_steps),
            )
        # the history written by a select over its slots, not `.at[].set`:
        # under vmap the loop's own select keeps the old history alive, so a
        # scatter copies it first (a batch of 256: 9% of a trip at 1001 slots)
        slot = jnp.arange(loop.values.shape[0]) == new.steps
        return _Loop(
            state=new,
            values=jnp.where(slot, f_new, loop.values),
            pg_norms=jnp.where(slot, new.pg, loop.pg_norms),
        )

    last = jax.lax.while_loop(cond, body, first)
    out = last.state
    _, converged = terminate(out, tol, ftol)
    return (
        out.here.x,
        out.here.f,
        out.steps,
        out.evals,
        converged,
        last.values,
        last.pg_norms,
    )


def minimize(
    fun: Callable[[chex.ArrayTree], chex.Array],
    params: chex.ArrayTree,
    lower: Any,
    upper: chex.ArrayTree = NO_UPPER,
    *,
    max_steps: int = 1000,
    tol: float = 1e-6,
    memory_size: int = 10,
    ftol: float = 0.0,
    verbose: int = 0,
) -> MinimizeResult:
    """Minimise ``fun`` over the box ``[lower, upper]`` with L-BFGS-B.

    Byrd, Lu, Nocedal and Zhu's L-BFGS-B with the Morales–Nocedal correction,
    on the params' own pytree (no flattening into one vector): generalized
    Cauchy point, subspace minimisation over the free variables, a Wolfe line
    search limited to the box. ``fun`` is only ever evaluated inside the
    box. The whole solve is one `jax.lax.while_loop`, so `minimize` works
    under `jax.jit` and `jax.vmap`: a batch of problems, each with its own
    data and bounds, is one ``jax.vmap`` (bounds may be traced arrays or
    scalars). Eager calls compile once per ``fun`` (the same object), tree
    structure and pattern of infinite / `None` bound sides; bound values and
    starts are arguments, Python floats included (changing one compiles
    nothing).

    The parameters are optimised: real floating arrays, and Python floats in
    plain containers (a dict of physical constants is a parameter tree, as
    for `jax.grad`; they come back as 0-d arrays). Other leaves (ints,
    bools, complex, functions, `None` holes, float fields of an
    `equinox.Module`) are passed to ``fun`` unchanged and returned as they
    are. A start outside the box
    is first projected into it. Bounds may be infinite on either side, or
    equal (a fixed parameter: it stays at that value).

    Args:
        fun: the objective, ``fun(params) -> scalar``, differentiable.
        params: the starting point, any pytree.
        lower: lower bound tree (see `make_bounds`): same structure as
            ``params``, leaves a float, `None` or an array broadcastable to the
            parameter. Or a `Constraints` whose rules are `Interval`s (and
            bound trees), with ``upper`` left out: the solver takes boxes
            only, so other kinds and relations raise (optimise through
            `constrain` instead).
        upper: upper bound tree, likewise.
        max_steps: the most iterations (a Python int: it sizes the
            history in the result).
        tol: stop when the infinity norm of the projected gradient
            ``P(x - grad) - x`` is at most ``tol``.
        memory_size: the number ``m`` of stored correction pairs.
        ftol: also stop when the relative decrease of the value in one step
            ``(f_k - f_{k+1}) / max(|f_k|, |f_{k+1}|, 1)`` is at most ``ftol``
            (scipy's ``ftol``; 0, the default, turns the test off).
        verbose: print a progress line every ``verbose`` steps, and at the
            last (step, value, projected-gradient norm, evaluations, active
            bounds), through `jax.debug.callback`: it works under `jax.jit`,
            and under `jax.vmap` prints one summary line for the batch. 0
            (the default) prints nothing and compiles no callback.

    Returns:
        A `MinimizeResult` ``(params, value, num_steps, num_fun_evals,
        converged, values, pg_norms)``; a NaN value at the start stops at
        once with ``converged=False``.

    Raises:
        ValueError: if the bound trees do not match the params' structure, a
            bound is NaN, or lower > upper somewhere (naming the path); a
            `Constraints` with another kind than `Interval` or a relation
            (naming the rule and the path).
        TypeError: if a bound is malformed, or finite on a leaf that is not a
            parameter (naming the path).

    Examples:
        >>> import jax.numpy as jnp
        >>> import jaxbounds as jb
        >>> def fun(p):
        ...     return jnp.sum((p["tau"] - 3.0) ** 2) + (p["w"] + 1.0) ** 2
        >>> params = {"tau": jnp.array([1.0, 2.0]), "w": jnp.array(0.0)}
        >>> lower, upper = jb.make_bounds(params)
        >>> upper["tau"], lower["w"] = 2.5, 0.0
        >>> result = jb.minimize(fun, params, lower, upper)
        >>> print(result.params["tau"], result.params["w"], result.converged)
        [2.5 2.5] 0.0 True
    """
    if memory_size < 1:
        raise ValueError(f"memory_size must be at least 1, got {memory_size}")
    if int(max_steps) < 0 or int(verbose) < 0:
        raise ValueError(
            f"max_steps and verbose must be >= 0, got {max_steps} and {verbose}"
        )
    sp = split(params, lower, upper, "minimize")
    if not leaves(sp.x):
        value = fun(params)
        zero = jnp.zeros((), jnp.int32)
        history = jnp.full((int(max_steps) + 1,), jnp.nan, jnp.result_type(value))
        return MinimizeResult(
            params,
            value,
            zero,
            zero + 1,
            jnp.isfinite(value),
            history.at[0].set(value),
            history.at[0].set(0),
        )
    x, value, steps, evals, converged, values, pgs = _solve(
        fun,
        as_data(sp),
        int(max_steps),
        jnp.asarray(tol, sp.dtype),
        jnp.asarray(ftol, sp.dtype),
        int(memory_size),
        int(verbose),
    )
    return MinimizeResult(join(sp, x), value, steps, evals, converged, values, pgs)
