"""Documents by URL, when the operator turns it on (`RAG_URL_INGEST`): fetched under the
platform's SSRF rule (`mcpmesh.service.ssrf`, the one mcp-llm applies to org endpoints), bounded
by `RAG_MAX_DOCUMENT_BYTES` and `RAG_URL_TIMEOUT_S`; the content type names the document type
unless the caller gives one. A document keeps its URL without the query and fragment
(`kept_url`): a presigned URL's query is a credential, and a document is shown to every key it
is visible to."""

from __future__ import annotations

from typing import Final
from urllib.parse import urlsplit, urlunsplit

from mcpmesh.proto.errors import ErrorCode, MeshException
from mcpmesh.rag.access import invalid
from mcpmesh.rag.app import RagApp
from mcpmesh.rag.extract import DocType, check_type
from mcpmesh.service.ssrf import fetch

MEDIA_TYPES: Final[dict[str, DocType]] = {
    "text/plain": "text",
    "text/markdown": "markdown",
    "text/x-markdown": "markdown",
    "text/html": "html",
    "application/xhtml+xml": "html",
    "application/jsonl": "jsonl",
    "application/x-ndjson": "jsonl",
    "application/jsonlines": "jsonl",
    "application/pdf": "pdf",
}
MAX_URL: Final = 2000


def kept_url(url: str) -> str:
    """The URL a document keeps and shows: scheme, host and path."""
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, parts.path, "", ""))


async def fetch_document(app: RagApp, url: str, doc_type: str | None) -> tuple[bytes, DocType]:
    """The document at `url` (text types as UTF-8) and its type."""
    settings = app.settings
    if not settings.url_ingest:
        raise MeshException(
            ErrorCode.FORBIDDEN,
            "adding documents by URL is turned off on this platform (the operator enables it with "
            "RAG_URL_INGEST=true): send the content with rag_add_document instead",
        )
    if len(url) > MAX_URL:
        raise invalid(f"url is at most {MAX_URL} characters")
    kind = check_type(doc_type) if doc_type is not None else None
    fetched = await fetch(
        url,
        allow_private=settings.url_allow_private,
        allow_networks=settings.allowed_networks,
        max_bytes=settings.max_document_bytes,
        timeout_s=settings.url_timeout_s,
        max_redirects=settings.url_max_redirects,
    )
    if kind is None:
        found = MEDIA_TYPES.get(fetched.content_type)
        if found is None:
            raise invalid(
                f"the url's content type {fetched.content_type[:80]!r} is not a document type "
                f"({', '.join(sorted(MEDIA_TYPES))}): pass type to read it as one"
            )
        kind = found
    if kind == "pdf":
        return fetched.body, kind
    charset = fetched.charset or "utf-8"
    try:
        return fetched.body.decode(charset).encode(), kind
    except (LookupError, UnicodeDecodeError):
        raise invalid(f"the url's content is not {charset[:40]!r} text: pass the right type") from None
