"""Bound trees: `make_bounds`, the validated *plan*, and one map over bounded leaves.

A (params, lower, upper) triple becomes a `Plan`: the structure is checked,
every bound leaf is validated, and each parameter leaf is classified by
which of its sides are bounded. That *pattern* is the only static part:
finite values (Python floats included) stay values, and reach compiled
functions as arguments, so changing them never recompiles and they can be
traced or batched. Cost, clip, the optax transformations and the
bijections all run through `Plan` and `map_bounded`.

A side is unbounded when its bound is `None` or a concrete infinity of that
side (``-inf`` below, ``inf`` above); such sides cost no work at all. A
traced bound cannot be inspected, so it is taken as a bound: its maths is
written so that an infinite value still gives 0 cost, 0 gradient and no
NaN. To keep the pattern static through `jax.jit`, pass bounds as a `Box`.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Callable, Iterator, Sequence
from typing import Any, NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from ._paths import (
    PyTree,
    check_same_structure,
    describe,
    flatten_with_paths,
    is_none,
    is_param_leaf,
    path_str,
    pure_view,
    shown,
)

#: Metadata keys written by `jaxbounds.field` and read by `make_bounds`.
LOWER_KEY = "jaxbounds_lower"
UPPER_KEY = "jaxbounds_upper"
FAMILY_KEY = "jaxbounds_family"
KEYS = (LOWER_KEY, UPPER_KEY, FAMILY_KEY)

#: The infinity that means "no bound", by side.
OPEN = {"lower": -math.inf, "upper": math.inf}


# -- one bound value -------------------------------------------------------------


def scalar_bound(value: Any, where: str | Callable[[], str], side: str) -> float | None:
    """A bound given as a real number, checked, as a float; `None` for an array.

    The one validator of scalar bounds (bound trees, `field`, saved files):
    a bool is a `TypeError`; NaN, and an infinity no value satisfies
    (``lower=inf``, ``upper=-inf``), are `ValueError`. Equal bounds on both
    sides (a zero-width box) are fine.
    """

    def name() -> str:
        return where() if callable(where) else where

    if isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name()} is a bool; use a float")
    if isinstance(value, (int, float, np.integer, np.floating)):
        bound = float(value)
    else:
        return None
    if math.isnan(bound):
        raise ValueError(f"{name()} is NaN")
    if bound == -OPEN[side]:
        raise ValueError(f"{name()} is {bound}: no value satisfies it")
    return bound


def next_float(x: jax.Array, up: Any) -> jax.Array:
    """The float next to ``x`` towards ``+inf`` where ``up``, else towards ``-inf``.

    `jnp.nextafter` by stepping the bit pattern: floats are sign-magnitude,
    so the integer of a positive float grows with it. A few integer
    operations where `jnp.nextafter` lowers to some thirty, which matters to
    compile time when every leaf of a large tree asks for it. Zeros step to
    the smallest subnormal of the right sign, NaN stays NaN, an infinity
    steps to the largest finite float towards zero and stays put outwards;
    no NaN is made on the way (``jax_debug_nans``).
    """
    x = jnp.asarray(x)
    bits = jnp.dtype(f"int{jnp.finfo(x.dtype).bits}")
    i = jax.lax.bitcast_convert_type(x, bits)
    outwards = (x > 0) == up
    # Zeros and infinities stepped outwards are not stepped here: their bit
    # patterns would pass through NaN (``jax_debug_nans`` sees it).
    still = (x == 0) | (jnp.isinf(x) & outwards)
    step = jnp.where(still, 0, jnp.where(outwards, 1, -1)).astype(bits)
    nxt = jax.lax.bitcast_convert_type(i + step, x.dtype)
    tiny = jax.lax.bitcast_convert_type(jnp.ones((), bits), x.dtype)
    return jnp.where(x == 0, jnp.where(up, tiny, -tiny), nxt)


def _inward_on_host(bound: Any, dtype: Any, side: str) -> np.ndarray:
    """`inward` in NumPy, for bounds known on the host."""
    wide = np.asarray(bound, np.dtype(jnp.promote_types(dtype, jnp.float32)))
    narrow = wide.astype(np.dtype(dtype))
    back = narrow.astype(wide.dtype)
    fix = back < wide if side == "lower" else back > wide
    towards = np.asarray(np.inf if side == "lower" else -np.inf, narrow.dtype)
    return np.where(fix, np.nextafter(narrow, towards), narrow)


def inward(bound: Any, dtype: Any, side: str) -> jax.Array:
    """``bound`` represented in ``dtype``, rounded towards the inside of the box.

    Rounding to nearest can move a bound outwards (``float16(0.1) < 0.1``),
    so a value clipped to it would still violate the bound as `bounds_cost`
    sees it (in at least float32). A lower bound is rounded up, an upper
    bound down. Infinities stay infinite. A bound known on the host (a Python
    number, a NumPy array) is rounded there, in NumPy, and enters a trace as
    one constant rather than a dozen operations per leaf.
    """
    if isinstance(bound, (float, int, np.ndarray, np.generic)):
        return jnp.asarray(_inward_on_host(bound, dtype, side), dtype)
    wide = jnp.asarray(bound, jnp.promote_types(dtype, jnp.float32))
    narrow = wide.astype(dtype)
    if side == "lower":
        fix = narrow.astype(wide.dtype) < wide
        return jnp.where(fix, next_float(narrow, True), narrow).astype(dtype)
    fix = narrow.astype(wide.dtype) > wide
    return jnp.where(fix, next_float(narrow, False), narrow).astype(dtype)


# -- declared bounds (equinox fields; adapters add more) ---------------------------


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


#: ``declarer(tree)`` gives ``{path: {key: value}}`` for a tree of its kind, or None.
Declarer = Callable[[Any], "dict[str, dict[str, Any]] | None"]
_DECLARERS: list[Declarer] = []


def register_declarations(declarer: Declarer) -> None:
    """Let `declarations` read a framework's own bound metadata (used by adapters)."""
    if declarer not in _DECLARERS:
        _DECLARERS.append(declarer)


