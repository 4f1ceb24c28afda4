"""The control plane: tenants, API keys, usage, audit and the admin API, for one gateway replica."""

from __future__ import annotations

import hmac
import time
from datetime import UTC, datetime

from aiohttp import web

from mcpmesh.bus import Bus
from mcpmesh.gateway.control import tenant_data
from mcpmesh.gateway.control.audit import AuditLog
from mcpmesh.gateway.control.audit import event_matches_subject as audit_matches
from mcpmesh.gateway.control.authenticate import Authenticator
from mcpmesh.gateway.control.durable import DurableWriter
from mcpmesh.gateway.control.job_stamps import JobStampDesk
from mcpmesh.gateway.control.key_use import KeyUseRecorder
from mcpmesh.gateway.control.keys import KeyRegistry
from mcpmesh.gateway.control.orgs import OrgRegistry
from mcpmesh.gateway.control.principal import Principal
from mcpmesh.gateway.control.usage import UsageRollup
from mcpmesh.gateway.control.usage import event_matches_subject as usage_matches
from mcpmesh.proto.events import AuditEvent, UsageEvent
from mcpmesh.proto.ids import validate_org_id
from mcpmesh.proto.subjects import AUDIT_STREAM, USAGE_STREAM, audit_filter, usage_filter
from mcpmesh.store import Store
from mcpmesh.telemetry.logs import get_logger
from mcpmesh.tenancy.commands import CommandSigner
from mcpmesh.tenancy.stamp import StampSigner

log = get_logger("mcpmesh.gateway.control")

USAGE_DURABLE = "gateway-usage-writer"
AUDIT_DURABLE = "gateway-audit-writer"


class ControlPlane:
    def __init__(
        self,
        store: Store,
        bus: Bus,
        *,
        admin_key: str,
        stamp_signing_key: str,
        key_pepper: bytes,
        key_grace_s: float = 3600.0,
        stamp_ttl_s: int = 60,
        auth_cache_ttl_s: float = 30.0,
        key_use_flush_s: float = 1.0,
        run_writers: bool = True,
    ) -> None:
        if len(admin_key) < 16:
            raise ValueError("the admin key must be at least 16 characters long")
        self.store = store
        self.bus = bus
        #: Signs the admin authorization every tenant delete/export command carries.
        self.commands = CommandSigner(stamp_signing_key)
        #: Mints the `<service>:admin` stamps of the secrets routes (admin_secrets.py).
        self.stamps = StampSigner(stamp_signing_key)
        self._admin_key = admin_key.encode()
        self.key_grace_s = key_grace_s
        #: False: this replica only serves; the writers run on another (GATEWAY_RUN_WRITERS).
        self.run_writers = run_writers
        self.orgs = OrgRegistry(store, bus)
        self.keys = KeyRegistry(store, key_pepper)
        self.auth = Authenticator(self.keys, self.orgs, bus, ttl_s=auth_cache_ttl_s)
        #: Answers services asking for their jobs' tickets and stamps (`control.stamps.<service>`).
        self.job_stamps = JobStampDesk(bus, self.auth, stamp_signing_key, stamp_ttl_s)
        self.usage = UsageRollup(store)
        self.audit = AuditLog(store)
        self.key_use = KeyUseRecorder(self.keys, bus, interval_s=key_use_flush_s)
        self.usage_writer: DurableWriter[UsageEvent] = DurableWriter(
            bus,
            stream=USAGE_STREAM,
            durable=USAGE_DURABLE,
            filter_subject=usage_filter(),
            event_type=UsageEvent,
            write=self.usage.write,
            check=usage_matches,
        )
        self.audit_writer: DurableWriter[AuditEvent] = DurableWriter(
            bus,
            stream=AUDIT_STREAM,
            durable=AUDIT_DURABLE,
            filter_subject=audit_filter(),
            event_type=AuditEvent,
            write=self.audit.write,
            check=audit_matches,
        )
        self._started = False

    async def start(self) -> None:
        """Indexes, the KEY_EVENTS subscription, the key-use flusher and (if `run_writers`) both writers."""
        await self.bus.ensure_streams()
        await self._ensure_indexes()
        await self.auth.start()
        await self.job_stamps.start()
        await self.key_use.start()
        if self.run_writers:
            await self.usage_writer.start()
            await self.audit_writer.start()
        self._started = True

    async def stop(self) -> None:
        if not self._started:
            return
        self._started = False
        writers = (self.usage_writer, self.audit_writer) if self.run_writers else ()
        for part in (self.key_use, *writers, self.job_stamps, self.auth):
            try:
                await part.stop()
            except Exception as exc:  # stop the rest regardless; say what was not finished
                log.error(
                    "control plane part did not stop cleanly", part=type(part).__name__, error=repr(exc)
                )

    async def _ensure_indexes(self) -> None:
        await (await self.store.control("tenants")).create_index("org_id", unique=True, name="org_id_unique")
        await (await self.store.control("api_keys")).create_index("key_id", unique=True, name="key_id_unique")
        await self.usage.ensure_indexes()
        await self.audit.ensure_indexes()

    async def authenticate(self, raw_key: str) -> Principal:
        """The caller of a tenant API key; raises AuthFailed."""
        return await self.auth.authenticate(raw_key)

    async def note_key_use(self, principal: Principal, *, action: str, outcome: str, request_id: str) -> None:
        """Queue `last_used_at` and an audit event; no I/O on the caller's path."""
        self.key_use.note(
            principal.org_id,
            principal.key_id,
            action=action,
            outcome=outcome,
            request_id=request_id,
            ts=time.time(),
        )

    def is_admin(self, presented: str) -> bool:
        return bool(presented) and hmac.compare_digest(presented.strip().encode(), self._admin_key)

    def add_routes(self, app: web.Application) -> None:
        from mcpmesh.gateway.control.admin_api import mount

        mount(self, app)

    async def services(self) -> list[str]:
        """Services answering nats.micro `$SRV.INFO` with tenant delete/export endpoints."""
        return await tenant_data.discover(self.bus)

    async def monthly_tool_calls(self, org_id: str) -> int:
        """`tools/call`s the services reported for the org this calendar month (UTC), as rolled up."""
        start = datetime.now(UTC).replace(day=1, hour=0, minute=0, second=0, microsecond=0)
        return await self.usage.tool_calls_since(validate_org_id(org_id), start)
