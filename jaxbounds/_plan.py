"""The plan of a (params, lower, upper) triple: one split, one write-back.

A params tree and its bound trees become a `Plan`: the structure is checked,
every bound leaf is validated (`_validate`), and each parameter leaf is
classified by which of its sides are bounded. That *pattern* is the only
static part: finite values (Python floats included) stay values and reach
compiled functions as arguments. Cost, clip, violations, the optax
transformations, the bijections and the solver all split their params with
`plan` and put results back with `Plan.write_back`.

A side is unbounded when its bound is `None` or a concrete infinity of that
side (``-inf`` below, ``inf`` above); such sides cost no work at all. A
traced bound cannot be inspected, so it is taken as a bound. To keep the
pattern static through `jax.jit`, pass bounds as a `Box`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import jax

from ._paths import (
    PyTree,
    check_same_structure,
    flatten_with_paths,
    is_none,
    param_flags,
    pure_view,
    shown,
)
from ._validate import bound_side, check_order


class Plan(NamedTuple):
    """A params tree split by its bounds, ready for a compiled function.

    ``leaves`` are the flat params leaves (`None` holes included) and
    ``treedef`` their structure; ``indices[k]`` is the position of the
    ``k``-th planned parameter leaf, ``lows[k]`` / ``ups[k]`` its bounds
    (`None`: unbounded side). Passed to `jax.jit` as they are, the `None`
    entries are the static pattern and the values are arguments.
    ``restore`` turns a pure tree back into the params' own kind (nnx).
    """

    treedef: Any
    leaves: list[Any]
    indices: tuple[int, ...]
    lows: list[Any]
    ups: list[Any]
    restore: Callable[[PyTree], Any]

    def pure(self) -> PyTree:
        """The params as a plain pytree (the framework view, `None` holes kept)."""
        return jax.tree_util.tree_unflatten(self.treedef, self.leaves)

    def names(self) -> list[str]:
        """The dotted paths of the planned leaves, in order."""
        return self.pick([path for path, _ in flatten_with_paths(self.pure())[0]])

    def bounded(self) -> list[Any]:
        """The planned parameter leaves, in order."""
        return self.pick(self.leaves)

    def pick(self, flat: Sequence[Any]) -> list[Any]:
        """The entries of ``flat`` (flattened like params) at the planned leaves."""
        return [flat[i] for i in self.indices]

    def only(self, keep: Sequence[bool]) -> Plan:
        """The plan of the planned leaves where ``keep`` (one flag per planned leaf)."""
        ks = [k for k, flag in enumerate(keep) if flag]
        return self._replace(
            indices=tuple(self.indices[k] for k in ks),
            lows=[self.lows[k] for k in ks],
            ups=[self.ups[k] for k in ks],
        )

    def flat_like(self, tree: PyTree, name: str) -> tuple[list[Any], Callable]:
        """``tree`` (shaped like params, e.g. updates) flattened, and its ``restore``.

        Raises `ValueError` naming what is missing or extra when ``tree``
        does not have the params' structure.
        """
        pure, restore = pure_view(tree)
        check_same_structure(self.pure(), pure, name)
        return self.treedef.flatten_up_to(pure), restore

    def write_back(
        self,
        new: Sequence[Any],
        base: Sequence[Any] | None = None,
        restore: Callable[[PyTree], Any] | None = None,
    ) -> Any:
        """``base`` (default: the params leaves) with the planned leaves replaced.

        See `write_back`; ``restore`` defaults to the params' own.
        """
        return write_back(
            self.treedef,
            self.leaves if base is None else base,
            self.indices,
            new,
            self.restore if restore is None else restore,
        )


def write_back(
    treedef: Any,
    base: Sequence[Any],
    indices: Sequence[int],
    new: Sequence[Any],
    restore: Callable[[PyTree], Any],
) -> Any:
    """The tree of ``base`` (flat leaves) with ``base[indices[k]] = new[k]``.

    The one write-back of jaxbounds (bound plans, constraint resolutions,
    optax updates): every other leaf is returned as the same object, and
    the tree is given back as its own kind by ``restore`` (nnx views).
    """
    flat = list(base)
    for i, x in zip(indices, new):
        flat[i] = x
    return restore(jax.tree_util.tree_unflatten(treedef, flat))


def plan(
    params: PyTree, lower: PyTree, upper: PyTree, *, every_param: bool = False
) -> Plan:
    """Check ``lower``/``upper`` against ``params`` and classify every leaf.

    Planned are the parameter leaves with a bounded side, or, with
    ``every_param``, every parameter leaf (unbounded ones with `None` on
    both sides). `None` holes and leaves that are not parameters are never
    planned (their bounds must be unbounded or traced).

    Raises:
        ValueError: a bound tree of another structure (what is missing or
            extra is named), ``lower > upper`` or a NaN bound, a bound that
            does not broadcast.
        TypeError: a concrete finite bound on a leaf that is not a
            parameter, or a bound that is not a number, array or `None`.
    """
    params, restore = pure_view(params)
    lower, _ = pure_view(lower)
    upper, _ = pure_view(upper)
    treedef: Any
    leaves, treedef = jax.tree_util.tree_flatten(params, is_leaf=is_none)
    lows, lower_def = jax.tree_util.tree_flatten(lower, is_leaf=is_none)
    ups, upper_def = jax.tree_util.tree_flatten(upper, is_leaf=is_none)
    # Compare treedefs first (eager calls pay for every traversal); on a
    # mismatch, say in words what differs.
    if lower_def != treedef:
        check_same_structure(params, lower, "lower")
    if upper_def != treedef:
        check_same_structure(params, upper, "upper")
    named: list[Any] = []

    def where_of(i: int) -> Callable[[], str]:
        def where() -> str:
            if not named:
                named.extend(p for p, _ in flatten_with_paths(params)[0])
            return shown(named[i])

        return where

    flags = param_flags(params, leaves)
    indices, kept_lows, kept_ups = [], [], []
    for i, (p, lo, up, param) in enumerate(zip(leaves, lows, ups, flags)):
        if p is None:
            continue
        where = where_of(i)
        lo = bound_side(lo, "lower", p, param, where)
        up = bound_side(up, "upper", p, param, where)
        if lo is None and up is None and not (every_param and param):
            continue
        check_order(lo, up, where)
        indices.append(i)
        kept_lows.append(lo)
        kept_ups.append(up)
    return Plan(treedef, leaves, tuple(indices), kept_lows, kept_ups, restore)


def map_bounded(
    kernel: Callable[..., list[Any]],
    params: PyTree,
    lower: PyTree,
    upper: PyTree,
    *args: Any,
) -> Any:
    """``params`` with its bounded leaves replaced by what ``kernel`` returns.

    ``kernel(leaves, lows, ups, *args)`` is a compiled function of the
    bounded leaves and their bounds (`None` for an open side; see
    `jaxbounds._compile.per_leaf`), returning one new leaf each. Leaves that
    are not parameters, and unbounded ones, are returned as the same objects.
    """
    pl = plan(params, lower, upper)
    if not pl.indices:
        return pl.write_back([])
    return pl.write_back(kernel(pl.bounded(), pl.lows, pl.ups, *args))
