"""YAML with line numbers: every problem found in a policy names the line it is on."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

from .errors import PolicyError, Problem

__all__ = ["line_of", "policy_lines", "read_yaml"]

MAX_DEPTH = 64
"""Deepest nesting a policy may have; real ones nest about six levels."""
MAX_VALUES = 100_000
"""Most values a policy may expand to (an alias counts as every value it stands for): bounds the work
of reading a YAML "billion laughs"."""
_SURROGATE = re.compile("[\ud800-\udfff]")


def read_yaml(text: str, file: str) -> tuple[Any, dict[tuple, int]]:
    """Parse YAML and record the line of every mapping key and sequence item, keyed by path."""
    try:
        loader = yaml.SafeLoader(text)
    except yaml.reader.ReaderError as exc:  # checked before parsing: NUL and other control characters
        line = text.count("\n", 0, exc.position) + 1
        raise PolicyError([Problem(file, "(file)", f"not valid YAML: character #x{exc.character:04x} is not allowed "
                                   "in YAML text", "remove it, or write it as an escape (\"\\x00\") inside a "
                                   "double-quoted string", line)]) from None
    try:
        node = loader.get_single_node()
        if node is None:
            return None, {}
        data = loader.construct_document(node)
    except RecursionError:
        raise PolicyError([Problem(file, "(file)", "not valid for a policy: the YAML nests too deeply to read",
                                   "a policy nests a few levels; look for unclosed or repeated brackets")]) from None
    except (ValueError, TypeError, AttributeError) as exc:  # PyYAML's converters, e.g. for `!!float abc`
        raise PolicyError([Problem(file, "(file)", f"not valid YAML: a value does not fit its tag ({exc})",
                                   "remove the explicit tag (!!float, !!int, !!timestamp, ...) or correct the "
                                   "value")]) from None
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
    seen = [0]  # values walked, aliases counted each time they are used

    def refuse(n: yaml.Node, message: str, fix: str) -> None:
        raise PolicyError([Problem(file, "(file)", f"not valid for a policy: {message}", fix,
                                   n.start_mark.line + 1)])

    def walk(n: yaml.Node, path: tuple) -> None:
        seen[0] += 1
        if len(path) > MAX_DEPTH:
            refuse(n, f"the values nest more than {MAX_DEPTH} levels deep (through brackets or aliases)",
                   "a policy nests a few levels; look for an alias (*name) inside the anchor (&name) it names")
        if seen[0] > MAX_VALUES:
            refuse(n, f"the YAML expands to more than {MAX_VALUES:,} values (aliases of aliases?)",
                   "write the values out instead of nesting aliases (*name) in anchors (&name)")
        if isinstance(n, yaml.ScalarNode) and _SURROGATE.search(n.value):
            refuse(n, "a string holds a lone surrogate (an escape from \\uD800 to \\uDFFF), which is not a "
                   "character and cannot be written as UTF-8", "write the character itself, or as one \\U escape "
                   "(\\U0001F600, not \\uD83D\\uDE00)")
        if isinstance(n, yaml.MappingNode):
            for key_node, value_node in n.value:
                if isinstance(key_node, yaml.ScalarNode):
                    walk(key_node, path)  # a key's text is checked as a value's is
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
    except (OSError, UnicodeDecodeError, PolicyError):
        return {}
