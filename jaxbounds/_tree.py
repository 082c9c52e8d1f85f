"""Pytree structure: dotted paths, structure checks and bound templates.

Everything else in jaxbounds sees a parameter tree through this module. A
tree is flattened with `jax.tree_util` key paths, and `None` is kept as a
leaf (an `eqx.filter` / `eqx.partition` hole) so that a parameter tree with
holes lines up leaf for leaf with bound trees built from the full model.
"""

from __future__ import annotations

import dataclasses
import difflib
import fnmatch
import functools
import math
from collections.abc import Callable, Sequence
from typing import Any

import equinox as eqx
import jax
import numpy as np

PyTree = Any

#: A selector: a glob string, a predicate ``(path, leaf) -> bool`` or a bool tree.
Where = str | Callable[[str, Any], bool] | PyTree

#: Metadata keys written by `jaxbounds.field` and read by `make_bounds`.
LOWER_KEY = "jaxbounds_lower"
UPPER_KEY = "jaxbounds_upper"
FAMILY_KEY = "jaxbounds_family"


def _is_none(x: Any) -> bool:
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


def key_str(entry: Any) -> str:
    """One key-path entry as it appears in a dotted path."""
    return str(key_of(entry))


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

    Examples:
        >>> import jax.numpy as jnp
        >>> from jaxbounds import paths
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
    if isinstance(leaf, jax.Array):  # arrays and tracers, the common case
        return _inexact(leaf.dtype)
    return eqx.is_inexact_array(leaf) or (
        isinstance(leaf, float) and not isinstance(leaf, bool)
    )


@functools.cache
def _inexact(dtype: Any) -> bool:
    """``jnp.issubdtype(dtype, jnp.inexact)`` (as equinox tests a JAX array), cached.

    The test costs microseconds, and an eager `bounds_cost` asks it per leaf.
    """
    return bool(jax.numpy.issubdtype(dtype, jax.numpy.inexact))


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

    Examples:
        >>> import jax.numpy as jnp
        >>> from jaxbounds import make_bounds
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


def nearest(query: str, candidates: Sequence[str], n: int = 5) -> list[str]:
    """The ``n`` candidates most similar to ``query`` (whole path or last part)."""

    def score(c: str) -> float:
        last = c.rsplit(".", 1)[-1]
        return max(
            difflib.SequenceMatcher(None, query, c).ratio(),
            difflib.SequenceMatcher(None, query, last).ratio(),
        )

    return sorted(dict.fromkeys(candidates), key=score, reverse=True)[:n]


def _as_bool(x: Any, what: str, path: str) -> bool:
    """``x`` as a Python bool if it is a concrete boolean scalar, else TypeError."""
    if isinstance(x, (bool, np.bool_)):
        return bool(x)
    if isinstance(x, jax.core.Tracer):
        raise TypeError(
            f"{what} at path {path or '<root>'!r} is a traced value; selections "
            "decide which leaves to touch and must be known outside jit"
        )
    if hasattr(x, "dtype") and hasattr(x, "shape") and x.dtype == bool:
        if x.shape == ():
            return bool(x)
        raise TypeError(
            f"{what} at path {path or '<root>'!r} is a bool array of shape "
            f"{tuple(x.shape)}; a selector picks whole leaves, so it must be a "
            "single bool"
        )
    raise TypeError(
        f"{what} at path {path or '<root>'!r} must be a bool, got {type(x).__name__}"
    )


def _nothing_selected(where: Any, kind: str, all_paths: list[str]) -> ValueError:
    if not all_paths:
        return ValueError(
            f"the {kind} selector matches nothing: the tree has no leaves"
        )
    if kind == "glob":
        query = where.replace("*", "").replace("?", "")
        hint = nearest(query, all_paths)
        return ValueError(
            f"selector {where!r} matches no leaf path; nearest paths: "
            + ", ".join(repr(p) for p in hint)
        )
    shown = all_paths[:8] + (["..."] if len(all_paths) > 8 else [])
    return ValueError(
        f"the {kind} selector selects no leaf; the tree's paths are: "
        + ", ".join(shown)
    )


