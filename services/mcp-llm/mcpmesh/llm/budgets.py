"""Provider budgets: a provider's `rpm` and `tpm` (all its models together, per minute), checked
by the service before routing — not by litellm's usage-based routing, whose counts live in one
Router of one process.

Every provider's windows are documents in an `llm_limits` collection (TTL), so every replica
shares the count: an org's own provider's in the org's store (`provider:<name>|<minute>`), a
system provider's in the system org's (`LLM_SYSTEM_ORG`, `system-provider:<name>|<minute>`),
reached through the standing grant every org holds to be metered there (`Windows.of_call`), so
every org and every replica count in one place. The first choice's request is counted before the call (an atomic increment: replicas
together never pass the rpm); a fallback that answers is counted when it does; tokens when the
answer reports them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from mcpmesh.llm import limits
from mcpmesh.llm.limits import LIMITS_KIND
from mcpmesh.llm.providers import Deployment, ProviderSpec
from mcpmesh.llm.routing import Selection
from mcpmesh.proto.errors import ErrorCode, MeshException
from mcpmesh.service import Call
from mcpmesh.store import TenantStore

_PREFIX: Final = "provider:"
_SYSTEM_PREFIX: Final = "system-provider:"


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
    """Apart by owner: the system org's own providers share its store with the system's."""
    prefix = _PREFIX if provider.owner == "org" else _SYSTEM_PREFIX
    return f"{prefix}{provider.name}|{minute}"


async def _metered(_store: TenantStore) -> bool:
    """The standing grant: every org's calls of system providers are counted in the system org's windows."""
    return True


@dataclass(frozen=True)
class Windows:
    """Where a call's provider windows live: the org's store, and the system org's (None when
    none of the call's system providers has limits)."""

    org: TenantStore
    system: TenantStore | None = None

    @classmethod
    async def of_call(cls, call: Call, system_org: str, chain: tuple[Deployment, ...]) -> Windows:
        if call.org_id == system_org:
            return cls(call.store, call.store)
        if not any(d.provider.owner != "org" and _limited(d.provider) for d in chain):
            return cls(call.store)  # no system window to count in: no reach into the system org
        shared = await call.shared(system_org, _metered)
        assert shared is not None  # the standing grant always holds
        return cls(call.store, shared.store)

    def store(self, owner: str) -> TenantStore:
        """The store of the windows of the providers of `owner` ("org" or "system")."""
        if owner == "org":
            return self.org
        assert self.system is not None, "a limited system provider needs the system org's windows"
        return self.system


async def admit(windows: Windows, selection: Selection, now: float) -> tuple[Selection, Deployment | None]:
    """The selection without the deployments whose provider is full this minute (reported as
    tried, status `rpm`/`tpm`), and the first choice with its request counted (None when its
    provider has no rpm). RATE_LIMITED when none is left."""
    minute = int(now // 60)
    counts = await _windows(windows, selection.chain, minute)
    for d in selection.chain:
        reason = counts[d.provider.name, d.provider.owner].full(d.provider) if _limited(d.provider) else None
        if reason is not None:
            selection = selection.without(d, reason)
    while selection.chain:
        first = selection.chain[0]
        if first.provider.rpm is None:
            return selection, None
        if await _add(windows, first.provider, minute, requests=1) <= first.provider.rpm:
            return selection, first
        await _add(windows, first.provider, minute, requests=-1)  # another replica was first
        for d in [d for d in selection.chain if d.provider == first.provider]:
            selection = selection.without(d, "rpm")
    raise MeshException(
        ErrorCode.RATE_LIMITED,
        f"every provider of model {selection.model!r} has used its requests or tokens per minute: "
        f"retry in {int(60 - now % 60) + 1} s",
        details={"model": selection.model, "tried": [d.label for d, _ in selection.skipped]},
    )


async def release(windows: Windows, reserved: Deployment | None, now: float) -> None:
    """Uncount the request `admit` counted (the call was refused before any provider saw it)."""
    if reserved is not None:
        await _add(windows, reserved.provider, int(now // 60), requests=-1)


async def spent(
    windows: Windows, reserved: Deployment | None, served: Deployment, tokens: int, now: float
) -> None:
    """Count what the provider that answered spent: its tokens, and its request when it was not
    the one counted before the call (a fallback)."""
    p = served.provider
    requests = 1 if p.rpm is not None and (reserved is None or reserved.provider != p) else 0
    tokens = tokens if p.tpm is not None else 0
    if requests or tokens:
        await _add(windows, p, int(now // 60), requests=requests, tokens=tokens)


async def _windows(
    windows: Windows, chain: tuple[Deployment, ...], minute: int
) -> dict[tuple[str, str], Window]:
    providers = {(d.provider.name, d.provider.owner): d.provider for d in chain if _limited(d.provider)}
    counts: dict[tuple[str, str], Window] = {}
    for owner in {k[1] for k in providers}:
        ids = {_doc_id(p, minute): k for k, p in providers.items() if k[1] == owner}
        rows = await windows.store(owner).collection(LIMITS_KIND)
        found = {doc["_id"]: doc async for doc in rows.find({"_id": {"$in": list(ids)}})}
        for doc_id, k in ids.items():
            doc = found.get(doc_id, {})
            counts[k] = Window(doc.get("requests", 0), doc.get("tokens", 0))
    return counts


async def _add(
    windows: Windows, provider: ProviderSpec, minute: int, *, requests: int = 0, tokens: int = 0
) -> int:
    """Add to the provider's window; its requests after the addition."""
    doc = await limits.add(
        windows.store(provider.owner), _doc_id(provider, minute), requests=requests, tokens=tokens
    )
    return int(doc["requests"])
