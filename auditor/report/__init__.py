"""The report: evidence laid out as one HTML document and, from the same HTML, a PDF.

``views`` says where each figure is in the evidence and what is shown in which order; the templates
lay it out and print every figure by its evidence path (``html``); ``visuals`` and ``charts`` draw
SVG from evidence paths; ``pdf`` prints the HTML. Nothing here computes a figure.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

from ..evidence import Evidence
from .html import Figures, render, template_dir
from .pdf import render_pdf
from .views import build_view
from .visuals import chart_globals

__all__ = ["build_view", "render_html", "render_pdf", "template_dir"]


def render_html(evidence: Evidence, *, generated_at: datetime | None = None, templates: Path | None = None,
                signer: dict | None = None, evidence_sha256: str | None = None, changes=None) -> str:
    """The report. ``signer`` (Identity.describe()) and ``evidence_sha256`` fill the signature and
    verification sections; without a signer the report says it is unsigned. ``changes`` (an AuditDiff)
    adds 'Changes since the last audit', its figures traced to changes.json."""
    figures = Figures(evidence)  # paths into the evidence objects, read as their JSON: no second copy
    changed = Figures(changes, "data-changes") if changes is not None else None
    view = build_view(evidence, generated_at=generated_at)
    view.update(signer=signer, evidence_sha256=evidence_sha256, changes=changes)
    return render(f"{evidence.audit['audience']}.html.j2", view, override=templates, figures=figures,
                  changes=changed, chart_globals=chart_globals(figures))
