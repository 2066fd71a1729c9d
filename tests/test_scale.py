"""Large audits: evidence.json streamed to disk byte for byte as Evidence.to_json, and a register that lists
every decision on a screen and a compact, limited register in print."""

from __future__ import annotations

import hashlib
import re
from datetime import datetime, timezone
from pathlib import Path

import pytest

from auditor.evidence import read_evidence
from auditor.output import staged
from auditor.report import render_html, views

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "evidence"
WHEN = datetime(2026, 1, 2, tzinfo=timezone.utc)


def _grown(n: int):
    """The stored finance evidence with ``n`` decisions per model: its decisions repeated under new ids."""
    evidence = read_evidence(FIXTURES / "finance_tabular.json")
    for s in evidence.subjects:
        stored = s.decisions
        s.decisions = [stored[i % len(stored)].model_copy(update={"id": f"D-{i:05d}"}) for i in range(n)]
    evidence.policy["report"]["max_decisions"] = 1
    return evidence


def test_streamed_evidence_is_to_json_byte_for_byte(tmp_path):
    evidence = _grown(300)
    text = evidence.to_json().encode("utf-8")
    with staged(tmp_path / "run", force=False) as folder:
        digest = folder.stream("evidence.json", evidence.json_chunks(size=4096))  # many chunks
        assert not (tmp_path / "run").exists()  # the folder appears only when complete
    written = (tmp_path / "run" / "evidence.json").read_bytes()
    assert written == text
    assert digest == folder.sha256["evidence.json"] == hashlib.sha256(text).hexdigest()
    assert b"".join(evidence.json_chunks()) == text  # one chunk


def test_a_failed_staged_write_leaves_nothing(tmp_path):
    with pytest.raises(RuntimeError), staged(tmp_path / "run", force=False) as folder:
        folder.write("a.txt", b"1")
        raise RuntimeError("interrupted")
    assert list(tmp_path.iterdir()) == []


def test_the_register_lists_every_decision_and_prints_a_compact_limited_table(monkeypatch):
    monkeypatch.setattr(views, "PRINT_LIMIT", 40)
    n = 120  # more rows than the print limit; the register once stopped at a fixed row count
    evidence = _grown(n)
    html = render_html(evidence, generated_at=WHEN)
    sections = re.findall(r'<section class="register".*?</section>', html, flags=re.S)
    assert len(sections) == len(evidence.subjects)
    for s, section in zip(evidence.subjects, sections):
        rows = re.findall(r"<tr class=\"([^\"]*)\" data-decision", section)
        assert len(rows) == n  # every decision, in the HTML
        for d in s.decisions:
            assert f"{d.id}</td>" in section or f"{d.id}</a>" in section
        printed = [r for r in rows if "screen-only" not in r]
        assert len(printed) == 40  # the print limit
        assert "This printed register lists 40 of them" in section
        # misclassified decisions are printed first
        wrong = [r for r in rows if "wrong" in r]
        assert all("screen-only" not in r for r in wrong[:40])
    # the print rules: small type, one line per decision, the lines past the limit hidden
    css = re.search(r"@media print \{\s*table\.register \{ font-size: 6pt.*?\n\}", html, flags=re.S).group(0)
    assert "white-space: nowrap" in css and "\n  .screen-only { display: none; }" in css


def test_a_register_under_the_print_limit_prints_every_line():
    evidence = _grown(30)
    html = render_html(evidence, generated_at=WHEN)
    section = re.search(r'<section class="register".*?</section>', html, flags=re.S).group(0)
    assert "screen-only" not in section and "This printed register" not in section


def test_the_pdf_prints_the_limited_register_only(monkeypatch, tmp_path):
    """The rows past the print limit never reach WeasyPrint (print CSS alone would still lay them out): the
    PDF's register holds exactly the printed rows."""
    import subprocess

    from auditor.report import render_pdf

    monkeypatch.setattr(views, "PRINT_LIMIT", 5)
    evidence = _grown(30)
    html = render_html(evidence, generated_at=WHEN)
    section = re.search(r'<section class="register".*?</section>', html, flags=re.S).group(0)
    rows = re.findall(r'<tr class="([^"]*)" data-decision="[^"]*" data-flags="[^"]*"><td>(?:<a [^>]*>.*?</span> )?([^<]+)',
                      section)
    shown = [i for c, i in rows if "screen-only" not in c]
    hidden = [i for c, i in rows if "screen-only" in c]
    assert len(shown) == 5 and len(hidden) == 25
    pdf = tmp_path / "report.pdf"
    pdf.write_bytes(render_pdf(html))
    text = subprocess.run(["pdftotext", "-layout", str(pdf), "-"], capture_output=True, text=True, check=True).stdout
    first = text.index("All 30 sampled decisions")  # the first model's register: five lines, on its page
    register = text[first:text.index("\f", first)]
    assert all(i.strip() in register for i in shown)
    assert not any(f" {i.strip()} " in register or f"\n{i.strip()} " in register for i in hidden)
