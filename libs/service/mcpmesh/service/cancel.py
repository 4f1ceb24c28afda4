"""Cancellation: a caller stops a call that a replica is running.

A caller publishes a `CancelNotice` on `mcp.<org>.<service>.cancel` (every replica hears it)
with its stamp: the gateway when its client sends `notifications/cancelled` or goes away
mid-call, a service whose own call was cancelled while it waited on another service. The
replica running the call cancels its handler as the SDK does (the tool's coroutine gets
`CancelledError`, `ctx.request_context`'s `cancel_requested` is set); the call answers
`cancelled` (JSON-RPC -32800), frees its admission slot, and is counted as `cancelled`.

Tenant-safe by construction: a notice reaches only calls of the org its subject names and of
the API key its stamp names (the stamp is verified, its org must match the subject's), and a
call is named by an id the caller got from the gateway: the request id (random, per request)
or the client's own JSON-RPC id within its session (2025-11-25) or its API key (2026-07-28).
A notice naming a request id that runs nowhere here yet is remembered for
`EARLY_CANCEL_TTL_S` (at most `EARLY_CANCEL_MAX` ids): a call still queued at admission when its
caller gave up is cancelled as soon as it starts, before its handler runs. (Client request names
are not remembered: a client may reuse its JSON-RPC id once the call is over.)
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Mapping
from typing import TYPE_CHECKING, Final

import anyio
import msgspec

from mcpmesh.proto import headers as h
from mcpmesh.proto.errors import MeshException
from mcpmesh.proto.ids import InvalidIdentifier
from mcpmesh.proto.subjects import org_and_name
from mcpmesh.telemetry.logs import get_logger

if TYPE_CHECKING:
    from mcpmesh.service.server import MeshService

log = get_logger("mcpmesh.service")

_Key = tuple[str, str, str]  # (org, API key id, "r:<request id>" or "c:<client request>")

#: How long, and how many, request ids cancelled before their call started are remembered.
EARLY_CANCEL_TTL_S: Final = 300.0
EARLY_CANCEL_MAX: Final = 4096


class RunningCalls:
    """The calls a replica is running, by the names a caller may cancel them with."""

    def __init__(self) -> None:
        self._scopes: dict[_Key, set[anyio.CancelScope]] = {}
        self._early: OrderedDict[_Key, float] = OrderedDict()  # request ids cancelled before they ran
        self.notices = 0  # notices applied (whether or not they named a call here)

    def __len__(self) -> int:
        return len(self._scopes)

    def add(
        self, scope: anyio.CancelScope, org_id: str, key_id: str, request_id: str, client_request: str | None
    ) -> list[_Key]:
        """Make `scope` (the call's) cancellable by its request id or its client request name;
        `discard` the keys returned when the call ends. A cancelled call's scope exits normally
        (`fail_after`'s too: it raises TimeoutError only at its deadline)."""
        keys = [(org_id, key_id, "r:" + request_id)]
        cancelled_at = self._early.pop(keys[0], None)
        if cancelled_at is not None and time.monotonic() - cancelled_at < EARLY_CANCEL_TTL_S:
            scope.cancel()  # its caller gave up while it waited for a slot
        if client_request:
            keys.append((org_id, key_id, "c:" + client_request))
        for key in keys:
            scopes = self._scopes.get(key)
            if scopes is None:
                self._scopes[key] = {scope}
            else:
                scopes.add(scope)
        return keys

    def discard(self, keys: list[_Key], scope: anyio.CancelScope) -> None:
        for key in keys:
            scopes = self._scopes.get(key)
            if scopes is not None:
                scopes.discard(scope)
                if not scopes:
                    del self._scopes[key]

    def cancel(self, org_id: str, key_id: str, notice: h.CancelNotice) -> int:
        """Cancel the calls `notice` names for this org and key; how many there were."""
        self.notices += 1
        keys = []
        if notice.request_id:
            keys.append((org_id, key_id, "r:" + notice.request_id))
        if notice.client_request:
            keys.append((org_id, key_id, "c:" + notice.client_request))
        found = {scope for key in keys for scope in self._scopes.get(key, ())}
        for scope in found:
            scope.cancel()
        if not found and notice.request_id:
            self._remember(keys[0])
        return len(found)

    def _remember(self, key: _Key) -> None:
        self._early[key] = time.monotonic()
        self._early.move_to_end(key)
        while len(self._early) > EARLY_CANCEL_MAX:
            self._early.popitem(last=False)


def on_notice(service: MeshService, subject: str, data: bytes, headers: Mapping[str, str] | None) -> int:
    """Apply one message of `mcp.<org>.<service>.cancel`: the calls it stopped (0 for a notice
    that names none of this replica's, or that is malformed or wrongly stamped: dropped)."""
    try:
        org_id = org_and_name(subject.rpartition(".")[0], "mcp")[0]
        notice = msgspec.json.decode(data, type=h.CancelNotice)
        stamp = service.verify((headers or {}).get(h.STAMP))
    except (InvalidIdentifier, msgspec.DecodeError, msgspec.ValidationError, MeshException) as exc:
        log.warning("cancellation dropped", reason=str(exc)[:200])
        return 0
    if stamp.org_id != org_id:
        log.warning("cancellation dropped", reason="the stamp's org does not match the subject")
        return 0
    stopped = service.running.cancel(org_id, stamp.sub, notice)
    if stopped:
        log.info("call cancelled", org_id=org_id, calls=stopped, reason=notice.reason[:200])
    return stopped