def selection(tree: PyTree, where: Where) -> tuple[list[tuple[str, Any]], Any, list]:
    """``(leaves with paths, treedef, flags)``: the leaves ``where`` picks in ``tree``.

    ``flags[i]`` is a bool for a leaf and `None` for a `None` hole. Raises
    `ValueError` (listing the nearest paths) when nothing is selected.
    """
    if where is None:
        raise TypeError(
            "`where` must be a glob string, a callable (path, leaf) -> bool or a "
            "tree of bools with the tree's structure; got None"
        )
    leaves, treedef = flatten_with_paths(tree)
    if isinstance(where, str):
        kind = "glob"
        flags = [
            None if x is None else fnmatch.fnmatchcase(p, where) for p, x in leaves
        ]
    elif callable(where) and not isinstance(where, eqx.Module):
        kind = "predicate"
        flags = [
            None if x is None else _as_bool(where(p, x), "`where` returned a value", p)
            for p, x in leaves
        ]
    else:
        kind = "bool tree"
        check_same_structure(tree, where, "where")
        marks = jax.tree_util.tree_leaves(where, is_leaf=_is_none)
        flags = [
            None
            if x is None
            else (m is not None and _as_bool(m, "the `where` leaf", p))
            for (p, x), m in zip(leaves, marks)
        ]
    if not any(flags):
        raise _nothing_selected(where, kind, [p for p, x in leaves if x is not None])
    return leaves, treedef, flags


def mask(tree: PyTree, where: Where) -> PyTree:
    """A tree of bools with ``tree``'s structure: `True` where ``where`` selects.

    ``where`` is one of (tried in this order):

    - a tree of bools with ``tree``'s structure (an optax mask; an
      `equinox.Module` is always read as a tree, never as a predicate, since
      modules are callable). `None` in it means "not selected";
    - a glob string matched with `fnmatch.fnmatchcase` against each leaf's
      dotted path (`paths`); ``*`` also matches dots, so ``"*tau_*"`` finds
      ``layers.1.tau_syn``;
    - a callable ``(path, leaf) -> bool``, given the dotted path and the leaf.

    Every leaf is a candidate whatever its type (an int, an activation
    function): the selector alone decides. `None` holes (`eqx.filter`) are
    never selected and stay `None` in the mask, so the mask has the exact
    structure of ``tree`` and can be passed to `optax.masked`. Selections must
    be concrete (not traced) values.

    A selector that selects nothing raises `ValueError` listing the nearest
    paths: a typo in a pattern should not silently leave parameters unbounded.

    Examples:
        >>> import jax.numpy as jnp
        >>> import jaxbounds as jb
        >>> params = {"lif": {"tau_syn": jnp.ones(2), "bias": jnp.zeros(2)}}
        >>> jb.mask(params, "*tau_*")
        {'lif': {'bias': False, 'tau_syn': True}}
        >>> jb.mask(params, lambda path, leaf: path.endswith("bias"))
        {'lif': {'bias': True, 'tau_syn': False}}
    """
    _, treedef, flags = selection(tree, where)
    return jax.tree_util.tree_unflatten(treedef, flags)


def set_where(tree: PyTree, where: Where, value: Any) -> PyTree:
    """A copy of ``tree`` with every leaf selected by ``where`` replaced by ``value``.

    ``where`` is as in `mask`. ``value`` (a float or an array) replaces each
    selected leaf as a whole and is not broadcast or cast here: bounds are
    validated against the parameters by `bounds_cost` and friends, which name
    the path of any bad value. The input tree is never mutated; unselected
    leaves are passed through as they are, `None` holes stay `None`. ``value``
    may be a traced value (inside `jax.jit`); the selection may not.

    Examples:
        >>> import jax.numpy as jnp
        >>> import jaxbounds as jb
        >>> params = {"lif": {"tau_syn": jnp.ones(2), "bias": jnp.zeros(2)}}
        >>> lower, upper = jb.make_bounds(params)
        >>> jb.set_where(lower, "*tau_*", 0.0)
        {'lif': {'bias': -inf, 'tau_syn': 0.0}}
    """
    value_def = jax.tree_util.tree_structure(value)
    if value is None or not jax.tree_util.treedef_is_leaf(value_def):
        raise TypeError(
            "`value` must be a single leaf (a float or an array), got "
            f"{type(value).__name__}: it would change the tree's structure"
        )
    leaves, treedef, flags = selection(tree, where)
    new = [value if f else x for (_, x), f in zip(leaves, flags)]
    return jax.tree_util.tree_unflatten(treedef, new)
