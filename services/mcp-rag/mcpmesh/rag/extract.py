"""A document's text and its structure: headings and paragraphs, by content type.

Every type becomes one plain text plus its blocks (character spans of that text, each a
heading of some level or a paragraph), so chunk offsets always point into the text that
`get_document` returns. A PDF's blocks are its pages' paragraphs, each with its page number.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from dataclasses import dataclass
from html.parser import HTMLParser
from typing import Final, Literal

from mcpmesh.proto.errors import ErrorCode, MeshException
from mcpmesh.rag.pdf import page_texts

DocType = Literal["text", "markdown", "html", "jsonl", "pdf"]
TYPES: Final = ("text", "markdown", "html", "jsonl", "pdf")
_HEADING_RE: Final = re.compile(r"^(#{1,6})\s+(.+?)\s*#*\s*$")
_HTML_BLOCKS: Final = {"p", "li", "pre", "blockquote", "td", "th", "dt", "dd", "div", "section", "article"}
_HTML_SKIP: Final = {"script", "style", "head", "noscript", "template"}


@dataclass(frozen=True)
class Block:
    start: int
    end: int
    level: int  # 1-6 for a heading, 0 for a paragraph
    page: int = 0  # 1-based page of a PDF, 0 for the unpaged types


@dataclass(frozen=True)
class Extracted:
    text: str
    blocks: list[Block]


def invalid(message: str) -> MeshException:
    return MeshException(ErrorCode.INVALID_REQUEST, message)


def check_type(value: str) -> DocType:
    if value not in TYPES:
        raise invalid(f"unsupported document type {value[:40]!r}: use one of {', '.join(TYPES)}")
    return value  # type: ignore[return-value]


def document_bytes(content: str, doc_type: DocType) -> bytes:
    """The document as sent in a tool's `content`: a PDF's file base64-encoded, the others their text."""
    if doc_type != "pdf":
        return content.encode()
    try:
        return base64.b64decode("".join(content.split()), validate=True)
    except (binascii.Error, ValueError):
        raise invalid("a pdf document's content must be the PDF file's bytes, base64-encoded") from None


def extract(data: bytes, doc_type: DocType) -> Extracted:
    """The document's text and blocks; an empty document is refused."""
    pages: list[int] = []
    if doc_type == "pdf":
        pieces = []
        for number, page in enumerate(page_texts(data), 1):
            paragraphs = _text_pieces(page, markdown=False)
            pieces.extend(paragraphs)
            pages.extend([number] * len(paragraphs))
    else:
        content = data.decode()
        if doc_type == "html":
            pieces = _html_pieces(content)
        elif doc_type == "jsonl":
            pieces = _jsonl_pieces(content)
        else:
            pieces = _text_pieces(content, markdown=doc_type == "markdown")
    text, blocks = _join(pieces, pages)
    if not text.strip():
        if doc_type == "pdf":
            raise invalid("the PDF has no extractable text (scanned pages need OCR first)")
        raise invalid("the document has no text: send non-empty content")
    return Extracted(text, blocks)


def _join(pieces: list[tuple[str, int]], pages: list[int]) -> tuple[str, list[Block]]:
    """The pieces' text joined by blank lines, with their blocks (`pages`: each piece's page, if paged)."""
    parts: list[str] = []
    blocks: list[Block] = []
    at = 0
    for i, (piece, level) in enumerate(pieces):
        piece = piece.strip()
        if not piece:
            continue
        if parts:
            parts.append("\n\n")
            at += 2
        blocks.append(Block(at, at + len(piece), level, pages[i] if pages else 0))
        parts.append(piece)
        at += len(piece)
    return "".join(parts), blocks


def _text_pieces(content: str, *, markdown: bool) -> list[tuple[str, int]]:
    pieces: list[tuple[str, int]] = []
    paragraph: list[str] = []
    fenced = False

    def flush() -> None:
        if paragraph:
            pieces.append(("\n".join(paragraph), 0))
            paragraph.clear()

    for line in content.replace("\r\n", "\n").split("\n"):
        if markdown and line.lstrip().startswith("```"):
            fenced = not fenced
        heading = _HEADING_RE.match(line) if markdown and not fenced else None
        if heading:
            flush()
            pieces.append((heading.group(2), len(heading.group(1))))
        elif not line.strip() and not fenced:
            flush()
        else:
            paragraph.append(line.rstrip())
    flush()
    return pieces


def _jsonl_pieces(content: str) -> list[tuple[str, int]]:
    """Each line a JSON object: its `title` (if any) a heading, its `text` or `content` a paragraph."""
    pieces: list[tuple[str, int]] = []
    for number, line in enumerate(content.splitlines(), 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except ValueError:
            raise invalid(f"jsonl line {number} is not valid JSON") from None
        body = record.get("text", record.get("content")) if isinstance(record, dict) else None
        if not isinstance(body, str):
            raise invalid(f"jsonl line {number}: expected an object with a string 'text' (or 'content')")
        title = record.get("title")
        if isinstance(title, str) and title.strip():
            pieces.append((title, 2))
        pieces.append((body, 0))
    return pieces


class _Html(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.pieces: list[tuple[str, int]] = []
        self._current: list[str] = []
        self._level = 0
        self._skip = 0

    def _flush(self) -> None:
        text = " ".join("".join(self._current).split())
        if text:
            self.pieces.append((text, self._level))
        self._current = []
        self._level = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in _HTML_SKIP:
            self._skip += 1
        elif re.fullmatch(r"h[1-6]", tag):
            self._flush()
            self._level = int(tag[1])
        elif tag in _HTML_BLOCKS or tag == "br":
            self._flush()

    def handle_endtag(self, tag: str) -> None:
        if tag in _HTML_SKIP:
            self._skip = max(0, self._skip - 1)
        elif re.fullmatch(r"h[1-6]", tag) or tag in _HTML_BLOCKS:
            self._flush()

    def handle_data(self, data: str) -> None:
        if not self._skip:
            self._current.append(data)


def _html_pieces(content: str) -> list[tuple[str, int]]:
    parser = _Html()
    parser.feed(content)
    parser.close()
    parser._flush()
    return parser.pieces
