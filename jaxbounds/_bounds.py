"""`make_bounds`: bound templates of a params tree; `Box`: bounds as one argument."""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from typing import Any

import jax

from ._declare import LOWER_KEY, UPPER_KEY, declarations
from ._paths import PyTree, flatten_with_paths, is_none, param_flags, pure_view


def make_bounds(params: PyTree) -> tuple[PyTree, PyTree]:
    """Bound templates mirroring ``params``: ``(lower, upper)``, unbounded by default.

    Every parameter leaf gets ``-inf`` in ``lower`` and ``inf`` in ``upper``
    (Python floats), except where a bound was declared, with
    ``jaxbounds.field(lower=..., upper=...)`` on an equinox field or
    ``nnx.Param(..., lower=..., upper=...)`` in flax nnx. Parameters are
    what JAX differentiates: real float arrays, and Python floats in plain
    containers (``{"tau": 0.02}``, as `jax.grad` and optax see it). Every
    other leaf (an activation function, an int counter, a bool, a complex
    array, a Python-float field of an `equinox.Module`, which
    `eqx.filter_grad` treats as a hyperparameter) and every `None` hole gets
    `None`: no bound, and `set_where` / `mask` never select it. So both trees keep the
    exact structure of ``params``, and a broad selector bounds parameters
    only.

    Edit the returned trees (they are new objects; ``params`` is untouched),
    e.g. with `set_where`, then pass them to `bounds_cost`.

    Args:
        params: the parameter pytree or model (dicts, equinox modules, flax
            nnx states; nnx objects give plain nested dicts).

    Returns:
        ``(lower, upper)``, two trees with the structure of ``params``.

    Examples:
        >>> import jax.numpy as jnp
        >>> from jaxbounds import make_bounds
        >>> lower, upper = make_bounds({"tau_syn": jnp.ones(3), "n": 3})
        >>> lower
        {'n': None, 'tau_syn': -inf}
        >>> upper["tau_syn"]
        inf
        >>> make_bounds({"tau": 0.5, "gain": 2.0})  # Python floats are parameters
        ({'gain': -inf, 'tau': -inf}, {'gain': inf, 'tau': inf})
    """
    declared = declarations(params)
    pure, _ = pure_view(params)
    named, treedef = flatten_with_paths(pure)
    flags = param_flags(pure, [x for _, x in named])

    def side(key: str, default: float) -> PyTree:
        leaves = [
            declared.get(path, {}).get(key, default) if param else None
            for (path, _), param in zip(named, flags)
        ]
        return jax.tree_util.tree_unflatten(treedef, leaves)

    return side(LOWER_KEY, -math.inf), side(UPPER_KEY, math.inf)


# -- bounds as one jit argument ----------------------------------------------


def _is_open(x: Any) -> bool:
    return x is None or (type(x) is float and math.isinf(x))


@jax.tree_util.register_pytree_node_class
class Box:
    """Bounds as one `jax.jit` argument whose unbounded pattern stays static.

    Passed to `jax.jit` as plain trees, every bound leaf, ``-inf`` and
    ``inf`` included, becomes a traced value: the compiled function must
    then treat every leaf as bounded (correct, but it does the work for
    unbounded leaves too). A `Box` is a pytree whose static part is the
    pattern: leaves that are `None` or a Python ``±inf`` stay Python values
    inside the compiled function (no operation is traced for them), and
    every other bound (finite floats, arrays) is an argument, so changing a
    value does not recompile, and `jax.vmap` can batch the values.

    Args:
        lower: the lower bound tree.
        upper: the upper bound tree.

    Examples:
        >>> import jax, jax.numpy as jnp
        >>> import jaxbounds as jb
        >>> params = {"tau": jnp.array([-0.5, 0.1]), "w": jnp.ones(2)}
        >>> lower, upper = jb.make_bounds(params)
        >>> lower["tau"] = 0.0
        >>> cost = jax.jit(lambda p, box: jb.bounds_cost(p, *box))
        >>> print(cost(params, jb.Box(lower, upper)))
        1.6487212
        >>> lower["tau"] = -1.0  # a new value, the same compiled function
        >>> print(cost(params, jb.Box(lower, upper)))
        0.0
    """

    def __init__(self, lower: PyTree, upper: PyTree) -> None:
        self.lower = lower
        self.upper = upper

    def __iter__(self) -> Iterator[PyTree]:
        yield self.lower
        yield self.upper

    def __repr__(self) -> str:
        return f"Box(lower={self.lower!r}, upper={self.upper!r})"

    def tree_flatten(self) -> tuple[list[Any], Any]:
        sides = []
        children: list[Any] = []
        for tree in (self.lower, self.upper):
            leaves, treedef = jax.tree_util.tree_flatten(tree, is_leaf=is_none)
            static = tuple(
                (i, x) for i, x in enumerate(leaves) if _is_open(x)
            )  # None or a Python infinity: the pattern
            children.extend(x for x in leaves if not _is_open(x))
            sides.append((treedef, static, len(leaves) - len(static)))
        return children, tuple(sides)

    @classmethod
    def tree_unflatten(cls, aux: Any, children: Sequence[Any]) -> Box:
        it = iter(children)
        trees = []
        for treedef, static, _ in aux:
            fixed = dict(static)
            n = treedef.num_leaves
            leaves = [fixed[i] if i in fixed else next(it) for i in range(n)]
            trees.append(jax.tree_util.tree_unflatten(treedef, leaves))
        return cls(*trees)
