"""The report: rendered from stored evidence, self-contained, escaped, and a real PDF a reader can search."""

from __future__ import annotations

import re
import shutil
import subprocess
from datetime import datetime, timezone

import numpy as np
import pandas as pd
import pytest
import yaml
from click.testing import CliRunner

from auditor.cli import cli
from auditor.evidence import read_evidence
from auditor.explainers import Observation
from auditor.report import render_html

from evidence_trace import visible_text

HOSTILE_FEATURE = "<script>alert(1)</script>"
HOSTILE_CATEGORY = '<img src=x onerror="alert(2)">'
HOSTILE_TITLE = "Q3 audit </title><script>alert(3)</script>"
WHEN = datetime(2026, 11, 23, 9, 30, tzinfo=timezone.utc)


@pytest.fixture(scope="module")
def hostile_run(tmp_path_factory):
    """A full run (HTML + PDF) on data whose column names, categories and policy strings are hostile."""
    import skops.io as sio
    from sklearn.compose import ColumnTransformer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import OneHotEncoder

    folder = tmp_path_factory.mktemp("hostile")
    rng = np.random.default_rng(0)
    n = 160
    frame = pd.DataFrame({
        HOSTILE_FEATURE: rng.normal(size=n),
        "colour": rng.choice(["red", HOSTILE_CATEGORY], size=n),
        "f2": rng.normal(size=n),
    })
    logit = 2 * frame[HOSTILE_FEATURE] + (frame["colour"] == "red") - 0.5 * frame["f2"]
    frame["outcome"] = np.where(rng.random(n) < 1 / (1 + np.exp(-logit)), "approve", "decline")
    frame.to_csv(folder / "data.csv", index=False)
    encode = ColumnTransformer([("cat", OneHotEncoder(), ["colour"])], remainder="passthrough")
    model = make_pipeline(encode, LogisticRegression()).fit(frame.drop(columns="outcome"), frame["outcome"])
    sio.dump(model, folder / "model.skops")
    policy = {
        "version": 1,
        "audit": {"id": "hostile", "title": HOSTILE_TITLE, "audience": "finance", "owner": "<i>owner</i>",
                  "intended_use": "Testing escaping & <b>markup</b>."},
        "models": [{"id": "pipe", "path": "model.skops", "format": "skops", "positive_class": "decline"}],
        "datasets": [{"id": "data", "path": "data.csv", "target": "outcome", "features": [
            {"name": HOSTILE_FEATURE}, {"name": "colour", "type": "categorical"}, {"name": "f2"}]}],
        "audited": [{"model": "pipe", "dataset": "data"}],
        "sample": {"size": 3, "strategy": "random", "seed": 1},
        "explanations": [{"type": "lime", "num_samples": 300}, {"type": "permutation_importance", "n_repeats": 2}],
    }
    path = folder / "policy.yaml"
    path.write_text(yaml.safe_dump(policy, sort_keys=False), encoding="utf-8")
    result = CliRunner().invoke(cli, ["run", str(path), "--out", str(folder / "out"), "-q"])
    assert result.exit_code == 0, result.output
    return folder / "out"


def test_hostile_strings_are_escaped_in_html(hostile_run):
    html = (hostile_run / "report.html").read_text(encoding="utf-8")
    for raw in (HOSTILE_FEATURE, HOSTILE_CATEGORY, "</title><script>", "<i>owner</i>", "<b>markup</b>"):
        assert raw not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "alert(2)" in html and "&lt;img src=x" in html
    assert "<script" not in html.lower()


def test_stylesheet_is_inserted_verbatim(hostile_run):
    html = (hostile_run / "report.html").read_text(encoding="utf-8")
    style = html[html.index("<style>"): html.index("</style>")]
    assert '"DejaVu Sans"' in style and "&#34;" not in style and "&quot;" not in style


def test_html_is_self_contained(hostile_run):
    html = (hostile_run / "report.html").read_text(encoding="utf-8")
    # Namespace declarations (xmlns="http://www.w3.org/...") are names, not fetched resources.
    fetched = re.findall(r"""(?:src|href|xlink:href)\s*=\s*["']?\s*(?:https?:)?//|url\(\s*["']?\s*(?:https?:)?//""", html)
    assert fetched == []
    assert "<link" not in html and "<script" not in html


