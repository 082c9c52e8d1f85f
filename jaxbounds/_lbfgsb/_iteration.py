"""The solver, shaped as optimistix shapes one: `init`, `step`, `terminate`.

`minimize` is a `jax.lax.while_loop` of `step` until `terminate`; the optax
transformation `lbfgsb` runs one `step` per update. Both start the same way
(`start`: the point projected into the box, its value and gradient).

One `step` from ``x`` with gradient ``g``:

1. the generalized Cauchy point ``x_c`` (`cauchy`);
2. the subspace minimiser ``x_bar`` over the variables free at ``x_c``
   (`subspace`); for small problems both at once, densely (`dense_step`);
3. a line search along ``d = x_bar - x`` for the strong Wolfe conditions,
   limited to the feasible segment; every trial point is clipped into the
   box, so ``fun`` is never evaluated outside it (`line_search`);
4. the pair ``(s, y)`` is stored unless its curvature ``s^T y`` is not
   positive enough. If the line search finds no step, the iterate stays and
   the memory is emptied (the next step is a projected steepest descent).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from ._cauchy import cauchy
from ._dense import dense_step, use_dense
from ._kept import Kept, new_kept
from ._memory import Memory, compact, new_memory, push, reset
from ._params import Split, join, land_update
from ._search import line_search
from ._subspace import subspace
from ._tree import clip_tree, largest, leaves, reach, smallest, tmap, vdot

#: Largest step the line search tries on an unbounded segment (scipy's).
BIG = 1e10
#: Steps in a row without a decrease of the value (at the precision limit,
#: the Armijo test passes with none) after which the solve gives up.
MAX_STALL = 10


class Point(NamedTuple):
    """An iterate with its value and gradient."""

    x: Any
    f: jax.Array
    g: Any


class Problem(NamedTuple):
    """What a step needs besides its state: the objective and the box."""

    value_and_grad: Callable[[Any], tuple[Any, Any]]  # on parameter leaves
    lo: Any  # lower bounds, a tree like the parameter leaves
    up: Any  # upper bounds
    base: Any  # the point updates are relative to (the optax params), or None
    dtype: Any  # the dtype of the scalars


class SolverState(NamedTuple):
    """The solver's state between steps (see `init` and `step`)."""

    here: Point  # the iterate, its value and gradient
    memory: Memory  # the stored pairs
    kept: Kept  # the subspace step's free-set products, kept from step to step
    steps: jax.Array  # steps taken (int32)
    evals: jax.Array  # evaluations of ``fun``, the start's included
    f_prev: jax.Array  # the value before the last step (``inf`` before any)
    pg: jax.Array  # the projected-gradient infinity norm at ``here``
    searched: jax.Array  # evaluations of the last line search
    ok: jax.Array  # whether the last line search found a step
    failed: jax.Array  # it did not, and the memory was empty already
    stall: jax.Array  # steps in a row without a decrease of the value
    update: Any  # ``here.x - base``, as the optax update lands it (or None)


def problem_of(
    fun: Callable[..., Any], sp: Split, relative: bool, **kwargs: Any
) -> Problem:
    """The `Problem` of ``fun`` on the params ``sp`` was split from.

    ``fun`` takes the params' own tree (and ``kwargs``); the solver works on
    the parameter leaves. With ``relative`` (the optax form), trial points
    are the params plus an update that lands exactly (`land_update`).
    """

    def value_and_grad(x: Any) -> tuple[Any, Any]:
        return jax.value_and_grad(lambda x: fun(join(sp, x), **kwargs))(x)

    return Problem(value_and_grad, sp.lo, sp.up, sp.x if relative else None, sp.dtype)


def landed(problem: Problem, target: Any) -> tuple[Any, Any]:
    """``(x, u)``: the point reached from ``base`` toward ``target`` (in the box).

    Without a base, ``target`` itself (and no update). With one, the update
    ``u`` that lands on ``target`` when added to ``base`` (as
    `optax.apply_updates` rounds it), and ``x = base + u``.
    """
    if problem.base is None:
        return target, None
    lo, up = problem.lo, problem.up
    u = tmap(land_update, problem.base, target, lo, up)
    return tmap(lambda b, u: (b + u).astype(b.dtype), problem.base, u), u


