"""The report printed in parts, in parallel: cut at page breaks, each part laid out in a worker, joined in one PDF.

Printing is the slowest phase of an audit (a 200-decision report: ~40 s). The report breaks the page before every
chapter (``section.chapter``, except ``.continues``) and every decision (``article.decision``): those are the cut
points, so a part's pages are the whole report's pages. The cut depends on the HTML alone (``PART_CHARS``), never
on the number of workers, so one HTML gives one PDF, byte for byte, whatever machine prints it.

What a part needs from the others, and how it gets it:

- "Page X of Y": workers lay their parts out, the parent adds up the page counts, and each part's margins are
  made with its first page number and the total (pdf_worker ``finish``), without laying the part out again.
- The contents' and the decision index's page numbers (``nav.toc a::after``, a ``target-counter`` in the single
  PDF): a part holding such a list (a "toc part", kept alone and small) is laid out again once every page is
  known, each link carrying its number (``counter-reset: pdf-page N``, printed by ``STYLESHEET``); again until its page
  count stands (digits of DejaVu Sans have one width, so the second layout normally ends it).
- Links: each part holds a zero-size anchor (``part-anchor``) for every ``#id`` it links to and another part
  holds, so that WeasyPrint keeps the link (``/Dest (id)``); the joined PDF's ``/Dests`` tree sends each name to
  the page of the part that holds the element.
- Running strings: a part after the cover starts with a zero-size ``part-strings`` element carrying the cover's
  data attributes (report.css sets ``audit-id`` and ``doc-title`` from either); ``section`` is set by the h2 or
  h3 at the start of every chapter and decision. The cover's margins are blank through a named page
  (``@page cover``), not ``:first``, which every part has.
- Bookmarks: every part's h1-h4, in order, nested again over the whole report as WeasyPrint nests them.
"""

from __future__ import annotations

import html as html_lib
import pickle
import re
import subprocess
import sys
import threading
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path
from queue import Empty, SimpleQueue

__all__ = ["PART_CHARS", "cut", "render_parts"]

PART_CHARS = 150_000
"""A part grows by whole chapters and decisions until it holds this many characters of HTML: a 200-decision
report (1.2 MB) is cut in about ten parts, a few pages each of which a worker lays out in a few seconds."""

STYLESHEET = """
.part-strings, .part-anchor { position: absolute; width: 0; height: 0; overflow: hidden; }
nav.toc a[data-pdf-page]::after { content: leader(".") counter(pdf-page); }
"""
"""Read with report.css by every part. The second rule is report.css's ``nav.toc a::after`` with the page number
given (the link's own ``counter-reset: pdf-page N``), instead of looked up by ``target-counter``: keep the two
alike. WeasyPrint 70 drops an ``attr()`` that follows a ``leader()``; a counter after it is printed."""

_VOID = frozenset("area base br col embed hr img input link meta param source track wbr".split())


@dataclass
class _Unit:
    """From one cut point to the next: its start offset, the elements open there (start-tag texts, outermost
    first), the ids it holds, the #ids it links to and its contents/index links (offset and href)."""

    start: int
    open_tags: list[str]
    ids: set[str] = field(default_factory=set)
    hrefs: set[str] = field(default_factory=set)
    toc_links: list[tuple[int, str]] = field(default_factory=list)


@dataclass
class Part:
    """Consecutive units, ``html[start:end]``, laid out as one document."""

    start: int
    end: int
    open_tags: list[str]
    ids: set[str]
    hrefs: set[str]
    toc_links: list[tuple[int, str]]


