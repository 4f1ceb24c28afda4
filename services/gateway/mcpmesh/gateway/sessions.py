"""Legacy (2025-11-25) sessions with no state on any replica.

The `Mcp-Session-Id` the gateway hands out at `initialize` is itself the session: an
AES-GCM token (key derived from MCPMESH_SESSION_SECRET) carrying the org, the key id, the
endpoint, the negotiated protocol version, the client's info and capabilities, and an
expiry. Any replica with the same secret can open it, and nobody else can read or forge
it. Ending a session (DELETE) records its id in the NATS KV bucket `GATEWAY_SESSIONS`
(entries expire with the longest a session can live), which every replica consults.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import os
import secrets
import time
import zlib
from typing import Any, Final

import msgspec
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from nats.js.errors import KeyNotFoundError
from nats.js.kv import KeyValue

from mcpmesh.bus import Bus
from mcpmesh.telemetry.logs import get_logger

log = get_logger("mcpmesh.gateway.sessions")

ENDED_BUCKET: Final = "GATEWAY_SESSIONS"
_VERSION: Final = b"\x01"
_AAD: Final = b"mcpmesh-gateway-session"
#: Longest session id we hand out; bigger client capabilities are trimmed to their top-level keys.
MAX_TOKEN_CHARS: Final = 3000


class SessionClaims(msgspec.Struct, frozen=True, array_like=True):
    sid: str  # random id: what DELETE records as ended
    org: str
    key: str  # key id the session was opened with: every request must present that key
    svc: str  # "" for /mcp, else the service of /mcp/<service>
    pv: str  # negotiated protocol version
    iat: int
    exp: int
    ci: Any = None  # clientInfo from initialize
    cc: Any = None  # client capabilities from initialize


class InvalidSession(Exception):
    """The id is not one we issued, is expired, or was ended."""


class SessionCodec:
    def __init__(self, key: bytes, ttl_s: float) -> None:
        if len(key) != 32:
            raise ValueError("the session key must be 32 bytes")
        self._aead = AESGCM(key)
        self.ttl_s = ttl_s

    def issue(
        self,
        *,
        org_id: str,
        key_id: str,
        service: str | None,
        protocol_version: str,
        client_info: Any,
        capabilities: Any,
    ) -> tuple[str, SessionClaims]:
        now = int(time.time())
        claims = SessionClaims(
            sid=secrets.token_hex(16),
            org=org_id,
            key=key_id,
            svc=service or "",
            pv=protocol_version,
            iat=now,
            exp=now + int(self.ttl_s),
            ci=client_info,
            cc=capabilities,
        )
        token = self._seal(claims)
        if len(token) > MAX_TOKEN_CHARS:
            trimmed: dict[str, Any] = {k: {} for k in capabilities} if isinstance(capabilities, dict) else {}
            info = client_info if len(msgspec.json.encode(client_info)) < 512 else None
            claims = msgspec.structs.replace(claims, ci=info, cc=trimmed)
            token = self._seal(claims)
        return token, claims

    def _seal(self, claims: SessionClaims) -> str:
        plain = msgspec.json.encode(claims)
        packed = zlib.compress(plain, 6)
        nonce = os.urandom(12)
        sealed = _VERSION + nonce + self._aead.encrypt(nonce, packed, _AAD)
        return base64.urlsafe_b64encode(sealed).rstrip(b"=").decode()

    def open(self, token: str) -> SessionClaims:
        """The claims of a genuine, unexpired token; InvalidSession otherwise."""
        if not token or len(token) > MAX_TOKEN_CHARS * 2:
            raise InvalidSession("not a session id issued by this gateway")
        try:
            raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        except (binascii.Error, ValueError):
            raise InvalidSession("not a session id issued by this gateway") from None
        if len(raw) < 1 + 12 + 16 or raw[:1] != _VERSION:
            raise InvalidSession("not a session id issued by this gateway")
        try:
            packed = self._aead.decrypt(raw[1:13], raw[13:], _AAD)
            claims = msgspec.json.decode(zlib.decompress(packed), type=SessionClaims)
        except (InvalidTag, zlib.error, msgspec.DecodeError, msgspec.ValidationError):
            raise InvalidSession("not a session id issued by this gateway") from None
        if claims.exp < time.time():
            raise InvalidSession("the session expired: initialize a new one")
        return claims


class EndedSessions:
    """Ids of sessions a client ended, shared by every replica through NATS KV."""

    def __init__(self, bus: Bus, ttl_s: float) -> None:
        self.bus = bus
        self.ttl_s = ttl_s
        self._kv: KeyValue | None = None
        self._known: dict[str, float] = {}  # sid -> when the record expires (local shortcut)

    async def _bucket(self) -> KeyValue:
        if self._kv is None:
            self._kv = await self.bus.kv(ENDED_BUCKET, ttl=self.ttl_s)
        return self._kv

    async def end(self, claims: SessionClaims) -> None:
        self._remember(claims.sid, claims.exp)
        kv = await self._bucket()
        async with asyncio.timeout(2.0):
            await kv.put(claims.sid, str(claims.exp).encode())

    async def is_ended(self, claims: SessionClaims) -> bool:
        if claims.sid in self._known:
            return True
        kv = await self._bucket()
        try:
            async with asyncio.timeout(2.0):
                await kv.get(claims.sid)
        except KeyNotFoundError:
            return False
        self._remember(claims.sid, claims.exp)
        return True

    def _remember(self, sid: str, expires: float) -> None:
        now = time.time()
        if len(self._known) > 100_000:
            self._known = {k: v for k, v in self._known.items() if v > now}
        self._known[sid] = expires
