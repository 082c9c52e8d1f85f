"""Rules resolved against a params tree: which rule acts on which leaf.

The result (`Resolution`) is static and hashable: it is the compile-time
pattern of every enforcement, while the numbers stay in the `Constraints`.
Every error names the rule and, where there is one, the path.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from fnmatch import fnmatchcase
from typing import Any, NamedTuple

import jax.numpy as jnp
import numpy as np

from .._paths import PyTree, flatten_with_paths, nearest, param_flags, pure_view
from .._plan import plan, write_back
from .._select import selection
from ._relations import LessEqual
from ._rules import BoolTree, Constraints

#: The rule index that stands for the bound trees (``Constraints(bounds=...)``).
BOUNDS = -1


class Resolution(NamedTuple):
    """Which rules act where: the static pattern of a (params, constraints) pair."""

    paths: tuple[str, ...]  # every leaf's path ("" for holes and non-parameters)
    on_leaf: tuple[tuple[int, tuple[int, ...]], ...]  # (leaf, rules incl. BOUNDS)
    relations: tuple[tuple[int, int, int], ...]  # (rule, leaf a, leaf b)

    def constrained(self) -> tuple[int, ...]:
        """The flat positions of every constrained leaf, in order."""
        found = {j for j, _ in self.on_leaf}
        found |= {j for _, a, b in self.relations for j in (a, b)}
        return tuple(sorted(found))


class Resolved(NamedTuple):
    """A `Resolution` with the params' leaf values and the bound values it refers to."""

    res: Resolution
    values: list[Any]  # the flat leaves of the params' pure view
    treedef: Any
    restore: Any
    lows: dict[int, Any]  # leaf -> lower bound (None: open), from bounds=
    ups: dict[int, Any]

    def numbers(self, keys: Sequence[int] | None = None) -> tuple[tuple, tuple, tuple]:
        """``(xs, lows, ups)`` of the leaves ``keys`` (default: the constrained).

        The data a compiled enforcement takes (`jaxbounds._compile.compiled`):
        the leaves as arrays, and their bounds from ``bounds=`` (`None`:
        open).
        """
        keys = self.res.constrained() if keys is None else keys
        return (
            tuple(jnp.asarray(self.values[j]) for j in keys),
            tuple(self.lows.get(j) for j in keys),
            tuple(self.ups.get(j) for j in keys),
        )

    def write_back(
        self,
        new: dict[int, Any],
        base: Sequence[Any] | None = None,
        restore: Callable[[PyTree], Any] | None = None,
    ) -> Any:
        """``base`` (default: the params' leaves) with the leaves in ``new`` replaced.

        Through `jaxbounds._plan.write_back`; the tree comes back as its own
        kind (``restore``, default the params').
        """
        return write_back(
            self.treedef,
            self.values if base is None else base,
            tuple(new),
            tuple(new.values()),
            self.restore if restore is None else restore,
        )


def _where(where: Any) -> Any:
    return where.tree() if isinstance(where, BoolTree) else where


def _cycle(edges: dict[int, list[tuple[int, int]]]) -> list[int] | None:
    """Rule indices along a cycle of relations, if any (edges: a -> [(b, rule)])."""
    state: dict[int, int] = {}
    stack: list[tuple[int, int]] = []  # (source, rule) of the edges walked

    def visit(u: int) -> list[int] | None:
        state[u] = 1
        for v, r in edges.get(u, []):
            stack.append((u, r))
            if state.get(v) == 1:
                start = next(k for k, (w, _) in enumerate(stack) if w == v)
                return [rr for _, rr in stack[start:]]
            if v not in state:
                found = visit(v)
                if found:
                    return found
            stack.pop()
        state[u] = 2
        return None

    for u in list(edges):
        if u not in state:
            found = visit(u)
            if found:
                return found
    return None


