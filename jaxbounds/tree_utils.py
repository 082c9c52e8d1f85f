"""Rockpool's ``utilities.tree_utils``, for any pytree.

The same names, argument orders and results as Rockpool's functions on the
trees Rockpool works with: nested dicts whose leaves are arrays or numbers
(what ``Module.parameters()`` returns). So a Rockpool recipe such as::

    lb = tu.set_matching(lb, net.parameters("taus"), 0.0)

runs unchanged with ``import jaxbounds.tree_utils as tu``.

A *branch* is a tuple of raw keys from the root to a leaf: dict keys,
attribute names (equinox modules, NamedTuples, dataclass pytrees) and
sequence indices, e.g. ``("layers", 1, "tau_syn")``. Dicts are walked in
insertion order, as in Rockpool; every other container that JAX flattens is
walked through its `jax.tree_util` key paths. Where JAX and Rockpool differ,
these functions follow JAX, which is what makes them work on any pytree:

- lists, tuples and other pytree nodes are containers, not leaves (Rockpool
  stops at anything that is not a dict);
- `None` is an empty subtree (an `eqx.filter` hole), not a leaf: it has no
  branch, is never selected, and a `None` in ``additional`` updates nothing.
  One exception keeps Rockpool's recipes working: in the *target* tree of
  `set_matching` and `make_prototype_tree`, a `None` held by a dict is a
  leaf, as in Rockpool (``{"lif": {"tau_mem": None}}`` names the branch
  ``("lif", "tau_mem")``). A `None` held by anything else (an equinox
  module's field, a tuple or list element: what `eqx.filter` leaves) is
  still a hole there.

Rockpool's ``tree_map``, ``tree_flatten`` and ``tree_unflatten`` are not
repeated here: use `jax.tree_util`, which works on every pytree.

Errors are raised where Rockpool would silently do nothing or corrupt the
tree: a branch that does not exist is a `KeyError` listing the nearest
branches (Rockpool's `set_nested` inserts it although documented as
requiring it), and `set_matching` / `set_matching_select` that set nothing
raise `ValueError`, like `jaxbounds.set_where`.

Nothing is mutated unless ``inplace=True``. Without it, results are new trees
(fresh containers all the way down; NumPy leaves are copied, immutable JAX
arrays are shared). ``inplace=True`` mutates dicts (and lists) and returns
the same object; asking for it where an immutable container (a tuple, an
equinox module) would have to change is a `TypeError`, raised before anything
is modified.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Generator, Iterable
from typing import Any

import jax
import numpy as np

from ._paths import PyTree, key_of, nearest

__all__ = [
    "branches",
    "get_nested",
    "make_prototype_tree",
    "set_matching",
    "set_matching_select",
    "set_nested",
    "tree_find",
    "tree_update",
]

Branch = tuple[Any, ...]


def _children(node: Any) -> list[tuple[Any, Any]] | None:
    """``(key, child)`` pairs of a container, in walking order; `None` for a leaf."""
    if node is None:
        return []
    if isinstance(node, dict):
        return list(node.items())
    flat, treedef = jax.tree_util.tree_flatten_with_path(
        node, is_leaf=lambda x: x is not node
    )
    if jax.tree_util.treedef_is_leaf(treedef):
        return None
    return [(key_of(kp[0]), child) for kp, child in flat]


def _is_container(node: Any) -> bool:
    return node is not None and _children(node) is not None


def _rebuild(node: Any, pairs: list[tuple[Any, Any]]) -> Any:
    """A new container of ``node``'s type with the children ``pairs``."""
    if isinstance(node, dict):
        new = copy.copy(node)
        new.clear()
        new.update(pairs)
        return new
    _, treedef = jax.tree_util.tree_flatten(node, is_leaf=lambda x: x is not node)
    return jax.tree_util.tree_unflatten(treedef, [child for _, child in pairs])