def declarations(tree: Any) -> dict[str, dict[str, Any]]:
    """Declared ``lower`` / ``upper`` / ``family`` per dotted path of ``tree``.

    From `jaxbounds.field` on equinox modules, or from a registered adapter
    (flax nnx variable metadata). Paths without declarations are absent.
    """
    for declarer in _DECLARERS:
        found = declarer(tree)
        if found is not None:
            return found
    out: dict[str, dict[str, Any]] = {}
    flat, _ = jax.tree_util.tree_flatten_with_path(tree, is_leaf=is_none)
    for kp, _ in flat:
        found = {k: v for k in KEYS if (v := declared_field(tree, kp, k)) is not None}
        if found:
            out[path_str(kp)] = found
    return out


def make_bounds(params: PyTree) -> tuple[PyTree, PyTree]:
    """Bound templates mirroring ``params``: ``(lower, upper)``, unbounded by default.

    Every parameter leaf (a real float array) gets ``-inf`` in ``lower`` and
    ``inf`` in ``upper`` (Python floats), except where a bound was declared,
    with ``jaxbounds.field(lower=..., upper=...)`` on an equinox field or
    ``nnx.Param(..., lower=..., upper=...)`` in flax nnx. Every other leaf
    (an activation function, an int counter, a bool, a complex array, a
    Python-float hyperparameter) and every `None` hole gets `None`: no
    bound, and `set_where` / `mask` never select it. So both trees keep the
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
    """
    declared = declarations(params)
    pure, _ = pure_view(params)
    named, treedef = flatten_with_paths(pure)

    def side(key: str, default: float) -> PyTree:
        leaves = [
            declared.get(path, {}).get(key, default) if is_param_leaf(x) else None
            for path, x in named
        ]
        return jax.tree_util.tree_unflatten(treedef, leaves)

    return side(LOWER_KEY, -math.inf), side(UPPER_KEY, math.inf)


# -- the plan -----------------------------------------------------------------------