def resolve(params: PyTree, c: Constraints, *, partial: bool = False) -> Resolved:
    """Resolve every rule of ``c`` against ``params``.

    With ``partial`` (params with holes, as `optax.masked` passes them), a
    rule or relation that finds only holes is skipped instead of raising.

    Raises:
        ValueError: a selector matches nothing, a relation path is not a
            parameter, relations form a cycle, an axis is out of range,
            shapes of a relation do not broadcast.
        TypeError: ``c`` is not a `Constraints`; a selector matches only
            leaves that are not float arrays.
    """
    if not isinstance(c, Constraints):
        raise TypeError(f"expected a Constraints, got {type(c).__name__}")
    params, restore = pure_view(params)
    named, treedef = flatten_with_paths(params)
    leaves = [x for _, x in named]
    is_param = param_flags(params, leaves)
    paths = tuple(p if param else "" for (p, _), param in zip(named, is_param))
    where_path = {p: j for j, p in enumerate(paths) if p}
    on: dict[int, list[int]] = {}
    relations: list[tuple[int, int, int]] = []
    edges: dict[int, list[tuple[int, int]]] = {}
    for i, (where, kind) in enumerate(zip(c.wheres, c.kinds)):
        name = c.name(i)
        if isinstance(kind, LessEqual):
            ends = []
            for p in (kind.a, kind.b):
                if p not in where_path:
                    if partial:
                        break
                    hint = nearest(p, [q for q in paths if q])
                    raise ValueError(
                        f"{name}: path {p!r} is not a parameter (a float array) "
                        "of the params; nearest paths: " + ", ".join(map(repr, hint))
                    )
                ends.append(where_path[p])
            if len(ends) < 2:
                continue
            a, b = ends
            try:
                np.broadcast_shapes(np.shape(leaves[a]), np.shape(leaves[b]))
            except ValueError:
                raise ValueError(
                    f"{name}: shapes {np.shape(leaves[a])} at {kind.a!r} and "
                    f"{np.shape(leaves[b])} at {kind.b!r} do not broadcast"
                ) from None
            relations.append((i, a, b))
            edges.setdefault(a, []).append((b, i))
            continue
        try:
            _, _, flags = selection(params, _where(where))
        except ValueError as err:
            if partial:
                continue
            if isinstance(where, str):
                hit = [p for p, x in named if x is not None and fnmatchcase(p, where)]
                if hit:
                    raise TypeError(
                        f"{name} selects only leaves that are not float arrays "
                        f"({', '.join(map(repr, hit[:5]))}); a constraint needs "
                        "parameters"
                    ) from None
            raise ValueError(f"{name}: {err}") from None
        picked = [j for j, f in enumerate(flags) if f and paths[j]]
        if not picked:
            if partial and not any(flags):
                continue
            others = [p for (p, _), f in zip(named, flags) if f]
            raise TypeError(
                f"{name} selects only leaves that are not float arrays "
                f"({', '.join(map(repr, others[:5]))}); a constraint needs parameters"
            )
        for j in picked:
            try:
                kind.check(leaves[j])
            except ValueError as err:
                raise ValueError(f"{name} at path {paths[j]!r}: {err}") from None
            on.setdefault(j, []).append(i)
    cycle = _cycle(edges)
    if cycle:
        raise ValueError(
            "relations form a cycle, which only equal values could satisfy: "
            + " -> ".join(c.name(r) for r in cycle)
        )
    lows: dict[int, Any] = {}
    ups: dict[int, Any] = {}
    if c.box is not None:
        pl = plan(params, c.box.lower, c.box.upper)
        for j, lo, up in zip(pl.indices, pl.lows, pl.ups):
            if is_param[j]:
                lows[j], ups[j] = lo, up
                on.setdefault(j, []).append(BOUNDS)
    res = Resolution(
        paths,
        tuple((j, tuple(on[j])) for j in sorted(on)),
        tuple(relations),
    )
    return Resolved(res, leaves, treedef, restore, lows, ups)
