"""Checks that every figure a report prints is a field of its evidence, independently of the auditor's code.

``trace(html, evidence)`` walks every element carrying a ``data-evidence`` path, resolves the path in the
evidence JSON with its own small resolver (not the auditor's), and checks that the printed text is that
value, formatted: numbers within half a unit of their last printed digit, texts exactly. It also lists
every decimal figure in the visible text that no such element holds, apart from chart axes (SVG) and
citations (``class="cite"``). Used by the render tests on stored evidence and by the sample audits' tests.
"""

from __future__ import annotations

import json
import math
import re
from html import unescape
from html.parser import HTMLParser

__all__ = ["trace", "visible_text"]

VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source", "track", "wbr"}
DECIMAL = re.compile(r"\d+\.\d+|\d+(?:\.\d+)?\s*%")
SKIPPED = {"svg", "style", "script", "title", "head"}


class _Walker(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.stack: list[dict] = []  # open elements: tag, attributes, collected text
        self.figures: list[tuple[str, str | None, str, str]] = []  # (attribute, path, format, text)
        self.loose: list[str] = []  # visible text outside figures, svg, citations

    def handle_starttag(self, tag, attrs):
        if tag in VOID:
            return
        self.stack.append({"tag": tag, "attrs": dict(attrs), "text": []})

    def handle_endtag(self, tag):
        if tag in VOID:
            return
        while self.stack:
            node = self.stack.pop()
            text = "".join(node["text"])
            for attribute in ("data-evidence", "data-changes"):
                if attribute in node["attrs"]:
                    self.figures.append((attribute, node["attrs"][attribute], node["attrs"].get("data-format"), text))
            if self.stack:
                self.stack[-1]["text"].append(text)
            if node["tag"] == tag:
                break

    def _hidden(self) -> bool:
        for node in self.stack:
            a = node["attrs"]
            if node["tag"] in SKIPPED or "data-evidence" in a or "data-changes" in a or "cite" in (a.get("class") or "").split():
                return True
        return False

    def handle_data(self, data):
        if self.stack:
            self.stack[-1]["text"].append(data)
        if not self._hidden():
            self.loose.append(data)


def visible_text(html: str) -> str:
    """The text a reader sees: tags removed, entities decoded, whitespace collapsed."""
    text = re.sub(r"<(style|script|svg)\b.*?</\1>", " ", html, flags=re.S | re.I)
    return re.sub(r"\s+", " ", unescape(re.sub(r"<[^>]+>", "", text))).strip()


_STEP = re.compile(r'\.?([A-Za-z_][A-Za-z0-9_]*)|\[(\d+)\]|\[("(?:[^"\\]|\\.)*")\]')


def _resolve(document, path: str):
    node, pos = document, 0
    while pos < len(path):
        m = _STEP.match(path, pos)
        assert m, f"bad path {path!r} at {pos}"
        name, index, quoted = m.groups()
        node = node[name] if name is not None else node[int(index)] if index is not None else node[json.loads(quoted)]
        pos = m.end()
    return node


_NUMBER = re.compile(r"[-−+]?\d[\d,]*(?:\.\d+)?(?:e[-+]?\d+)?")


def _close(text: str, value: float, scale: float = 1.0) -> bool:
    """Whether the first number printed in ``text`` (times ``scale``) is ``value`` to the printed precision."""
    t = text.strip().replace("−", "-")
    if t.startswith(">"):
        return value >= float(_NUMBER.search(t).group().replace(",", "")) * scale
    if t.startswith("<"):
        return value <= float(_NUMBER.search(t).group().replace(",", "")) * scale
    m = _NUMBER.search(t)
    assert m, f"no number in {text!r}"
    literal = m.group().replace(",", "")
    mantissa, _, exponent = literal.partition("e")
    decimals = len(mantissa.partition(".")[2])
    unit = 10.0 ** (-decimals + (int(exponent) if exponent else 0))
    return abs(float(literal) * scale - value) <= 0.5 * unit * scale * (1 + 1e-9) + 1e-15


def _param(v) -> str:
    if isinstance(v, list):
        return ", ".join(map(str, v))
    if isinstance(v, dict):
        return "; ".join(f"{k}: {_param(x)}" for k, x in v.items())
    return str(v)


def _matches(fmt: str | None, text: str, value) -> bool:
    text = text.strip()
    if fmt in ("text", None):
        return text == ("" if value is None else str(value))
    if fmt == "short":
        return str(value).startswith(text) and len(text) >= 8
    if fmt == "count":
        return int(text) == len(value or ())
    if fmt == "yes_no":
        return text == ("n/a" if value is None else "yes" if value else "no")
    if fmt == "param":
        return _close(text, value) if isinstance(value, float) else text == _param(value)
    if value is None:
        return text == ("missing" if fmt == "value" else "n/a")  # a feature value of null is a missing value
    if isinstance(value, str):
        return text == value
    if isinstance(value, bool):
        return False
    if fmt == "int":
        return int(text) == value
    if fmt == "pct":
        return text.endswith("%") and _close(text, value, 0.01)
    if isinstance(value, (int, float)) and not (isinstance(value, float) and math.isnan(value)):
        return _close(text, float(value))
    return False


def trace(html: str, evidence: dict, changes: dict | None = None) -> tuple[int, list[str]]:
    """(number of figures checked, problems): figures whose printed text is not their evidence value, paths
    that do not resolve, and decimal figures in the visible text that carry no evidence path."""
    walker = _Walker()
    walker.feed(html)
    walker.close()
    problems = []
    for attribute, path, fmt, text in walker.figures:
        document = evidence if attribute == "data-evidence" else changes
        try:
            value = _resolve(document, path)
        except (KeyError, IndexError, TypeError) as exc:
            problems.append(f"{attribute}={path!r}: does not resolve ({exc!r})")
            continue
        if not _matches(fmt, text, value):
            problems.append(f"{attribute}={path!r} ({fmt}): printed {text!r}, evidence holds {value!r}")
    loose = re.sub(r"\s+", " ", " ".join(walker.loose))
    for m in DECIMAL.finditer(loose):
        problems.append(f"untraced figure {m.group()!r} in: …{loose[max(0, m.start() - 60):m.end() + 30]}…")
    return len(walker.figures), problems
