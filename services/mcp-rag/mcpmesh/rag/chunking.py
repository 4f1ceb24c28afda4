"""Structure-aware chunking: sections under headings, cut at paragraph ends when possible,
at most `max_tokens` tokens (whitespace-separated words) each, consecutive chunks of one
section overlapping by `overlap` tokens. Offsets are character spans of the document's text;
a PDF's chunks also name the first and last page they hold text of.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final

from mcpmesh.rag.extract import Extracted

_TOKEN_RE: Final = re.compile(r"\S+")


@dataclass(frozen=True)
class Chunk:
    index: int
    start: int
    end: int
    text: str
    section: str  # the heading path, "A > B", or "" before any heading
    tokens: int
    pages: tuple[int, int] | None = None  # first and last page (1-based) of a PDF's chunk


def chunk(doc: Extracted, max_tokens: int, overlap: int) -> list[Chunk]:
    chunks: list[Chunk] = []
    path: list[tuple[int, str]] = []
    section: list[tuple[int, int]] = []  # token spans of the current section
    pages: list[int] = []  # the page of each of those tokens (0: unpaged)
    breaks: set[int] = set()  # token positions where a paragraph starts

    def flush() -> None:
        title = " > ".join(name for _, name in path)
        for first, last in _windows(len(section), breaks, max_tokens, overlap):
            start, end = section[first][0], section[last - 1][1]
            paged = (pages[first], pages[last - 1]) if pages[first] else None
            chunks.append(Chunk(len(chunks), start, end, doc.text[start:end], title, last - first, paged))
        section.clear()
        pages.clear()
        breaks.clear()

    for block in doc.blocks:
        if block.level:
            flush()
            while path and path[-1][0] >= block.level:
                path.pop()
            path.append((block.level, doc.text[block.start : block.end]))
        breaks.add(len(section))
        before = len(section)
        section.extend((m.start(), m.end()) for m in _TOKEN_RE.finditer(doc.text, block.start, block.end))
        pages.extend([block.page] * (len(section) - before))
    flush()
    return chunks


def _windows(n: int, breaks: set[int], max_tokens: int, overlap: int) -> list[tuple[int, int]]:
    """[first, last) token ranges covering 0..n: each at most max_tokens, ending at a paragraph
    break in its second half when there is one, the next starting `overlap` tokens earlier."""
    windows: list[tuple[int, int]] = []
    first = 0
    while first < n:
        last = min(first + max_tokens, n)
        if last < n:
            cut = max((b for b in breaks if first + max_tokens // 2 < b <= last), default=None)
            last = cut if cut is not None else last
        windows.append((first, last))
        if last >= n:
            break
        first = max(last - overlap, first + 1)
    return windows
