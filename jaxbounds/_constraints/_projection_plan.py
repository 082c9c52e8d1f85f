"""The projection plan: closed forms per leaf or pair, the rest left to Dykstra.

Built from a `Resolution` and the concrete numbers of a `Constraints` (a
closed form may need a concrete 0 lower bound), the plan is a hashable tuple
of components, each a tuple of *items*; an item is a set onto which a
closed-form projection exists:

- `OnLeaf`: rules on one leaf, with ``form`` one of ``"kind"`` (one rule),
  ``"box"`` (intervals only: clipped in turn), ``"ball+"`` (a `MaxNorm`
  with a concrete lower bound 0 and no upper: the ball after the orthant),
  ``"ordered+box"`` (`Ordered` with intervals constant along the axis:
  clipped after the isotonic regression). A leaf whose rules have no closed
  form together gives one ``"kind"`` item per rule and one ``"box"`` item
  for its intervals;
- `OnPair`: a relation; with ``rules_a`` / ``rules_b`` (intervals on two
  same-shape leaves, or nothing else) the projection onto a box cut by a
  half-plane, per element pair, else (`None`) the relation alone.

Items that share a leaf form a component; a component of one item is
projected directly, a larger one by Dykstra's algorithm (`_dykstra`).
Every closed form has its form in a diagonal metric (`apply` with ``ds``):
the kinds' `project_in_metric`, boxes clipped (separable), the box cut by a
half-plane at the weighted midpoint.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from .._rounding import compute_dtype
from ._kind import Interval, concrete
from ._norms import MaxNorm
from ._ordered import Ordered
from ._relations import midpoint
from ._resolve import BOUNDS, Resolution

#: The closed forms of `OnLeaf`.
FORMS = ("kind", "box", "ball+", "ordered+box")


class OnLeaf(NamedTuple):
    """Rules on one leaf with a closed-form projection (``form``, one of `FORMS`)."""

    form: str
    leaf: int
    rules: tuple[int, ...]

    def leaves(self) -> tuple[int, ...]:
        """The leaves the item acts on."""
        return (self.leaf,)


class OnPair(NamedTuple):
    """A relation ``a <= b - margin``; with intervals on each side when both are given.

    ``rules_a`` / ``rules_b`` are `None` for the relation alone, else the
    interval rules of each side (the box cut by a half-plane).
    """

    rule: int
    a: int
    b: int
    rules_a: tuple[int, ...] | None = None
    rules_b: tuple[int, ...] | None = None

    def leaves(self) -> tuple[int, ...]:
        """The leaves the item acts on."""
        return (self.a, self.b)


Item = OnLeaf | OnPair


class Context:
    """The numbers of a projection: kinds (from the Constraints) and bound values."""

    def __init__(self, kinds: tuple, lows: dict, ups: dict) -> None:
        self.kinds, self.lows, self.ups = kinds, lows, ups

    def rule(self, j: int, r: int) -> Any:
        """Rule ``r`` on leaf ``j`` as a kind (the bound trees as an `Interval`)."""
        if r == BOUNDS:
            return Interval(self.lows.get(j), self.ups.get(j))
        return self.kinds[r]


def _is_interval(ctx: Context, j: int, r: int) -> bool:
    return r == BOUNDS or isinstance(ctx.kinds[r], Interval)


def _leaf_form(ctx: Context, j: int, rules: tuple[int, ...]) -> str:
    boxes = [r for r in rules if _is_interval(ctx, j, r)]
    others = [r for r in rules if r not in boxes]
    if not others:
        return "box"
    if len(others) > 1:
        return "split"
    if not boxes:
        return "kind"
    kind = ctx.kinds[others[0]]
    sides = [ctx.rule(j, r).sides() for r in boxes]
    if isinstance(kind, MaxNorm):
        lows = [concrete(lo) if lo is not None else None for lo, _ in sides]
        if (
            all(up is None for _, up in sides)
            and 0.0 in lows
            and all(lo is None or lo == 0.0 for lo in lows)
        ):
            return "ball+"
    if isinstance(kind, Ordered) and all(
        np.ndim(b) == 0 for side in sides for b in side if b is not None
    ):
        return "ordered+box"
    return "split"


def build(res: Resolution, ctx: Context, shapes: dict[int, tuple]) -> tuple:
    """The plan: a tuple of components, each a tuple of items."""
    rules = dict(res.on_leaf)
    in_relations: dict[int, int] = {}
    for _, a, b in res.relations:
        for j in (a, b):
            in_relations[j] = in_relations.get(j, 0) + 1
    items: list[Item] = []
    paired: set[int] = set()
    for r, a, b in res.relations:
        ra, rb = rules.get(a, ()), rules.get(b, ())
        if (
            in_relations[a] == 1
            and in_relations[b] == 1
            and shapes[a] == shapes[b]
            and all(_is_interval(ctx, a, x) for x in ra)
            and all(_is_interval(ctx, b, x) for x in rb)
        ):
            items.append(OnPair(r, a, b, ra, rb))
            paired |= {a, b}
        else:
            items.append(OnPair(r, a, b))
    for j, rs in res.on_leaf:
        if j in paired:
            continue
        form = _leaf_form(ctx, j, rs)
        if form != "split":
            items.append(OnLeaf(form, j, rs))
            continue
        boxes = tuple(r for r in rs if _is_interval(ctx, j, r))
        items.extend(OnLeaf("kind", j, (r,)) for r in rs if r not in boxes)
        if boxes:
            items.append(OnLeaf("box", j, boxes))
    return _components(items)


def _components(items: list[Item]) -> tuple:
    parent = list(range(len(items)))

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    owner: dict[int, int] = {}
    for i, item in enumerate(items):
        for j in item.leaves():
            if j in owner:
                parent[find(i)] = find(owner[j])
            else:
                owner[j] = i
    groups: dict[int, list[Item]] = {}
    for i, item in enumerate(items):
        groups.setdefault(find(i), []).append(item)
    return tuple(tuple(g) for g in groups.values())


# -- projections onto one item --------------------------------------------------


def _clip_all(ctx: Context, j: int, rules: tuple[int, ...], x: jax.Array) -> jax.Array:
    for r in rules:
        x = ctx.rule(j, r).project(x)
    return x


def _edges(ctx: Context, j: int, rules: tuple[int, ...], dtype: Any) -> tuple:
    lo, hi = jnp.asarray(-jnp.inf, dtype), jnp.asarray(jnp.inf, dtype)
    for r in rules:
        low, high = ctx.rule(j, r).edges(dtype)
        lo, hi = jnp.maximum(lo, low), jnp.minimum(hi, high)
    return lo, hi


def _pair(
    ctx: Context, item: OnPair, a: jax.Array, b: jax.Array, wa: Any, wb: Any
) -> tuple:
    """A relation of same-shape leaves with intervals: box cut by a half-plane.

    If the clipped pair keeps the relation it is the projection (the box is
    separable, in any diagonal metric); else the half-plane is active and
    the pair lands on its line at the (weighted) midpoint clipped to the
    line's stretch inside the box.
    """
    ja, jb, ra, rb = item.a, item.b, item.rules_a or (), item.rules_b or ()
    rel = ctx.kinds[item.rule]
    cd = jnp.promote_types(compute_dtype(a.dtype), compute_dtype(b.dtype))
    m = jnp.asarray(rel.margin, cd)
    la, ua = (e.astype(cd) for e in _edges(ctx, ja, ra, a.dtype))
    lb, ub = (e.astype(cd) for e in _edges(ctx, jb, rb, b.dtype))
    ac, bc = a.astype(cd), b.astype(cd)
    a1, b1 = jnp.clip(ac, la, ua), jnp.clip(bc, lb, ub)
    ok = a1 <= b1 - m
    if wa is not None:  # per pair, the heavier side's weight is 1
        wa, wb = (jnp.broadcast_to(jnp.asarray(w, cd), ac.shape) for w in (wa, wb))
        top = jnp.maximum(wa, wb)
        top = jnp.where(top > 0, top, 1)
        floor = float(np.sqrt(np.finfo(np.dtype(cd)).tiny))
        wa, wb = jnp.maximum(wa / top, floor), jnp.maximum(wb / top, floor)
    mid = midpoint(ac, bc, m, wa, wb)
    t = jnp.clip(mid, jnp.maximum(la, lb - m), jnp.minimum(ua, ub - m))
    return rel.settle(a, b, jnp.where(ok, a1, t), jnp.where(ok, b1, t + m))


def apply(
    ctx: Context,
    item: Item,
    xs: dict[int, jax.Array],
    ds: dict[int, Any] | None = None,
) -> dict[int, jax.Array]:
    """The projection onto one item, of the leaves it acts on.

    With ``ds`` (leaf -> a positive array broadcastable to it, or `None`:
    a uniform metric), the projection in the metric ``sum(d * (y - x)**2)``
    (`Constraint.project_in_metric`); boxes are separable and clip as ever.
    """
    if isinstance(item, OnPair):
        a, b = xs[item.a], xs[item.b]
        wa, wb = _weights(ds, item.a, item.b)
        rel = ctx.kinds[item.rule]
        if item.rules_a is None and wa is None:
            a, b = rel.project_pair(a, b)
        elif item.rules_a is None:
            a, b = rel.project_pair_in_metric(a, b, wa, wb)
        else:
            a, b = _pair(ctx, item, a, b, wa, wb)
        return {item.a: a, item.b: b}
    j, rules, x = item.leaf, item.rules, xs[item.leaf]
    d = None if ds is None else ds.get(j)

    def onto(kind: Any, x: jax.Array) -> jax.Array:
        return kind.project(x) if d is None else kind.project_in_metric(x, d)

    if item.form == "kind":
        return {j: onto(ctx.rule(j, rules[0]), x)}
    if item.form == "box":
        return {j: _clip_all(ctx, j, rules, x)}
    kind = next(ctx.kinds[r] for r in rules if not _is_interval(ctx, j, r))
    if item.form == "ball+":
        return {j: onto(kind, jnp.maximum(x, 0))}
    boxes = tuple(r for r in rules if _is_interval(ctx, j, r))
    return {j: _clip_all(ctx, j, boxes, onto(kind, x))}  # ordered+box


def _weights(ds: dict[int, Any] | None, a: int, b: int) -> tuple[Any, Any]:
    """The metric of a relation's two sides (`None`: Euclidean; a missing side: 1)."""
    if ds is None or (ds.get(a) is None and ds.get(b) is None):
        return None, None
    one = jnp.ones((), jnp.float32)
    return (one if ds.get(a) is None else ds[a]), (one if ds.get(b) is None else ds[b])
