"""The HTML report in a browser: Chromium (headless, driven by Playwright) at a desktop and a phone width.

On a screen the report is a wide column beside a sticky contents column (above it on a phone); no element is
wider than the window (a wide table scrolls inside itself); every link of the contents and of the register of
decisions lands on its target; the page logs no error and fetches nothing; the register sorts and filters
with its inline script and reads in full without it; and Chromium's print of the page has the sections, in
order, of WeasyPrint's PDF of the same HTML. The reports are the stored finance and medical evidence and one
real ``auditor run``. One browser serves the whole module.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from datetime import datetime, timezone
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from auditor.cli import cli
from auditor.evidence import read_evidence
from auditor.report import render_html, render_pdf

from conftest import base_policy

CHROMIUM = Path("/usr/bin/chromium")
FIXTURES = Path(__file__).resolve().parent / "fixtures" / "evidence"
WHEN = datetime(2026, 12, 1, 9, 0, tzinfo=timezone.utc)
WIDTHS = {"desktop": {"width": 1280, "height": 900}, "phone": {"width": 390, "height": 844}}
REPORTS = ["finance", "medical", "run"]
MEDIA = ["medical_image", "medical_text", "medical_missing", "medical_regression"]  # stored, as they are

OVERFLOW = """() => {
  // Elements whose box sticks out of the window, apart from the content of a box that scrolls or clips.
  const width = document.documentElement.clientWidth;
  const inside = (el) => {
    for (let a = el.parentElement; a && a !== document.body; a = a.parentElement) {
      if (["auto", "scroll", "hidden", "clip"].includes(getComputedStyle(a).overflowX)) return true;
    }
    return false;
  };
  const name = (el) => el.tagName.toLowerCase() + (el.id ? "#" + el.id : "")
    + (typeof el.className === "string" && el.className.trim() ? "." + el.className.trim().split(/\\s+/).join(".") : "");
  const wide = [];
  for (const el of document.body.querySelectorAll("*")) {
    const box = el.getBoundingClientRect();
    if ((box.width || box.height) && (box.right > width + 0.5 || box.left < -0.5) && !inside(el)) {
      wide.push(name(el) + " from " + Math.round(box.left) + " to " + Math.round(box.right) + "px");
    }
  }
  return {scrollWidth: document.documentElement.scrollWidth, innerWidth: window.innerWidth, wide: wide};
}"""

BROKEN_HEADERS = """() => {
  // Words of table headers laid out on more than one line ("Mod" / "el").
  const broken = [];
  for (const th of document.querySelectorAll("th")) {
    const walker = document.createTreeWalker(th, NodeFilter.SHOW_TEXT);
    for (let node = walker.nextNode(); node; node = walker.nextNode()) {
      for (const word of node.data.matchAll(/[^\\s\\u2011-]+/g)) {
        const range = document.createRange();
        range.setStart(node, word.index);
        range.setEnd(node, word.index + word[0].length);
        const lines = new Set([...range.getClientRects()].map((r) => Math.round(r.top)));
        if (lines.size > 1) broken.push(word[0]);
      }
    }
  }
  return broken;
}"""


@pytest.fixture(scope="module")
def browser():
    if not CHROMIUM.is_file():
        pytest.fail(f"Chromium is missing: the browser tests drive {CHROMIUM} (Debian package 'chromium'; "
                    "`make test` installs it). Install it with: sudo apt-get install chromium")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True,
                                              args=["--no-sandbox", "--disable-dev-shm-usage"])
        yield chromium
        chromium.close()


def _stored(name: str, **report) -> str:
    evidence = read_evidence(FIXTURES / f"{name}.json")
    evidence.policy["report"].update(report)
    return render_html(evidence, generated_at=WHEN)


@pytest.fixture(scope="module")
def reports(tmp_path_factory, artifacts) -> dict[str, Path]:
    """The report files: stored finance evidence with a register (one detailed decision per model, so that the
    register lists the others), the other stored evidence as it is, and a real run of the tiny policy."""
    folder = tmp_path_factory.mktemp("browser")
    out = {name: folder / f"{name}.html" for name in ["finance", "medical", *MEDIA]}
    out["finance"].write_text(_stored("finance_tabular", max_decisions=1), encoding="utf-8")
    out["medical"].write_text(_stored("medical_tabular"), encoding="utf-8")
    for name in MEDIA:
        out[name].write_text(_stored(name), encoding="utf-8")
    policy = base_policy(artifacts, folder)
    policy["explanations"] = [{"type": "lime", "num_samples": 200}]
    policy["report"] = {"formats": ["html", "pdf"], "top_features": 4, "max_decisions": 2}
    (folder / "policy.yaml").write_text(yaml.safe_dump(policy, sort_keys=False), encoding="utf-8")
    result = CliRunner().invoke(cli, ["run", str(folder / "policy.yaml"), "--out", str(folder / "run"), "-q"])
    assert result.exit_code == 0, result.output
    out["run"] = folder / "run" / "report.html"
    return out


class Opened:
    """A report open in a page, with what the page logged and requested since it was opened."""

    def __init__(self, browser, path: Path, width: str, *, script: bool = True) -> None:
        self.context = browser.new_context(viewport=WIDTHS[width], java_script_enabled=script)
        self.page = self.context.new_page()
        self.url = path.as_uri()
        self.errors: list[str] = []
        self.requests: list[str] = []
        self.page.on("console", lambda m: self.errors.append(m.text) if m.type == "error" else None)
        self.page.on("pageerror", lambda e: self.errors.append(str(e)))
        self.page.on("request", lambda r: self.requests.append(r.url))
        self.page.goto(self.url)

    def close(self) -> None:
        self.context.close()


@pytest.fixture
def open_report(browser, reports):
    opened: list[Opened] = []

    def open_(report: str | Path, width: str, **kwargs) -> Opened:
        opened.append(Opened(browser, reports[report] if isinstance(report, str) else report, width, **kwargs))
        return opened[-1]

    yield open_
    for o in opened:
        o.close()


def _assert_fits(page) -> None:
    found = page.evaluate(OVERFLOW)
    assert found["scrollWidth"] <= found["innerWidth"], f"the page scrolls sideways: {found}"
    assert not found["wide"], "wider than the window: " + "; ".join(found["wide"][:10])


@pytest.mark.parametrize("width", WIDTHS)
@pytest.mark.parametrize("report", REPORTS + MEDIA)
def test_nothing_is_wider_than_the_window(open_report, report, width):
    opened = open_report(report, width)
    _assert_fits(opened.page)
    assert opened.page.evaluate(BROKEN_HEADERS) == []


@pytest.mark.parametrize("width", WIDTHS)
def test_a_planted_overflow_is_caught(open_report, reports, tmp_path, width):
    """The check above finds an element wider than the window: a 3000px block planted in a chapter."""
    html = reports["finance"].read_text(encoding="utf-8")
    planted = tmp_path / "planted.html"
    planted.write_text(html.replace("</main>", '<div class="planted" style="width: 3000px">wide</div></main>'),
                       encoding="utf-8")
    page = open_report(planted, width).page
    found = page.evaluate(OVERFLOW)
    assert found["scrollWidth"] > found["innerWidth"]
    assert [w for w in found["wide"] if w.startswith("div.planted ")] == [w for w in found["wide"]]
    with pytest.raises(AssertionError, match="the page scrolls sideways"):
        _assert_fits(page)
    page.evaluate("document.querySelector('div.planted').remove()")
    _assert_fits(page)


@pytest.mark.parametrize("width", WIDTHS)
@pytest.mark.parametrize("report", REPORTS + MEDIA)
def test_no_console_error_and_no_request_but_the_page(open_report, report, width):
    opened = open_report(report, width)
    opened.page.wait_for_load_state("networkidle")
    assert opened.errors == []
    assert opened.requests == [opened.url]


@pytest.mark.parametrize("width", WIDTHS)
@pytest.mark.parametrize("report", REPORTS)
def test_every_contents_and_register_link_lands_on_its_target(open_report, report, width):
    page = open_report(report, width).page
    links = page.locator("#contents a[href^='#'], table.register a[href^='#']")
    assert links.count() >= 10
    for i in range(links.count()):
        link = links.nth(i)
        href = link.get_attribute("href")
        assert page.evaluate("id => document.getElementById(id) !== null", href[1:]), f"no target for {href}"
        link.click()
        box = page.evaluate("id => { const r = document.getElementById(id).getBoundingClientRect();"
                            " return {top: r.top, bottom: r.bottom, height: innerHeight}; }", href[1:])
        assert page.evaluate("location.hash") == href
        assert -1 <= box["top"] < box["height"] and box["bottom"] > 0, f"{href} is not in view after the click: {box}"


def test_contents_is_a_sticky_side_column_on_a_wide_screen_and_comes_first_on_a_phone(open_report):
    box = "s => { const r = document.querySelector(s).getBoundingClientRect(); return [r.left, r.right, r.top, r.bottom]; }"
    page = open_report("finance", "desktop").page
    contents, main = page.evaluate(box, "#contents"), page.evaluate(box, "main")
    assert contents[1] <= main[0] and main[1] - main[0] >= 800  # beside the report, which is wider than paper
    page.evaluate("document.getElementById('provenance').scrollIntoView()")
    assert page.evaluate(box, "#contents")[2] >= 0  # still in view far down the page
    page = open_report("finance", "phone").page
    contents, main = page.evaluate(box, "#contents"), page.evaluate(box, "main")
    assert contents[3] <= main[2] and contents[1] - contents[0] >= 350


def _rows(page, table: int = 0) -> list[list[str]]:
    return page.evaluate("""t => [...document.querySelectorAll('table.register')[t].tBodies[0].rows]
        .filter(r => r.offsetParent !== null).map(r => [...r.cells].map(c => c.textContent.trim()))""", table)


def _value(text: str) -> float:
    return float(text.lstrip("<>= ").replace("\u2212", "-"))


@pytest.mark.parametrize("width", WIDTHS)
def test_the_register_sorts_and_filters(open_report, width):
    page = open_report("run", width).page
    register = page.locator("table.register").first
    rows = _rows(page)
    assert len(rows) == 6 and page.locator(".register-controls").count() == 2
    # sort by the probability (a header is a button), then the other way
    register.locator("th").nth(3).locator("button").click()
    assert register.locator("th").nth(3).get_attribute("aria-sort") == "ascending"
    values = [_value(r[3]) for r in _rows(page)]
    assert values == sorted(values)
    register.locator("th").nth(3).locator("button").click()
    assert [_value(r[3]) for r in _rows(page)] == sorted(values, reverse=True)
    register.locator("th").nth(0).locator("button").click()
    assert [r[0].lstrip("▸ ") for r in _rows(page)] == sorted(r[0].lstrip("▸ ") for r in rows)
    assert sorted(map(tuple, _rows(page))) == sorted(map(tuple, rows))  # reordered, nothing lost
    # filter: by text, by the model's decision, by status
    controls = page.locator(".register-controls").first
    first = rows[2][0].lstrip("▸ ")
    controls.locator("input").fill(first)
    assert [r[0].lstrip("▸ ") for r in _rows(page)] == [first]
    controls.locator("input").fill("no such decision")
    assert _rows(page) == [] and page.locator(".register-empty").first.is_visible()
    controls.locator("input").fill("")
    assert len(_rows(page)) == 6 and not page.locator(".register-empty").first.is_visible()
    decided = {r[2].split()[0] for r in rows}
    if len(decided) > 1:
        label = sorted(decided)[0]
        controls.locator("select").nth(1).select_option(label)
        assert {r[2].split()[0] for r in _rows(page)} == {label}
        controls.locator("select").nth(1).select_option("")
    controls.locator("select").first.select_option("detailed")
    detailed = _rows(page)
    assert detailed and all(r[0].startswith("▸") for r in detailed)
    assert len(detailed) == sum(r[0].startswith("▸") for r in rows)
    _assert_fits(page)


@pytest.mark.parametrize("width", WIDTHS)
def test_a_long_register_shows_a_page_of_lines_at_a_time(open_report, reports, tmp_path, width):
    """A register longer than its page (data-page-rows: 500 lines in a report; 2 here) shows a page of lines and
    says how many match; "more" adds a page, "Show all" the rest; filtering and sorting apply to every line and
    start again at one page."""
    html = reports["run"].read_text(encoding="utf-8")
    assert html.count('data-page-rows="500"') == 2
    paged = tmp_path / "paged.html"
    paged.write_text(html.replace('data-page-rows="500"', 'data-page-rows="2"'), encoding="utf-8")
    everything = _rows(open_report("run", width).page)
    opened = open_report(paged, width)
    page = opened.page
    more = page.locator(".register-more").first
    assert len(_rows(page)) == 2 and more.is_visible()
    assert more.locator("span").text_content() == "Showing 2 of 6 lines."
    assert _rows(page) == everything[:2]  # sample order, as without the script
    more.locator("button").first.click()
    assert _rows(page) == everything[:4]
    assert more.locator("button").first.text_content() == "Show 2 more"
    more.locator("button").nth(1).click()
    assert _rows(page) == everything and not more.is_visible()
    # a sort runs over every line, and shows the first page of the new order
    page.locator("table.register").first.locator("th").nth(3).locator("button").click()
    values = sorted(_value(r[3]) for r in everything)
    assert [_value(r[3]) for r in _rows(page)] == values[:2] and more.is_visible()
    # a filter too: the matching lines, a page of them
    controls = page.locator(".register-controls").first
    last = everything[5][0].lstrip("▸ ")
    controls.locator("input").fill(last)
    assert [r[0].lstrip("▸ ") for r in _rows(page)] == [last] and not more.is_visible()
    controls.locator("input").fill("")
    assert len(_rows(page)) == 2 and more.locator("span").text_content() == "Showing 2 of 6 lines."
    assert opened.errors == []
    _assert_fits(page)


def test_without_the_script_the_register_reads_in_full(open_report, reports):
    opened = open_report("run", "phone", script=False)
    page = opened.page
    assert page.locator(".register-controls, button.sort").count() == 0
    assert len(_rows(page)) == 6 and len(_rows(page, 1)) == 6
    _assert_fits(page)


def _headings(pdf: Path, titles: list[str]) -> list[str]:
    """The chapters' headings as they stand on their own line in the PDF's text, in order, apart from the
    contents page (which lists them all)."""
    text = subprocess.run(["pdftotext", "-layout", str(pdf), "-"], capture_output=True, text=True, check=True).stdout
    found: list[str] = []
    for page in text.split("\f"):
        lines = [" ".join(line.split()) for line in page.splitlines()]
        if "Contents" in lines:
            continue
        found += [line for line in lines if line in titles and (not found or found[-1] != line)]
    return found


@pytest.mark.skipif(shutil.which("pdftotext") is None, reason="poppler-utils missing (make test installs it)")
@pytest.mark.parametrize("report", REPORTS)
def test_chromium_prints_the_sections_weasyprint_prints(open_report, reports, report, tmp_path):
    page = open_report(report, "desktop").page
    titles = page.evaluate("[...document.querySelectorAll('main h2')].map(h => h.textContent.replace(/\\s+/g, ' ').trim())")
    assert len(titles) >= 9
    chromium = tmp_path / "chromium.pdf"
    chromium.write_bytes(page.pdf(prefer_css_page_size=True, print_background=True))
    weasyprint = reports[report].with_suffix(".pdf")
    if not weasyprint.is_file():  # `auditor run` printed its own; the stored reports are printed here
        weasyprint.write_bytes(render_pdf(reports[report].read_text(encoding="utf-8")))
    assert _headings(weasyprint, titles) == titles
    assert _headings(chromium, titles) == titles
    # what the script adds on a screen is not printed
    assert not re.search(r"Filter by id|No line matches", subprocess.run(
        ["pdftotext", str(chromium), "-"], capture_output=True, text=True, check=True).stdout)