def _fresh(node: Any) -> Any:
    """A copy of ``node`` that shares no mutable object with it (JAX arrays shared)."""
    kids = _children(node)
    if node is None:
        return None
    if kids is None:
        return node.copy() if isinstance(node, np.ndarray) else node
    return _rebuild(node, [(k, _fresh(v)) for k, v in kids])


def _show(branch: Branch) -> str:
    return ".".join(str(k) for k in branch)


def _truthy(leaf: Any, branch: Branch) -> bool:
    try:
        return bool(leaf)
    except (TypeError, ValueError) as err:
        raise TypeError(
            f"the leaf at branch {branch!r} has no single truth value "
            f"({type(leaf).__name__} of shape {np.shape(leaf)}): {err}"
        ) from None


def _missing(tree: PyTree, branch: Branch, name: str) -> KeyError:
    known = [_show(b) for b in branches(tree)]
    hint = nearest(_show(branch), known)
    return KeyError(
        f"branch {branch!r} is not in {name}; nearest branches: "
        + (", ".join(hint) if hint else "(the tree has no leaves)")
    )


def branches(tree: PyTree, prefix: list | None = None) -> Generator[Branch, None, None]:
    """Generate all branches (tuples of keys from the root to a leaf) of a tree.

    Rockpool's ``branches``: dicts in insertion order; here also any other
    pytree container, through its key paths. `None` holes have no branch.

    Args:
        tree: any pytree.
        prefix: keys to put in front of every branch (Rockpool's argument,
            used when recursing).

    Returns:
        A generator of tuples of keys, one per leaf, in walking order.

    Examples:
        >>> import jaxbounds.tree_utils as tu
        >>> list(tu.branches({"a": 1, "b": {"b1": 2, "b2": [3, 4]}}))
        [('a',), ('b', 'b1'), ('b', 'b2', 0), ('b', 'b2', 1)]
    """
    prefix = [] if prefix is None else list(prefix)
    kids = _children(tree)
    if kids is None:
        yield tuple(prefix)
        return
    for key, child in kids:
        if child is not None:
            yield from branches(child, prefix + [key])


def _target_branches(
    tree: PyTree, prefix: Branch = ()
) -> Generator[Branch, None, None]:
    """`branches` of a target tree; a `None` held by a dict is a leaf (Rockpool)."""
    kids = _children(tree)
    if kids is None:
        yield prefix
        return
    for key, child in kids:
        if child is not None:
            yield from _target_branches(child, prefix + (key,))
        elif isinstance(tree, dict):
            yield prefix + (key,)


def get_nested(tree: PyTree, branch: Branch) -> PyTree:
    """The value at ``branch`` in ``tree`` (a leaf or a subtree).

    Args:
        tree: any pytree.
        branch: the keys from the root, e.g. ``("layers", 1, "tau_syn")``.

    Returns:
        The node at ``branch``; the empty branch gives ``tree`` itself.

    Raises:
        KeyError: a key is not there (the message lists the keys that are),
            or the branch goes through a leaf.

    Examples:
        >>> import jaxbounds.tree_utils as tu
        >>> tu.get_nested({"a": {"b": (1.0, 2.0)}}, ("a", "b", 1))
        2.0
    """
    node = tree
    for depth, key in enumerate(branch):
        kids = _children(node)
        if kids is None:
            raise KeyError(
                f"branch {tuple(branch)!r} goes through a leaf at "
                f"{tuple(branch[:depth])!r} ({type(node).__name__})"
            )
        found = dict(kids)
        if key not in found:
            raise KeyError(
                f"branch {tuple(branch)!r}: no key {key!r} at "
                f"{tuple(branch[:depth])!r}; keys there: "
                + ", ".join(repr(k) for k in found)
            )
        node = found[key]
    return node


