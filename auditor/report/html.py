"""The HTML report: a Jinja environment whose only way to print a figure is by its evidence path.

``fig(path, fmt, digits)`` looks the value up in ``evidence.json`` (as JSON), formats it and wraps it
in ``<span data-evidence="path" data-format="fmt">``: a figure that is not in the evidence cannot be
printed, and a reader's tool (or a test) can trace every printed figure back to the signed evidence.
``val(path)`` gives a value to the templates' layout logic (whether to show a row), never to print.
Charts are drawn from evidence paths too (:mod:`auditor.report.charts`). Autoescaping is on for every
template: strings from datasets and policies are treated as hostile. Users can override any template
by passing a folder that is searched before the shipped ones.
"""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path
from typing import Any, Callable

import jinja2
from markupsafe import Markup, escape
from pydantic import BaseModel
from pydantic_core import to_jsonable_python

from .. import numbers
from ..paths import locate, path

__all__ = ["FORMATS", "Figures", "environment", "template_dir"]


def _param(v: Any, digits: int | None = None) -> str:
    """A policy setting or derived parameter: numbers short, lists joined, mappings as key: value."""
    if isinstance(v, bool) or v is None:
        return str(v)
    if isinstance(v, float):
        return numbers.num(v)
    if isinstance(v, list):
        return ", ".join(map(str, v))
    if isinstance(v, dict):
        return "; ".join(f"{k}: {_param(x)}" for k, x in v.items())
    return str(v)


def _value(v: Any, digits: int | None = None) -> str:
    """A feature value: categories by name, numbers to four significant digits, null (no value) as missing."""
    if v is None:
        return "missing"
    return v if isinstance(v, str) else numbers.num(v, digits or 4)


FORMATS: dict[str, Callable[[Any, int | None], str]] = {
    "num": lambda v, d: numbers.num(v, 3 if d is None else d),
    "pct": lambda v, d: numbers.pct(v, 1 if d is None else d),
    "prob": lambda v, d: numbers.prob(v),
    "prob_rel": lambda v, d: numbers.prob(v, relation=True),
    "signed": lambda v, d: numbers.signed(v, 3 if d is None else d),
    "int": lambda v, d: "n/a" if v is None else str(int(v)),
    "text": lambda v, d: "" if v is None else str(v),
    "count": lambda v, d: str(len(v or ())),
    "short": lambda v, d: "" if v is None else str(v)[: d or 16],
    "param": _param,
    "value": _value,
    "yes_no": lambda v, d: "n/a" if v is None else ("yes" if v else "no"),
}
"""How a value reads in the report, by format name (the span's ``data-format``)."""


class Figures:
    """Prints figures of one JSON document by path: ``evidence.json`` (``data-evidence``), or another the
    report quotes (``changes.json``: ``data-changes``). The document is the JSON, or the model it is dumped from:
    a value found in a model reads as in its JSON (``to_jsonable_python``), so the report prints what the file
    holds without a second copy of the evidence."""

    def __init__(self, document: Any, attribute: str = "data-evidence") -> None:
        self.document = document
        self.attribute = attribute
        self._models = isinstance(document, BaseModel)

    def value(self, where: str) -> Any:
        found = locate(self.document, where)
        return to_jsonable_python(found, fallback=list) if self._models else found  # list: decisions kept on disk

    def __call__(self, where: str, fmt: str = "num", digits: int | None = None, unit: str | None = None) -> Markup:
        # a count needs only the length: not the decisions (say) read back and dumped to count them
        value = locate(self.document, where) if fmt == "count" else self.value(where)
        text = FORMATS[fmt](value, digits)
        span = Markup('<span {}="{}" data-format="{}">{}</span>').format(
            Markup(self.attribute), where, fmt, text)
        return span + (Markup(" ") + escape(unit) if unit and value is not None else "")  # no value, no unit


def template_dir() -> Path:
    """The shipped templates: inside the installed package, or the repository's templates/ folder."""
    packaged = Path(str(resources.files("auditor"))) / "templates"
    return packaged if packaged.is_dir() else Path(__file__).resolve().parents[2] / "templates"


def _key(name: str | int) -> str:
    """A path step for a key: ``.name``, ``["a key"]`` or ``[3]`` (see :mod:`auditor.paths`)."""
    step = path("", name)
    return step if step.startswith("[") else "." + step


def environment(override: Path | None, *, figures: Figures, changes: Figures | None,
                chart_globals: dict[str, Callable], settings: dict[str, Any]) -> jinja2.Environment:
    """``settings`` are report-wide values every template and partial sees (e.g. ``case_word``)."""
    loaders = [jinja2.FileSystemLoader(str(override))] if override else []
    loaders.append(jinja2.FileSystemLoader(str(template_dir())))
    env = jinja2.Environment(
        loader=jinja2.ChoiceLoader(loaders),
        autoescape=True,  # every template, whatever its suffix
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.globals.update(fig=figures, val=figures.value, cfig=changes, **chart_globals, **settings)
    env.filters["key"] = _key
    env.filters["json"] = lambda v: json.dumps(v, ensure_ascii=False)
    return env


def render(template: str, view: dict[str, Any], *, override: Path | None, figures: Figures,
           changes: Figures | None, chart_globals: dict[str, Callable]) -> str:
    settings = {k: view[k] for k in ("case_word", "top_features")}
    env = environment(override, figures=figures, changes=changes, chart_globals=chart_globals, settings=settings)
    css = (template_dir() / "report.css").read_text(encoding="utf-8")
    if override and (override / "report.css").is_file():
        css = (override / "report.css").read_text(encoding="utf-8")
    # The stylesheet is a template file (ours or the user's override), not data: insert it verbatim.
    pieces = env.get_template(template).generate(**view, css=Markup(css.replace("</", "<\\/")))
    return _joined(pieces)


def _joined(pieces, every: int = 8192) -> str:
    """The template's output pieces joined, ``every`` at a time: ``render`` would hold every piece (a register of
    20,000 lines is millions of small strings) until the one join at the end."""
    parts, held = [], []
    for piece in pieces:
        held.append(piece)
        if len(held) == every:
            parts.append("".join(held))
            held.clear()
    parts.append("".join(held))
    return "".join(parts)