def test_pdf_is_real_and_shows_every_decision(hostile_run):
    pdf = (hostile_run / "report.pdf").read_bytes()
    assert pdf.startswith(b"%PDF-")
    evidence = read_evidence(hostile_run / "evidence.json")
    if shutil.which("pdftotext") is None:
        pytest.skip("poppler-utils not installed (make test installs it)")
    text = subprocess.run(["pdftotext", "-layout", str(hostile_run / "report.pdf"), "-"],
                          capture_output=True, text=True, check=True).stdout
    for d in evidence.subjects[0].decisions:
        assert f"Decision {d.id}" in text
    assert HOSTILE_FEATURE in text  # drawn as literal text, not interpreted
    fonts = subprocess.run(["pdffonts", str(hostile_run / "report.pdf")], capture_output=True, text=True).stdout
    assert "DejaVu-Sans" in fonts and "Serif" not in fonts  # the print stylesheet's fonts were applied
    pages = subprocess.run(["pdfinfo", str(hostile_run / "report.pdf")], capture_output=True, text=True).stdout
    assert int(re.search(r"Pages:\s+(\d+)", pages).group(1)) >= 8


def test_render_from_stored_evidence_is_deterministic(hostile_run):
    evidence = read_evidence(hostile_run / "evidence.json")
    first = render_html(evidence, generated_at=WHEN)
    second = render_html(read_evidence(hostile_run / "evidence.json"), generated_at=WHEN)
    assert first == second
    assert "23 November 2026" in first


def test_categories_are_shown_by_name(hostile_run):
    evidence = read_evidence(hostile_run / "evidence.json")
    values = {d.values["colour"] for d in evidence.subjects[0].decisions}
    assert values <= {"red", HOSTILE_CATEGORY}


def test_a_decision_a_warning_names_is_flagged_in_its_card(hostile_run):
    """The report marks what the evidence's observations say; it decides nothing itself."""
    evidence = read_evidence(hostile_run / "evidence.json")
    subject = evidence.subjects[0]
    first, second = subject.decisions[0], subject.decisions[1]
    subject.observations = [Observation(level="warn", code="lime.poor_fit", method="lime", decisions=[first.id],
                                        message=f"pipe: LIME fits poorly for decision(s) {first.id}.")]
    html = render_html(evidence, generated_at=WHEN)

    def card(decision) -> str:
        article = html[re.search(f'<article class="decision" id="[^"]*-decision-{decision.id}"', html).start():]
        return article[:article.index("</article>")]

    assert 'class="method-card flag"' in card(first) and "Check:" in visible_text(card(first))
    assert 'class="method-card flag"' not in card(second) and "Check:" not in visible_text(card(second))
    assert f"pipe: LIME fits poorly for decision(s) {first.id}." in visible_text(html)


def test_user_template_override(tmp_path, hostile_run):
    evidence = read_evidence(hostile_run / "evidence.json")
    (tmp_path / "partials").mkdir()
    (tmp_path / "partials" / "provenance.html.j2").write_text("<p>custom provenance {{ val(\"policy_sha256\") }}</p>")
    html = render_html(evidence, generated_at=WHEN, templates=tmp_path)
    assert f"custom provenance {evidence.policy_sha256}" in html


def test_max_decisions_limits_the_report_not_the_evidence(hostile_run):
    evidence = read_evidence(hostile_run / "evidence.json")
    assert len(evidence.subjects[0].decisions) == 3
    evidence.policy["report"]["max_decisions"] = 1
    html = render_html(evidence, generated_at=WHEN)
    assert html.count('class="decision"') == 1
    assert "1 of 3 sampled decisions have a detailed section" in visible_text(html)
    wrong = [d for d in evidence.subjects[0].decisions if not d.correct]
    if wrong:  # a misclassified decision is the one kept
        assert f"Decision {wrong[0].id}" in html
    # the register lists every sampled decision, linking the detailed one
    register = html[html.index('<section class="register"'):]
    register = register[:register.index("</section>")]
    assert "All 3 sampled decisions" in visible_text(register)
    for d in evidence.subjects[0].decisions:
        assert f"{d.id}</td>" in register or f"{d.id}</a>" in register
    assert register.count('<a href="#') == 1