def _assign(node: Any, todo: dict[Branch, Any], inserts: dict, prefix: Branch) -> Any:
    """A fresh copy of ``node`` with ``todo[branch]`` placed at each branch."""
    if prefix in todo:
        return todo[prefix]
    kids = _children(node)
    if node is None or kids is None:
        return _fresh(node)
    new = _rebuild(
        node, [(k, _assign(v, todo, inserts, prefix + (k,))) for k, v in kids]
    )
    for key in inserts.get(prefix, ()):
        new[key] = todo[prefix + (key,)]
    return new


def _set_all(
    tree: PyTree,
    items: list[tuple[Branch, Any]],
    inplace: bool,
    name: str,
    insert: bool = False,
) -> PyTree:
    """Place each ``(branch, value)`` of ``items``; validate everything first."""
    inserts: dict[Branch, list] = {}
    for branch, _ in items:
        branch = tuple(branch)
        if not branch:
            raise ValueError("a branch must name at least one key")
        parent = get_nested(tree, branch[:-1])
        kids = _children(parent)
        if parent is None or kids is None:
            raise _missing(tree, branch, name)
        if branch[-1] not in dict(kids):
            if not (insert and isinstance(parent, dict)):
                raise _missing(tree, branch, name)
            inserts.setdefault(branch[:-1], []).append(branch[-1])
        if inplace and not isinstance(parent, (dict, list)):
            raise TypeError(
                f"inplace=True cannot change branch {branch!r}: it is held by a "
                f"{type(parent).__name__}, which is immutable; use inplace=False "
                "and the returned tree"
            )
    if not inplace:
        todo = {tuple(b): v for b, v in items}
        return _assign(tree, todo, inserts, ())
    for branch, value in items:
        get_nested(tree, tuple(branch)[:-1])[branch[-1]] = value
    return tree


def set_nested(
    tree: PyTree, branch: Branch, value: Any, inplace: bool = False
) -> PyTree:
    """Set the value at an existing ``branch`` of ``tree``.

    Rockpool's ``set_nested``. The branch must exist (as Rockpool documents;
    a missing one is a `KeyError` here rather than a new key).

    Args:
        tree: any pytree.
        branch: the keys from the root to the node to replace.
        value: the new value (a leaf or a subtree).
        inplace: mutate ``tree``'s dicts and lists and return it, instead
            of returning a new tree.

    Returns:
        The tree with ``value`` at ``branch``.

    Raises:
        KeyError: ``branch`` is not in ``tree`` (nearest branches listed).
        ValueError: ``branch`` is empty.
        TypeError: ``inplace=True`` where an immutable container (a tuple,
            an equinox module) holds the branch.

    Examples:
        >>> import jaxbounds.tree_utils as tu
        >>> tree = {"lif": {"tau_syn": 0.02, "bias": 0.0}}
        >>> tu.set_nested(tree, ("lif", "tau_syn"), 0.5)
        {'lif': {'tau_syn': 0.5, 'bias': 0.0}}
        >>> tree
        {'lif': {'tau_syn': 0.02, 'bias': 0.0}}
    """
    return _set_all(tree, [(tuple(branch), value)], inplace, "tree")


def set_matching(
    full_tree: PyTree, target_tree: PyTree, value: Any, inplace: bool = False
) -> PyTree:
    """Set ``value`` in ``full_tree`` at every branch of ``target_tree``.

    Rockpool's ``set_matching``: ``target_tree`` is typically a subset of the
    parameters (``net.parameters("taus")``, or ``eqx.filter(model, mask)``
    whose `None` holes are skipped); only its branches matter, not its
    values, and a `None` held by a dict names a branch as in Rockpool
    (``{"lif": {"tau_mem": None}}``). Raises `KeyError` for a branch missing
    from ``full_tree`` and `ValueError` if ``target_tree`` has no leaves.

    Args:
        full_tree: the tree to set values in, e.g. a bound tree.
        target_tree: a tree whose branches say where; its values are ignored.
        value: the value to put at each of those branches.
        inplace: mutate ``full_tree`` and return it, as in `set_nested`.

    Returns:
        ``full_tree`` with ``value`` at every branch of ``target_tree``.

    Raises:
        KeyError: a branch of ``target_tree`` is not in ``full_tree``.
        ValueError: ``target_tree`` has no leaves (nothing would be set).
        TypeError: ``inplace=True`` where a container is immutable.

    Examples:
        >>> import jaxbounds.tree_utils as tu
        >>> lb = {"lif": {"tau_mem": -float("inf"), "bias": -float("inf")}}
        >>> tu.set_matching(lb, {"lif": {"tau_mem": 0.02}}, 0.0)
        {'lif': {'tau_mem': 0.0, 'bias': -inf}}
    """
    targets = list(_target_branches(target_tree))
    if not targets:
        raise ValueError("target_tree has no leaves: set_matching would set nothing")
    return _set_all(full_tree, [(b, value) for b in targets], inplace, "full_tree")


