"""Tenant stamps for the service a request goes to, minted once per key and service.

An EdDSA signature costs ~50 µs, so a stamp is reused for the same key, scopes, tier and
target service until it is within a third of its lifetime of expiring. The cache key
includes everything the stamp asserts, so a key whose scopes or tier change gets a new one.
"""

from __future__ import annotations

import time
from typing import Final

from mcpmesh.tenancy.stamp import StampSigner

_MAX_ENTRIES: Final = 20_000


class StampCache:
    def __init__(self, signer: StampSigner) -> None:
        self.signer = signer
        self.refresh_before_s = max(5.0, signer.ttl_s / 3)
        self._cache: dict[tuple[str, str, str, str, tuple[str, ...]], tuple[float, str]] = {}
        self.minted = 0

    def stamp(self, *, org_id: str, key_id: str, tier: str, scopes: tuple[str, ...], service: str) -> str:
        cache_key = (org_id, key_id, service, tier, scopes)
        now = time.time()
        hit = self._cache.get(cache_key)
        if hit is not None and hit[0] - now > self.refresh_before_s:
            return hit[1]
        token = self.signer.mint(org_id=org_id, tier=tier, scopes=list(scopes), sub=key_id, service=service)
        self.minted += 1
        if len(self._cache) >= _MAX_ENTRIES:
            self._cache = {k: v for k, v in self._cache.items() if v[0] - now > self.refresh_before_s}
            if len(self._cache) >= _MAX_ENTRIES:
                self._cache.clear()
        self._cache[cache_key] = (now + self.signer.ttl_s, token)
        return token
