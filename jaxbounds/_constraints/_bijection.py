"""`constrain(raw, c)` / `unconstrain(params, c)`: maps from free values into the sets.

Per leaf: its one kind's map (`Interval`: the box map of bound trees;
`MaxNorm` radial; `Simplex` softmax; `Ordered` cumulative softplus), or
several intervals merged into one box. A relation ``a <= b - margin``
maps ``b = a + margin + softplus(u_b)`` after ``a`` (chains follow their
order). With intervals on ``b``, ``b`` is mapped into
``[max(lower_b, a + margin), upper_b]`` and ``a``'s upper bound is narrowed
to ``upper_b - margin`` (``a`` then takes its box map), so every value of
the chain has room. Any other combination has no map: a `ValueError` names
the path and points to `project`.
"""

from __future__ import annotations

import functools
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from .._boxmap import raw_limit, softplus_inverse
from .._compile import compiled
from .._paths import PyTree
from .._rounding import compute_dtype, directed, inward, next_float
from ._kind import Interval
from ._relations import FIX_STEPS
from ._resolve import BOUNDS, Resolved, resolve
from ._rules import Constraints


class LeafMap(NamedTuple):
    """How `constrain` maps one leaf: ``how`` is one of `HOWS`.

    - ``"free"``: the identity;
    - ``"box"``: the box map of the intervals ``rules``, its upper bound
      narrowed for each relation ``(rule, b, rules of b)`` in ``below``;
    - ``"kind"``: the map of the one kind ``rules[0]``;
    - ``"above"``: the larger side of relation ``rule`` over leaf
      ``smaller``, inside its intervals ``rules`` (if any).
    """

    leaf: int
    how: str
    rules: tuple[int, ...] = ()
    below: tuple[tuple[int, int, tuple[int, ...]], ...] = ()
    rule: int = BOUNDS
    smaller: int = -1


#: The maps of `LeafMap`.
HOWS = ("free", "box", "kind", "above")


def _plan(r: Resolved, c: Constraints) -> tuple[LeafMap, ...]:
    """Each constrained leaf with its map, a larger side after its smaller one."""
    rules = dict(r.res.on_leaf)
    upper_of: dict[int, tuple[int, int]] = {}

    def interval(x: int) -> bool:
        return x == BOUNDS or isinstance(c.kinds[x], Interval)

    for k, a, b in r.res.relations:
        path = r.res.paths[b]
        if b in upper_of or not all(map(interval, rules.get(b, ()))):
            raise ValueError(
                f"{c.name(k)}: {path!r} has other relations or rules than intervals "
                "as the larger side, so constrain has no map for it; use project "
                "or project_to_constraints"
            )
        shape = jnp.broadcast_shapes(jnp.shape(r.values[a]), jnp.shape(r.values[b]))
        if tuple(shape) != tuple(jnp.shape(r.values[b])):
            raise ValueError(
                f"{c.name(k)}: {path!r} is smaller than {r.res.paths[a]!r}; constrain "
                "maps the larger side from the smaller only when it has the "
                "broadcast shape; use project"
            )
        upper_of[b] = (k, a)
    hows: dict[int, LeafMap] = {}
    for j, rs in rules.items():
        kinds = [x for x in rs if not interval(x)]
        if j in upper_of:
            continue  # mapped above its smaller side, below
        if not kinds:
            hows[j] = LeafMap(j, "box", rs)
        elif len(kinds) == 1 and len(rs) == 1 and c.kinds[kinds[0]].has_bijection():
            hows[j] = LeafMap(j, "kind", (kinds[0],))
        else:
            names = ", ".join("bounds" if x == BOUNDS else c.name(x) for x in rs)
            raise ValueError(
                f"path {r.res.paths[j]!r}: {names} together have no map for "
                "constrain; use project or project_to_constraints"
            )
    for b, (k, a) in upper_of.items():
        if not rules.get(b):
            continue
        how = hows.get(a, LeafMap(a, "box"))
        if how.how != "box" or a in upper_of:
            raise ValueError(
                f"{c.name(k)}: {r.res.paths[a]!r} must stay below the bounds of "
                f"{r.res.paths[b]!r} less the margin, and constrain has no map "
                "that narrows it (it has another kind, or is itself a larger "
                "side); use project or project_to_constraints"
            )
        hows[a] = how._replace(below=(*how.below, (k, b, rules[b])))
    for b, (k, a) in upper_of.items():
        hows[b] = LeafMap(b, "above", rules.get(b, ()), rule=k, smaller=a)
    order: list[LeafMap] = []
    done: set[int] = set()

    def visit(j: int) -> None:
        if j in done:
            return
        how = hows.get(j, LeafMap(j, "free"))
        if how.how == "above":
            visit(how.smaller)
        done.add(j)
        order.append(how)

    for j in r.res.constrained():
        visit(j)
    return tuple(order)


def _box(kinds: tuple, lows: dict, ups: dict, j: int, rs: tuple) -> Interval:
    sides = [
        Interval(lows.get(j), ups.get(j)).sides() if x == BOUNDS else kinds[x].sides()
        for x in rs
    ]
    if len(sides) == 1:
        return Interval(*sides[0])
    los = [lo for lo, _ in sides if lo is not None]
    his = [hi for _, hi in sides if hi is not None]
    lo = functools.reduce(jnp.maximum, los) if los else None
    hi = functools.reduce(jnp.minimum, his) if his else None
    return Interval(lo, hi)