def set_matching_select(
    full_tree: PyTree, target_tree: PyTree, value: Any, inplace: bool = False
) -> PyTree:
    """Like `set_matching`, only at branches whose ``target_tree`` leaf is true.

    Rockpool's ``set_matching_select``; ``target_tree`` is usually a bool
    tree such as `make_prototype_tree`'s or `jaxbounds.family_mask`'s. Raises
    `ValueError` if no leaf is true.

    Args:
        full_tree: the tree to set values in.
        target_tree: a tree of truth values (its branches must be in
            ``full_tree``).
        value: the value to put where ``target_tree`` is true.
        inplace: mutate ``full_tree`` and return it, as in `set_nested`.

    Returns:
        ``full_tree`` with ``value`` at every branch whose target is true.

    Raises:
        KeyError: a selected branch is not in ``full_tree``.
        ValueError: no leaf of ``target_tree`` is true.
        TypeError: a leaf of ``target_tree`` has no single truth value (an
            array of several elements), or ``inplace=True`` where a
            container is immutable.

    Examples:
        >>> import jaxbounds.tree_utils as tu
        >>> ub = {"alpha": 1e9, "beta": 1e9, "bias": 1e9}
        >>> tu.set_matching_select(ub, {"alpha": True, "beta": False}, 1.0)
        {'alpha': 1.0, 'beta': 1000000000.0, 'bias': 1000000000.0}
    """
    targets = [
        b for b in branches(target_tree) if _truthy(get_nested(target_tree, b), b)
    ]
    if not targets:
        raise ValueError(
            "no leaf of target_tree is true: set_matching_select would set nothing"
        )
    return _set_all(full_tree, [(b, value) for b in targets], inplace, "full_tree")


def _map_leaves(node: Any, fn: Callable[[Branch, Any], Any], prefix: Branch) -> Any:
    kids = _children(node)
    if node is None:
        return None
    if kids is None:
        return fn(prefix, node)
    return _rebuild(node, [(k, _map_leaves(v, fn, prefix + (k,))) for k, v in kids])


def make_prototype_tree(full_tree: PyTree, target_tree: PyTree) -> PyTree:
    """A bool tree with ``full_tree``'s structure: `True` at ``target_tree``'s branches.

    Rockpool's ``make_prototype_tree``. As in `set_matching`, only the
    branches of ``target_tree`` matter, and a `None` held by a dict names a
    branch (Rockpool's reading). A branch of ``target_tree`` that is not a
    leaf of ``full_tree`` is a `ValueError` (Rockpool ignores it, and only
    warns when the target has more leaves than the full tree). `None` holes
    of ``full_tree`` stay `None`.

    Args:
        full_tree: the tree whose structure the result has.
        target_tree: a tree whose branches are marked `True`.

    Returns:
        A bool tree with the structure of ``full_tree``.

    Raises:
        ValueError: a branch of ``target_tree`` is not a leaf of
            ``full_tree`` (the message lists the nearest branches; the
            arguments may be swapped).

    Examples:
        >>> import jaxbounds.tree_utils as tu
        >>> target_tree = {"a": 0, "b": {"b2": 0}}
        >>> full_tree = {"a": 1, "b": {"b1": 2, "b2": 3}, "c": 4, "d": 5}
        >>> tu.make_prototype_tree(full_tree, target_tree)
        {'a': True, 'b': {'b1': False, 'b2': True}, 'c': False, 'd': False}
        >>> tu.make_prototype_tree(full_tree, {"c": None})
        {'a': False, 'b': {'b1': False, 'b2': False}, 'c': True, 'd': False}
    """
    full = set(branches(full_tree))
    targets = set()
    for branch in _target_branches(target_tree):
        if branch not in full:
            hint = nearest(_show(branch), [_show(b) for b in full])
            raise ValueError(
                f"branch {branch!r} of target_tree is not a leaf of full_tree "
                "(check the order of arguments); nearest branches: " + ", ".join(hint)
            )
        targets.add(branch)
    return _map_leaves(full_tree, lambda branch, _: branch in targets, ())


