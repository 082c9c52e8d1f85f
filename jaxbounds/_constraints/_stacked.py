"""Leaves of one kind, shape and dtype projected together: one trace, not one per leaf.

A model of many layers has many small leaves with the same rule (a max-norm
on every kernel). Traced one by one, each leaf adds its own loop and
rounding fix-up to the compiled program, and compile time grows with the
number of leaves. Here such leaves (small ones: stacking copies them) are
stacked, their kinds' numbers stacked alike, and the projection runs once
under `jax.vmap`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from ._projection_plan import OnLeaf

#: Leaves larger than this are projected on their own (stacking is a copy).
BATCH_MAX_SIZE = 1 << 16


def batches(
    plan: tuple, kinds: tuple, shapes: dict[int, tuple], dtypes: dict[int, Any]
) -> tuple[list[list[tuple[int, int]]], tuple]:
    """``(batches, rest)``: single-kind leaf items batched by kind, shape and dtype.

    Each batch is a list ``[(leaf, rule), ...]`` of at least two members;
    ``rest`` is the plan without them.
    """
    found: dict[Any, list[tuple[int, int]]] = {}
    rest = []
    for group in plan:
        item = group[0]
        if (
            len(group) == 1
            and isinstance(item, OnLeaf)
            and item.form == "kind"
            and int(np.prod(shapes[item.leaf])) <= BATCH_MAX_SIZE
        ):
            j, r = item.leaf, item.rules[0]
            kind = kinds[r]
            key = (
                jax.tree_util.tree_structure(kind),
                shapes[j],
                str(dtypes[j]),
                tuple(np.shape(x) for x in jax.tree_util.tree_leaves(kind)),
            )
            found.setdefault(key, []).append((j, r))
        else:
            rest.append(group)
    out = []
    for members in found.values():
        if len(members) > 1:
            out.append(members)
        else:
            j, r = members[0]
            rest.append((OnLeaf("kind", j, (r,)),))
    return out, tuple(rest)


def stacked_kinds(kinds: tuple, rules: list[int]) -> Any:
    """The kinds of ``rules`` (one treedef) as one kind with stacked numbers."""
    return jax.tree_util.tree_map(
        lambda *v: jnp.stack([jnp.asarray(x) for x in v]), *[kinds[r] for r in rules]
    )


def run_batch(
    kinds: tuple,
    members: list[tuple[int, int]],
    xs: dict[int, jax.Array],
    fn: Callable[..., jax.Array],
    ds: dict[int, jax.Array] | None = None,
) -> dict[int, jax.Array]:
    """``fn(kind, x)`` for every member, computed once on the stack.

    With ``ds`` (leaf -> a metric of one shape per batch), ``fn(kind, x, d)``.
    """
    js = [j for j, _ in members]
    stacked = jnp.stack([xs[j] for j in js])
    batched = stacked_kinds(kinds, [r for _, r in members])
    if ds is None:
        out = jax.vmap(fn)(batched, stacked)
    else:
        out = jax.vmap(fn)(batched, stacked, jnp.stack([ds[j] for j in js]))
    return {j: out[k] for k, j in enumerate(js)}
