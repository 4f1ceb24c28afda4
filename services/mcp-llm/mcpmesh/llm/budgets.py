"""Provider budgets: a provider's `rpm` and `tpm` (all its models together, per minute), checked
by the service before routing — not by litellm's usage-based routing, whose counts live in one
Router of one process.

- An org's own provider: counted in the org's `llm_limits` collection (`provider:<name>|<minute>`,
  TTL), so every replica shares the count. The first choice's request is counted before the
  call (an atomic increment: replicas together never pass the rpm); a fallback that answers is
  counted when it does; tokens when the answer reports them.
- A system provider: counted in memory, per replica (one count for every org the replica
  serves). A count shared by every replica would need a collection no org owns, and a service
  reaches only per-org stores (tests/tenancy/test_store_reach.py): give each replica its share
  of the provider's limits; past them the provider's own 429s fall back as any failure does.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from mcpmesh.llm import limits
from mcpmesh.llm.limits import LIMITS_KIND
from mcpmesh.llm.providers import Deployment, ProviderSpec
from mcpmesh.llm.routing import Selection
from mcpmesh.proto.errors import ErrorCode, MeshException
from mcpmesh.store import TenantStore

_PREFIX: Final = "provider:"


@dataclass
class Window:
    requests: int = 0
    tokens: int = 0

    def full(self, provider: ProviderSpec) -> str | None:
        if provider.rpm is not None and self.requests >= provider.rpm:
            return "rpm"
        if provider.tpm is not None and self.tokens >= provider.tpm:
            return "tpm"
        return None


def _limited(provider: ProviderSpec) -> bool:
    return provider.rpm is not None or provider.tpm is not None


def _doc_id(provider: ProviderSpec, minute: int) -> str:
    return f"{_PREFIX}{provider.name}|{minute}"


class ProviderBudgets:
    def __init__(self) -> None:
        self._local: dict[tuple[str, int], Window] = {}  # system providers: (name, minute)

    async def admit(
        self, store: TenantStore, selection: Selection, now: float
    ) -> tuple[Selection, Deployment | None]:
        """The selection without the deployments whose provider is full this minute (reported as
        tried, status `rpm`/`tpm`), and the first choice with its request counted (None when its
        provider has no rpm). RATE_LIMITED when none is left."""
        minute = int(now // 60)
        self._local = {k: w for k, w in self._local.items() if k[1] >= minute}
        windows = await self._windows(store, selection.chain, minute)
        for d in selection.chain:
            reason = (
                windows[d.provider.name, d.provider.owner].full(d.provider) if _limited(d.provider) else None
            )
            if reason is not None:
                selection = selection.without(d, reason)
        while selection.chain:
            first = selection.chain[0]
            if first.provider.rpm is None:
                return selection, None
            if await self._add(store, first.provider, minute, requests=1) <= first.provider.rpm:
                return selection, first
            await self._add(store, first.provider, minute, requests=-1)  # another replica was first
            for d in [d for d in selection.chain if d.provider == first.provider]:
                selection = selection.without(d, "rpm")
        raise MeshException(
            ErrorCode.RATE_LIMITED,
            f"every provider of model {selection.model!r} has used its requests or tokens per minute: "
            f"retry in {int(60 - now % 60) + 1} s",
            details={"model": selection.model, "tried": [d.label for d, _ in selection.skipped]},
        )

    async def release(self, store: TenantStore, reserved: Deployment | None, now: float) -> None:
        """Uncount the request `admit` counted (the call was refused before any provider saw it)."""
        if reserved is not None:
            await self._add(store, reserved.provider, int(now // 60), requests=-1)

    async def spent(
        self, store: TenantStore, reserved: Deployment | None, served: Deployment, tokens: int, now: float
    ) -> None:
        """Count what the provider that answered spent: its tokens, and its request when it was not
        the one counted before the call (a fallback)."""
        p = served.provider
        requests = 1 if p.rpm is not None and (reserved is None or reserved.provider != p) else 0
        tokens = tokens if p.tpm is not None else 0
        if requests or tokens:
            await self._add(store, p, int(now // 60), requests=requests, tokens=tokens)

    async def _windows(
        self, store: TenantStore, chain: tuple[Deployment, ...], minute: int
    ) -> dict[tuple[str, str], Window]:
        providers = {(d.provider.name, d.provider.owner): d.provider for d in chain if _limited(d.provider)}
        windows = {k: self._local.get((k[0], minute), Window()) for k in providers if k[1] != "org"}
        ids = {_doc_id(p, minute): k for k, p in providers.items() if k[1] == "org"}
        if ids:
            rows = await store.collection(LIMITS_KIND)
            found = {doc["_id"]: doc async for doc in rows.find({"_id": {"$in": list(ids)}})}
            for doc_id, k in ids.items():
                doc = found.get(doc_id, {})
                windows[k] = Window(doc.get("requests", 0), doc.get("tokens", 0))
        return windows

    async def _add(
        self, store: TenantStore, provider: ProviderSpec, minute: int, *, requests: int = 0, tokens: int = 0
    ) -> int:
        """Add to the provider's window; its requests after the addition."""
        if provider.owner != "org":
            window = self._local.setdefault((provider.name, minute), Window())
            window.requests += requests
            window.tokens += tokens
            return window.requests
        doc = await limits.add(store, _doc_id(provider, minute), requests=requests, tokens=tokens)
        return int(doc["requests"])