def test_default_report_details_25_decisions_and_registers_the_rest(hostile_run):
    evidence = read_evidence(hostile_run / "evidence.json")
    subject = evidence.subjects[0]
    many = [d.model_copy(update={"id": f"{d.id}-{k}"}) for k in range(10) for d in subject.decisions]
    evidence = evidence.model_copy(update={"subjects": [subject.model_copy(update={"decisions": many})]})
    assert evidence.policy["report"]["max_decisions"] == 25  # the policy left it out: the default
    html = render_html(evidence, generated_at=WHEN)
    assert html.count('class="decision"') == 25
    assert "All 30 sampled decisions" in visible_text(html)
    # hostile feature names stay escaped in the register's top features too: the only scripts are the register's
    # own (its controls, and the line in the head that keeps lines past its first page out of the first layout)
    assert HOSTILE_FEATURE not in html and "alert(1)" not in html.replace("&lt;script&gt;alert(1)", "")
    assert html.lower().count("<script") == 2
    assert '<script id="register-script">' in html and '<script id="register-pending">' in html


@pytest.mark.skipif(shutil.which("pdftotext") is None, reason="poppler-utils missing (make test installs it)")
def test_printed_reasons_chapter_lists_at_most_the_print_limit_protected_first(tmp_path):
    """Thousands of adverse decisions would fill the front part of the PDF with the reasons table: it prints
    views.REASONS_PRINT_LIMIT per model (a protected characteristic withheld first, then methods disagreeing), says
    so, and the HTML lists every one."""
    from pathlib import Path

    from auditor.report import render_pdf
    from auditor.report.views import REASONS_PRINT_LIMIT

    evidence = read_evidence(Path(__file__).parent / "fixtures" / "evidence" / "finance_tabular.json")
    subject = evidence.subjects[0]
    adverse = [d for d in subject.decisions if d.principal_reasons is not None]
    many = [d.model_copy(update={"id": f"{d.id}-{k:03d}"}) for k in range(40) for d in adverse]  # 80 adverse
    late = many[-1].id  # protected, at the end of the sample: printed before the earlier unflagged ones
    subject = subject.model_copy(update={"decisions": many, "reasons": subject.reasons.model_copy(
        update={"protected": [late], "disagree": [many[-2].id]})})
    evidence = evidence.model_copy(update={"subjects": [subject]})
    evidence.policy["report"]["max_decisions"] = 1
    html = render_html(evidence, generated_at=WHEN)
    chapter = html[html.index('id="reasons"'):html.index('id="limitations"')]
    assert all(f"<td>{d.id}</td>" in chapter or f">{d.id}</a>" in chapter for d in many)  # on screen, every one
    assert chapter.count('<tr class="screen-only">') == len(many) - REASONS_PRINT_LIMIT
    pdf = tmp_path / "report.pdf"
    pdf.write_bytes(render_pdf(html))
    text = subprocess.run(["pdftotext", "-layout", str(pdf), "-"], capture_output=True, text=True, check=True).stdout
    headings = [m.start() for m in re.finditer(r"^(6\. Principal reasons|7\. Limitations)", text, re.M)]
    printed = text[headings[-2]:headings[-1]]  # the chapter (its heading past the contents; no running header)
    listed = re.findall(r"^ *(APP-\d+-\d{3}) ", printed, re.M)  # a table row's first cell: the id on one line
    assert len(set(listed)) == REASONS_PRINT_LIMIT
    assert late in listed and many[-2].id in listed  # flagged ones first, though last in the sample
    assert many[0].id in listed and many[REASONS_PRINT_LIMIT].id not in listed  # then in sample order
    assert f"lists {REASONS_PRINT_LIMIT} of the {len(many)} adverse decisions" in " ".join(printed.split())
