"""Key paths as dotted strings, flattening with paths, and structure checks.

Everything else in jaxbounds sees a tree through this module. A tree is
flattened with `jax.tree_util` key paths, and `None` is kept as a leaf (an
`eqx.filter` / `eqx.partition` hole) so that a parameter tree with holes
lines up leaf for leaf with bound trees built from the full model.

Framework adapters plug in here: `register_view` (flax nnx) turns a
framework object into a plain pytree whose paths name the attributes, and
back; `register_hyperparameter_node` (equinox) names the nodes under which
Python floats are hyperparameters, not parameters. Nothing here imports an
adapter or names a framework's type.
"""

from __future__ import annotations

import difflib
import functools
from collections.abc import Callable, Sequence
from typing import Any, TypeAlias

import chex
import jax
import numpy as np

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
    """Whether an array leaf is a parameter: a JAX or NumPy array of a real float dtype.

    NumPy float scalars (``np.float32(1.0)``) count, as `eqx.is_inexact_array`
    counts them. Ints, bools, complex arrays, functions and strings hold no
    bounded value. Python floats are decided by their place in the tree:
    see `param_flags`.
    """
    if isinstance(leaf, (jax.Array, np.ndarray, np.generic)):  # arrays and tracers
        return _real_float(leaf.dtype)
    return False


#: ``pred(node)``: Python floats anywhere under such a node are hyperparameters.
_HYPERPARAMETER_NODES: list[Callable[[Any], bool]] = []


def register_hyperparameter_node(pred: Callable[[Any], bool]) -> None:
    """Say that Python floats under nodes with ``pred(node)`` are not parameters.

    Used by the equinox adapter: `eqx.filter_grad` differentiates arrays
    only, so a float field of an `equinox.Module` is a hyperparameter.
    """
    if pred not in _HYPERPARAMETER_NODES:
        _HYPERPARAMETER_NODES.append(pred)


def _is_hyperparameter_node(x: Any) -> bool:
    return any(pred(x) for pred in _HYPERPARAMETER_NODES)


def _under_hyperparameter_node(tree: PyTree) -> list[bool]:
    """Per leaf of ``tree`` (`None` holes as leaves): whether a node above claims it."""
    top = jax.tree_util.tree_leaves(
        tree, is_leaf=lambda x: x is None or _is_hyperparameter_node(x)
    )
    out: list[bool] = []
    for node in top:
        if node is not None and _is_hyperparameter_node(node):
            out.extend([True] * len(jax.tree_util.tree_leaves(node, is_leaf=is_none)))
        else:
            out.append(False)
    return out


def param_flags(tree: PyTree, leaves: Sequence[Any]) -> list[bool]:
    """Per leaf of ``tree`` (flat, `None` holes included): whether it is a parameter.

    Parameters are what JAX differentiates: real float arrays (`is_param_leaf`)
    and Python floats in plain containers (dicts, lists, tuples,
    NamedTuples), as `jax.grad` and optax treat them. A Python float under a
    registered hyperparameter node (an `equinox.Module` field) is not one,
    as `eqx.filter_grad` sees it.
    """
    flags = [is_param_leaf(x) for x in leaves]
    floats = [i for i, x in enumerate(leaves) if type(x) is float]
    if floats:
        hyper = _under_hyperparameter_node(tree)
        for i in floats:
            flags[i] = not hyper[i]
    return flags


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


#: ``hint(tree, name)``: a sentence on why ``tree`` may not fit, or "".
_STRUCTURE_HINTS: list[Callable[[PyTree, str], str]] = []


def register_structure_hint(hint: Callable[[PyTree, str], str]) -> None:
    """Add ``hint(tree, name)`` to every structure error (used by the optax glue).

    A hint explains a mismatch that only a framework knows the cause of,
    such as placeholders of ``optax.masked`` in a bound tree.
    """
    if hint not in _STRUCTURE_HINTS:
        _STRUCTURE_HINTS.append(hint)


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
    return "; ".join(parts) + "".join(hint(other, name) for hint in _STRUCTURE_HINTS)


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
