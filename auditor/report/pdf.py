"""The PDF: the report's HTML printed on A4 by WeasyPrint (print CSS, no JavaScript, no network).

A long report is printed in parts by worker processes and joined (pdf_parts); a short one, or one whose
stylesheet does not name the cover's page, in this process. Which path prints a report depends on its HTML
alone, never on the machine: the same HTML gives the same PDF bytes on one CPU or sixteen.
"""

from __future__ import annotations

import os
import re

__all__ = ["PARALLEL_FROM_CHARS", "render_pdf"]

PARALLEL_FROM_CHARS = 300_000
"""A report of this many characters of HTML (after the screen-only rows go), about 30 detailed decisions, is
printed in parts: below it, starting the workers costs more than they save."""

_SCREEN_ONLY_ROW = re.compile(r'<tr class="[^"]*\bscreen-only\b[^"]*"[^>]*>.*?</tr>', re.S)
"""A register row the PDF leaves out (beyond the printed rows, views.PRINT_LIMIT): WeasyPrint lays out a row that
print CSS hides, so it is removed from what WeasyPrint reads. The register's rows hold no nested row."""

_NAMED_COVER_PAGE = re.compile(r"@page\s+cover\b")
"""report.css blanks the cover's margins through a named page. A stylesheet (a user's override) that does it with
``@page :first`` instead would blank the first page of every part: such a report is printed in one piece."""


def render_pdf(html: str, *, workers: int | None = None) -> bytes:
    """The PDF of the same HTML. Only inline data: URLs are fetched; http, file and the rest are refused.

    ``workers``: processes that print a long report's parts (default: this machine's CPUs). The parts, and so
    the bytes, do not depend on it; ``workers=0`` prints in this process, in one piece."""
    html = _SCREEN_ONLY_ROW.sub("", html)
    if workers != 0 and len(html) >= PARALLEL_FROM_CHARS and _NAMED_COVER_PAGE.search(html):
        from .pdf_parts import render_parts

        return render_parts(html, workers or os.cpu_count() or 1)
    return render_whole(html)


def render_whole(html: str) -> bytes:
    """The PDF of ``html``, laid out as one document by WeasyPrint in this process."""
    import logging

    import weasyprint
    from weasyprint.urls import URLFetcher

    logging.getLogger("weasyprint").setLevel(logging.ERROR)
    logging.getLogger("fontTools").setLevel(logging.ERROR)
    fetcher = URLFetcher(allowed_protocols={"data"}, allow_redirects=False)
    return weasyprint.HTML(string=html, url_fetcher=fetcher).write_pdf()