class _Cutter(HTMLParser):
    """Finds the cut points and, at each, the open elements; the ids, #links and toc links between them."""

    def __init__(self, text: str) -> None:
        super().__init__(convert_charrefs=True)
        self.line_starts = [0]
        for line in text.splitlines(keepends=True):
            self.line_starts.append(self.line_starts[-1] + len(line))
        self.stack: list[tuple[str, str]] = []
        self.units = [_Unit(0, [])]
        self.body_start: int | None = None
        self.cover_tag: str | None = None

    def position(self) -> int:
        line, column = self.getpos()
        return self.line_starts[line - 1] + column

    def handle_starttag(self, tag, attrs):
        attributes = dict(attrs)
        classes = set((attributes.get("class") or "").split())
        text = self.get_starttag_text()
        start = self.position()
        if (tag == "section" and "chapter" in classes and "continues" not in classes) or \
                (tag == "article" and "decision" in classes):
            self.units.append(_Unit(start, [t for _, t in self.stack]))
        unit = self.units[-1]
        if attributes.get("id"):
            unit.ids.add(attributes["id"])
        href = attributes.get("href") or ""
        if tag == "a" and href.startswith("#"):
            unit.hrefs.add(href[1:])
            if any(t == "nav" and "toc" in _classes(s) for t, s in self.stack):
                unit.toc_links.append((start, text))
        if tag == "body":
            self.body_start = start + len(text)
        if tag == "header" and "cover" in classes:
            self.cover_tag = text
        if tag not in _VOID:
            self.stack.append((tag, text))

    def handle_startendtag(self, tag, attrs):
        self.handle_starttag(tag, attrs)
        if tag not in _VOID:
            self.stack.pop()

    def handle_endtag(self, tag):
        for depth in range(len(self.stack) - 1, -1, -1):
            if self.stack[depth][0] == tag:
                del self.stack[depth:]
                return


def _classes(start_tag: str) -> set[str]:
    parser = HTMLParser()
    found: list[dict] = []
    parser.handle_starttag = lambda tag, attrs: found.append(dict(attrs))
    parser.feed(start_tag)
    return set((found[0].get("class") or "").split()) if found else set()


def cut(html: str, part_chars: int = PART_CHARS) -> tuple[list[Part], str, str]:
    """The parts of ``html``, what every part after the first starts with (doctype, head, ``<body>``), and the
    cover's start tag. A unit with contents or index links is a part of its own; the others are joined in order
    until a part holds ``part_chars`` characters. Raises ValueError for HTML without a ``<body>`` or a cover."""
    cutter = _Cutter(html)
    cutter.feed(html)
    cutter.close()
    if cutter.body_start is None or cutter.cover_tag is None:
        raise ValueError("Expected a report with a <body> and a <header class=\"cover\">, got neither: "
                         "render it with auditor.report.render_html")
    units = cutter.units
    ends = [u.start for u in units[1:]] + [len(html)]
    parts: list[Part] = []
    for unit, end in zip(units, ends):
        last = parts[-1] if parts else None
        if last is None or unit.toc_links or last.toc_links or last.end - last.start >= part_chars:
            parts.append(Part(unit.start, end, unit.open_tags, set(), set(), []))
            last = parts[-1]
        last.end = end
        last.ids |= unit.ids
        last.hrefs |= unit.hrefs
        last.toc_links += unit.toc_links
    return parts, html[:cutter.body_start], cutter.cover_tag


def part_html(html: str, head: str, cover_tag: str, part: Part, index: int, pages: dict[str, int] | None) -> str:
    """The HTML of one part: the head, its open elements again (without their ids), a zero-size element with
    the cover's running strings and one per #id it links to elsewhere, then the part. ``pages`` gives the page
    number of every id for the contents and index links (a placeholder "0" without it)."""
    body = html[part.start:part.end]
    for offset, tag in reversed(part.toc_links):
        href = tag.split('href="', 1)[1].split('"', 1)[0]
        number = pages[html_lib.unescape(href)[1:]] if pages else 0
        at = offset - part.start + len('<a')
        body = f'{body[:at]} data-pdf-page style="counter-reset: pdf-page {number}"{body[at:]}'
    extra = "".join(f'<span class="part-anchor" id="{html_lib.escape(name)}"></span>'
                    for name in sorted(part.hrefs - part.ids))
    if index > 0:
        strings = cover_tag.replace("<header", "<span", 1).replace('class="cover"', 'class="part-strings"', 1)
        extra = strings + "</span>" + extra
    if index == 0:
        return _styled(head) + extra + body[len(head):]
    first = body.index(">") + 1  # inside the first element, so on its first page
    reopened = "".join(_without_id(tag) for tag in part.open_tags if not tag.startswith(("<html", "<body")))
    return _styled(head) + reopened + body[:first] + extra + body[first:]


def _styled(head: str) -> str:
    """The head with ``STYLESHEET`` after the report's own: author rules, as report.css's are (a stylesheet
    given to WeasyPrint's ``render`` is a user stylesheet, which every author rule overrides)."""
    at = head.rindex("</head>")
    return f"{head[:at]}<style>{STYLESHEET}</style>{head[at:]}"


