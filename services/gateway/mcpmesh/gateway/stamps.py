"""Tenant stamps for the service a request goes to, minted once per key and service.

An EdDSA signature costs ~50 µs, so a stamp is reused for the same key, scopes, tags, tier
and target service until it is within a third of its lifetime of expiring. The cache key
includes everything the stamp asserts, so a key whose scopes, tags or tier change gets a new one.
"""

from __future__ import annotations

import time
from typing import Final

from mcpmesh.gateway.control.principal import Principal
from mcpmesh.tenancy.stamp import StampSigner

_MAX_ENTRIES: Final = 20_000
#: org, key, service, tier, scopes, tags: everything a stamp asserts
_CacheKey = tuple[str, str, str, str, tuple[str, ...], tuple[str, ...]]


class StampCache:
    def __init__(self, signer: StampSigner) -> None:
        self.signer = signer
        self.refresh_before_s = max(5.0, signer.ttl_s / 3)
        self._cache: dict[_CacheKey, tuple[float, str]] = {}
        self.minted = 0

    def stamp(self, principal: Principal, service: str) -> str:
        """A stamp for `principal`'s call to `service`."""
        p = principal
        cache_key = (p.org_id, p.key_id, service, p.tier, p.scopes, p.tags)
        now = time.time()
        hit = self._cache.get(cache_key)
        if hit is not None and hit[0] - now > self.refresh_before_s:
            return hit[1]
        token = principal.stamp(self.signer, service)
        self.minted += 1
        if len(self._cache) >= _MAX_ENTRIES:
            self._cache = {k: v for k, v in self._cache.items() if v[0] - now > self.refresh_before_s}
            if len(self._cache) >= _MAX_ENTRIES:
                self._cache.clear()
        self._cache[cache_key] = (now + self.signer.ttl_s, token)
        return token
