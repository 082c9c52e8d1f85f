"""The one jit boundary of the maps over bounded leaves: `compiled` and `per_leaf`.

Every function that works on bounded leaves (cost, clip, violations, the
optax transformations, the bijections) hands its leaves and their bounds to
a kernel wrapped here. Bounds are data: finite Python-float bounds travel as
one array per side (their layout, which bound is which, is static), so an
eager call is one dispatch and changing a value never recompiles.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np


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


def per_leaf(
    fn: Callable[..., Any], *, static: tuple[str, ...] = ()
) -> Callable[..., list[Any]]:
    """``fn(p, lo, up, *extra)`` mapped over bounded leaves, as one `compiled` kernel.

    The returned ``kernel(leaves, lows, ups, *lists, **shared)`` calls
    ``fn(leaf, lo, up, *(l[k] for l in lists), **shared)`` for each leaf ``k``
    (``lists`` are further per-leaf sequences, such as the updates;
    ``shared`` are the same for every leaf, such as a scale). Names in
    ``static`` are compile-time constants (a penalty). Leaves are handed to
    ``fn`` as arrays: a Python-float parameter becomes a 0-d array, as
    `jax.grad` returns it.
    """

    def kernel(leaves: list, lows: list, ups: list, *lists: Any, **shared: Any) -> list:
        return [
            fn(jnp.asarray(p), lo, up, *extra, **shared)
            for p, lo, up, *extra in zip(leaves, lows, ups, *lists)
        ]

    return compiled(kernel, static=static)
