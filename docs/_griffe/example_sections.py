"""Griffe extension: read jaxbounds' ``Example:`` docstring sections as examples.

The library's docstrings are Google style with an ``Example:`` section of
doctests (``pytest --doctest-modules`` runs them). Griffe's Google parser
only knows the plural ``Examples:``, and renders any other title as an
admonition of Markdown text, in which ``>>>`` lines would become nested
block quotes. This extension renames the section before parsing, so the
doctests render as Python console code blocks.
"""

from __future__ import annotations

import re
from typing import Any

import griffe

_EXAMPLE = re.compile(r"^(\s*)Example:[ \t]*$", re.MULTILINE)


class ExampleSections(griffe.Extension):
    def on_instance(self, *, obj: griffe.Object, **kwargs: Any) -> None:
        if obj.docstring is not None:
            obj.docstring.value = _EXAMPLE.sub(r"\1Examples:", obj.docstring.value)
