"""The PDF: the report's HTML printed on A4 by WeasyPrint (print CSS, no JavaScript, no network)."""

from __future__ import annotations

import re

__all__ = ["render_pdf"]

_SCREEN_ONLY_ROW = re.compile(r'<tr class="[^"]*\bscreen-only\b[^"]*"[^>]*>.*?</tr>', re.S)
"""A register row the PDF leaves out (beyond the printed rows, views.PRINT_LIMIT): WeasyPrint lays out a row that
print CSS hides, so it is removed from what WeasyPrint reads. The register's rows hold no nested row."""


def render_pdf(html: str) -> bytes:
    """The PDF of the same HTML. Only inline data: URLs are fetched; http, file and the rest are refused."""
    import logging

    import weasyprint
    from weasyprint.urls import URLFetcher

    logging.getLogger("weasyprint").setLevel(logging.ERROR)
    logging.getLogger("fontTools").setLevel(logging.ERROR)
    fetcher = URLFetcher(allowed_protocols={"data"}, allow_redirects=False)
    return weasyprint.HTML(string=_SCREEN_ONLY_ROW.sub("", html), url_fetcher=fetcher).write_pdf()
