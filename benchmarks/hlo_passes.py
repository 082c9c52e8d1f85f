"""Passes over memory of a compiled program, counted from its optimized HLO.

Each top-level operation of the program's entry computation (a fusion, a
reduction, a conditional's branches as XLA scheduled them) reads its operands
and writes its result once. Counting the bytes of the large ones, in units of
one copy of the parameters, gives the passes over memory a step makes: what a
memory-bound step costs, without the noise of timing on a shared machine.
Operations with neither a large operand nor a large result (scalar
bookkeeping, per-unit norms) are left out. A conditional counts the operands
and results of its branches together, so its count is an upper bound of the
path taken.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import jax
import numpy as np

_BYTES = {"f16": 2, "bf16": 2, "f32": 4, "f64": 8, "s32": 4, "u32": 4, "s64": 8}
_SKIP = {"parameter", "constant", "get-tuple-element", "tuple", "bitcast"}
_ARRAY = re.compile(r"(f16|bf16|f32|f64|s32|u32|s64)\[([0-9,]*)\]")
_LINE = re.compile(r"\s*(?:ROOT )?%?([\w.\-]+) = (.+?) ([a-z][\w\-]*)\((.*)\)")


def _size(shape: str) -> int:
    total = 0
    for dtype, dims in _ARRAY.findall(shape):
        n = int(np.prod([int(d) for d in dims.split(",") if d])) if dims else 1
        total += _BYTES[dtype] * n
    return total


def passes(
    fn: Callable[..., Any], *args: Any, unit: int, large: int = 1 << 20
) -> tuple[float, float]:
    """``(reads, writes)`` of ``jax.jit(fn)(*args)``, in units of ``unit`` bytes.

    Only arrays of at least ``large`` bytes count.
    """
    text = jax.jit(fn).lower(*args).compile().as_text()
    entry = text[text.index("\nENTRY") :]
    shapes: dict[str, str] = {}
    reads = writes = 0
    for line in entry.splitlines()[1:]:
        m = _LINE.match(line)
        if not m:
            continue
        name, shape, op, operands = m.groups()
        shapes[name] = shape
        if op in _SKIP:
            continue
        read = sum(
            b
            for b in (
                _size(shapes.get(o, "")) for o in re.findall(r"%([\w.\-]+)", operands)
            )
            if b >= large
        )
        write = _size(shape)
        reads += read
        writes += write if write >= large else 0
    return reads / unit, writes / unit
