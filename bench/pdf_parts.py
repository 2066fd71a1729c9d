"""Where WeasyPrint's time goes on a report, and the report printed in parts by worker processes against one piece.

    .venv/bin/python bench/pdf_parts.py REPORT.html [--workers N]

Prints, for the report printed in one piece in this process: the seconds of each WeasyPrint step (HTML parsing,
the CSS cascade, the box tree, layout, drawing and writing the PDF) with the cost per page and per element;
then the same report printed by auditor.report.render_pdf in parts (pdf_parts) and the ratio of the two.
bench/audit_vs_naive.py calls ``run`` on the report it prints.
"""

from __future__ import annotations

import argparse
import re
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

STEPS = (("parse", "parse HTML"), ("cascade", "CSS cascade"), ("boxes", "box tree"), ("layout", "layout"),
         ("draw", "draw + write PDF"))


def _timed_steps():
    """Timers around WeasyPrint 70's steps, as weasyprint.document calls them; and a function that removes them."""
    import weasyprint.document as document

    seconds = {key: 0.0 for key, _ in STEPS}
    originals = {}

    def wrap(module, name, key, generator=False):
        original = getattr(module, name)
        originals[(module, name)] = original

        def timed(*args, **kwargs):
            start = time.perf_counter()
            if not generator:
                try:
                    return original(*args, **kwargs)
                finally:
                    seconds[key] += time.perf_counter() - start
            result = list(original(*args, **kwargs))
            seconds[key] += time.perf_counter() - start
            return iter(result)

        setattr(module, name, timed)

    wrap(document, "get_all_computed_styles", "cascade")
    wrap(document, "build_formatting_structure", "boxes")
    wrap(document, "layout_document", "layout", generator=True)

    def restore():
        for (module, name), original in originals.items():
            setattr(module, name, original)

    return seconds, restore


def single(html: str) -> dict:
    """The report printed in one piece, step by step: seconds per step, pages, elements, total seconds."""
    import weasyprint
    from weasyprint.urls import URLFetcher

    seconds, restore = _timed_steps()
    fetcher = URLFetcher(allowed_protocols={"data"}, allow_redirects=False)
    try:
        start = time.perf_counter()
        parsed = weasyprint.HTML(string=html, url_fetcher=fetcher)
        seconds["parse"] = time.perf_counter() - start
        document = parsed.render()
        rendered = time.perf_counter()
        pdf = document.write_pdf()
        seconds["draw"] = time.perf_counter() - rendered
        total = time.perf_counter() - start
    finally:
        restore()
    elements = sum(1 for _ in parsed.etree_element.iter())
    return {"seconds": seconds, "pages": len(document.pages), "elements": elements,
            "cells": len(re.findall(r"<t[dh][\s>]", html)), "total": total, "bytes": len(pdf)}


def describe(one: dict) -> list[str]:
    """The lines for ``single``'s result: the total, then every step's seconds, share, per page and per element."""
    pages, elements = one["pages"], one["elements"]
    lines = [f"    WeasyPrint in one piece: {one['total']:.1f} s for {pages} pages, {elements:,} elements "
             f"({one['cells']:,} table cells): {1000 * one['total'] / pages:.0f} ms per page, "
             f"{1e6 * one['total'] / elements:.0f} µs per element"]
    for key, label in STEPS:
        s = one["seconds"][key]
        lines.append(f"      {label:16} {s:6.2f} s  {100 * s / one['total']:3.0f}%  {1000 * s / pages:5.0f} ms/page  "
                     f"{1e6 * s / elements:5.0f} µs/element")
    return lines


def compared(one: dict, html: str, seconds: float, workers: int) -> str:
    """The line that sets render_pdf's ``seconds`` on ``html`` against ``single``'s result on it."""
    from auditor.report.pdf import PARALLEL_FROM_CHARS
    from auditor.report.pdf_parts import cut

    if len(html) < PARALLEL_FROM_CHARS:
        return f"    (under {PARALLEL_FROM_CHARS:,} characters: render_pdf prints this report in one piece)"
    return (f"    render_pdf, in {len(cut(html)[0])} parts by {workers} worker process(es): {seconds:.1f} s, "
            f"{one['total'] / seconds:.2f}x faster than one piece")


def run(html: str, workers: int | None = None) -> list[str]:
    """The lines this module prints for one report's HTML."""
    import os

    from auditor.report.pdf import _SCREEN_ONLY_ROW, render_pdf

    html = _SCREEN_ONLY_ROW.sub("", html)
    one = single(html)
    workers = workers or os.cpu_count() or 1
    start = time.perf_counter()
    render_pdf(html, workers=workers)
    return describe(one) + [compared(one, html, time.perf_counter() - start, workers)]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("report", type=Path, help="a report.html written by auditor run")
    parser.add_argument("--workers", type=int, default=None, help="worker processes (default: the CPUs)")
    args = parser.parse_args(argv)
    import logging

    logging.getLogger("weasyprint").setLevel(logging.ERROR)
    logging.getLogger("fontTools").setLevel(logging.ERROR)
    print("\n".join(run(args.report.read_text(encoding="utf-8"), args.workers)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
