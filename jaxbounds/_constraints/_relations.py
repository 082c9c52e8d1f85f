"""`LessEqual`: a relation ``params[a] <= params[b] - margin`` between two leaves.

Elementwise with broadcasting; its units are element pairs. The projection
moves a violating pair to its midpoint, ``margin`` apart (same shapes); when
one leaf broadcasts against the other, a shared element is averaged with all
its violating partners (the exact projection, by a sort per group). The
inequality holds exactly on the returned values, as computed in the compute
dtype: ``a`` is rounded down and ``b`` up, and any pair still out of order
by an ulp is stepped apart. In a diagonal metric the midpoint is weighted
(`LessEqual.project_pair_in_metric`).
"""

from __future__ import annotations

from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from .._rounding import compute_dtype, directed, next_float
from ._kind import concrete

#: Most ulp steps the rounding fix-up of a pair takes.
FIX_STEPS = 8


def _group(x: jax.Array, shape: tuple[int, ...]) -> tuple[tuple[int, ...], Any]:
    """The axes of ``x`` (full shape) that a leaf of ``shape`` broadcasts over."""
    lead = len(x.shape) - len(shape)
    axes = tuple(range(lead)) + tuple(
        lead + i for i, s in enumerate(shape) if s == 1 and x.shape[lead + i] != 1
    )
    return axes, None


def _shared_upper(
    a: jax.Array,
    b: jax.Array,
    axes: tuple[int, ...],
    wa: jax.Array | None = None,
    wb: jax.Array | None = None,
) -> jax.Array:
    """The new ``b`` when ``b`` (size 1 along ``axes``) bounds every ``a`` above.

    ``min sum (a' - a)^2 + (b' - b)^2`` s.t. ``a' <= b'`` has ``a' =
    min(a, b')`` and ``b' = (b + S_k) / (1 + k)``, ``S_k`` the sum of the
    ``k`` largest ``a`` above ``b'``: the same sort and threshold as the
    simplex. In a metric (``wa`` of ``a``'s shape, ``wb`` of the full shape,
    equal along ``axes``), ``b' = (wb b + sum wa a) / (wb + sum wa)`` over
    the same ``k`` largest; weights of 1 give the unweighted values bit for bit.
    """
    keep = tuple(i for i in range(a.ndim) if i not in axes)
    moved = jnp.transpose(a, keep + axes)
    rows = moved.reshape(moved.shape[: len(keep)] + (-1,))

    def grouped(v: jax.Array) -> jax.Array:
        return jnp.transpose(jnp.broadcast_to(v, a.shape), keep + axes).reshape(
            rows.shape
        )

    bb = grouped(b)[..., :1]
    if wa is None or wb is None:
        u = -jnp.sort(-rows, axis=-1)
        j = jnp.arange(1, rows.shape[-1] + 1, dtype=rows.dtype)
        t = (bb + jnp.cumsum(u, axis=-1)) / (1 + j)
    else:
        neg, wu = jax.lax.sort((-rows, grouped(wa)), dimension=-1, num_keys=1)
        u, wbb = -neg, grouped(wb)[..., :1]
        t = (wbb * bb + jnp.cumsum(wu * u, axis=-1)) / (wbb + jnp.cumsum(wu, axis=-1))
    k = jnp.sum(u > t, axis=-1, keepdims=True)
    picked = jnp.take_along_axis(t, jnp.maximum(k - 1, 0), axis=-1)
    new = jnp.where(k > 0, picked, bb)  # (..., 1) in kept order
    inv = tuple(int(i) for i in np.argsort(keep + axes))
    full = jnp.broadcast_to(new, rows.shape).reshape(moved.shape)
    return jnp.transpose(full, inv)