def start(problem: Problem, x: Any, value: Any = None, grad: Any = None) -> Point:
    """The start: ``x`` projected into the box, with its value and gradient.

    ``value`` and ``grad`` at ``x``, when given, are used if ``x`` is inside
    already; otherwise (or if not given) ``fun`` is evaluated at the point.
    """
    lo, up = problem.lo, problem.up
    if problem.base is None:
        x0 = clip_tree(x, lo, up)
    else:  # the way apply_updates lands the projection, clipped against a slip
        x0 = clip_tree(landed(problem, clip_tree(x, lo, up))[0], lo, up)
    if value is None:
        f0, g0 = problem.value_and_grad(x0)
        return Point(x0, f0, g0)
    f_in = jnp.asarray(value)
    inside = smallest(
        [jnp.all(a == b) for a, b in zip(leaves(x0), leaves(x))], jnp.bool_, 1
    )

    def recompute() -> tuple[Any, Any]:
        fv, gv = problem.value_and_grad(x0)
        return fv.astype(f_in.dtype), tmap(lambda a, b: a.astype(b.dtype), gv, grad)

    f0, g0 = jax.lax.cond(inside, lambda: (f_in, grad), recompute)
    return Point(x0, f0, g0)


def init(problem: Problem, here: Point, memory_size: int) -> SolverState:
    """The state at the start ``here`` (see `start`): empty memory, no steps.

    ``evals`` counts the start's evaluation.
    """
    dtype = problem.dtype
    return SolverState(
        here=here,
        memory=new_memory(here.x, memory_size, dtype),
        kept=new_kept(here.x, memory_size, dtype),
        steps=jnp.zeros((), jnp.int32),
        evals=jnp.ones((), jnp.int32),
        f_prev=jnp.asarray(jnp.inf, dtype),
        pg=pg_norm(here.x, here.g, problem.lo, problem.up, dtype),
        searched=jnp.zeros((), jnp.int32),
        ok=jnp.ones((), jnp.bool_),
        failed=jnp.zeros((), jnp.bool_),
        stall=jnp.zeros((), jnp.int32),
        update=landed(problem, here.x)[1],
    )


def terminate(state: SolverState, tol: Any, ftol: Any) -> tuple[Any, Any]:
    """``(done, converged)`` for the state reached.

    Converged: the value is finite, the last line search found a step (or
    none was taken) and the projected-gradient infinity norm is at most
    ``tol``, or the full quasi-Newton step (one evaluation: after
    backtracking a small decrease says the direction was poor) decreased the
    value by at most ``ftol`` relatively (``ftol > 0``). scipy counts any
    step: on `benchmarks/lbfgsb.py`'s batch of 256 time-constant fits, two of
    its fits stop so at values 3.88 and 0.33, after a backtracked step that
    this solver takes too, and goes on from, to 0.0071 and 0.0100. Done:
    converged, a NaN value, a second failed line search in a row (nothing
    left in the memory to drop), or `MAX_STALL` steps without a decrease.
    """
    f_old = state.f_prev
    f_new = state.here.f.astype(f_old.dtype)
    finite = jnp.isfinite(f_new)
    scale = jnp.maximum(jnp.maximum(jnp.abs(f_old), jnp.abs(f_new)), 1.0)
    small = state.ok & (state.searched == 1) & (state.steps > 0) & (ftol > 0)
    small = small & (f_old - f_new <= ftol * scale)
    converged = finite & state.ok & ((state.pg <= tol) | small)
    done = converged | ~finite | state.failed | (state.stall >= MAX_STALL)
    return done, converged


def keep_pair(s: Any, y: Any, g: Any, dtype: Any) -> jax.Array:
    """Whether the pair ``(s, y)`` is stored: ``s.y > eps * |g.s|`` (scipy's test).

    A pair with ``s.y <= 0`` would make ``B`` indefinite.
    """
    eps = jnp.finfo(dtype).eps
    return vdot(s, y, dtype) > eps * -vdot(g, s, dtype)


