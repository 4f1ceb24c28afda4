"""API key -> Principal, with an in-memory cache every replica invalidates on `control.keys`.

A cache entry is trusted until the earliest of: its TTL (a backstop should an event be
missed), the key's expiry, and the end of the rotation grace of the secret it was
verified with. Any KeyEvent drops the entries of its key (or of the whole org for
`org_*` actions) on every replica. A lookup that raced with an event is not cached,
and the cache is cleared whenever the NATS connection was lost in between.
"""

from __future__ import annotations

import asyncio
import hmac
import time
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import msgspec
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription
from pymongo.errors import PyMongoError

from mcpmesh.bus import Bus
from mcpmesh.gateway.control.keys import ACTIVE, REVOKED, SUSPENDED, KeyRegistry
from mcpmesh.gateway.control.orgs import ACTIVE as ORG_ACTIVE
from mcpmesh.gateway.control.orgs import OrgRegistry
from mcpmesh.gateway.control.principal import AuthFailed, Principal
from mcpmesh.gateway.control.validation import aware, effective_settings, now
from mcpmesh.proto.errors import ErrorCode, MeshException
from mcpmesh.proto.events import KeyEvent
from mcpmesh.proto.ids import InvalidIdentifier
from mcpmesh.proto.subjects import KEY_EVENTS
from mcpmesh.telemetry.logs import get_logger
from mcpmesh.tenancy.apikeys import parse_api_key

log = get_logger("mcpmesh.gateway.control")

#: Actions that concern every key of an org.
ORG_ACTIONS = frozenset({"org_suspended", "org_updated", "org_deleted"})


@dataclass(frozen=True)
class _Entry:
    principal: Principal
    valid_until: float  # unix seconds


