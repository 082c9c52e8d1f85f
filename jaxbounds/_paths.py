"""Key paths as dotted strings, flattening with paths, and structure checks.

Everything else in jaxbounds sees a tree through this module. A tree is
flattened with `jax.tree_util` key paths, and `None` is kept as a leaf (an
`eqx.filter` / `eqx.partition` hole) so that a parameter tree with holes
lines up leaf for leaf with bound trees built from the full model.

Framework adapters (flax nnx) plug in here with `register_view`: a view turns
a framework object into a plain pytree whose paths name the attributes, and
back. Nothing here imports an adapter.
"""

from __future__ import annotations

import difflib
import functools
from collections.abc import Callable, Sequence
from typing import Any, TypeAlias

import chex
import jax
import numpy as np
import optax

#: A tree of arrays, floats, `None` holes and whatever else a model holds.
PyTree: TypeAlias = chex.ArrayTree

#: ``view(tree)`` is ``None`` (not its kind) or ``(pure tree, restore)``.
View: TypeAlias = Callable[[Any], "tuple[PyTree, Callable[[PyTree], Any]] | None"]

_VIEWS: list[View] = []


def register_view(view: View) -> None:
    """Let `pure_view` see through a framework's objects (used by adapters)."""
    if view not in _VIEWS:
        _VIEWS.append(view)


def _same(tree: PyTree) -> PyTree:
    return tree


def pure_view(tree: Any) -> tuple[PyTree, Callable[[PyTree], Any]]:
    """``(pure, restore)``: ``tree`` as a plain pytree, and the way back.

    Without a registered view that claims ``tree`` this is ``(tree, identity)``.
    """
    for view in _VIEWS:
        seen = view(tree)
        if seen is not None:
            return seen
    return tree, _same


def structure(tree: Any) -> Any:
    """The treedef of ``tree`` with `None` holes as leaves (compare with ``==``)."""
    return jax.tree_util.tree_structure(tree, is_leaf=is_none)


def is_none(x: Any) -> bool:
    """The ``is_leaf`` that keeps `None` holes as leaves."""
    return x is None


def key_of(entry: Any) -> Any:
    """One key-path entry as the raw key: a dict key, an attribute name or an index."""
    if isinstance(entry, jax.tree_util.DictKey):
        return entry.key
    if isinstance(entry, jax.tree_util.GetAttrKey):
        return entry.name
    if isinstance(entry, jax.tree_util.SequenceKey):
        return entry.idx
    if isinstance(entry, jax.tree_util.FlattenedIndexKey):
        return entry.key
    return entry


def path_str(keypath: Sequence[Any]) -> str:
    """A `jax.tree_util` key path as a dotted string, e.g. ``layers.1.tau_syn``.

    The root (an empty key path, i.e. a tree that is a single leaf) is ``""``.
    """
    return ".".join(str(key_of(k)) for k in keypath)


def shown(path: str) -> str:
    """A dotted path for a message: quoted, ``'<root>'`` for the root."""
    return repr(path or "<root>")


def flatten_with_paths(tree: PyTree) -> tuple[list[tuple[str, Any]], Any]:
    """Leaves of ``tree`` with their dotted paths, `None` holes kept as leaves."""
    leaves, treedef = jax.tree_util.tree_flatten_with_path(tree, is_leaf=is_none)
    return [(path_str(kp), leaf) for kp, leaf in leaves], treedef


def paths(tree: PyTree) -> list[str]:
    """Dotted paths of the leaves of ``tree``, in `jax.tree_util.tree_leaves` order.

    Dict keys and attribute names appear as they are, sequence indices as
    numbers. `None` holes are not leaves (as in `jax.tree_util.tree_leaves`).
    Framework objects seen through a view (flax nnx) are named by their
    attributes.

    Args:
        tree: any pytree.

    Returns:
        One dotted string per leaf.

    Examples:
        >>> import jax.numpy as jnp
        >>> from jaxbounds import paths
        >>> paths({"layers": [{"tau_syn": jnp.ones(2)}, {"w": jnp.ones(3)}]})
        ['layers.0.tau_syn', 'layers.1.w']
    """
    tree, _ = pure_view(tree)
    leaves, _ = jax.tree_util.tree_flatten_with_path(tree)
    return [path_str(kp) for kp, _ in leaves]


def is_param_leaf(leaf: Any) -> bool:
    """Whether a leaf is a parameter: an array (JAX or NumPy) of a real float dtype.

    Ints, bools, complex arrays, Python floats (equinox's hyperparameters),
    functions and strings hold no bounded value.
    """
    if isinstance(leaf, (jax.Array, np.ndarray)):  # arrays and tracers
        return _real_float(leaf.dtype)
    return False


@functools.cache
def _real_float(dtype: Any) -> bool:
    """``jnp.issubdtype(dtype, jnp.floating)``, cached (eager calls ask per leaf)."""
    return bool(jax.numpy.issubdtype(dtype, jax.numpy.floating))


