"""A worker process of the parallel PDF path (pdf_parts): lays out parts of a report and writes their PDFs.

It is run as a script by path in an isolated interpreter (``python -I``), so that it imports WeasyPrint, the
standard library and (to join) pypdf only, not the auditor package (whose import brings pandas and torch: seconds
per worker). It reads pickled requests on stdin and answers each on stdout, one at a time:

- ``("layout", index, html)``: lay the part out and keep it; answer its page count, anchors and bookmarks.
- ``("finish", index, first_page, total)``: number its pages from ``first_page`` of ``total``, make its running
  headers and footers, and answer its PDF bytes.
- ``("join", pdfs, infos, ids, offsets)``: the parts' PDFs joined in one (pypdf), answered as bytes.

The page margins ("Page X of Y", running strings) need the part's place in the whole report, known only once
every part is laid out. WeasyPrint 70 lays out every page of a document first and makes the margin boxes of
each page afterwards (``weasyprint.layout.layout_document``, last loop, which calls
``make_margin_boxes(context, page, state)`` with the page's counter state ``state[1]``). This module relies on
exactly that, and on nothing else inside WeasyPrint: in this process ``weasyprint.layout.make_margin_boxes`` is
replaced by a function that only records its arguments, and ``finish`` calls the original one for every page
with the page counters set to the report's (``state[1]['page']`` and ``state[1]['pages']``), appends the margin
boxes to the page and lays out their backgrounds (``layout_box_backgrounds``), as ``layout_document`` does. A part
is therefore laid out once. tests/test_pdf_parallel.py holds the result to the single-process PDF, page by page.
"""

from __future__ import annotations

import io
import logging
import os
import pickle
import sys
import traceback
from types import SimpleNamespace

import weasyprint
import weasyprint.layout
from weasyprint.anchors import make_page_bookmark_tree
from weasyprint.layout.background import layout_box_backgrounds
from weasyprint.matrix import Matrix
from weasyprint.urls import URLFetcher

_make_margin_boxes = weasyprint.layout.make_margin_boxes
_deferred: list = []
"""(context, page box, page state) of every page laid out by the current ``layout``, in page order."""


def _defer_margin_boxes(context, page, state):
    _deferred.append((context, page, state))
    return []


def layout(html: str):
    """The part laid out without its margin boxes, and those pages' (context, page, state) to make them later."""
    _deferred.clear()
    fetcher = URLFetcher(allowed_protocols={"data"}, allow_redirects=False)
    document = weasyprint.HTML(string=html, url_fetcher=fetcher).render()
    if len(_deferred) != len(document.pages):
        raise RuntimeError(f"WeasyPrint {weasyprint.__version__} made {len(_deferred)} pages' margins for "
                           f"{len(document.pages)} pages: this module is written for WeasyPrint 70")
    return document, list(_deferred)


def describe(document) -> dict:
    """Page count; the page (0-based) of each anchor's first occurrence; each page's bookmarks in PDF points
    from the bottom left, as ``Document.make_bookmark_tree(scale=0.75, transform_pages=True)`` places them."""
    anchors: dict[str, int] = {}
    bookmarks = []
    for number, page in enumerate(document.pages):
        for name in page.anchors:
            anchors.setdefault(name, number)
        matrix = Matrix(a=0.75, d=-0.75, f=page.height * 0.75)
        bookmarks.append([(level, label, matrix.transform_point(x, y), state)
                          for level, label, (x, y), state in page.bookmarks])
    return {"pages": len(document.pages), "anchors": anchors, "bookmarks": bookmarks}


def finish(document, deferred, first_page: int, total: int) -> bytes:
    """The part's PDF, its pages numbered ``first_page``, ``first_page + 1``, ... of ``total``."""
    for number, (context, page, state) in enumerate(deferred):
        context.current_page = number + 1  # as layout_document sets it: the page's string-sets are read by it
        state[1]["page"] = [first_page + number]
        state[1]["pages"] = [total]
        margin_boxes = list(_make_margin_boxes(context, page, state))  # a generator
        for box in margin_boxes:
            layout_box_backgrounds(page, box, context.get_image_from_uri)
        page.children = (*page.children, *margin_boxes)
    return document.write_pdf()