def _first_crossing(lo: Any, up: Any) -> tuple[Any, ...]:
    """``(any NaN, flat index of the first lo > up (else size), lo there, up there)``.

    Elementwise operations and scalar reductions only (jitted by the caller's
    `jax.jit` below), so on arrays sharded over several processes nothing is
    gathered, and every process receives the same replicated scalars.
    """
    lo, up = jnp.broadcast_arrays(lo, up)
    flat = jnp.arange(lo.size).reshape(lo.shape)
    first = jnp.min(jnp.where(_crossed(lo, up), flat, lo.size))
    at = flat == first
    nan = jnp.any(jnp.isnan(lo)) | jnp.any(jnp.isnan(up))
    return nan, first, jnp.sum(jnp.where(at, lo, 0)), jnp.sum(jnp.where(at, up, 0))


first_crossing = jax.jit(_first_crossing)


def _crossed(lo: Any, up: Any) -> Any:
    """Where no value satisfies the bounds: lo > up, lo = inf or up = -inf."""
    return (lo > up) | (lo == math.inf) | (up == -math.inf)


def _spans_processes(x: Any) -> bool:
    """Whether ``x`` is a global array that no single process can read whole."""
    return isinstance(x, jax.Array) and not x.is_fully_addressable


def check_order(lo: Any, up: Any, where: Callable[[], str]) -> None:
    """Raise if no value satisfies the bounds somewhere, or a bound is NaN.

    Only for values known now (not tracers). A missing side counts as its
    infinity, so a one-sided array bound is checked too. ``where()`` names
    the path (built only for the message).
    """
    lo = -math.inf if lo is None else lo
    up = math.inf if up is None else up
    if type(lo) is float and type(up) is float:
        if lo <= up:
            return  # two checked Python floats in order: nothing to look at
        raise ValueError(f"lower > upper at {where()}: {lo} > {up}")
    if isinstance(lo, jax.core.Tracer) or isinstance(up, jax.core.Tracer):
        return
    if _spans_processes(lo) or _spans_processes(up):
        nan, first, lo_at, up_at = jax.device_get(first_crossing(lo, up))
        shape = np.broadcast_shapes(np.shape(lo), np.shape(up))
        crossed = int(first) < math.prod(shape)
        index = np.unravel_index(int(first), shape) if crossed else ()
    else:
        lo_np, up_np = np.asarray(lo), np.asarray(up)
        nan = np.isnan(lo_np).any() or np.isnan(up_np).any()
        bad = np.broadcast_to(_crossed(lo_np, up_np), np.broadcast(lo_np, up_np).shape)
        crossed = bool(bad.any())
        index = tuple(np.argwhere(bad)[0]) if crossed else ()
        lo_at = np.broadcast_to(lo_np, bad.shape)[index]
        up_at = np.broadcast_to(up_np, bad.shape)[index]
    if nan:
        raise ValueError(f"bound at {where()} contains NaN")
    if crossed:
        element = tuple(int(i) for i in index)
        raise ValueError(
            f"lower > upper at {where()}"
            + (f", element {element}" if element else "")
            + f": {lo_at} > {up_at}"
        )


def _side(bound: Any, side: str, leaf: Any, param: bool, where: Callable[[], str]):
    """One bound leaf as `None` (no bound on this side) or the value to use.

    Raises for a bound that is malformed, that no value satisfies, that does
    not broadcast to the leaf, or that is concretely finite on a leaf that
    is not a parameter.
    """
    if bound is None:
        return None
    if type(bound) is float:  # the common cases first: eager calls pay per leaf
        if bound == OPEN[side]:
            return None
        if param and -math.inf < bound < math.inf:
            return bound
    value = scalar_bound(bound, lambda: f"{side} bound at {where()}", side)
    if value is not None:
        if value == OPEN[side]:
            return None
        if not param:
            raise _not_a_parameter(side, leaf, where)
        return value
    if not (hasattr(bound, "shape") and hasattr(bound, "dtype")):
        raise TypeError(
            f"{side} bound at {where()} must be a float, an array or None, got "
            f"{type(bound).__name__}"
        )
    if not jnp.issubdtype(bound.dtype, jnp.integer) and not jnp.issubdtype(
        bound.dtype, jnp.floating
    ):
        raise TypeError(
            f"{side} bound at {where()} has dtype {bound.dtype}; a bound must be "
            "real-valued"
        )
    traced = isinstance(bound, jax.core.Tracer)
    if not param:
        if traced or (
            not _spans_processes(bound) and np.all(np.asarray(bound) == OPEN[side])
        ):
            return None  # a traced or infinite bound on a non-parameter: ignored
        raise _not_a_parameter(side, leaf, where)
    shape = np.shape(leaf)
    try:
        fits = np.broadcast_shapes(bound.shape, shape) == shape
    except ValueError:
        fits = False
    if not fits:
        raise ValueError(
            f"{side} bound at {where()} has shape {tuple(bound.shape)}, which does "
            f"not broadcast to the parameter's shape {shape}"
        )
    return bound


