"""Sparse (lexical) vectors: BM25-style term weights of hashed terms.

A chunk's vector holds, per term, BM25's saturated term frequency
`tf * (k1 + 1) / (tf + k1 * (1 - b + b * len / avg_len))` (avg_len: the configured chunk
size); the IDF half of BM25 is applied by Qdrant at query time (the kb's sparse vector has
the IDF modifier), so adding documents never rewrites older vectors. Terms are lowercased
words and whole identifiers (`ERR-4711`, `v2.3.1`, `user_id`) as well as their parts, minus a
few English stop words; a term's index is a 32-bit hash of it.
"""

from __future__ import annotations

import hashlib
import re
from collections import Counter
from typing import Final

from mcpmesh.vectors import SparseTerms

K1: Final = 1.2
B: Final = 0.75
_IDENT_RE: Final = re.compile(r"[0-9A-Za-z\u00C0-\uFFFF]+(?:[-_./:][0-9A-Za-z\u00C0-\uFFFF]+)*")
_PART_RE: Final = re.compile(r"[0-9A-Za-z\u00C0-\uFFFF]+")
STOP_WORDS: Final = frozenset(
    [
        "a",
        "an",
        "and",
        "are",
        "as",
        "at",
        "be",
        "by",
        "for",
        "from",
        "has",
        "have",
        "in",
        "is",
        "it",
        "its",
        "of",
        "on",
        "or",
        "that",
        "the",
        "this",
        "to",
        "was",
        "were",
        "will",
        "with",
        "what",
        "which",
        "who",
        "how",
        "when",
        "where",
        "why",
        "do",
        "does",
        "did",
        "not",
        "no",
    ]
)


def terms(text: str) -> list[str]:
    found: list[str] = []
    for match in _IDENT_RE.finditer(text.lower()):
        word = match.group()
        parts = _PART_RE.findall(word)
        if len(parts) > 1:
            found.append(word)
        found.extend(p for p in parts if p not in STOP_WORDS)
    return found


def term_id(term: str) -> int:
    return int.from_bytes(hashlib.blake2b(term.encode(), digest_size=4).digest(), "big")


def document_vector(text: str, avg_len: int) -> SparseTerms:
    counts = Counter(terms(text))
    length = sum(counts.values())
    norm = K1 * (1 - B + B * length / max(avg_len, 1))
    weights: dict[int, float] = {}
    for term, tf in counts.items():
        index = term_id(term)
        weights[index] = weights.get(index, 0.0) + tf * (K1 + 1) / (tf + norm)
    return SparseTerms(indices=list(weights), values=list(weights.values()))


def query_vector(text: str) -> SparseTerms:
    ids = sorted({term_id(term) for term in terms(text)})
    return SparseTerms(indices=ids, values=[1.0] * len(ids))