def midpoint(
    a: jax.Array,
    b: jax.Array,
    margin: jax.Array,
    wa: jax.Array | None = None,
    wb: jax.Array | None = None,
) -> jax.Array:
    """Where ``a`` lands when a violating pair moves onto ``a == b - margin``.

    ``(a + b - margin) / 2``, or in the metric ``(wa, wb)`` the weighted
    ``(wa a + wb (b - margin)) / (wa + wb)``, written as the midpoint plus
    ``(wa - wb) / (wa + wb)`` times half the gap: the lighter side moves
    more, and equal weights give the midpoint bit for bit.
    """
    mid = (a + b - margin) / 2
    if wa is None or wb is None:
        return mid
    return mid + (wa - wb) / (wa + wb) * ((a - b + margin) / 2)


class LessEqual(eqx.Module):
    """The relation ``params[a] <= params[b] - margin``, elementwise.

    ``a`` and ``b`` are dotted paths of two parameter leaves whose shapes
    broadcast; ``margin`` is data (traced, vmapped). A `Constraints` holds
    it as a rule of its own.

    Attributes:
        a: the path of the smaller side.
        b: the path of the larger side.
        margin: how far below ``b`` the leaf ``a`` must stay (``>= 0``).

    Raises:
        ValueError: a concrete negative or NaN margin, or ``a == b``.

    Examples:
        >>> import jax.numpy as jnp
        >>> from jaxbounds import LessEqual
        >>> LessEqual("tau_syn", "tau_mem").project_pair(
        ...     jnp.array([0.3, 0.1]), jnp.array([0.1, 0.2]))
        (Array([0.2, 0.1], dtype=float32), Array([0.2, 0.2], dtype=float32))
    """

    a: str = eqx.field(static=True)
    b: str = eqx.field(static=True)
    margin: Any = 0.0

    def __check_init__(self) -> None:
        if not isinstance(self.a, str) or not isinstance(self.b, str):
            raise TypeError("LessEqual(a, b): a and b must be dotted path strings")
        if self.a == self.b:
            raise ValueError(
                f"LessEqual({self.a!r}, {self.b!r}) relates a leaf to itself"
            )
        m = concrete(self.margin)
        if m is not None and not m >= 0:
            raise ValueError(f"LessEqual's margin must be >= 0, got {m!r}")

    def gap(self, a: jax.Array, b: jax.Array) -> jax.Array:
        """``a - (b - margin)`` per element pair, in the compute dtype: > 0 violates.

        The one formula for how far a pair is out of order, in the
        parameters' own units (`violations` reports it).
        """
        cd = jnp.promote_types(compute_dtype(a.dtype), compute_dtype(b.dtype))
        return a.astype(cd) - (b.astype(cd) - jnp.asarray(self.margin, cd))

    def distance(self, a: jax.Array, b: jax.Array) -> jax.Array:
        """Per element pair (broadcast shape): the distance to the half-plane."""
        gap = self.gap(a, b)
        return jnp.maximum(gap, 0) / jnp.sqrt(jnp.asarray(2, gap.dtype))

    def holds(self, a: jax.Array, b: jax.Array) -> jax.Array:
        """``a <= b - margin`` per element pair, as computed in the compute dtype."""
        cd = jnp.promote_types(compute_dtype(a.dtype), compute_dtype(b.dtype))
        return a.astype(cd) <= b.astype(cd) - jnp.asarray(self.margin, cd)

    def project_pair(self, a: jax.Array, b: jax.Array) -> tuple[jax.Array, jax.Array]:
        """The projection of the pair of leaves onto the relation."""
        return self._pair(jnp.asarray(a), jnp.asarray(b), None, None)

    def project_pair_in_metric(
        self, a: jax.Array, b: jax.Array, da: Any, db: Any
    ) -> tuple[jax.Array, jax.Array]:
        """The projection onto the relation in the metric ``(da, db)``.

        Per pair ``argmin da (a' - a)**2 + db (b' - b)**2`` over ``a' <= b' -
        margin``: a violating pair moves to its weighted midpoint ``a' = (da a
        + db (b - margin)) / (da + db)``, ``b' = a' + margin`` (the lighter
        side moves more); a shared element (broadcasting) takes the weighted
        mean with its violating partners. ``da`` / ``db`` are positive and
        broadcastable to ``a`` / ``b``; only ratios matter. The inequality
        holds exactly, as `project_pair`; uniform weights give its values.
        """
        a, b = jnp.asarray(a), jnp.asarray(b)
        cd = jnp.promote_types(compute_dtype(a.dtype), compute_dtype(b.dtype))
        wa = jnp.broadcast_to(jnp.asarray(da, cd), a.shape)
        wb = jnp.broadcast_to(jnp.asarray(db, cd), b.shape)
        top = jnp.maximum(jnp.max(wa, initial=0), jnp.max(wb, initial=0))
        top = jnp.where(top > 0, top, 1)
        floor = float(np.sqrt(np.finfo(np.dtype(cd)).tiny))
        return self._pair(
            a, b, jnp.maximum(wa / top, floor), jnp.maximum(wb / top, floor)
        )

    def _pair(
        self, a: jax.Array, b: jax.Array, wa: jax.Array | None, wb: jax.Array | None
    ) -> tuple[jax.Array, jax.Array]:
        cd = jnp.promote_types(compute_dtype(a.dtype), compute_dtype(b.dtype))
        m = jnp.asarray(self.margin, cd)
        ac, bc = a.astype(cd), b.astype(cd)
        shape = jnp.broadcast_shapes(a.shape, b.shape)
        if a.shape == b.shape:
            mid = midpoint(ac, bc, m, wa, wb)
            new_a, new_b = jnp.minimum(ac, mid), jnp.maximum(bc, mid + m)
        elif b.shape != shape and a.shape == shape:  # b shared by groups of a
            axes, _ = _group(ac, b.shape)
            full = None if wb is None else jnp.broadcast_to(wb, shape)
            t = _shared_upper(ac + m, jnp.broadcast_to(bc, shape), axes, wa, full)
            new_a = jnp.minimum(ac, t - m)
            new_b = jnp.max(t, axis=axes, keepdims=True).reshape(b.shape)
            new_b = jnp.maximum(bc, new_b)
        elif a.shape != shape and b.shape == shape:  # a shared by groups of b
            axes, _ = _group(bc, a.shape)
            full = None if wa is None else jnp.broadcast_to(wa, shape)
            t = -_shared_upper(-bc + m, jnp.broadcast_to(-ac, shape), axes, wb, full)
            new_b = jnp.maximum(bc, t + m)
            new_a = jnp.min(t, axis=axes, keepdims=True).reshape(a.shape)
            new_a = jnp.minimum(ac, new_a)
        else:
            raise ValueError(
                f"LessEqual({self.a!r}, {self.b!r}): shapes {a.shape} and {b.shape} "
                "broadcast both ways; one leaf's shape must broadcast to the other's"
            )
        return self.settle(a, b, new_a, new_b)

    def settle(
        self, a: jax.Array, b: jax.Array, new_a: jax.Array, new_b: jax.Array
    ) -> tuple[jax.Array, jax.Array]:
        """Round ``new_a`` down and ``new_b`` up, then step apart any pair still out."""
        ra = jnp.where(
            new_a != a.astype(new_a.dtype), directed(new_a, a.dtype, "down"), a
        )
        rb = jnp.where(
            new_b != b.astype(new_b.dtype), directed(new_b, b.dtype, "up"), b
        )
        shape = jnp.broadcast_shapes(a.shape, b.shape)
        a_axes = tuple(
            i
            for i in range(len(shape))
            if i < len(shape) - a.ndim or a.shape[i - len(shape) + a.ndim] == 1
        )

        def cond(state: tuple) -> jax.Array:
            k, x, _ = state
            return (k < FIX_STEPS) & ~jnp.all(self.holds(x, rb))

        def body(state: tuple) -> tuple:
            k, x, _ = state
            bad = ~self.holds(x, rb)
            bad_a = (
                jnp.any(bad, axis=a_axes, keepdims=True).reshape(a.shape)
                if a_axes
                else bad.reshape(a.shape)
            )
            return k + 1, jnp.where(bad_a, next_float(x, False), x), None

        ra = jax.lax.while_loop(cond, body, (jnp.zeros((), jnp.int32), ra, None))[1]
        return ra, rb
