"""NATS connection with reconnect, drain on close, and requests bound to a deadline.

`Bus.request` sends a request again only when it provably reached no service: NATS
answered *no responders* (a service restarting, a replica not yet subscribed) or the
connection could not take it (closed, draining, reconnect buffer full). It retries those
with a short backoff for `UNSENT_RETRY_S` (5 s) at most, within the deadline, then raises
UNAVAILABLE (retryable). A request that was sent and got no reply in time
is never sent again (the service may be running it): that is a TIMEOUT for the caller.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
import urllib.parse
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, TypeVar

import nats
import nats.errors
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import StreamConfig
from nats.js.errors import BadRequestError, BucketNotFoundError
from nats.js.kv import KeyValue

from mcpmesh.bus.frames import OnProgress, ReplyInbox
from mcpmesh.bus.request import Deadline
from mcpmesh.bus.stopping import raising_lost_cancels
from mcpmesh.proto import headers as headers_mod
from mcpmesh.proto import subjects
from mcpmesh.proto.errors import ErrorCode, MeshException
from mcpmesh.proto.ids import InvalidIdentifier
from mcpmesh.telemetry.logs import get_logger

log = get_logger("mcpmesh.bus")
_R = TypeVar("_R")

_BACKOFF_S = (0.01, 0.02, 0.05, 0.1, 0.2, 0.3)
#: How long a request that reached no service is sent again (within its deadline) before the
#: caller is told `unavailable`: long enough for a replica restarting, not a whole tool budget.
UNSENT_RETRY_S = 5.0

#: JetStream replicas for USAGE and AUDIT: 1 on a single server, 3 on a production cluster.
STREAM_REPLICAS = int(os.environ.get("MCPMESH_JS_REPLICAS", "1"))

STREAMS: tuple[StreamConfig, ...] = (
    StreamConfig(
        name=subjects.USAGE_STREAM,
        subjects=[subjects.usage_filter()],
        max_age=30 * 86400.0,
        num_replicas=STREAM_REPLICAS,
        duplicate_window=120.0,
    ),
    StreamConfig(
        name=subjects.AUDIT_STREAM,
        subjects=[subjects.audit_filter()],
        max_age=400 * 86400.0,
        num_replicas=STREAM_REPLICAS,
        duplicate_window=120.0,
    ),
)


NO_RESPONDERS = "no responders"  # nobody subscribes to the subject (any more)
NOT_CONNECTED = "connection unavailable"  # closed, draining, or the reconnect buffer is full


class NotDelivered(MeshException):
    """The request provably reached no service (`reason`): sending it again, anywhere, is safe."""

    def __init__(self, reason: str) -> None:
        super().__init__(ErrorCode.UNAVAILABLE, f"the request reached no service ({reason}): retry later")
        self.reason = reason


class Bus:
    def __init__(self, nc: Client) -> None:
        self.nc = nc
        self.js: JetStreamContext = nc.jetstream()
        self._kv: dict[str, KeyValue] = {}
        self._inbox: ReplyInbox | None = None

    @property
    def connected(self) -> bool:
        return bool(self.nc.is_connected)

    async def request(
        self,
        subject: str,
        payload: bytes,
        *,
        deadline: Deadline,
        headers: Mapping[str, str] | None = None,
        retry_unsent: bool = True,
    ) -> Msg:
        """The reply to one request. Raises MeshException: TIMEOUT when it was sent and no reply
        came before the deadline (the service may have run it), UNAVAILABLE when it never reached
        a service. `retry_unsent=False` raises `NotDelivered` at the first such failure instead of
        retrying (for a caller that picks another subject itself)."""

        async def once(hdrs: dict[str, str], left: float) -> Msg:
            return await self.nc.request(subject, payload, timeout=left, headers=hdrs)

        return await self._sent_once(subject, once, deadline, headers, retry_unsent)

    async def request_stream(
        self,
        subject: str,
        payload: bytes,
        *,
        deadline: Deadline,
        max_result_bytes: int,
        headers: Mapping[str, str] | None = None,
        retry_unsent: bool = True,
        on_progress: OnProgress | None = None,
    ) -> bytes:
        """`request`, for a reply that may be a stream of frames (see `mcpmesh.bus.frames`): the
        response body, reassembled, at most `max_result_bytes`. With `on_progress`, the service
        is asked for progress frames, each handed to it as it arrives."""
        if self._inbox is None:
            self._inbox = ReplyInbox(self.nc)
        inbox = self._inbox

        async def once(hdrs: dict[str, str], left: float) -> bytes:
            if self.nc.is_closed:
                raise nats.errors.ConnectionClosedError
            if self.nc.is_draining:
                raise nats.errors.ConnectionDrainingError
            reply, queue = await inbox.open()
            try:
                await self.nc.publish(subject, payload, reply=reply, headers=hdrs)
                return await inbox.collect(
                    queue, wait_s=left, max_result_bytes=max_result_bytes, on_progress=on_progress
                )
            finally:
                inbox.close(reply)

        hdrs = dict(headers or {})
        if on_progress is not None:
            hdrs[headers_mod.STREAM] = "1"
        return await self._sent_once(subject, once, deadline, hdrs, retry_unsent)

    async def _sent_once(
        self,
        subject: str,
        once: Callable[[dict[str, str], float], Awaitable[_R]],
        deadline: Deadline,
        headers: Mapping[str, str] | None,
        retry_unsent: bool,
    ) -> _R:
        hdrs = dict(headers or {})
        attempt = 0
        retry_until = time.monotonic() + UNSENT_RETRY_S
        while True:
            left = deadline.check()
            hdrs[headers_mod.DEADLINE] = deadline.header()
            try:
                with raising_lost_cancels():  # nats waits with wait_for, which may lose a cancel
                    return await once(hdrs, left)
            except nats.errors.NoRespondersError:
                reason = NO_RESPONDERS
            except nats.errors.TimeoutError:
                raise MeshException(
                    ErrorCode.TIMEOUT, "the service did not answer before the deadline"
                ) from None
            except (
                nats.errors.ConnectionClosedError,
                nats.errors.ConnectionDrainingError,
                nats.errors.ConnectionReconnectingError,
                nats.errors.OutboundBufferLimitError,
            ):
                reason = NOT_CONNECTED
            if not retry_unsent:
                raise NotDelivered(reason)
            pause = _BACKOFF_S[min(attempt, len(_BACKOFF_S) - 1)]
            attempt += 1
            if deadline.remaining() <= pause or time.monotonic() + pause > retry_until:
                raise MeshException(ErrorCode.UNAVAILABLE, "the service is unavailable: retry later")
            log.debug("bus retry", subject=subject, reason=reason, attempt=attempt)
            await asyncio.sleep(pause)

    async def ensure_streams(self) -> None:
        """Create (or update) the USAGE and AUDIT streams. The gateway owns them (only its NATS
        user may call the stream API); safe to call from every gateway replica."""
        for config in STREAMS:
            try:
                await self.js.add_stream(config)
            except BadRequestError:  # exists with another config: bring it to ours
                await self.js.update_stream(config)

    async def kv(
        self, bucket: str, *, history: int = 1, ttl: float | None = None, create: bool = True
    ) -> KeyValue:
        """A JetStream key-value bucket, created on first use by its owner (`create=False` for a
        reader, which gets BucketNotFoundError while the owner has not made it); the handle is
        kept, so hot paths (org settings on every call) cost no bucket lookup."""
        handle = self._kv.get(bucket)
        if handle is None:
            try:
                handle = await self.js.key_value(bucket)
            except BucketNotFoundError:
                if not create:
                    raise
                handle = await self.js.create_key_value(bucket=bucket, history=history, ttl=ttl)
            self._kv[bucket] = handle
        return handle

    async def close(self) -> None:
        """Drain: finish delivering what is in flight, then disconnect."""
        if not self.nc.is_closed:
            try:
                await self.nc.drain()
            except (TimeoutError, nats.errors.ConnectionClosedError):
                await self.nc.close()


async def flush(nc: Client) -> None:
    """Return once the server has read everything `nc` sent before (a SUB is in force, a PUB
    was routed). nats-py's own `flush()` does not promise that: it writes its PING straight
    to the socket, ahead of the SUB/PUB its flusher task has not written yet, so the PONG can
    come back before the server has them. So the buffer goes out first, then the PING."""
    await nc._flush_pending(force_flush=True)  # the buffered commands, written in order
    await nc.flush()  # the PONG: the server has read all of it


async def connect(
    url: str,
    *,
    name: str,
    connect_timeout: float = 5.0,
    into: Bus | None = None,
) -> Bus:
    """Connect with unlimited reconnects; a NATS restart is survived transparently.

    Credentials come in the URL (`nats://svc-context:<password>@host:4222`); a mesh user
    (gateway, svc-<service>, an org's publisher) gets its own reply inbox prefix
    (`subjects.inbox_prefix`), the only inbox its NATS permissions let it subscribe to.
    `into`: connect that Bus's (not yet connected) client instead of a new one, for a Bus
    other objects were built around before startup.
    """

    async def on_error(exc: Exception) -> None:
        log.warning("nats error", error=repr(exc))

    closing: list[Client] = []  # filled once connected: a disconnect we asked for is not news

    async def on_disconnected() -> None:
        if closing and (closing[0].is_closed or closing[0].is_draining):
            log.debug("nats disconnected", reason="closing")
        else:
            log.warning("nats disconnected")

    async def on_reconnected() -> None:
        log.info("nats reconnected")

    options: dict[str, Any] = dict(
        servers=[url],
        name=name,
        error_cb=on_error,
        disconnected_cb=on_disconnected,
        reconnected_cb=on_reconnected,
        max_reconnect_attempts=-1,
        reconnect_time_wait=0.25,
        connect_timeout=connect_timeout,
        allow_reconnect=True,
        drain_timeout=5,
    )
    user = urllib.parse.urlsplit(url).username
    # A user that is not one of the mesh's keeps the default inbox: its server decides.
    with contextlib.suppress(InvalidIdentifier):
        if user is not None:
            options["inbox_prefix"] = subjects.inbox_prefix(urllib.parse.unquote(user))
    started = time.monotonic()
    try:
        nc = into.nc if into is not None else Client()
        await nc.connect(**options)
        closing.append(nc)
    except (nats.errors.NoServersError, OSError) as exc:
        raise MeshException(
            ErrorCode.UNAVAILABLE, f"cannot reach NATS at {redact_url(url)}: {exc.__class__.__name__}"
        ) from None
    log.debug("nats connected", url=redact_url(url), ms=round((time.monotonic() - started) * 1000, 1))
    return into if into is not None else Bus(nc)


def redact_url(url: str) -> str:
    """`url` without its password, for logs."""
    parts = urllib.parse.urlsplit(url)
    if parts.password is None:
        return url
    netloc = f"{parts.username}:***@{parts.hostname}" + (f":{parts.port}" if parts.port else "")
    return urllib.parse.urlunsplit(parts._replace(netloc=netloc))
