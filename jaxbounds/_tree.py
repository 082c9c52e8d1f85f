"""Pytree structure: dotted paths, structure checks and bound templates.

Everything else in jaxbounds sees a parameter tree through this module. A
tree is flattened with `jax.tree_util` key paths, and `None` is kept as a
leaf (an `eqx.filter` / `eqx.partition` hole) so that a parameter tree with
holes lines up leaf for leaf with bound trees built from the full model.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from typing import Any

import equinox as eqx
import jax
import numpy as np

PyTree = Any

#: Metadata keys written by `jaxbounds.field` and read by `make_bounds`.
LOWER_KEY = "jaxbounds_lower"
UPPER_KEY = "jaxbounds_upper"
FAMILY_KEY = "jaxbounds_family"


def _is_none(x: Any) -> bool:
    return x is None


def key_str(entry: Any) -> str:
    """One key-path entry as it appears in a dotted path."""
    if isinstance(entry, jax.tree_util.DictKey):
        return str(entry.key)
    if isinstance(entry, jax.tree_util.GetAttrKey):
        return entry.name
    if isinstance(entry, jax.tree_util.SequenceKey):
        return str(entry.idx)
    if isinstance(entry, jax.tree_util.FlattenedIndexKey):
        return str(entry.key)
    return str(entry)


def path_str(keypath: Sequence[Any]) -> str:
    """A `jax.tree_util` key path as a dotted string, e.g. ``layers.1.tau_syn``.

    The root (an empty key path, i.e. a tree that is a single leaf) is ``""``.
    """
    return ".".join(key_str(k) for k in keypath)


def flatten_with_paths(tree: PyTree) -> tuple[list[tuple[str, Any]], Any]:
    """Leaves of ``tree`` with their dotted paths, `None` holes kept as leaves."""
    leaves, treedef = jax.tree_util.tree_flatten_with_path(tree, is_leaf=_is_none)
    return [(path_str(kp), leaf) for kp, leaf in leaves], treedef


def paths(tree: PyTree) -> list[str]:
    """Dotted paths of the leaves of ``tree``, in `jax.tree_util.tree_leaves` order.

    Dict keys and attribute names appear as they are, sequence indices as
    numbers. `None` holes are not leaves (as in `jax.tree_util.tree_leaves`).

    Example:
        >>> import jax.numpy as jnp
        >>> paths({"layers": [{"tau_syn": jnp.ones(2)}, {"w": jnp.ones(3)}]})
        ['layers.0.tau_syn', 'layers.1.w']
    """
    leaves, _ = jax.tree_util.tree_flatten_with_path(tree)
    return [path_str(kp) for kp, _ in leaves]


def is_param_leaf(leaf: Any) -> bool:
    """Whether a params leaf takes bounds: an inexact array or a Python float.

    Ints, bools, integer arrays, functions and strings hold no trainable
    value; bounds on them are ignored (and a finite bound there is an error).
    """
    return eqx.is_inexact_array(leaf) or (
        isinstance(leaf, float) and not isinstance(leaf, bool)
    )


def static_bound(bound: Any) -> float | None:
    """A bound given as a Python number, as a float; ``None`` for an array bound."""
    if isinstance(bound, bool):
        raise TypeError("a bound cannot be a bool")
    if isinstance(bound, (int, float)):
        return float(bound)
    return None


def _describe(x: Any) -> str:
    if x is None:
        return "None"
    if hasattr(x, "shape") and hasattr(x, "dtype"):
        return f"{type(x).__name__}{tuple(x.shape)}:{x.dtype}"
    return type(x).__name__


def check_same_structure(params: PyTree, other: PyTree, name: str) -> None:
    """Raise `ValueError` naming the first path where ``other`` differs from ``params``.

    Both trees are flattened with `None` as a leaf, so a bound tree built from
    a full model matches a params tree with `eqx.partition` holes.
    """
    p_def = jax.tree_util.tree_structure(params, is_leaf=_is_none)
    o_def = jax.tree_util.tree_structure(other, is_leaf=_is_none)
    if p_def == o_def:
        return
    p_leaves, _ = flatten_with_paths(params)
    o_leaves, _ = flatten_with_paths(other)
    p_paths = [p for p, _ in p_leaves]
    o_paths = [p for p, _ in o_leaves]
    for i, (pp, op) in enumerate(zip(p_paths, o_paths)):
        if pp != op:
            raise ValueError(
                f"`{name}` does not have the structure of `params`: first "
                f"difference at path {pp!r} (params) vs {op!r} ({name}); leaf "
                f"{i} of params is {_describe(p_leaves[i][1])}, of {name} is "
                f"{_describe(o_leaves[i][1])}"
            )
    if len(p_paths) != len(o_paths):
        longer, which = (
            (p_paths, "params") if len(p_paths) > len(o_paths) else (o_paths, name)
        )
        extra = longer[min(len(p_paths), len(o_paths))]
        raise ValueError(
            f"`{name}` does not have the structure of `params`: path {extra!r} "
            f"exists only in {which}"
        )
    raise ValueError(
        f"`{name}` does not have the structure of `params` although their leaf "
        f"paths agree (container types or static fields differ):\n"
        f"  params: {p_def}\n  {name}: {o_def}"
    )


def _child(node: Any, entry: Any) -> Any:
    if isinstance(entry, jax.tree_util.GetAttrKey):
        return getattr(node, entry.name)
    if isinstance(entry, jax.tree_util.DictKey):
        return node[entry.key]
    if isinstance(entry, jax.tree_util.SequenceKey):
        return node[entry.idx]
    raise LookupError(entry)


def declared_field(root: PyTree, keypath: Sequence[Any], key: str) -> Any:
    """The innermost `jaxbounds.field` metadata ``key`` along ``keypath``, or None.

    Walks from ``root`` down the key path; at each equinox module the field
    named by the next attribute key is looked up in the dataclass fields.
    """
    found, node = None, root
    for entry in keypath:
        if isinstance(node, eqx.Module) and isinstance(entry, jax.tree_util.GetAttrKey):
            f = {f.name: f for f in dataclasses.fields(node)}.get(entry.name)
            if f is not None and f.metadata.get(key) is not None:
                found = f.metadata[key]
        try:
            node = _child(node, entry)
        except (LookupError, TypeError, AttributeError):
            break
    return found


def make_bounds(params: PyTree) -> tuple[PyTree, PyTree]:
    """Bound templates mirroring ``params``: ``(lower, upper)``, unbounded by default.

    Every leaf of ``lower`` is ``-inf`` and of ``upper`` is ``inf`` (Python
    floats), except where an equinox field was declared with
    ``jaxbounds.field(lower=..., upper=...)``, whose declared values are used.
    `None` holes (from `eqx.filter`) stay `None`. Non-array leaves (an
    activation function in an equinox model, an int) get ``-inf`` / ``inf``
    too so that both trees keep the exact structure of ``params``.

    Edit the returned trees (they are new objects; ``params`` is untouched),
    e.g. with `set_where`, then pass them to `bounds_cost`.

    Example:
        >>> import jax.numpy as jnp
        >>> lower, upper = make_bounds({"tau_syn": jnp.ones(3), "bias": jnp.zeros(3)})
        >>> lower
        {'bias': -inf, 'tau_syn': -inf}
        >>> upper["tau_syn"]
        inf
    """

    def template(default: float, key: str) -> PyTree:
        def leaf(keypath: Any, x: Any) -> Any:
            if x is None:
                return None
            declared = declared_field(params, keypath, key)
            return default if declared is None else declared

        return jax.tree_util.tree_map_with_path(leaf, params, is_leaf=_is_none)

    return template(-math.inf, LOWER_KEY), template(math.inf, UPPER_KEY)


def as_numpy_if_concrete(x: Any) -> np.ndarray | None:
    """``x`` as a NumPy array when its value is known now, else ``None`` (a tracer)."""
    if isinstance(x, jax.core.Tracer):
        return None
    return np.asarray(x)