def describe(x: Any) -> str:
    """A leaf or node in a few words: ``float32[2]``, ``None``, ``a dict``."""
    if x is None:
        return "None"
    if hasattr(x, "shape") and hasattr(x, "dtype"):
        return f"{x.dtype}{list(x.shape)}"
    return f"a {type(x).__name__}"


def nearest(query: str, candidates: Sequence[str], n: int = 5) -> list[str]:
    """The ``n`` candidates most similar to ``query`` (whole path or last part)."""

    def score(c: str) -> float:
        last = c.rsplit(".", 1)[-1]
        return max(
            difflib.SequenceMatcher(None, query, c).ratio(),
            difflib.SequenceMatcher(None, query, last).ratio(),
        )

    return sorted(dict.fromkeys(candidates), key=score, reverse=True)[:n]


# -- structure checks ------------------------------------------------------------


def _is_masked(x: Any) -> bool:
    return isinstance(x, optax.MaskedNode)


def _children(node: Any) -> dict[str, Any] | None:
    """The direct children of a pytree node by key, or None for a leaf."""
    flat, _ = jax.tree_util.tree_flatten_with_path(
        node, is_leaf=lambda x: x is not node or x is None
    )
    if len(flat) == 1 and flat[0][1] is node and not flat[0][0]:
        return None
    return {str(key_of(kp[0])): child for kp, child in flat}


def _node_difference(
    ref: Any, other: Any, ref_name: str, name: str, path: str
) -> str | None:
    """Why two trees with the same leaf paths differ: the first node that does."""
    if structure(ref) == structure(other):
        return None
    a, b = _children(ref), _children(other)
    if a is None or b is None or type(ref) is not type(other) or a.keys() != b.keys():
        return (
            f"at {shown(path)}, {ref_name} holds {describe(ref)} and `{name}` holds "
            f"{describe(other)}: container types (or equinox static fields) differ"
        )
    for key in a:
        sub = f"{path}.{key}" if path else key
        found = _node_difference(a[key], b[key], ref_name, name, sub)
        if found:
            return found
    return (
        f"at {shown(path)}, the two {type(ref).__name__} nodes differ in their "
        "static data (e.g. an equinox static field)"
    )


def _masked_hint(other: PyTree, name: str) -> str:
    leaves, _ = jax.tree_util.tree_flatten_with_path(other, is_leaf=_is_masked)
    masked = [path_str(kp) for kp, x in leaves if _is_masked(x)]
    if not masked:
        return ""
    return (
        f"; `{name}` has optax.MaskedNode at {shown(masked[0])}: that tree was "
        "made from params inside optax.masked / optax.multi_transform, where "
        "masked-out subtrees are placeholders. Build bound trees from the full "
        "params; the transformations mask them like the params themselves"
    )


def structure_error(
    ref: PyTree, other: PyTree, name: str, ref_name: str = "params"
) -> str | None:
    """Why ``other`` does not have the structure of ``ref``, in words; None if it has.

    A missing entry reads "`lower` has no entry for 'lif.tau_syn'", an extra
    one "`upper` has 'bias', which params does not have". A bound leaf that
    sits where ``ref`` has a whole subtree is called out as such.
    """
    if structure(ref) == structure(other):
        return None
    r_paths = [p for p, _ in flatten_with_paths(ref)[0]]
    o_paths = [p for p, _ in flatten_with_paths(other)[0]]
    r_set, o_set = set(r_paths), set(o_paths)
    missing = [p for p in r_paths if p not in o_set]
    extra = [p for p in o_paths if p not in r_set]
    parts = []
    if missing:
        parts.append(
            f"`{name}` has no entry for {shown(missing[0])}"
            + (f" (and {len(missing) - 1} more)" if len(missing) > 1 else "")
        )
    if extra:
        parts.append(
            f"`{name}` has {shown(extra[0])}, which {ref_name} does not have"
            + (f" (and {len(extra) - 1} more)" if len(extra) > 1 else "")
        )
        prefix = extra[0] + "." if extra[0] else ""
        inside = [p for p in missing if p.startswith(prefix)]
        if inside:
            parts.append(
                f"{shown(extra[0])} is a subtree in {ref_name} (e.g. "
                f"{shown(inside[0])}): give one bound per leaf, e.g. with "
                f"set_where({name}, {(prefix + '*')!r}, value)"
            )
    if not parts:
        parts.append(
            _node_difference(ref, other, ref_name, name, "")
            or "the trees differ in their node types"
        )
    return "; ".join(parts) + _masked_hint(other, name)


def check_same_structure(
    ref: PyTree, other: PyTree, name: str, ref_name: str = "params"
) -> None:
    """Raise `ValueError` saying how ``other`` differs from ``ref``'s structure.

    Both trees are flattened with `None` as a leaf, so a bound tree built from
    a full model matches a params tree with `eqx.partition` holes.
    """
    error = structure_error(ref, other, name, ref_name)
    if error is not None:
        raise ValueError(f"`{name}` does not have the structure of {ref_name}: {error}")
