"""Counting tokens offline.

The count uses tiktoken with the BPE files litellm ships inside its wheel
(`litellm/litellm_core_utils/tokenizers`), the same files `litellm.token_counter` uses
for OpenAI-family models, so the numbers match what the llm service meters. litellm
itself is not imported (its import takes seconds); only the bundled files are read, and
tiktoken is pointed at them before it is asked for an encoding, so it never goes to the
network. When the files cannot be found, a deterministic approximation is used instead
(and said so in the log): roughly one token per four characters of a word, one per
punctuation mark.
"""

from __future__ import annotations

import asyncio
import hashlib
import importlib.util
import math
import os
import re
import threading
from pathlib import Path
from typing import Protocol

from mcpmesh.telemetry.logs import get_logger

log = get_logger("mcpmesh.context.tokens")

#: Where tiktoken fetches an encoding from; its cache file is named by the SHA-1 of this URL.
_ENCODING_URL = "https://openaipublic.blob.core.windows.net/encodings/{name}.tiktoken"
#: Contents larger than this are counted in a worker thread (tiktoken releases the GIL).
_THREAD_ABOVE_CHARS = 32 * 1024
_lock = threading.Lock()


class TokenCounter(Protocol):
    name: str

    def count(self, text: str) -> int: ...


class TiktokenCounter:
    def __init__(self, name: str, encoding: object) -> None:
        self.name = name
        self._encode = encoding.encode_ordinary  # type: ignore[attr-defined]

    def count(self, text: str) -> int:
        return len(self._encode(text)) if text else 0


class ApproximateCounter:
    """Deterministic fallback: ceil(len/4) per word (at least 1), 1 per other symbol."""

    name = "approx"
    _TOKEN = re.compile(r"\w+|[^\w\s]", re.UNICODE)

    def count(self, text: str) -> int:
        return sum(math.ceil(len(m.group()) / 4) for m in self._TOKEN.finditer(text))


def bundled_tokenizer_dir() -> Path | None:
    """litellm's bundled tokenizer directory, found without importing litellm."""
    spec = importlib.util.find_spec("litellm")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(next(iter(spec.submodule_search_locations))) / "litellm_core_utils" / "tokenizers"
    return path if path.is_dir() else None


def _cache_file_name(encoding: str) -> str:
    return hashlib.sha1(_ENCODING_URL.format(name=encoding).encode()).hexdigest()


def offline_encoding_dir(encoding: str) -> Path | None:
    """A directory holding `encoding`'s BPE file under tiktoken's cache name, or None."""
    candidates = [os.environ.get("TIKTOKEN_CACHE_DIR"), os.environ.get("CUSTOM_TIKTOKEN_CACHE_DIR")]
    bundled = bundled_tokenizer_dir()
    candidates.append(str(bundled) if bundled else None)
    for candidate in candidates:
        if candidate and (Path(candidate) / _cache_file_name(encoding)).is_file():
            return Path(candidate)
    return None


def load_counter(encoding: str = "cl100k_base") -> TokenCounter:
    """The counter for `encoding` ("approx" forces the approximation). Never touches the network."""
    if encoding == "approx":
        return ApproximateCounter()
    directory = offline_encoding_dir(encoding)
    if directory is None:
        log.warning("no offline BPE file for the encoding: approximate token counts", encoding=encoding)
        return ApproximateCounter()
    import tiktoken

    with _lock:
        # tiktoken reads TIKTOKEN_CACHE_DIR at load time; litellm sets the same variable on import.
        os.environ["TIKTOKEN_CACHE_DIR"] = str(directory)
        try:
            enc = tiktoken.get_encoding(encoding)
        except Exception as exc:  # corrupt file or unknown encoding name: still serve, approximately
            log.warning(
                "tiktoken could not load the encoding: approximate token counts",
                encoding=encoding,
                error=repr(exc),
            )
            return ApproximateCounter()
    return TiktokenCounter(encoding, enc)


async def count_tokens(counter: TokenCounter, text: str) -> int:
    """Count, off the event loop for large texts."""
    if len(text) > _THREAD_ABOVE_CHARS:
        return await asyncio.to_thread(counter.count, text)
    return counter.count(text)
