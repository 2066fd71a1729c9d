"""The PDF: the report's HTML printed on A4 by WeasyPrint (print CSS, no JavaScript, no network)."""

from __future__ import annotations

__all__ = ["render_pdf"]


def render_pdf(html: str) -> bytes:
    """The PDF of the same HTML. Only inline data: URLs are fetched; http, file and the rest are refused."""
    import logging

    import weasyprint
    from weasyprint.urls import URLFetcher

    logging.getLogger("weasyprint").setLevel(logging.ERROR)
    logging.getLogger("fontTools").setLevel(logging.ERROR)
    fetcher = URLFetcher(allowed_protocols={"data"}, allow_redirects=False)
    return weasyprint.HTML(string=html, url_fetcher=fetcher).write_pdf()