def step(problem: Problem, state: SolverState, skip: Any = False) -> SolverState:
    """One L-BFGS-B iteration from ``state.here``.

    Args:
        problem: the objective and the box.
        state: the state reached.
        skip: a flag for a finished fit in a batch: no inner loop runs, no
            evaluation is made, and the result is a failed step.

    Returns:
        The state after the step; on a failed line search the point stays
        and the memory is emptied (``ok`` false).
    """
    x, f, g = state.here
    lo, up, dtype = problem.lo, problem.up, problem.dtype
    mem, kept = state.memory, state.kept
    first = state.steps == 0  # scipy's first step
    if use_dense(x, mem.age.shape[0]):
        # a small problem: the exact Cauchy point and one masked solve
        _, xbar = dense_step(x, g, lo, up, mem, dtype)
    else:
        cp = compact(mem)
        xc, c = cauchy(x, g, lo, up, mem, cp, dtype, skip)
        xbar, kept = subspace(x, g, xc, lo, up, mem, kept, cp, dtype, c)
    d = tmap(jnp.subtract, xbar, x)
    slope0 = vdot(g, d, dtype)
    # the feasible segment and the first trial (as scipy's lnsrlb)
    sides = leaves(lo) + leaves(up)
    bounded = largest([jnp.any(jnp.isfinite(a)) for a in sides], jnp.bool_, 0)
    boxed = smallest([jnp.all(jnp.isfinite(a)) for a in sides], jnp.bool_, 1)
    to_wall = jnp.minimum(reach(x, d, lo, up, dtype, math.inf), BIG)
    lam_max = jnp.where(bounded, jnp.where(first, 1.0, jnp.maximum(to_wall, 1.0)), BIG)
    lam_max = jnp.minimum(lam_max, BIG).astype(dtype)
    dnorm = jnp.sqrt(vdot(d, d, dtype))
    lam0 = jnp.where(first & ~boxed, jnp.minimum(1 / dnorm, lam_max), 1.0)

    def point(lam: Any) -> tuple[Any, Any]:
        # the full step is x_bar itself, as in scipy's lnsrlb: a variable it
        # puts on a bound lands there exactly (x + (x_bar - x) may round off)
        target = tmap(
            lambda x, d, lo, up, xb: jnp.where(
                lam == 1, xb, jnp.clip(x + lam.astype(x.dtype) * d, lo, up)
            ),
            x,
            d,
            lo,
            up,
            xbar,
        )
        return landed(problem, target)

    def phi(lam: Any) -> tuple[Any, Any, Any]:
        xt, u = point(lam)
        ft, gt = problem.value_and_grad(xt)
        return ft, vdot(gt, d, dtype), (xt, gt, u)

    aux0 = (x, g, point(jnp.zeros((), dtype))[1])
    lam, f_new, (x_new, g_new, u), evals = line_search(
        phi, f.astype(dtype), slope0, lam0, lam_max, aux0, dtype, skip
    )
    ok = (lam > 0) & (slope0 < 0)
    s = tmap(jnp.subtract, x_new, x)
    y = tmap(jnp.subtract, g_new, g)
    keep = ok & keep_pair(s, y, g, dtype)
    # one row written (a written slot gets a new age); on failure the memory
    # is emptied (two small fields)
    pushed = push(mem, s, y, dtype, keep)
    kept = kept._replace(written=kept.written | (pushed.age != mem.age))
    emptied = reset(mem)
    memory = pushed._replace(
        age=jnp.where(ok, pushed.age, emptied.age),
        theta=jnp.where(ok, pushed.theta, emptied.theta),
    )
    new = Point(x_new, f_new.astype(f.dtype), g_new)
    new = jax.tree_util.tree_map(lambda a, b: jnp.where(ok, a, b), new, state.here)
    f_old = f.astype(dtype)
    return SolverState(
        here=new,
        memory=memory,
        kept=kept,
        steps=state.steps + 1,
        evals=state.evals + evals,
        f_prev=f_old,
        pg=pg_norm(new.x, new.g, lo, up, dtype),
        searched=evals,
        ok=ok,
        failed=~ok & jnp.all(mem.age < 0),
        stall=jnp.where(new.f.astype(dtype) < f_old, 0, state.stall + 1),
        update=u,
    )


def pg_norm(x: Any, g: Any, lo: Any, up: Any, dtype: Any) -> jax.Array:
    """The infinity norm of the projected gradient ``P(x - g) - x``.

    Examples:
        >>> import jax.numpy as jnp
        >>> x, g = jnp.array([0.0, 0.5]), jnp.array([1.0, -0.25])
        >>> print(pg_norm(x, g, 0.0, 1.0, jnp.float32))
        0.25
    """
    parts = tmap(
        lambda x, g, lo, up: jnp.max(jnp.abs(jnp.clip(x - g, lo, up) - x), initial=0),
        x,
        g,
        lo,
        up,
    )
    return largest(leaves(parts), dtype, 0.0)
