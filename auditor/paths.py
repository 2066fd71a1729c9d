"""Evidence paths: how a figure in the report, or a finding, names the field of ``evidence.json`` it is.

A path reads like the Python that would reach the value in the JSON: ``subjects[0].performance.roc_auc``,
``subjects[1].decisions[3].values["mean radius"]``. Names that are identifiers follow a dot; other keys
are JSON strings in brackets; list positions are integers in brackets. :func:`locate` resolves a path,
:func:`path` builds one.
"""

from __future__ import annotations

import functools
import json
import re
from typing import Any

from pydantic import BaseModel

__all__ = ["locate", "path"]

_TOKEN = re.compile(r'\.?([A-Za-z_][A-Za-z0-9_]*)|\[(\d+)\]|\[("(?:[^"\\]|\\.)*")\]')
_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")


@functools.lru_cache(maxsize=65536)
def _steps(text: str) -> tuple:
    steps, pos = [], 0
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if m is None:
            raise ValueError(f"not an evidence path: {text!r} (at character {pos})")
        name, index, quoted = m.groups()
        steps.append(name if name is not None else int(index) if index is not None else json.loads(quoted))
        pos = m.end()
    return tuple(steps)


def locate(data: Any, where: str) -> Any:
    """The value at evidence path ``where`` in ``data`` (the evidence as JSON, or as models: a path names a model's
    field as the JSON does, by its alias where it has one)."""
    node = data
    for step in _steps(where):
        node = getattr(node, _attribute(type(node), step)) if isinstance(node, BaseModel) else node[step]
    return node


@functools.lru_cache(maxsize=1024)
def _attribute(model: type[BaseModel], key: str) -> str:
    """The attribute of ``model`` that JSON key ``key`` is (an aliased field's name; else the key itself)."""
    for name, field in model.model_fields.items():
        if field.serialization_alias == key or field.alias == key:
            return name
    return key


def path(base: str, *keys: str | int) -> str:
    """``base`` extended by keys: names as ``.name`` when they are identifiers, else ``["key"]``; ints as ``[i]``."""
    out = base
    for key in keys:
        if isinstance(key, int):
            out += f"[{key}]"
        elif _IDENTIFIER.match(key):
            out += f".{key}" if out else key
        else:
            out += "[" + json.dumps(key, ensure_ascii=False) + "]"
    return out
