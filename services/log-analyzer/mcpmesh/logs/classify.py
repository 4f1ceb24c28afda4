"""What a line is: an AI crawler's request, a console error, and a console error's signature."""

from __future__ import annotations

import re
from typing import Final

#: AI crawlers by the token in their user agent (matched case-insensitively), as named in reports.
AI_CRAWLERS: Final = (
    "ChatGPT-User",
    "GPTBot",
    "OAI-SearchBot",
    "ClaudeBot",
    "Claude-Web",
    "Claude-User",
    "Claude-SearchBot",
    "anthropic-ai",
    "PerplexityBot",
    "Perplexity-User",
    "Google-Extended",
    "CCBot",
    "Bytespider",
    "Amazonbot",
    "Applebot-Extended",
    "meta-externalagent",
    "cohere-ai",
    "Diffbot",
    "YouBot",
)
_CRAWLER_RE = re.compile("|".join(re.escape(name) for name in AI_CRAWLERS), re.IGNORECASE)
_CANONICAL = {name.lower(): name for name in AI_CRAWLERS}


class Crawlers:
    """User agent → AI crawler name (or None), cached (user agents repeat a lot)."""

    def __init__(self, cache_max: int = 4096) -> None:
        self._cache: dict[str, str | None] = {}
        self._max = cache_max

    def __call__(self, user_agent: str) -> str | None:
        try:
            return self._cache[user_agent]
        except KeyError:
            pass
        found = _CRAWLER_RE.search(user_agent)
        name = _CANONICAL[found.group(0).lower()] if found else None
        if len(self._cache) >= self._max:
            self._cache.clear()
        self._cache[user_agent] = name
        return name


_ERROR_LEVELS: Final = frozenset({"error", "critical", "fatal"})
_ERROR_WORDS = re.compile(r"\b(exception|error|fatal|unhandled|failed)\b", re.IGNORECASE)


def console_error(level: str, text: str) -> bool:
    """A console line is an error when its level says so, or (no error level given) its text does."""
    lowered = level.lower()
    if lowered in _ERROR_LEVELS:
        return True
    if lowered in ("", "informational", "information", "info", "verbose", "warning"):
        return _ERROR_WORDS.search(text) is not None and lowered != "verbose"
    return False


_GUID = re.compile(r"\b[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}\b")
_HEX = re.compile(r"\b(?:0x)?[0-9a-fA-F]*[0-9][0-9a-fA-F]*[a-fA-F][0-9a-fA-F]*\b|\b0x[0-9a-fA-F]+\b")
_NUMBER = re.compile(r"\d+(?:\.\d+)?")
_SPACE = re.compile(r"\s+")
SIGNATURE_MAX: Final = 200


def signature(text: str) -> str:
    """The message with GUIDs, hex ids and numbers replaced (`<guid>`, `<hex>`, `<n>`), first line,
    whitespace collapsed, at most SIGNATURE_MAX characters: equal for repeats of one error."""
    first = text.strip().split("\n", 1)[0][:1000]
    first = _GUID.sub("<guid>", first)
    first = _HEX.sub(lambda m: "<hex>" if len(m.group(0)) >= 6 else m.group(0), first)
    first = _NUMBER.sub("<n>", first)
    return _SPACE.sub(" ", first).strip()[:SIGNATURE_MAX]
