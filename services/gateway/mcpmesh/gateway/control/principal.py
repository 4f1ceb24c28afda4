"""Who is calling once an API key was verified, and why a key was refused."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from mcpmesh.proto.tiers import OrgSettings
from mcpmesh.tenancy.stamp import StampSigner

#: Every `AuthFailed.reason`, with the sentence a client reads. None echoes the key or names an org.
AUTH_FAILURES: Final[dict[str, str]] = {
    "missing": "an API key is required: send it in the x-api-key header or as Authorization: Bearer <key>",
    "malformed": "malformed API key: expected the 'mm_…' key issued by the admin API",
    "unknown": "unknown API key: it was never issued, was deleted, or its rotation grace period ended",
    "revoked": "this API key was revoked: ask your administrator for a new one",
    "suspended": "this API key is suspended: ask your administrator to resume it",
    "expired": "this API key has expired: ask your administrator for a new one",
    "org_suspended": "the organization of this API key is suspended",
}


@dataclass(frozen=True)
class Principal:
    """Who is calling, after a key was verified."""

    org_id: str
    key_id: str
    tier: str
    scopes: tuple[str, ...]
    settings: OrgSettings  # the org's effective settings (tier defaults overlaid with its own)
    tags: tuple[str, ...] = ()  # the key's tags, signed into its stamps

    def stamp(self, signer: StampSigner, service: str) -> str:
        """A fresh stamp for this key's call to `service` (what every stamp of a key asserts)."""
        return signer.mint(
            org_id=self.org_id,
            tier=self.tier,
            scopes=list(self.scopes),
            key_tags=self.tags,
            sub=self.key_id,
            service=service,
        )


class AuthFailed(Exception):
    """A key that does not authenticate. `reason` is a short machine word (see AUTH_FAILURES),
    `message` a sentence safe to show the client."""

    def __init__(self, reason: str, message: str | None = None) -> None:
        self.reason = reason
        self.message = message or AUTH_FAILURES.get(reason, "the API key was refused")
        super().__init__(self.message)
