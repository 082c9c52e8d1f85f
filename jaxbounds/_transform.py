"""The frame every optax transformation of jaxbounds shares.

`add_bounds_penalty`, `project_to_bounds`, `add_constraint_penalty`,
`project_to_constraints`, `projected` and `lbfgsb` all need the same pieces
around their maths, and each is written here once:

- the params check, with one message (`needs_params`);
- `optax.MaskedNode` holes: what `optax.masked` puts in place of masked-out
  subtrees of the params and updates (`with_holes`, `keep_masked`), and the
  hint given when a bound tree was built inside a mask (`masked_hint`);
- updates lined up with the params they belong to (`Lined`, `line_up`),
  written back with their masked nodes kept;
- scales that are numbers or optax schedules of the step count
  (`check_scale`, `scale_state`, `scale_at`), and `BoundsPenaltyState`, the state
  of a scheduled scale;
- a transformation whose state is `optax.EmptyState` (`stateless`).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from ._paths import PyTree, path_str, pure_view, register_structure_hint
from ._plan import write_back


def is_masked(x: Any) -> bool:
    """Whether ``x`` is an `optax.MaskedNode` (a subtree `optax.masked` left out)."""
    return isinstance(x, optax.MaskedNode)


def is_hole(x: Any) -> bool:
    """Whether ``x`` is a hole: `None` (`eqx.filter`) or an `optax.MaskedNode`."""
    return x is None or is_masked(x)


def needs_params(params: PyTree | None, name: str) -> None:
    """Raise the one message of a transformation called without its params.

    Raises:
        ValueError: ``params`` is `None`.
    """
    if params is None:
        raise ValueError(
            f"{name} needs the params: call update(updates, state, params), as "
            "for optax.add_decayed_weights"
        )


def masked_hint(tree: PyTree, name: str) -> str:
    """Why a bound tree with `optax.MaskedNode` in it does not fit the params."""
    leaves, _ = jax.tree_util.tree_flatten_with_path(tree, is_leaf=is_masked)
    masked = [path_str(kp) for kp, x in leaves if is_masked(x)]
    if not masked:
        return ""
    return (
        f"; `{name}` has optax.MaskedNode at {masked[0] or '<root>'!r}: that tree "
        "was made from params inside optax.masked / optax.multi_transform, where "
        "masked-out subtrees are placeholders. Build bound trees from the full "
        "params; the transformations mask them like the params themselves"
    )


register_structure_hint(masked_hint)


def with_holes(tree: PyTree) -> PyTree:
    """``tree`` with every `optax.MaskedNode` replaced by a `None` hole."""
    return jax.tree_util.tree_map(
        lambda x: None if is_masked(x) else x, tree, is_leaf=is_hole
    )


def keep_masked(like: PyTree, tree: PyTree) -> PyTree:
    """``tree`` with `optax.MaskedNode` wherever ``like`` has one.

    Leaves ``tree`` as it is when ``like`` has no masked node, or when the
    two are not shaped alike (the caller's structure check then names the
    path).
    """
    holes = jax.tree_util.tree_leaves(like, is_leaf=is_hole)
    if not any(map(is_masked, holes)):
        return tree
    try:
        return jax.tree_util.tree_map(
            lambda p, b: p if is_masked(p) else b, like, tree, is_leaf=is_hole
        )
    except (ValueError, TypeError):
        return tree


class Lined(NamedTuple):
    """Updates flattened like the params they belong to, and the way back.

    ``flat`` are the updates' leaves in the params' flat order (`None` at
    holes); `write_back` puts new leaves at some positions and returns the
    updates as their own kind, with their `optax.MaskedNode`s kept.
    """

    pure: PyTree  # the updates' pure view (MaskedNodes kept)
    treedef: Any  # the params' structure, holes as `None`
    flat: list[Any]
    restore: Callable[[PyTree], Any]

    def write_back(self, new: dict[int, Any]) -> PyTree:
        """The updates with ``flat[j]`` replaced by ``new[j]``, as their own kind."""

        def restore(tree: PyTree) -> Any:
            return self.restore(keep_masked(self.pure, tree))

        return write_back(
            self.treedef, self.flat, tuple(new), tuple(new.values()), restore
        )


def line_up(updates: PyTree, treedef: Any) -> Lined:
    """``updates`` flattened up to ``treedef`` (the params' holed structure)."""
    pure, restore = pure_view(updates)
    return Lined(pure, treedef, treedef.flatten_up_to(with_holes(pure)), restore)


class BoundsPenaltyState(NamedTuple):
    """State of a penalty with a scale schedule: the step count.

    The state of `add_bounds_penalty` and `add_constraint_penalty` when
    ``scale`` is an optax schedule (as `optax.add_decayed_weights` keeps
    one); with a number their state is `optax.EmptyState`.
    """

    count: jax.Array  # type: ignore[assignment]  # optax's name, shadows tuple.count


def check_scale(scale: Any) -> None:
    """Raise unless ``scale`` is a schedule or a finite number ``>= 0``.

    Raises:
        ValueError: a negative or non-finite number (it would push parameters
            away from their sets).
    """
    if isinstance(scale, bool) or not isinstance(scale, (int, float)):
        return
    if not (math.isfinite(scale) and scale >= 0):
        raise ValueError(
            f"scale must be a finite number >= 0 (or a schedule), got {scale!r}: a "
            "negative scale would push parameters out of their sets"
        )


def scale_state(scale: Any) -> Any:
    """The initial state for ``scale``: the step count for a schedule."""
    if callable(scale):
        return BoundsPenaltyState(count=jnp.zeros([], jnp.int32))
    return optax.EmptyState()


def scale_at(scale: Any, state: Any) -> tuple[Any, Any]:
    """``(the scale of this step, the next state)``."""
    if callable(scale):
        return scale(state.count), BoundsPenaltyState(
            count=optax.safe_increment(state.count)
        )
    return scale, state


def is_zero(scale: Any) -> bool:
    """Whether ``scale`` is a concrete 0 (the updates are returned unchanged)."""
    return isinstance(scale, (int, float)) and scale == 0


def stateless(
    update: Callable[[PyTree, PyTree | None], PyTree],
) -> optax.GradientTransformation:
    """A transformation with `optax.EmptyState` from ``update(updates, params)``."""

    def init_fn(params: PyTree) -> optax.EmptyState:
        del params
        return optax.EmptyState()

    def update_fn(
        updates: PyTree, state: optax.EmptyState, params: PyTree | None = None
    ) -> tuple[PyTree, optax.EmptyState]:
        return update(updates, params), state

    return optax.GradientTransformation(init_fn, update_fn)


def pick(flat: Sequence[Any], keys: Sequence[int]) -> tuple[Any, ...]:
    """The entries of ``flat`` at ``keys``, as arrays."""
    return tuple(jnp.asarray(flat[j]) for j in keys)
