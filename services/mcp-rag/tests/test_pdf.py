"""PDF documents (type pdf, content the file base64-encoded): text per page through pypdf, page
numbers in each hit's citation; encrypted, damaged or textless PDFs are refused clearly."""

from __future__ import annotations

import base64

from mcpmesh.proto.errors import ErrorCode
from mcpmesh.rag.testing import Rag, org, pdf_file
from mcpmesh.service.testing import internals_in

PAGES = [
    "Release notes\nThe scheduler now retries failed jobs twice.",
    "Known issues\nExports larger than a gigabyte time out.",
    "Support\nQuote ticket ZQ-7781 when you call about the exporter.",
]


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


async def test_a_pdf_is_ingested_page_by_page_and_hits_cite_their_page(rag: Rag) -> None:
    a = org()
    await rag.call(a, "create_kb", {"kb": "manuals"})
    data = pdf_file(PAGES)
    added = await rag.call(
        a, "add_document", {"kb": "manuals", "content": b64(data), "type": "pdf", "doc_id": "notes"}
    )
    assert (added["type"], added["bytes"], added["unchanged"]) == ("pdf", len(data), False)
    assert added["title"] == "Release notes"  # the first line of its text
    again = await rag.call(
        a, "add_document", {"kb": "manuals", "content": b64(data), "type": "pdf", "doc_id": "notes"}
    )
    assert again["unchanged"] is True

    hits = (await rag.call(a, "search", {"kb": "manuals", "query": "ZQ-7781"}))["hits"]
    top = hits[0]
    assert top["doc_id"] == "notes" and "ZQ-7781" in top["text"]
    assert top["pages"][1] == 3  # the identifier is on the third page
    doc = await rag.call(a, "get_document", {"kb": "manuals", "doc_id": "notes"})
    assert doc["text"][top["start"] : top["end"]] == top["text"]
    for page in PAGES:
        assert page.split("\n")[1] in doc["text"]
    assert doc["text"].index("scheduler") < doc["text"].index("gigabyte") < doc["text"].index("ZQ-7781")


async def test_pages_in_citations_follow_the_chunks(rag: Rag) -> None:
    a = org()
    await rag.call(a, "create_kb", {"kb": "book"})
    # Each page longer than a chunk (40 tokens): every chunk lies on one page, pages 1..3 in order.
    pages = [" ".join(f"p{n}w{i}" for i in range(60)) for n in (1, 2, 3)]
    await rag.call(
        a, "add_document", {"kb": "book", "content": b64(pdf_file(pages)), "type": "pdf", "doc_id": "b"}
    )
    for n in (1, 2, 3):
        hits = (await rag.call(a, "search", {"kb": "book", "query": f"p{n}w30 p{n}w31", "top_k": 1}))["hits"]
        assert hits[0]["pages"][0] <= n <= hits[0]["pages"][1], hits[0]
        assert f"p{n}w30" in hits[0]["text"]
    await rag.call(a, "add_document", {"kb": "book", "content": "Plain words here.", "doc_id": "plain"})
    text_hit = (await rag.call(a, "search", {"kb": "book", "query": "plain words", "top_k": 1}))["hits"][0]
    assert text_hit["doc_id"] == "plain" and text_hit["pages"] is None


async def test_unreadable_pdfs_are_refused_clearly(rag: Rag) -> None:
    a = org()
    await rag.call(a, "create_kb", {"kb": "kb1"})
    good = pdf_file(PAGES)
    cases = {
        "encrypted with a password": b64(pdf_file(PAGES, password="s3cret")),
        "not a readable PDF": b64(good[: len(good) // 3]),  # truncated
        "not a readable PDF ": b64(b"%PDF-1.4\nthis is not really a pdf\n%%EOF\n"),
        "base64-encoded": "%PDF-1.4 raw bytes sent as text!",
        "no extractable text": b64(pdf_file([""])),
    }
    for expected, content in cases.items():
        failed = await rag.fails(a, "add_document", {"kb": "kb1", "content": content, "type": "pdf"})
        assert failed.error is not None and failed.error.code == ErrorCode.INVALID_REQUEST, expected
        assert expected.strip() in failed.error.message, failed.error.message
        assert not internals_in(failed.error.message)
    assert (await rag.call(a, "get_kb", {"kb": "kb1"}))["documents"] == 0
