"""The rag service's configuration: environment variables `RAG_*`, one typed object (see README)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Final

from mcpmesh.proto.ids import SYSTEM_ORG, validate_org_id
from mcpmesh.service.envsettings import settings_from_env
from mcpmesh.service.ssrf import Network, networks

_ENV_PREFIX: Final = "RAG_"


@dataclass(frozen=True)
class TierLimits:
    """What one org may hold in all its knowledge bases together."""

    knowledge_bases: int
    documents: int
    chunks: int
    bytes: int


DEFAULT_TIER_LIMITS: Final = {
    "free": TierLimits(knowledge_bases=5, documents=200, chunks=10_000, bytes=10_000_000),
    "pro": TierLimits(knowledge_bases=100, documents=20_000, chunks=1_000_000, bytes=1_000_000_000),
    "enterprise": TierLimits(
        knowledge_bases=10_000, documents=2_000_000, chunks=100_000_000, bytes=100_000_000_000
    ),
}


@dataclass(frozen=True)
class RagSettings:
    #: Most tokens (whitespace-separated words) in one chunk.
    chunk_tokens: int = 200
    #: Tokens a chunk repeats from the end of the previous one in the same section.
    chunk_overlap: int = 40
    #: Largest document (UTF-8 bytes of its content).
    max_document_bytes: int = 2_000_000
    #: Documents one `add_documents` call may carry (it runs as a job).
    max_batch_documents: int = 1000
    #: Texts sent to mcp-llm per `embed` call.
    embed_batch: int = 64
    #: mcp-llm model (or alias) for embeddings and for `answer`.
    embed_model: str = "embed"
    chat_model: str = "default"
    #: Documents may be added by URL (rag_add_url): off unless the operator turns it on.
    url_ingest: bool = False
    #: URLs may resolve to loopback/private/link-local addresses (development only), or to
    #: those in these networks (JSON list of CIDRs, e.g. an intranet's: ["10.20.0.0/16"]).
    url_allow_private: bool = False
    url_allow_networks: list[str] = field(default_factory=list)
    #: Longest one URL fetch may take, redirects included, and most redirects followed.
    url_timeout_s: float = 30.0
    url_max_redirects: int = 5
    #: The reserved org whose knowledge bases are readable by every org.
    system_org: str = SYSTEM_ORG
    #: JSON object overriding the tier limits, e.g. {"free": {"documents": 50}}.
    tier_limits: str = ""
    limits: dict[str, TierLimits] = field(default_factory=lambda: dict(DEFAULT_TIER_LIMITS))
    allowed_networks: tuple[Network, ...] = ()

    def __post_init__(self) -> None:
        validate_org_id(self.system_org)
        if self.chunk_tokens < 8:
            raise ValueError("RAG_CHUNK_TOKENS must be at least 8")
        if not 0 <= self.chunk_overlap < self.chunk_tokens // 2:
            raise ValueError("RAG_CHUNK_OVERLAP must be at least 0 and under half of RAG_CHUNK_TOKENS")
        for name in ("max_document_bytes", "max_batch_documents", "embed_batch"):
            if getattr(self, name) < 1:
                raise ValueError(f"{_ENV_PREFIX}{name.upper()} must be positive")
        if self.url_timeout_s <= 0 or self.url_max_redirects < 0:
            raise ValueError("RAG_URL_TIMEOUT_S must be positive and RAG_URL_MAX_REDIRECTS at least 0")
        object.__setattr__(
            self, "allowed_networks", networks(self.url_allow_networks, "RAG_URL_ALLOW_NETWORKS")
        )
        if self.tier_limits:
            object.__setattr__(self, "limits", _merged_limits(self.limits, self.tier_limits))

    def tier(self, tier: str) -> TierLimits:
        return self.limits.get(tier, self.limits["free"])

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> RagSettings:
        return settings_from_env(cls, _ENV_PREFIX, environ, skip=("limits", "allowed_networks"))


def _merged_limits(base: dict[str, TierLimits], raw: str) -> dict[str, TierLimits]:
    try:
        given = json.loads(raw)
        merged = dict(base)
        for tier, overrides in given.items():
            current = merged.get(tier, base["free"])
            values = {
                f.name: int(overrides.get(f.name, getattr(current, f.name))) for f in fields(TierLimits)
            }
            merged[tier] = TierLimits(**values)
        return merged
    except (ValueError, TypeError, AttributeError):
        raise ValueError(
            'RAG_TIER_LIMITS must be a JSON object like {"free": {"documents": 50, "chunks": 5000}}'
        ) from None