def _not_a_parameter(side: str, leaf: Any, where: Callable[[], str]) -> TypeError:
    return TypeError(
        f"finite bound on {where()} ({side}), which holds {describe(leaf)}, not a "
        "real float array: a bound there would be ignored; remove it (None or "
        "an infinity) or make the leaf a float array"
    )


class Plan(NamedTuple):
    """A params tree split by its bounds, ready for a compiled function.

    ``leaves`` are the flat params leaves (`None` holes included) and
    ``treedef`` their structure; ``indices[k]`` is the position of the
    ``k``-th bounded parameter leaf, ``lows[k]`` / ``ups[k]`` its bounds
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

    def bounded(self) -> list[Any]:
        """The bounded parameter leaves, in order."""
        return [self.leaves[i] for i in self.indices]

    def write_back(
        self,
        new: Sequence[Any],
        base: Sequence[Any] | None = None,
        restore: Callable[[PyTree], Any] | None = None,
    ) -> Any:
        """``base`` (default: the params leaves) with the bounded leaves replaced."""
        flat = list(self.leaves if base is None else base)
        for i, x in zip(self.indices, new):
            flat[i] = x
        tree = jax.tree_util.tree_unflatten(self.treedef, flat)
        return (self.restore if restore is None else restore)(tree)


def plan(params: PyTree, lower: PyTree, upper: PyTree) -> Plan:
    """Check ``lower``/``upper`` against ``params`` and classify every leaf.

    Raises `ValueError` / `TypeError` naming the path of the first offending
    leaf. `None` holes of ``params`` are skipped, and so are leaves that are
    not parameters (their bounds must be unbounded or traced) and leaves
    whose two sides are unbounded.
    """
    params, restore = pure_view(params)
    lower, _ = pure_view(lower)
    upper, _ = pure_view(upper)
    treedef: Any
    lower_def: Any
    upper_def: Any
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

    indices, kept_lows, kept_ups = [], [], []
    for i, (p, lo, up) in enumerate(zip(leaves, lows, ups)):
        if p is None:
            continue
        param = is_param_leaf(p)
        where = where_of(i)
        lo = _side(lo, "lower", p, param, where)
        up = _side(up, "upper", p, param, where)
        if lo is None and up is None:
            continue
        check_order(lo, up, where)
        indices.append(i)
        kept_lows.append(lo)
        kept_ups.append(up)
    return Plan(treedef, leaves, tuple(indices), kept_lows, kept_ups, restore)


def _pack(values: Sequence[Any]) -> tuple[Any, list[Any], tuple[int | None, ...]]:
    """Python-float bounds gathered into one NumPy array; the rest kept as they are."""
    floats: list[float] = []
    kept: list[Any] = []
    layout: list[int | None] = []
    for v in values:
        if type(v) is float:
            layout.append(len(floats))
            floats.append(v)
        else:
            layout.append(None)
            kept.append(v)
    return (np.asarray(floats) if floats else None), kept, tuple(layout)


def _unpack(vec: Any, kept: list[Any], layout: tuple[int | None, ...]) -> list[Any]:
    rest = iter(kept)
    return [next(rest) if s is None else vec[s] for s in layout]


def _staged(x: Any) -> bool:
    """Whether ``x`` is being staged into a program (traced by `jax.jit`).

    Told by the tracer's class name: a JAX without that class (renamed) only
    makes `compiled` take its eager path under `jax.jit` too, which is
    correct, just slower to compile. `jax.grad` and `jax.vmap` called
    eagerly are not staging: they keep the compiled kernel (one dispatch).
    """
    return isinstance(x, jax.core.Tracer) and type(x).__name__ == "DynamicJaxprTracer"


def compiled(
    kernel: Callable[..., Any] | None = None, *, static: tuple[str, ...] = ()
) -> Any:
    """``kernel(leaves, lows, ups, *args)`` compiled, float bounds sent as one array.

    The jit boundary of every map over bounded leaves. A Python float passed
    to `jax.jit` is an argument of its own, converted and sent one by one;
    a tree with a hundred bounded leaves pays for two hundred transfers per
    eager call. Here the floats travel together as one array per side (the
    layout, which bound is which, is static), so an eager call costs one
    dispatch and changing a value never recompiles. Called inside the
    caller's `jax.jit`, the kernel is traced into the caller's program as it
    is: bounds the caller closed over are its constants (rounded on the
    host, see `inward`), bounds it passes are its arguments. ``static``
    names keyword arguments that are compile-time constants (a penalty).
    """

    def wrap(kernel: Callable[..., Any]) -> Callable[..., Any]:
        @functools.partial(jax.jit, static_argnames=("layouts", *static))
        def inner(
            leaves: Any,
            lo_vec: Any,
            lo_kept: Any,
            up_vec: Any,
            up_kept: Any,
            *args: Any,
            layouts: Any,
            **kw: Any,
        ) -> Any:
            lows = _unpack(lo_vec, lo_kept, layouts[0])
            ups = _unpack(up_vec, up_kept, layouts[1])
            return kernel(leaves, lows, ups, *args, **kw)

        @functools.wraps(kernel)
        def outer(leaves: Any, lows: Any, ups: Any, *args: Any, **kw: Any) -> Any:
            if any(map(_staged, leaves)):
                # Inside the caller's jax.jit: its bounds are its constants or
                # its arguments already, and one compiled program follows.
                return kernel(leaves, lows, ups, *args, **kw)
            lo_vec, lo_kept, lo_layout = _pack(lows)
            up_vec, up_kept, up_layout = _pack(ups)
            layouts = (lo_layout, up_layout)
            return inner(
                leaves, lo_vec, lo_kept, up_vec, up_kept, *args, layouts=layouts, **kw
            )

        return outer

    return wrap if kernel is None else wrap(kernel)


def map_bounded(
    kernel: Callable[..., list[Any]],
    params: PyTree,
    lower: PyTree,
    upper: PyTree,
    *args: Any,
) -> Any:
    """``params`` with its bounded leaves replaced by what ``kernel`` returns.

    ``kernel(leaves, lows, ups, *args)`` is the one plan / compile /
    write-back loop: a compiled
    function of the bounded leaves and their bounds (`None` for an open
    side), returning one new leaf each. Leaves that are not parameters, and
    unbounded ones, are returned as the same objects.
    """
    pl = plan(params, lower, upper)
    if not pl.indices:
        return pl.restore(jax.tree_util.tree_unflatten(pl.treedef, pl.leaves))
    return pl.write_back(kernel(pl.bounded(), pl.lows, pl.ups, *args))


def full_bounds(params: PyTree, lower: PyTree, upper: PyTree) -> tuple[Any, Any]:
    """The box per element: ``(lo, up)`` trees of arrays shaped like each parameter.

    Validated like `bounds_cost`. Each parameter leaf gets two arrays of its
    shape and dtype, rounded inwards into that dtype (see `inward`), with
    ``-inf`` / ``inf`` on open sides; other leaves and holes get `None`.
    Traceable (for solvers that need the bounds elementwise).
    """
    pl = plan(params, lower, upper)
    sides: list[list[Any]] = [[], []]
    bounded = dict(zip(pl.indices, zip(pl.lows, pl.ups)))
    for i, p in enumerate(pl.leaves):
        for s, side in enumerate(OPEN):
            if not is_param_leaf(p):
                sides[s].append(None)
                continue
            b = bounded.get(i, (None, None))[s]
            b = OPEN[side] if b is None else b
            sides[s].append(jnp.broadcast_to(inward(b, p.dtype, side), np.shape(p)))
    lo, up = (jax.tree_util.tree_unflatten(pl.treedef, x) for x in sides)
    return lo, up


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