def tree_find(tree: PyTree) -> Generator[Branch, None, None]:
    """Generate the branches of ``tree`` whose leaves are true.

    Rockpool's ``tree_find``: it turns a mask (from `make_prototype_tree` or
    `jaxbounds.family_mask`) back into the branches it selects.

    Args:
        tree: a tree of truth values.

    Returns:
        A generator of the branches whose leaf is true, in walking order.

    Raises:
        TypeError: a leaf has no single truth value (an array of several
            elements).

    Examples:
        >>> import jaxbounds.tree_utils as tu
        >>> list(tu.tree_find({"a": True, "b": {"c": False, "d": True}}))
        [('a',), ('b', 'd')]
    """
    for branch in branches(tree):
        if _truthy(get_nested(tree, branch), branch):
            yield branch


def _updates(target: Any, additional: Any, prefix: Branch) -> Iterable:
    """``(branch, value)`` pairs that merge ``additional`` into ``target``."""
    found = dict(_children(target) or [])
    for key, value in _children(additional) or []:
        if value is None:
            continue
        here = prefix + (key,)
        if key in found and _is_container(value) and _is_container(found[key]):
            yield from _updates(found[key], value, here)
        else:
            yield here, _fresh(value)


def tree_update(target: PyTree, additional: PyTree, inplace: bool = False) -> PyTree:
    """Recursively merge ``additional`` into ``target``: insert or replace nodes.

    Rockpool's ``tree_update``: where both trees have a container at the same
    key the merge recurses; otherwise the node of ``additional`` replaces (or,
    in a dict, is inserted into) ``target``. Nodes only in ``target`` are
    kept. ``additional`` is never modified, nor shared with the result. New
    keys can only go into dicts (a `KeyError` elsewhere); `None` in
    ``additional`` updates nothing, so ``tree_update(model, eqx.filter(new,
    mask))`` replaces just the filtered leaves.

    Args:
        target: the tree to merge into.
        additional: a tree of replacements and new entries.
        inplace: mutate ``target`` and return it, as in `set_nested`.

    Returns:
        The merged tree.

    Raises:
        KeyError: a new key would go into a container that is not a dict.
        TypeError: ``additional`` is a single leaf, not a tree, or
            ``inplace=True`` where a container is immutable.

    Examples:
        >>> import jaxbounds.tree_utils as tu
        >>> lb = {"lif": {"tau_mem": 0.0, "bias": -1.0}, "w": -1.0}
        >>> tu.tree_update(lb, {"lif": {"bias": -2.0, "threshold": 0.0}})
        {'lif': {'tau_mem': 0.0, 'bias': -2.0, 'threshold': 0.0}, 'w': -1.0}
    """
    if additional is not None and not _is_container(additional):
        raise TypeError(
            f"`additional` must be a tree of updates, got a {type(additional).__name__}"
        )
    items = list(_updates(target, additional, ()))
    return _set_all(target, items, inplace, "target", insert=True)