def join(pdfs: list[bytes], infos: list[dict], ids: list[set[str]], offsets: list[int]) -> bytes:
    """One PDF of the parts' pages in order, with the first part's metadata, every part's anchors in one
    ``/Dests`` tree (the names part i holds, ``ids[i]``: stub anchors left out) and the outline of every part's
    bookmarks nested over the whole."""
    from pypdf import PdfReader, PdfWriter
    from pypdf.generic import ArrayObject, DictionaryObject, Fit, NameObject, TextStringObject

    writer = PdfWriter()
    readers = [PdfReader(io.BytesIO(pdf)) for pdf in pdfs]
    for reader in readers:
        for page in reader.pages:
            writer.add_page(page)
    dests = []
    for i, reader in enumerate(readers):
        local = {page.indirect_reference.idnum: n for n, page in enumerate(reader.pages)}
        names = reader.trailer["/Root"].get("/Names", DictionaryObject()).get("/Dests", DictionaryObject())
        flat = names.get_object().get("/Names", ArrayObject())
        for name, dest in zip(flat[::2], flat[1::2]):
            if str(name) in ids[i]:
                dest = dest.get_object()
                page = writer.pages[offsets[i] + local[dest[0].idnum]].indirect_reference
                dests.append((str(name), ArrayObject([page, *dest[1:]])))
    dests.sort(key=lambda pair: pair[0])
    array = ArrayObject()
    for name, dest in dests:
        array += [TextStringObject(name), dest]
    root = writer.root_object
    root[NameObject("/Names")] = DictionaryObject({NameObject("/Dests"): DictionaryObject({NameObject("/Names"): array})})
    first = readers[0].trailer["/Root"]
    if "/Lang" in first:
        root[NameObject("/Lang")] = TextStringObject(str(first["/Lang"]))
    writer.add_metadata(readers[0].metadata)

    tree: list = []
    skipped: list[int] = []
    last_by_depth = [tree]
    level = 0
    for i, info in enumerate(infos):
        for n, marks in enumerate(info["bookmarks"]):
            level = make_page_bookmark_tree(SimpleNamespace(bookmarks=marks), skipped, last_by_depth, level,
                                            offsets[i] + n, Matrix())

    def add(subtrees, parent) -> None:
        for label, (page, x, y), children, state in subtrees:
            item = writer.add_outline_item(title=label, page_number=page, parent=parent,
                                           fit=Fit.xyz(left=x, top=y, zoom=0), is_open=state != "closed")
            add(children, item)

    add(tree, None)
    out = io.BytesIO()
    writer.write(out)
    return out.getvalue()


def main() -> None:
    """Serve requests until stdin closes. Answers go to the original stdout; anything printed goes to stderr."""
    answers = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)
    requests = sys.stdin.buffer
    logging.getLogger("weasyprint").setLevel(logging.ERROR)
    logging.getLogger("fontTools").setLevel(logging.ERROR)
    weasyprint.layout.make_margin_boxes = _defer_margin_boxes
    held = {}
    while True:
        try:
            request = pickle.load(requests)
        except EOFError:  # done: exit at once (the interpreter's teardown of the layouts costs up to a second)
            answers.close()
            os._exit(0)
        try:
            if request[0] == "layout":
                _, index, html = request
                held[index] = layout(html)
                answer = ("ok", describe(held[index][0]))
            elif request[0] == "join":
                answer = ("ok", join(*request[1:]))
            else:
                _, index, first_page, total = request
                answer = ("ok", finish(*held.pop(index), first_page, total))
        except Exception:  # the parent raises it, with this traceback
            answer = ("error", traceback.format_exc())
        pickle.dump(answer, answers)
        answers.flush()


if __name__ == "__main__":
    main()
