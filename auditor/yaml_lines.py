"""YAML with line numbers: every problem found in a policy names the line it is on."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from .errors import PolicyError, Problem

__all__ = ["line_of", "policy_lines", "read_yaml"]


def read_yaml(text: str, file: str) -> tuple[Any, dict[tuple, int]]:
    """Parse YAML and record the line of every mapping key and sequence item, keyed by path."""
    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None, {}
        data = loader.construct_document(node)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark else None
        raise PolicyError(
            [Problem(file, "(file)", f"not valid YAML: {getattr(exc, 'problem', exc)}",
                     "check indentation and quoting near this line", line)]
        ) from None
    finally:
        loader.dispose()
    lines: dict[tuple, int] = {}

    def walk(n: yaml.Node, path: tuple) -> None:
        if isinstance(n, yaml.MappingNode):
            for key_node, value_node in n.value:
                p = path + (key_node.value,)
                lines[p] = key_node.start_mark.line + 1
                walk(value_node, p)
        elif isinstance(n, yaml.SequenceNode):
            for i, item in enumerate(n.value):
                lines[path + (i,)] = item.start_mark.line + 1
                walk(item, path + (i,))

    walk(node, ())
    return data, lines


def line_of(loc: tuple, lines: dict[tuple, int]) -> int | None:
    """The line of the deepest part of ``loc`` (a field path as a tuple) found in the YAML."""
    path: tuple = ()
    best = None
    for part in (int(p) if isinstance(p, str) and p.isdigit() else p for p in loc):
        if path + (part,) in lines:
            path = path + (part,)
            best = lines[path]
        # parts absent from the YAML (a union's tag, a missing key) are skipped
    return best


def policy_lines(path: str | Path) -> dict[tuple, int]:
    """Line numbers of a policy's fields, for problems found after loading (data, models)."""
    try:
        return read_yaml(Path(path).read_text(encoding="utf-8"), str(path))[1]
    except (OSError, PolicyError):
        return {}
