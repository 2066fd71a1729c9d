"""The report printed in parts by worker processes is the same document as the report printed in one piece.

Page by page the text is the same (pdftotext, laid out), and so are the running headers and "Page X of Y",
the contents' and the decision index's page numbers, the outline, the named destinations and every link.
The joined PDF's bytes do not depend on the number of workers, and it signs and verifies as the other does.
"""

from __future__ import annotations

import subprocess
from datetime import datetime, timezone
from pathlib import Path

import pytest
from pypdf import PdfReader

from auditor.evidence import read_evidence
from auditor.report import render_html, render_pdf
from auditor.report.pdf import PARALLEL_FROM_CHARS
from auditor.report.pdf_parts import cut, render_parts

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "evidence"
WHEN = datetime(2026, 12, 1, 9, 0, tzinfo=timezone.utc)


@pytest.fixture(scope="module")
def report():
    """The finance fixture's HTML (long enough to print in parts) and its PDF printed in one piece."""
    html = render_html(read_evidence(FIXTURES / "finance_tabular.json"), generated_at=WHEN)
    return html, render_pdf(html, workers=0)


@pytest.fixture(scope="module")
def printed(report):
    """The same report printed in parts: as render_pdf cuts it, and with every chapter and decision a part."""
    html, _ = report
    return {"default-parts": render_pdf(html, workers=2), "every-decision-a-part": render_parts(html, 2, part_chars=1)}


def _pages(pdf: bytes, tmp_path: Path) -> list[str]:
    path = tmp_path / "report.pdf"
    path.write_bytes(pdf)
    text = subprocess.run(["pdftotext", "-layout", str(path), "-"], capture_output=True, text=True, check=True).stdout
    return text.split("\f")[:-1]


def _structure(pdf: bytes) -> dict:
    """Outline (level, title, page), named destinations (name -> page) and links (page, target, rectangle)."""
    import io

    reader = PdfReader(io.BytesIO(pdf))

    def outline(items, level=0):
        for item in items:
            if isinstance(item, list):
                yield from outline(item, level + 1)
            else:
                yield level, item.title, reader.get_destination_page_number(item)

    links = []
    for number, page in enumerate(reader.pages):
        for annotation in page.get("/Annots") or []:
            annotation = annotation.get_object()
            action = annotation.get("/A") or {}
            target = annotation.get("/Dest") or action.get("/D") or action.get("/URI")
            links.append((number, str(target), [round(float(v), 2) for v in annotation["/Rect"]]))
    return {"outline": list(outline(reader.outline)),
            "dests": {name: reader.get_destination_page_number(dest)
                      for name, dest in reader.named_destinations.items()},
            "links": links, "metadata": dict(reader.metadata or {})}


def test_long_report_is_printed_in_parts(report):
    html, _ = report
    assert len(html) >= PARALLEL_FROM_CHARS
    parts, _, _ = cut(html)
    assert len(parts) >= 3


@pytest.mark.parametrize("cut_as", ["default-parts", "every-decision-a-part"])
def test_parallel_pdf_reads_as_the_single_process_pdf(report, printed, tmp_path, cut_as):
    _, whole = report
    parallel = printed[cut_as]
    single_pages, parallel_pages = _pages(whole, tmp_path), _pages(parallel, tmp_path)
    assert len(parallel_pages) == len(single_pages) > 10
    for number, (a, b) in enumerate(zip(single_pages, parallel_pages), start=1):
        assert a == b, f"page {number} differs"
    total = len(single_pages)
    assert f"Page 2 of {total}" in parallel_pages[1] and f"Page {total} of {total}" in parallel_pages[-1]
    assert "Page 1 of" not in parallel_pages[0]  # the cover keeps blank margins
    assert _structure(parallel) == _structure(whole)
    structure = _structure(parallel)
    assert len(structure["outline"]) > 10 and len(structure["links"]) > 10
    assert set(structure["dests"]) >= {"summary", "cases", "provenance"}


def test_contents_page_numbers_are_the_sections_pages(printed, tmp_path):
    parallel = printed["every-decision-a-part"]
    structure = _structure(parallel)
    pages = _pages(parallel, tmp_path)
    contents = next(page for page in pages if page.lstrip().startswith("Contents") or "\nContents\n" in page)
    cases = structure["dests"]["cases"] + 1
    line = next(line for line in contents.splitlines() if "Appendix A." in line)
    assert line.rstrip().endswith(f" {cases}"), line
    assert "Appendix A." in pages[cases - 1]


def test_parallel_pdf_bytes_do_not_depend_on_the_workers(report, printed):
    html, _ = report
    assert render_parts(html, 1, part_chars=1) == printed["every-decision-a-part"]


def test_parallel_pdf_signs_and_verifies(printed, tmp_path):
    from auditor.signing import init_identity, load_identity
    from auditor.verify import verify_pdf

    init_identity(tmp_path / "identity", "Test Signer")
    signed = load_identity(tmp_path / "identity").sign_pdf(printed["default-parts"], reason="test")
    path = tmp_path / "report.pdf"
    path.write_bytes(signed)
    result = verify_pdf(path)
    assert result.ok, result


def test_short_report_or_foreign_stylesheet_prints_in_one_piece(report, monkeypatch):
    import auditor.report.pdf as pdf
    import auditor.report.pdf_parts as pdf_parts

    monkeypatch.setattr(pdf_parts, "render_parts", lambda html, workers: b"parts")
    monkeypatch.setattr(pdf, "render_whole", lambda html: b"whole")
    html, _ = report
    assert render_pdf(html, workers=2) == b"parts"
    assert render_pdf(html, workers=0) == b"whole"
    # A user's stylesheet that blanks the cover's margins with :first would blank every part's first page.
    assert render_pdf(html.replace("@page cover", "@page :first"), workers=2) == b"whole"
    short = render_html(read_evidence(FIXTURES / "medical_text.json"), generated_at=WHEN)
    assert len(short) < PARALLEL_FROM_CHARS
    assert render_pdf(short, workers=2) == b"whole"
