"""RunningCalls: which calls a cancel notice reaches, including one still waiting for a slot."""

from __future__ import annotations

import anyio

from mcpmesh.proto.headers import CancelNotice
from mcpmesh.service.cancel import EARLY_CANCEL_MAX, RunningCalls


async def test_a_notice_reaches_only_the_running_call_of_its_org_and_key() -> None:
    running = RunningCalls()
    scope = anyio.CancelScope()
    running.add(scope, "org-a", "key-1", "req-1", "sess/7")
    assert running.cancel("org-b", "key-1", CancelNotice(request_id="req-1")) == 0
    assert running.cancel("org-a", "key-2", CancelNotice(client_request="sess/7")) == 0
    assert not scope.cancel_called
    assert running.cancel("org-a", "key-1", CancelNotice(client_request="sess/7")) == 1
    assert scope.cancel_called


async def test_a_request_cancelled_before_it_started_is_cancelled_when_it_starts() -> None:
    running = RunningCalls()
    assert running.cancel("org-a", "key-1", CancelNotice(request_id="queued")) == 0
    other_org = anyio.CancelScope()
    running.add(other_org, "org-b", "key-1", "queued", None)  # the same id elsewhere: untouched
    assert not other_org.cancel_called
    late = anyio.CancelScope()
    running.add(late, "org-a", "key-1", "queued", None)
    assert late.cancel_called
    again = anyio.CancelScope()
    running.add(again, "org-a", "key-1", "queued", None)  # remembered once, not forever
    assert not again.cancel_called


async def test_client_request_names_are_not_remembered_and_early_ids_are_bounded() -> None:
    running = RunningCalls()
    running.cancel("org-a", "key-1", CancelNotice(client_request="sess/1"))
    reused = anyio.CancelScope()
    running.add(reused, "org-a", "key-1", "req-9", "sess/1")  # a client may reuse its JSON-RPC id
    assert not reused.cancel_called
    for i in range(EARLY_CANCEL_MAX + 1):
        running.cancel("org-a", "key-1", CancelNotice(request_id=f"r{i}"))
    oldest, newest = anyio.CancelScope(), anyio.CancelScope()
    running.add(oldest, "org-a", "key-1", "r0", None)
    running.add(newest, "org-a", "key-1", f"r{EARLY_CANCEL_MAX}", None)
    assert not oldest.cancel_called and newest.cancel_called
