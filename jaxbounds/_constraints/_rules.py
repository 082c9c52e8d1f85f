"""`Constraints`: rules ``(where, kind)``, relations and bound trees, as one pytree.

Numbers (radii, totals, margins, bounds) are leaves: a `Constraints` can be
a `jax.jit` argument, traced or vmapped, and changing a number never
recompiles. Selectors, kinds' axes and paths are static.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import equinox as eqx
import jax

from .._bounds import Box
from .._paths import is_none
from ._declared import ExactPath, declared_rules
from ._kind import Constraint
from ._relations import LessEqual

#: Dykstra's defaults: the relative change per sweep to stop at, and the cap.
DYKSTRA_TOL = 1e-6
DYKSTRA_MAX_ITER = 1000


class BoolTree:
    """A bool-tree selector in a hashable form (the static part of a pytree)."""

    def __init__(self, tree: Any) -> None:
        leaves, treedef = jax.tree_util.tree_flatten(tree, is_leaf=is_none)
        self.treedef: Any = treedef
        self.leaves = tuple(None if x is None else bool(x) for x in leaves)

    def tree(self) -> Any:
        """The selector as the bool tree it was."""
        return jax.tree_util.tree_unflatten(self.treedef, list(self.leaves))

    def __hash__(self) -> int:
        return hash((self.treedef, self.leaves))

    def __eq__(self, other: object) -> bool:
        return (
            isinstance(other, BoolTree)
            and self.treedef == other.treedef
            and self.leaves == other.leaves
        )

    def __repr__(self) -> str:
        return "<bool tree>"


def _static_where(where: Any) -> Any:
    if isinstance(where, str) or (
        callable(where) and not isinstance(where, eqx.Module)
    ):
        return where
    return BoolTree(where)


def describe_rule(where: Any, kind: Any) -> str:
    """A rule as it reads in an error message."""
    if isinstance(kind, LessEqual):
        return f"LessEqual({kind.a!r}, {kind.b!r})"
    shown = where if isinstance(where, (BoolTree, ExactPath)) else repr(where)
    if callable(where) and not isinstance(where, (BoolTree, ExactPath)):
        shown = getattr(where, "__name__", "<predicate>")
    return f"({shown}, {type(kind).__name__})"


class Constraints(eqx.Module):
    """Constraint rules for a params tree: kinds on selected leaves, relations, bounds.

    Each rule is ``(where, kind)``: ``where`` any selector (a glob on the
    dotted path, a predicate ``(path, leaf) -> bool``, or a bool tree
    shaped like the params) and ``kind`` a `Constraint` (`Interval`,
    `MaxNorm`, `Simplex`, ...), or a relation (`LessEqual`). ``bounds``
    adds today's bound trees. Rules are resolved against a params tree by
    every enforcement (`project`, `constraint_cost`, `project_to_constraints`,
    `add_constraint_penalty`, `constrain`, `violations`), which raise an
    error naming the rule and the path if a rule cannot apply.

    Where several rules meet on a leaf, or a relation meets other rules, the
    projection is onto the intersection: a closed form where one exists
    (intervals with each other; a norm ball with a concrete lower bound 0
    and no upper; `Ordered` with an interval constant along its axis; a
    relation of two same-shape leaves with intervals), otherwise Dykstra's
    algorithm, which stops when no element moves by more than
    ``tol * (1 + max|x|)`` in a sweep, or after ``max_iter`` sweeps.

    Args:
        *rules: ``(where, kind)`` pairs and relations.
        bounds: optional ``(lower, upper)`` bound trees (or a `Box`).
        tol: Dykstra's relative tolerance.
        max_iter: Dykstra's iteration cap.

    Raises:
        TypeError: a rule that is neither ``(where, Constraint)`` nor a relation.

    Examples:
        >>> import jax.numpy as jnp
        >>> import jaxbounds as jb
        >>> params = {"w": jnp.array([[3.0], [4.0]]), "tau_syn": jnp.array(0.3),
        ...           "tau_mem": jnp.array(0.1)}
        >>> c = jb.Constraints(("w", jb.MaxNorm(1.0, axis=0)),
        ...                    jb.LessEqual("tau_syn", "tau_mem"))
        >>> out = jb.project(params, c)
        >>> print(out["w"].ravel().round(6), out["tau_syn"], out["tau_mem"])
        [0.6 0.8] 0.2 0.2
    """

    kinds: tuple[Any, ...]
    wheres: tuple[Any, ...] = eqx.field(static=True)
    box: Any
    tol: float = eqx.field(static=True)
    max_iter: int = eqx.field(static=True)

    def __init__(
        self,
        *rules: Any,
        bounds: Any = None,
        tol: float = DYKSTRA_TOL,
        max_iter: int = DYKSTRA_MAX_ITER,
    ) -> None:
        kinds: list[Any] = []
        wheres: list[Any] = []
        for i, rule in enumerate(rules):
            if isinstance(rule, LessEqual):
                kinds.append(rule)
                wheres.append(None)
                continue
            if (
                not isinstance(rule, tuple)
                or len(rule) != 2
                or not isinstance(rule[1], Constraint)
            ):
                raise TypeError(
                    f"rule {i} must be (where, kind) with a Constraint kind "
                    f"(MaxNorm, Simplex, ...) or a relation (LessEqual); got {rule!r}"
                )
            wheres.append(_static_where(rule[0]))
            kinds.append(rule[1])
        if bounds is not None and not isinstance(bounds, Box):
            try:
                lower, upper = bounds
            except (TypeError, ValueError):
                raise TypeError("bounds must be (lower, upper) or a Box") from None
            bounds = Box(lower, upper)
        self.kinds = tuple(kinds)
        self.wheres = tuple(wheres)
        self.box = bounds
        self.tol = float(tol)
        self.max_iter = int(max_iter)

    @property
    def rules(self) -> tuple[tuple[Any, Any], ...]:
        """The rules as ``(where, kind)``; a relation has ``where`` `None`."""
        return tuple(zip(self.wheres, self.kinds))

    def name(self, i: int) -> str:
        """Rule ``i`` as an error message names it."""
        return f"rule {i} {describe_rule(self.wheres[i], self.kinds[i])}"

    @classmethod
    def declared(cls, model: Any, *rules: Any, **kwargs: Any) -> Constraints:
        """The constraints a model declares, plus ``rules``.

        Reads ``jb.field(constraint=...)`` on equinox modules and
        ``nnx.Param(..., constraint=...)`` on flax nnx, and the declared
        ``lower`` / ``upper`` (as ``bounds``, from `make_bounds`).

        Args:
            model: an equinox module, an nnx module or state, or any pytree.
            *rules: more rules, as in `Constraints`.
            **kwargs: ``tol``, ``max_iter``.

        Returns:
            A `Constraints`.

        Examples:
            >>> import equinox as eqx, jax.numpy as jnp
            >>> import jaxbounds as jb
            >>> class Layer(eqx.Module):
            ...     w: jnp.ndarray = jb.field(constraint=jb.MaxNorm(1.0, axis=0))
            ...     tau: jnp.ndarray = jb.field(lower=0.0)
            >>> m = Layer(w=jnp.array([[3.0], [4.0]]), tau=jnp.array([-1.0]))
            >>> out = jb.project(m, jb.Constraints.declared(m))
            >>> print(out.w.ravel().round(6), out.tau)
            [0.6 0.8] [0.]
        """
        found, bounds = declared_rules(model)
        return cls(*found, *rules, bounds=bounds, **kwargs)


Selector = str | Callable[[str, Any], bool] | BoolTree | ExactPath | None


class _NoUpper:
    """The type of `NO_UPPER`: one instance, compared by identity."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "NO_UPPER"

    def __reduce__(self) -> str:  # copies and pickles stay the one instance
        return "NO_UPPER"


#: ``upper`` not given: the bounds argument may be a `Constraints` alone.
NO_UPPER: Any = _NoUpper()


def given_constraints(lower: Any, upper: Any, user: str) -> Constraints | None:
    """The `Constraints` passed in place of ``(lower, upper)``, or `None` for trees.

    The one check of the two call forms ``f(params, lower, upper)`` and
    ``f(params, c)`` of `constrain`, `unconstrain`, `violations`, `minimize`
    and `lbfgsb`. ``upper`` is `NO_UPPER` when the caller left it out
    (`None` is a bound tree: no upper bound).

    Raises:
        TypeError: ``upper`` left out without a `Constraints`, or given with one.
    """
    if isinstance(lower, Constraints):
        if upper is not NO_UPPER:
            raise TypeError(f"{user}: pass a Constraints alone, without `upper`")
        return lower
    if upper is NO_UPPER:
        raise TypeError(
            f"{user}: `upper` is missing; pass lower and upper bound trees, or "
            "one Constraints as `lower`"
        )
    return None
