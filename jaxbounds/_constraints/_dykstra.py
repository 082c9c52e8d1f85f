"""Dykstra's algorithm: the projection onto an intersection of simpler sets.

For sets ``C_1 .. C_k`` with projections ``P_i``, Dykstra's alternating
projections with correction terms converge to the Euclidean projection
onto their intersection (Boyle and Dykstra, 1986), and with projections
in a diagonal metric to the projection in that metric. It runs here in the
compute dtype, in one `jax.lax.while_loop`, until no element of the iterate
or of the correction terms moves by more than ``tol * (1 + max |x|)`` in a
sweep, or for ``max_iter`` sweeps. The
result then lies in the last set exactly and in the others to about the
tolerance.
"""

from __future__ import annotations

import functools
from typing import Any

import jax
import jax.numpy as jnp

from .._rounding import compute_dtype
from ._projection_plan import Context, Item, apply


def _largest(arrays: Any) -> jax.Array:
    """The largest element of several arrays, as a float32 scalar."""
    tops = [jnp.max(a, initial=0).astype(jnp.float32) for a in arrays]
    return functools.reduce(jnp.maximum, tops)


def dykstra(
    ctx: Context,
    items: tuple[Item, ...],
    xs: dict[int, jax.Array],
    tol: float,
    max_iter: int,
    ds: dict[int, Any] | None = None,
) -> dict[int, jax.Array]:
    """The projection of ``xs`` onto the intersection of ``items``' sets.

    With ``ds`` (leaf -> positive weights), in the metric ``sum(d * (y -
    x)**2)``: the same iteration with each set's projection in that metric
    converges to the projection in it (Dykstra's theorem holds in any inner
    product).
    """
    keys = sorted(xs)
    dtypes = {j: xs[j].dtype for j in keys}
    wide = {j: compute_dtype(dtypes[j]) for j in keys}
    x0 = tuple(xs[j].astype(wide[j]) for j in keys)
    pos = {j: i for i, j in enumerate(keys)}
    incs0 = tuple(
        tuple(jnp.zeros_like(x0[pos[j]]) for j in it.leaves()) for it in items
    )

    def sweep(x: tuple, incs: tuple) -> tuple[tuple, tuple]:
        xl = list(x)
        new_incs = []
        for it, inc in zip(items, incs):
            js = it.leaves()
            ys = {j: xl[pos[j]] + d for j, d in zip(js, inc)}
            ps = apply(ctx, it, ys, ds)
            new_incs.append(tuple(ys[j] - ps[j] for j in js))
            for j in js:
                xl[pos[j]] = ps[j]
        return tuple(xl), tuple(new_incs)

    def cond(state: tuple) -> Any:
        k, _, _, change, scale = state
        return (k < max_iter) & (change > tol * (1 + scale))

    def body(state: tuple) -> tuple:
        k, x, old, _, _ = state
        new, incs = sweep(x, old)
        # x can stall for sweeps while the corrections still move: watch both
        moved = [jnp.abs(a - b) for a, b in zip(new, x)]
        moved += [jnp.abs(a - b) for p, q in zip(incs, old) for a, b in zip(p, q)]
        change = _largest(moved)
        scale = _largest(jnp.abs(a) for a in new)
        return k + 1, new, incs, change, scale

    inf = jnp.asarray(jnp.inf, jnp.float32)
    state = (jnp.zeros((), jnp.int32), x0, incs0, inf, jnp.zeros((), jnp.float32))
    _, x, _, _, _ = jax.lax.while_loop(cond, body, state)
    return {j: x[pos[j]].astype(dtypes[j]) for j in keys}
