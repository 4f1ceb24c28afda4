"""Documents by URL (rag_add_url): off unless the operator turns it on, and then under the
platform's SSRF rule (mcpmesh.service.ssrf) — against real local HTTP servers on loopback."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from mcpmesh.proto.errors import ErrorCode
from mcpmesh.rag import RagSettings
from mcpmesh.rag.app import RagApp
from mcpmesh.rag.testing import Rag, org, pdf_file
from mcpmesh.service.testing import ToolFailed

PAGE = "<html><head><title>x</title></head><body><h1>Runbook</h1><p>Rotate key KX-5510 monthly.</p></body></html>"


@pytest.fixture
def rag_settings() -> RagSettings:
    # Turned on, with 127.0.0.1 (where the test site listens) allowed; 127.0.0.2 stays refused.
    return RagSettings(
        chunk_tokens=40,
        chunk_overlap=8,
        max_document_bytes=20_000,
        url_ingest=True,
        url_allow_networks=["127.0.0.1/32"],
    )


class Sites:
    def __init__(self) -> None:
        self.hits: list[str] = []
        self.main: TestServer
        self.inner: TestServer

    def url(self, path: str) -> str:
        return str(self.main.make_url(path))


@pytest.fixture
async def sites() -> AsyncIterator[Sites]:
    s = Sites()

    def page(body: bytes | str, content_type: str) -> Any:
        async def handle(request: web.Request) -> web.StreamResponse:
            s.hits.append(f"{request.host.split(':')[0]}{request.path}")
            data = body.encode() if isinstance(body, str) else body
            return web.Response(body=data, content_type=content_type)

        return handle

    inner = web.Application()
    inner.router.add_get("/metadata", page("internal secret", "text/plain"))
    s.inner = TestServer(inner, host="127.0.0.2")
    await s.inner.start_server()

    async def to_inner(request: web.Request) -> web.StreamResponse:
        s.hits.append(request.path)
        raise web.HTTPFound(str(s.inner.make_url("/metadata")))

    main = web.Application()
    main.router.add_get("/runbook.html", page(PAGE, "text/html"))
    main.router.add_get(
        "/manual.pdf", page(pdf_file(["Manual", "Page two names part PN-3390."]), "application/pdf")
    )
    main.router.add_get("/notes", page("# Notes\n\nPlain notes.", "application/octet-stream"))
    main.router.add_get("/huge.txt", page("z " * 15_000, "text/plain"))
    main.router.add_get("/image.png", page(b"\x89PNG\r\n", "image/png"))
    main.router.add_get("/redirect", to_inner)
    s.main = TestServer(main, host="127.0.0.1")
    await s.main.start_server()
    yield s
    await s.main.close()
    await s.inner.close()


def _settings(rag: Rag, **changes: Any) -> None:
    app = rag.harness.service.state(RagApp)
    app.settings = dataclasses.replace(app.settings, **changes)


def _code(failed: ToolFailed) -> ErrorCode:
    assert failed.error is not None
    return failed.error.code


async def test_off_by_default_with_a_clear_error(rag: Rag, sites: Sites) -> None:
    assert RagSettings().url_ingest is False and RagSettings.from_env({}).url_ingest is False
    _settings(rag, url_ingest=False)
    a = org()
    await rag.call(a, "create_kb", {"kb": "web"})
    failed = await rag.fails(a, "add_url", {"kb": "web", "url": sites.url("/runbook.html")})
    assert _code(failed) == ErrorCode.FORBIDDEN and "RAG_URL_INGEST" in str(failed.error)
    assert sites.hits == []


async def test_loopback_is_refused_unless_the_operator_allows_it(rag: Rag, sites: Sites) -> None:
    a = org()
    await rag.call(a, "create_kb", {"kb": "web"})
    _settings(rag, url_allow_networks=[], allowed_networks=())
    for url in (sites.url("/runbook.html"), sites.url("/runbook.html").replace("127.0.0.1", "localhost")):
        failed = await rag.fails(a, "add_url", {"kb": "web", "url": url})
        assert _code(failed) == ErrorCode.FORBIDDEN and "public http(s)" in str(failed.error), url
    for url in ("http://169.254.169.254/latest/meta-data/", "file:///etc/passwd"):
        failed = await rag.fails(a, "add_url", {"kb": "web", "url": url})
        assert _code(failed) in (ErrorCode.FORBIDDEN, ErrorCode.INVALID_REQUEST), url
    assert sites.hits == []
    _settings(rag, url_allow_private=True)  # development: every address
    added = await rag.call(a, "add_url", {"kb": "web", "url": sites.url("/runbook.html")})
    assert added["type"] == "html" and sites.hits == ["127.0.0.1/runbook.html"]


async def test_allowed_urls_are_fetched_and_ingested_by_content_type(rag: Rag, sites: Sites) -> None:
    a = org()
    await rag.call(a, "create_kb", {"kb": "web"})
    page = await rag.call(a, "add_url", {"kb": "web", "url": sites.url("/runbook.html"), "doc_id": "runbook"})
    assert (page["type"], page["url"], page["title"]) == ("html", sites.url("/runbook.html"), "Runbook")
    manual = await rag.call(a, "add_url", {"kb": "web", "url": sites.url("/manual.pdf")})
    assert manual["type"] == "pdf"
    notes = await rag.call(a, "add_url", {"kb": "web", "url": sites.url("/notes"), "type": "markdown"})
    assert notes["type"] == "markdown"  # the caller's type wins over application/octet-stream
    again = await rag.call(
        a, "add_url", {"kb": "web", "url": sites.url("/runbook.html"), "doc_id": "runbook"}
    )
    assert again["unchanged"] is True
    hits = (await rag.call(a, "search", {"kb": "web", "query": "KX-5510"}))["hits"]
    assert hits[0]["doc_id"] == "runbook" and "KX-5510" in hits[0]["text"]
    hits = (await rag.call(a, "search", {"kb": "web", "query": "PN-3390"}))["hits"]
    assert hits[0]["doc_id"] == manual["doc_id"] and hits[0]["pages"][1] == 2
    failed = await rag.fails(a, "add_url", {"kb": "web", "url": sites.url("/image.png")})
    assert _code(failed) == ErrorCode.INVALID_REQUEST and "image/png" in str(failed.error)


async def test_oversize_and_forbidden_redirects_are_refused(rag: Rag, sites: Sites) -> None:
    a = org()
    await rag.call(a, "create_kb", {"kb": "web"})
    failed = await rag.fails(a, "add_url", {"kb": "web", "url": sites.url("/huge.txt")})
    assert _code(failed) == ErrorCode.LIMIT_EXCEEDED and "20000-byte" in str(failed.error)
    failed = await rag.fails(a, "add_url", {"kb": "web", "url": sites.url("/redirect")})
    assert _code(failed) == ErrorCode.FORBIDDEN and "127.0.0.2" in str(failed.error)
    assert "127.0.0.2/metadata" not in sites.hits  # the internal address was never asked
    assert (await rag.call(a, "get_kb", {"kb": "web"}))["documents"] == 0


async def test_credentials_in_a_url_are_refused_and_a_query_is_not_kept(rag: Rag, sites: Sites) -> None:
    a = org()
    await rag.call(a, "create_kb", {"kb": "web"})
    with_login = sites.url("/runbook.html").replace("http://", "http://ops:hunter2@")
    failed = await rag.fails(a, "add_url", {"kb": "web", "url": with_login})
    assert _code(failed) == ErrorCode.INVALID_REQUEST and "user name or password" in str(failed.error)
    assert "hunter2" not in str(failed.error) and sites.hits == []
    # A presigned URL is fetched with its query; the document keeps and shows it without.
    signed = sites.url("/runbook.html") + "?sv=2024&sig=SeCrEt%3D#top"
    added = await rag.call(a, "add_url", {"kb": "web", "url": signed})
    assert added["url"] == sites.url("/runbook.html") and sites.hits == ["127.0.0.1/runbook.html"]
    shown = await rag.call(a, "get_document", {"kb": "web", "doc_id": added["doc_id"]})
    assert "SeCrEt" not in str(shown) and shown["url"] == sites.url("/runbook.html")