class Authenticator:
    def __init__(
        self,
        keys: KeyRegistry,
        orgs: OrgRegistry,
        bus: Bus,
        *,
        ttl_s: float = 30.0,
        max_entries: int = 50_000,
    ) -> None:
        self.keys = keys
        self.orgs = orgs
        self.bus = bus
        self.ttl_s = ttl_s
        self.max_entries = max_entries
        self._cache: dict[str, _Entry] = {}  # hash of the presented key -> entry
        self._epoch = 0  # bumped by every invalidation
        self._reconnects = 0
        self._sub: Subscription | None = None
        self._inflight: dict[str, asyncio.Future[tuple[Principal, float]]] = {}

    async def start(self) -> None:
        self._sub = await self.bus.nc.subscribe(KEY_EVENTS, cb=self._on_event)

    async def stop(self) -> None:
        if self._sub is not None:
            try:
                await self._sub.unsubscribe()
            except Exception as exc:  # connection already closed
                log.debug("key events unsubscribe failed", error=repr(exc))
            self._sub = None

    async def broadcast(self, key_id: str, org_id: str, action: str) -> None:
        """Tell every replica (this one included, at once) to drop the key's or org's entries."""
        event = KeyEvent(key_id=key_id, org_id=org_id, action=action, ts=time.time())
        self.invalidate(event)
        await self.bus.nc.publish(KEY_EVENTS, msgspec.json.encode(event))
        await self.bus.nc.flush(timeout=2)

    async def _on_event(self, msg: Msg) -> None:
        try:
            event = msgspec.json.decode(msg.data, type=KeyEvent)
        except msgspec.ValidationError:
            log.warning("malformed key event ignored")
            return
        self.invalidate(event)

    def invalidate(self, event: KeyEvent) -> None:
        self._epoch += 1
        self._inflight.clear()  # lookups begun before the event may have read the old state
        if event.action in ORG_ACTIONS or event.key_id == "*":
            doomed = [h for h, e in self._cache.items() if e.principal.org_id == event.org_id]
        else:
            doomed = [h for h, e in self._cache.items() if e.principal.key_id == event.key_id]
        for digest in doomed:
            self._cache.pop(digest, None)

    def clear(self) -> None:
        self._epoch += 1
        self._inflight.clear()
        self._cache.clear()

    def _connection_trusted(self) -> bool:
        """Entries survive only while the event subscription provably saw every event."""
        nc = self.bus.nc
        reconnects = int(nc.stats.get("reconnects", 0))
        if reconnects != self._reconnects:
            self._reconnects = reconnects
            self.clear()
        return bool(nc.is_connected)

    async def authenticate(self, raw_key: str) -> Principal:
        if not raw_key or not raw_key.strip():
            raise AuthFailed("missing")
        try:
            key_id = parse_api_key(raw_key)
        except InvalidIdentifier:
            raise AuthFailed("malformed") from None
        digest = self.keys.digest(raw_key)
        trusted = self._connection_trusted()
        entry = self._cache.get(digest)
        wall = time.time()
        if entry is not None and trusted and entry.valid_until > wall:
            return entry.principal
        epoch = self._epoch
        principal, valid_until = await self._lookup_once(key_id, digest)
        if trusted and epoch == self._epoch:
            if len(self._cache) >= self.max_entries:
                self._cache.clear()
            self._cache[digest] = _Entry(principal, min(valid_until, time.time() + self.ttl_s))
        return principal

    async def _lookup_once(self, key_id: str, digest: str) -> tuple[Principal, float]:
        """Concurrent first uses of one key share a single store lookup."""
        pending = self._inflight.get(digest)
        if pending is None:
            pending = asyncio.ensure_future(self._lookup(key_id, digest))
            self._inflight[digest] = pending
            pending.add_done_callback(lambda f: self._forget_inflight(digest, f))
        return await asyncio.shield(pending)

    def _forget_inflight(self, digest: str, done: asyncio.Future[tuple[Principal, float]]) -> None:
        if self._inflight.get(digest) is done:
            del self._inflight[digest]
        if not done.cancelled():
            done.exception()  # retrieved: a refusal shared by no one is not "never retrieved"

    async def _lookup(self, key_id: str, digest: str) -> tuple[Principal, float]:
        try:
            return await self._verify(key_id, digest)
        except PyMongoError as exc:
            log.error("key store unavailable", error=repr(exc))
            raise MeshException(
                ErrorCode.UNAVAILABLE, "API keys cannot be checked right now: retry shortly"
            ) from None

    async def principal_of(self, key_id: str) -> Principal:
        """The principal of a key the caller proved otherwise (a job's ticket names it), if the
        key and its org are still active now; raises AuthFailed. Not cached."""
        try:
            row = await self.keys.get(key_id)
            if row is None:
                raise AuthFailed("unknown")
            principal, _ = await self._active(row, float("inf"))
        except PyMongoError as exc:
            log.error("key store unavailable", error=repr(exc))
            raise MeshException(
                ErrorCode.UNAVAILABLE, "API keys cannot be checked right now: retry shortly"
            ) from None
        return principal

    async def _verify(self, key_id: str, digest: str) -> tuple[Principal, float]:
        row = await self.keys.get(key_id, with_hashes=True)
        if row is None:
            raise AuthFailed("unknown")
        valid_until = float("inf")
        if not hmac.compare_digest(row["hash"], digest):
            grace = _grace_end(row.get("previous") or [], digest)
            if grace is None or aware(grace) <= now():
                raise AuthFailed("unknown")
            valid_until = aware(grace).timestamp()
        return await self._active(row, valid_until)

    async def _active(self, row: dict[str, Any], valid_until: float) -> tuple[Principal, float]:
        """The principal of a key row whose secret matched, and until when it may be trusted."""
        stamp = now()
        status = row["status"]
        if status == REVOKED:
            raise AuthFailed("revoked")
        if status == SUSPENDED:
            raise AuthFailed("suspended")
        if status != ACTIVE:
            raise AuthFailed("unknown")
        expires_at = row.get("expires_at")
        if expires_at is not None:
            if aware(expires_at) <= stamp:
                raise AuthFailed("expired")
            valid_until = min(valid_until, aware(expires_at).timestamp())
        org = await self.orgs.get(row["org_id"])
        if org is None:
            raise AuthFailed("unknown")
        if org["status"] != ORG_ACTIVE:
            raise AuthFailed("org_suspended")
        principal = Principal(
            org_id=org["org_id"],
            key_id=row["key_id"],
            tier=org["tier"],
            scopes=tuple(row["scopes"]),
            settings=effective_settings(org["tier"], org.get("overrides") or {}),
            tags=tuple(row.get("tags") or ()),
        )
        return principal, valid_until


def _grace_end(previous: list[dict[str, Any]], digest: str) -> datetime | None:
    for old in previous:
        if hmac.compare_digest(old["hash"], digest):
            valid_until: datetime = old["valid_until"]
            return valid_until
    return None