def _above(a: jax.Array, raw: jax.Array, margin: Any) -> jax.Array:
    """``a + margin + softplus(raw)``, rounded so that ``b >= a + margin`` holds."""
    cd = jnp.promote_types(compute_dtype(a.dtype), compute_dtype(raw.dtype))
    m = jnp.asarray(margin, cd)
    b = directed(a.astype(cd) + m + jax.nn.softplus(raw.astype(cd)), raw.dtype, "up")

    def bad(x: jax.Array) -> jax.Array:
        return a.astype(cd) > x.astype(cd) - m

    def cond(state: tuple) -> jax.Array:
        k, x = state
        return (k < FIX_STEPS) & jnp.any(bad(x))

    def body(state: tuple) -> tuple:
        k, x = state
        return k + 1, jnp.where(bad(x), next_float(x, True), x)

    fixed = jax.lax.while_loop(cond, body, (jnp.zeros((), jnp.int32), b))[1]
    return b + jax.lax.stop_gradient(fixed - b)


def _narrowed(
    box: Interval, kinds: tuple, lows: dict, ups: dict, below: tuple, dtypes: dict
) -> Any:
    """``box`` with its upper bound at most ``upper_b - margin`` for each ``b``.

    ``upper_b`` as ``b`` can hold it (rounded inwards into its dtype), so
    ``a + margin`` never passes the largest ``b``.
    """
    lo, hi = box.sides()
    for k, b, rs in below:
        hi_b = _box(kinds, lows, ups, b, rs).sides()[1]
        if hi_b is not None:
            cd = compute_dtype(dtypes[b])
            cap = inward(hi_b, dtypes[b], "upper").astype(cd) - jnp.asarray(
                kinds[k].margin, cd
            )
            hi = cap if hi is None else jnp.minimum(hi, cap)
    return Interval(lo, hi)


def _floor(a: jax.Array, margin: Any, lo: Any, dtype: Any) -> jax.Array:
    """``max(lo, a + margin)``, rounded up into ``dtype``: the least ``b`` may be."""
    cd = jnp.promote_types(compute_dtype(a.dtype), compute_dtype(dtype))
    base = a.astype(cd) + jnp.asarray(margin, cd)
    base = base if lo is None else jnp.maximum(base, jnp.asarray(lo, cd))
    # b - margin >= a must hold as computed: step up where rounding broke it
    base = jnp.where(
        base - jnp.asarray(margin, cd) < a.astype(cd), next_float(base, True), base
    )
    return directed(base, dtype, "up")


@functools.partial(compiled, static=("order", "keys", "forward"))
def _mapped(
    xs: tuple,
    lows: list,
    ups: list,
    kinds: tuple,
    *,
    order: tuple,
    keys: tuple,
    forward: bool,
) -> tuple:
    given = dict(zip(keys, xs))
    low, up = dict(zip(keys, lows)), dict(zip(keys, ups))
    out: dict[int, Any] = {}
    for how in order:
        j, x = how.leaf, given[how.leaf]
        if how.how == "free":
            out[j] = x
        elif how.how == "box":
            dtypes = {b: given[b].dtype for _, b, _ in how.below}
            box = _box(kinds, low, up, j, how.rules)
            box = _narrowed(box, kinds, low, up, how.below, dtypes)
            out[j] = box.constrain(x) if forward else box.unconstrain(x)
        elif how.how == "kind":
            kind = kinds[how.rules[0]]
            out[j] = kind.constrain(x) if forward else kind.unconstrain(x)
        elif how.rules:  # b above a, inside its intervals
            a = how.smaller
            smaller = out[a] if forward else given[a]
            lo, hi = _box(kinds, low, up, j, how.rules).sides()
            floor = _floor(smaller, kinds[how.rule].margin, lo, x.dtype)
            box = Interval(floor, hi)
            out[j] = box.constrain(x) if forward else box.unconstrain(x)
        else:
            a = how.smaller
            margin = kinds[how.rule].margin
            if forward:
                out[j] = _above(out[a], x, margin)
            else:
                wide = jnp.promote_types(
                    compute_dtype(x.dtype), compute_dtype(given[a].dtype)
                )
                gap = x.astype(wide) - given[a].astype(wide) - jnp.asarray(margin, wide)
                out[j] = softplus_inverse(gap, raw_limit(gap.dtype)).astype(x.dtype)
    return tuple(out[j] for j in keys)


def _apply(r: Resolved, c: Constraints, forward: bool) -> PyTree:
    order = _plan(r, c)
    keys = tuple(how.leaf for how in order)
    if not keys:
        return r.write_back({})
    new = _mapped(*r.numbers(keys), c.kinds, order=order, keys=keys, forward=forward)
    return r.write_back(dict(zip(keys, new)))


def constrain(raw: PyTree, c: Constraints) -> PyTree:
    """Map a free ``raw`` tree into the sets of ``c`` (see `jaxbounds.constrain`)."""
    return _apply(resolve(raw, c), c, True)


def unconstrain(params: PyTree, c: Constraints) -> PyTree:
    """The raw tree that `constrain` maps onto ``params`` (inverse on the interior)."""
    return _apply(resolve(params, c), c, False)