def _without_id(start_tag: str) -> str:
    return re.sub(r'\sid="[^"]*"', "", start_tag, count=1)


class _Worker:
    """One pdf_worker process: requests go to its stdin, answers come from its stdout."""

    def __init__(self) -> None:
        script = Path(__file__).with_name("pdf_worker.py")
        self.process = subprocess.Popen(
            [sys.executable, "-I", str(script)], stdin=subprocess.PIPE, stdout=subprocess.PIPE)

    def call(self, *request):
        pickle.dump(request, self.process.stdin)
        self.process.stdin.flush()
        try:
            status, value = pickle.load(self.process.stdout)
        except EOFError:
            raise RuntimeError(f"the PDF worker stopped (exit code {self.process.wait()})") from None
        if status == "error":
            raise RuntimeError(f"the PDF worker failed:\n{value}")
        return value

    def close(self) -> None:
        self.process.stdin.close()
        self.process.wait()


def _each(workers: list[_Worker], run) -> None:
    """``run(worker)`` for every worker at once, each in a thread; the first error is raised."""
    errors: list[BaseException] = []

    def guarded(worker: _Worker) -> None:
        try:
            run(worker)
        except BaseException as error:  # raised below, in the caller's thread
            errors.append(error)

    threads = [threading.Thread(target=guarded, args=(w,)) for w in workers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        raise errors[0]


def _in_parallel(workers: list[_Worker], jobs: list, run) -> None:
    """``run(worker, job)`` for every job, each worker taking the next job when it is free."""
    queue: SimpleQueue = SimpleQueue()
    for job in jobs:
        queue.put(job)

    def drain(worker: _Worker) -> None:
        while True:
            try:
                job = queue.get_nowait()
            except Empty:
                return
            run(worker, job)

    _each(workers, drain)


def render_parts(html: str, workers: int, part_chars: int = PART_CHARS) -> bytes:
    """The PDF of ``html`` printed in parts by ``workers`` processes (see the module's docstring)."""
    parts, head, cover_tag = cut(html, part_chars)
    pool = [_Worker() for _ in range(max(1, min(workers, len(parts))))]
    try:
        holder: dict[int, _Worker] = {}
        info: dict[int, dict] = {}

        def lay_out(worker: _Worker, index: int, pages=None) -> None:
            info[index] = worker.call("layout", index, part_html(html, head, cover_tag, parts[index], index, pages))
            holder[index] = worker

        # The biggest parts first, so that the last to finish is a small one.
        order = sorted(range(len(parts)), key=lambda i: (-(parts[i].end - parts[i].start), i))
        _in_parallel(pool, order, lay_out)
        toc_parts = [i for i, part in enumerate(parts) if part.toc_links]
        laid_with: dict[int, dict] = {}
        for _ in range(8):
            offsets = _offsets([info[i]["pages"] for i in range(len(parts))])
            pages = {name: offsets[i] + page + 1 for i in range(len(parts))
                     for name, page in info[i]["anchors"].items() if name in parts[i].ids}
            stale = [i for i in toc_parts if laid_with.get(i) != pages]
            if not stale:
                break
            for i in stale:
                laid_with[i] = pages
            _each(pool, lambda worker: [lay_out(worker, i, pages) for i in stale if holder[i] is worker])
        else:
            raise RuntimeError("the contents' page count did not settle in 8 layouts")
        total = offsets[-1]
        pdfs: dict[int, bytes] = {}

        def finish(worker: _Worker) -> None:
            for i in sorted(i for i, w in holder.items() if w is worker):
                pdfs[i] = worker.call("finish", i, offsets[i] + 1, total)

        _each(pool, finish)
        # joined in a worker: it has WeasyPrint (its outline nesting) imported already, this process need not
        every = range(len(parts))
        return pool[0].call("join", [pdfs[i] for i in every], [info[i] for i in every], [p.ids for p in parts],
                            offsets)
    finally:
        for worker in pool:
            worker.close()


def _offsets(counts: list[int]) -> list[int]:
    """The pages before each part, then the total."""
    offsets = [0]
    for count in counts:
        offsets.append(offsets[-1] + count)
    return offsets
